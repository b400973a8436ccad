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
  python -m pip install --quiet -e "$root[dev,notebooks,ml,baselines]"
  touch "$stamp"
fi
