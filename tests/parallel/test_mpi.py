"""MPI backend: ``mpirun -n 2 faiser simulate ... --distributed mpi`` against a single-process run.

Skipped without ``mpirun`` or mpi4jax. Each run is a subprocess with a timeout, so a hang fails
the test instead of the test session.
"""

import importlib.util
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

MPIRUN = shutil.which("mpirun")
pytestmark = pytest.mark.skipif(
    MPIRUN is None or importlib.util.find_spec("mpi4jax") is None or importlib.util.find_spec("mpi4py") is None,
    reason="needs mpirun, mpi4py and mpi4jax (the 'mpi' extra)",
)

ARGS = ["simulate", "landau", "--set", "nx=16", "--set", "nv=32", "--set", "t_end=1.0", "--set", "dtype=float64"]
ARGS += ["--set", "diag_every=5", "--quiet"]


def _env() -> dict:
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    env.pop("XLA_FLAGS", None)  # one CPU device per rank
    env.pop("FAISER_TEST_MPI_CRASH", None)
    return env


def _mpirun(extra: list[str], out, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [MPIRUN, "-n", "2", "--oversubscribe", sys.executable, "-m", "faiser", *ARGS, *extra, "--out", str(out)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def test_two_ranks_match_one_process(tmp_path):
    single = subprocess.run(
        [sys.executable, "-m", "faiser", *ARGS, "--out", str(tmp_path / "one")],
        env=_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr
    res = _mpirun(["--distributed", "mpi"], tmp_path / "two", _env())
    assert res.returncode == 0, res.stdout + res.stderr
    assert "on 2 MPI ranks" in res.stdout
    one = np.genfromtxt(tmp_path / "one" / "diagnostics.csv", delimiter=",", names=True)
    two = np.genfromtxt(tmp_path / "two" / "diagnostics.csv", delimiter=",", names=True)
    assert one.dtype.names == two.dtype.names and len(one) == len(two) == 3
    for name in ("mass", "kinetic_energy", "electric_energy", "l2_norm", "f_min", "f_max"):
        np.testing.assert_allclose(two[name], one[name], rtol=1e-6, atol=0, err_msg=name)
    with xr.open_dataset(tmp_path / "one" / "moments.nc") as a, xr.open_dataset(tmp_path / "two" / "moments.nc") as b:
        for name in a.data_vars:
            x, y = a[name].values, b[name].values
            assert np.max(np.abs(x - y)) <= 1e-6 * max(np.max(np.abs(x)), 1e-300), name
    # a changed run differs (the comparison can fail)
    assert not np.allclose(one["electric_energy"][-1], one["electric_energy"][0], rtol=1e-6)
    # rank 0 wrote the outputs, the other rank nothing here
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())


def test_a_crashed_rank_fails_the_run_instead_of_hanging(tmp_path):
    env = _env()
    env["FAISER_TEST_MPI_CRASH"] = "1:2"  # rank 1 calls os._exit(1) once it reaches step 2
    try:
        res = _mpirun(["--distributed", "mpi", "--set", "diag_every=1"], tmp_path / "crash", env, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("the MPI run hung after a rank crashed")
    assert res.returncode != 0
    assert "exits at step 2" in res.stderr
    assert not (tmp_path / "crash" / "diagnostics.csv").exists()


JAX_RUNTIME_SCRIPT = """
import sys
import numpy as np
from faiser.parallel.launch import initialize_from_mpi

process, processes = initialize_from_mpi()
import jax
from jax.experimental import multihost_utils

from faiser.parallel.domain import DomainStepper
from faiser.simulation import resolve_config
from faiser.vlasov.cases import build_case

jax.config.update("jax_enable_x64", True)
built = build_case("landau", resolve_config("landau", {"nx": 16, "nv": 16, "dtype": "float64"}))
ds = DomainStepper(built.stepper, devices=processes)  # one mesh over both processes' devices
out = jax.jit(lambda s: ds.multi_step(s, 3))(ds.shard(jax.device_get(built.state)))
f = multihost_utils.process_allgather(out.f[0], tiled=True)
if process == 0:
    ref = np.asarray(jax.jit(lambda s: built.stepper.multi_step(s, 3))(built.state).f[0])
    err = np.max(np.abs(f - ref)) / np.max(np.abs(ref))
    print(f"processes={processes} devices={len(jax.devices())} err={err:.3e}")
    sys.exit(0 if err < 1e-6 else 1)
"""


def test_jax_multiprocess_runtime_launched_by_mpirun(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(JAX_RUNTIME_SCRIPT)
    cmd = [MPIRUN, "-n", "2", "--oversubscribe", sys.executable, str(script)]
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    assert "processes=2 devices=2" in res.stdout
