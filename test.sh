#!/usr/bin/env bash
# The test suite (what CI runs): installs into .venv if needed, then runs pytest.
set -euo pipefail
cd "$(dirname "$0")"
. scripts/setup_env.sh
# Two pytest-xdist workers, one test module each at a time (module fixtures are built once): a
# single run keeps about 1.4 of the 2 CI cores busy (compilation and Python are single-threaded).
python -m pytest -q -n "${FAISER_TEST_WORKERS:-2}" --dist loadscope "$@"
