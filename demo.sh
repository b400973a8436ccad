#!/usr/bin/env bash
# The main job on the embedded default: simulate -> dataset -> VLSV -> train a codec -> compress ->
# decompress -> inspect -> a shock family -> train the latent solver -> roll out a held-out case ->
# report.md with the plots.
set -euo pipefail
cd "$(dirname "$0")"
. scripts/setup_env.sh
out="${1:-runs/demo}"
rm -rf "$out/landau" "$out/larmor" "$out/shock" "$out/codecs" "$out/latent"  # datasets are never overwritten: start afresh
# Landau damping; a zarr trajectory dataset every 10 steps (runs/demo/landau/snapshots)
faiser simulate landau --save-every 10 --out "$out/landau"
# gyration about an oblique B; Vlasiator-style VLSV output (SI units) every 17 steps
faiser simulate larmor --set 'B=0.3,0.4,0.866' --set t_end=31.4 --vlsv-every 17 --out "$out/larmor"
faiser inspect "$(ls "$out"/larmor/vlsv/bulk.*.vlsv | tail -n 1)"
# Vlasiator's Shocktest (hybrid-Vlasov), short: profiles, RH check, dataset and VLSV files
faiser simulate shock --set t_end=15 --save-every 60 --vlsv-every 150 --out "$out/shock"
# VDF compression: a small VQ-VAE trained on the shock's snapshots; the last VLSV file compressed
# with it and with ZFP, decoded back to VLSV (same cells and velocity mesh; n, V, P restored exactly)
mkdir -p "$out/codecs"
faiser train-codec --codec vqvae --data "$out/shock" --out "$out/codecs/vq" --quiet \
  --set steps=300 --set base_channels=8 --set max_channels=32 --set codebook_size=128
last="$(ls "$out"/shock/vlsv/bulk.*.vlsv | tail -n 1)"
faiser compress "$last" --codec vqvae --model "$out/codecs/vq" --out "$out/codecs/shock.vq.fz" --quiet \
  | tee "$out/codecs/summary.txt"
faiser compress "$last" --codec zfp --set tolerance=1e-3 --out "$out/codecs/shock.zfp.fz" --quiet \
  | tee -a "$out/codecs/summary.txt"
faiser decompress "$out/codecs/shock.vq.fz" --model "$out/codecs/vq" --out "$out/codecs/shock.vq.vlsv" --quiet
faiser inspect "$out/codecs/shock.vq.vlsv" | head -n 8
# a small dataset family from a sweep file (deterministic run names; reruns skip finished runs)
faiser sweep experiments/sweeps/tiny_landau.json --out "$out/family" --quiet
python - "$out" <<'PY'
import sys
from faiser.data.dataset import open_dataset
ds = open_dataset(f"{sys.argv[1]}/landau")
print(ds)
print("density at the last snapshot, first 4 cells:", ds.moments("electron", "density", time=-1)[:4, 0, 0])
PY
# The latent solver: a shock family over the upstream speed (4 runs), a 6D VQ-VAE + latent propagator
# trained on it, then a held-out upstream speed rolled out in latent space beside the reference run
faiser sweep experiments/sweeps/demo_shock_family.json --out "$out/shock_family" --quiet
faiser train-latent --data "$out/shock_family" --out "$out/latent/model" --set ae_steps=300 --set prop_steps=200
held=(--set nx=32 --set nv=16 --set downstream=rankine_hugoniot --set dt=0.05 --set t_end=15 --set diag_every=10
      --set V_left_kms=105,50,0)
faiser simulate shock "${held[@]}" --save-every 10 --out "$out/latent/reference" --quiet
faiser rollout shock --model "$out/latent/model" "${held[@]}" --save-every 10 --out "$out/latent/rollout" --quiet
faiser rollout shock --model "$out/latent/model" "${held[@]}" --propagator persistence --save-every 10 \
  --out "$out/latent/persistence" --quiet
faiser report "$out"
echo "demo outputs in $out: landau/{config.json,diagnostics.csv,timing.json,diagnostics.png,moments.nc,snapshots/}, larmor/vlsv/, shock/{shock_profiles.png,shock.json,snapshots/,vlsv/}, codecs/{vq/,*.fz,shock.vq.vlsv}, family/, shock_family/, latent/{model,reference,rollout,persistence}/, report.md"
