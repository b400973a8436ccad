#!/usr/bin/env bash
# The main job on the embedded default: a Landau-damping run with diagnostics and a plot.
set -euo pipefail
cd "$(dirname "$0")"
. scripts/setup_env.sh
out="${1:-runs/demo}"
faiser simulate landau --out "$out/landau"
faiser simulate larmor --set 'B=0.3,0.4,0.866' --set t_end=31.4 --out "$out/larmor"
echo "demo outputs: $out/landau/{config.json,diagnostics.csv,timing.json,diagnostics.png} and $out/larmor/"
