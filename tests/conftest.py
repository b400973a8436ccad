"""Test-wide setup: four fake CPU devices, so sharded code paths run on any machine, and one
persistent JAX compilation cache for the whole session.

XLA reads the flag when jax first initializes its backends, so it must be set before any test
module imports jax. A user's own XLA_FLAGS (e.g. on a GPU machine) are kept and extended.

The suite compiles many programs more than once: benchmarks time >= 5 repeats of a run (each
``simulate`` call jits afresh), notebooks and subprocess tests (a run, its killed twin and the
resumed one; the ranks of an MPI launch; CLI round trips) repeat programs of the in-process tests.
Identical programs hit the cache (its key is the compiled module, so results are unchanged). The
cache lives in a fresh temporary folder, removed at exit, unless JAX_COMPILATION_CACHE_DIR is set.
Under pytest-xdist (``./test.sh`` runs two workers) the controller sets it up before the workers
start, so they inherit and share it.

Every test starts with jax's x64 mode as the session has it: building a float64 case switches it
on for the whole process (``faiser.cases.base.jax_dtype``), which would otherwise change the
float32 programs of whichever tests run later in the same worker.
"""

import atexit
import os
import shutil
import tempfile

import pytest

_FLAG = "--xla_force_host_platform_device_count"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" {_FLAG}=4").strip()

if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    _CACHE = tempfile.mkdtemp(prefix="faiser-tests-jax-cache-")
    atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE  # inherited by subprocesses and notebook kernels
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")


@pytest.fixture(autouse=True)
def _restore_x64_mode():
    import jax

    before = jax.config.read("jax_enable_x64")
    yield
    if jax.config.read("jax_enable_x64") != before:
        jax.config.update("jax_enable_x64", before)


@pytest.fixture(scope="session")
def jax_cache_env() -> dict[str, str]:
    """Environment entries that make a subprocess share the session's persistent compilation
    cache and cache every program (for tests that run the same programs several times: a run, its
    killed twin and the resumed one; the ranks of an MPI launch), so each compiles once."""
    return {"JAX_COMPILATION_CACHE_DIR": os.environ["JAX_COMPILATION_CACHE_DIR"],
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}  # fmt: skip
