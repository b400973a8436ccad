"""Test-wide setup: four fake CPU devices, so sharded code paths run on any machine.

XLA reads the flag when jax first initializes its backends, so it must be set before any test
module imports jax. A user's own XLA_FLAGS (e.g. on a GPU machine) are kept and extended.
"""

import os

import pytest

_FLAG = "--xla_force_host_platform_device_count"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" {_FLAG}=4").strip()


@pytest.fixture(scope="session")
def jax_cache_env(tmp_path_factory) -> dict[str, str]:
    """Environment entries that make subprocesses share JAX's persistent compilation cache: for
    tests that run the same programs several times (a run, its killed twin and the resumed one;
    the ranks of an MPI launch), so each program compiles once per session."""
    path = tmp_path_factory.mktemp("jax-compilation-cache")
    return {"JAX_COMPILATION_CACHE_DIR": str(path), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
