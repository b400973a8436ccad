#!/usr/bin/env bash
# The test suite (what CI runs): installs into .venv if needed, then runs pytest.
set -euo pipefail
cd "$(dirname "$0")"
. scripts/setup_env.sh
python -m pytest -q "$@"
