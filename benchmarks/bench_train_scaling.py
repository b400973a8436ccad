"""Training throughput of the 3D VQ-VAE (samples/s) against the number of devices of the data mesh.

On CPU the devices are fake (``--xla_force_host_platform_device_count``): they share the host's
cores, so this measures the overhead of the sharded step and checks that it scales sensibly, not
real multi-device speed-up. On a GPU machine the device counts are capped at the real devices.
Also times the per-VDF Fourier-MLP fit (VDFs/s). Prints JSON.

    python benchmarks/bench_train_scaling.py [--window 16] [--batch 16] [--steps 10] [--devices 1 2 4] [--weak]

``--weak``: the batch grows with the device count (``--batch`` samples per device), so each device
keeps the same work; ``weak_efficiency`` is the step time on the smallest count over this one's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

_FLAG = "--xla_force_host_platform_device_count"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" {_FLAG}=4").strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402


def bench_vqvae(
    window: int, batch: int, steps: int, devices: list[int], channels: tuple[int, ...], weak: bool = False
) -> list[dict]:
    from faiser.models.vqvae3d import VQVAE3DConfig
    from faiser.parallel.mesh import make_mesh
    from faiser.train.vqvae import VQVAETrainConfig, VQVAETrainer

    model = VQVAE3DConfig(window=window, channels=channels, n_res=1, codebook_size=128, code_dim=8)
    out = []
    for nd in devices:
        if nd > len(jax.devices()):
            continue
        b = batch * nd if weak else batch
        data = np.random.default_rng(0).standard_normal((b, window, window, window)).astype(np.float32)
        cfg = VQVAETrainConfig(steps=steps + 2, batch_size=b, seed=0)
        tr = VQVAETrainer(model, cfg, make_mesh(nd))
        state = tr.init_state()
        x, m = tr.place_batch(data)
        t0 = time.perf_counter()
        state, met = tr._step(state, x, m)
        jax.block_until_ready(met["loss"])
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(steps):
            state, met = tr._step(state, x, m)
        jax.block_until_ready(met["loss"])
        dt = time.perf_counter() - t0
        out.append({
            "devices": nd, "batch": b, "window": window, "steps": steps,
            "step_s": dt / steps, "samples_per_s": b * steps / dt, "first_step_s": compile_s,
            "n_params": tr.n_params,
        })  # fmt: skip
    if weak and out:
        for r in out:
            r["weak_efficiency"] = out[0]["step_s"] / r["step_s"]
    return out


def bench_mlp(window: int, batch: int) -> dict:
    from faiser.models.fourier_mlp import FourierMLPConfig, grid_coords
    from faiser.train.fourier_mlp import fit_mlp

    cfg = FourierMLPConfig()
    c = grid_coords(window)
    v = c * 4.0
    rng = np.random.default_rng(0)
    y = []
    for _ in range(batch):
        u = rng.uniform(-1, 1, 3)
        f = np.exp(-((v - u) ** 2).sum(1) / 2)
        y.append(np.log10(np.maximum(f / f.max(), 1e-6)))
    y = np.stack(y)
    t0 = time.perf_counter()
    fit_mlp(y, c, cfg, seed=0).block_until_ready()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit_mlp(y, c, cfg, seed=1).block_until_ready()
    dt = time.perf_counter() - t0
    return {"window": window, "batch": batch, "n_params": cfg.n_params, "steps": cfg.steps,
            "n_samples": cfg.n_samples, "s_per_vdf": dt / batch, "vdfs_per_s": batch / dt,
            "first_call_s": first}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--channels", type=int, nargs="+", default=None)
    p.add_argument("--mlp-window", type=int, default=32)
    p.add_argument("--mlp-batch", type=int, default=32)
    p.add_argument("--weak", action="store_true", help="--batch samples per device (weak scaling)")
    p.add_argument("--no-mlp", action="store_true", help="skip the Fourier-MLP fit timing")
    a = p.parse_args(argv)
    n_stages = int(np.log2(a.window // 4))
    channels = tuple(a.channels) if a.channels else tuple(min(8 * 2**i, 32) for i in range(n_stages))
    res = {
        "jax": jax.__version__, "backend": jax.default_backend(), "device": str(jax.devices()[0].device_kind),
        "host_cpus": os.cpu_count(),
        "mode": "weak" if a.weak else "strong",
        "vqvae_train": bench_vqvae(a.window, a.batch, a.steps, a.devices, channels, a.weak),
    }  # fmt: skip
    if not a.no_mlp:
        res["fourier_mlp_fit"] = bench_mlp(a.mlp_window, a.mlp_batch)
    json.dump(res, sys.stdout, indent=2)
    print()
    return res


if __name__ == "__main__":
    main()
