#!/usr/bin/env bash
# Create .venv (once) and install faiser with its test and notebook dependencies into it.
# Sourced by demo.sh and test.sh; safe to run again (it only installs what is missing).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
if [ ! -x "$root/.venv/bin/python" ]; then
  "$PY" -m venv "$root/.venv"
fi
# shellcheck disable=SC1091
. "$root/.venv/bin/activate"
stamp="$root/.venv/.faiser-installed"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  python -m pip install --quiet --upgrade pip
  python -m pip install --quiet -e "$root[dev,notebooks,ml,baselines,bench]"
  # The MPI backend (mpi4py, mpi4jax) builds against the system MPI: only where mpicc exists
  # (Debian: apt-get install openmpi-bin libopenmpi-dev). mpi4jax's build also compiles a CUDA
  # bridge whenever it finds an nvcc; an empty CUDA_PATH makes it build the CPU bridge only (set
  # FAISER_MPI4JAX_CUDA_PATH to a CUDA toolkit to get the GPU bridge). Without MPI the MPI tests skip.
  if command -v mpicc >/dev/null 2>&1; then
    nocuda="$(mktemp -d)"
    CUDA_PATH="${FAISER_MPI4JAX_CUDA_PATH:-$nocuda}" python -m pip install --quiet -e "$root[mpi]" ||
      echo "setup_env: installing the mpi extra failed; the MPI backend and its tests are unavailable" >&2
    rmdir "$nocuda" 2>/dev/null || true
  fi
  touch "$stamp"
fi
# Faster CPU runs for the demo and the tests. XLA:CPU allocates each call's temporaries afresh, and
# glibc hands blocks over 128 KiB back to the kernel on free, so every call page-faults new memory
# (one 150 x 24^3 translation per call, this 2-core VM: 19.8 ms with glibc's defaults, 9.3 ms with
# these). Blocks up to 32 MiB then stay in the heap for reuse; a user's own settings win.
export MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-33554432}"
export MALLOC_TRIM_THRESHOLD_="${MALLOC_TRIM_THRESHOLD_:-4294967296}"
export MALLOC_TOP_PAD_="${MALLOC_TOP_PAD_:-268435456}"
