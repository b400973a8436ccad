"""MPI backend: ``mpirun -n 2 faiser simulate ... --distributed mpi`` against a single-process run.

Skipped without ``mpirun`` or mpi4jax. Each run is a subprocess with a timeout, so a hang fails
the test instead of the test session. Every rank holds only its block; diagnostics are reduced
over the ranks and rank 0 assembles ``f`` only for the files (snapshots, VLSV, checkpoints).
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
import zarr

MPIRUN = shutil.which("mpirun")
pytestmark = pytest.mark.skipif(
    MPIRUN is None or importlib.util.find_spec("mpi4jax") is None or importlib.util.find_spec("mpi4py") is None,
    reason="needs mpirun, mpi4py and mpi4jax (the 'mpi' extra)",
)

ARGS = ["simulate", "landau", "--set", "nx=16", "--set", "nv=32", "--set", "t_end=1.0", "--set", "dtype=float64"]
ARGS += ["--set", "diag_every=5", "--quiet"]


_CACHE_ENV: dict[str, str] = {}


@pytest.fixture(autouse=True, scope="module")
def _shared_compilation_cache(jax_cache_env):
    """The runs of this module share JAX's persistent compilation cache: a resumed run and the
    ranks of one launch compile the same programs."""
    _CACHE_ENV.update(jax_cache_env)


def _env() -> dict:
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", **_CACHE_ENV)
    env.pop("XLA_FLAGS", None)  # one CPU device per rank
    env.pop("FAISER_TEST_MPI_CRASH", None)
    return env


def _mpirun(extra: list[str], out, env: dict, timeout: float = 120, args=ARGS) -> subprocess.CompletedProcess:
    cmd = [MPIRUN, "-n", "2", "--oversubscribe", sys.executable, "-m", "faiser", *args, *extra, "--out", str(out)]
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


# the hybrid shock: inflow/outflow boundaries, replicated face B, a probe (profiles, energy budget)
# and every kind of file output, with a checkpoint every 10 of its 20 steps
SHOCK = ["simulate", "shock", "--set", "nx=32", "--set", "nv=8", "--set", "t_end=1.0", "--set", "dtype=float64"]
SHOCK += ["--set", "diag_every=5", "--save-every", "10", "--vlsv-every", "10", "--checkpoint-every", "10", "--quiet"]


def _zarr_arrays(path) -> dict:
    def walk(group, prefix=""):
        for name, member in group.members():
            if isinstance(member, zarr.Group):
                yield from walk(member, f"{prefix}{name}/")
            else:
                yield f"{prefix}{name}", np.asarray(member[...])

    return dict(walk(zarr.open_group(str(path), mode="r")))


def _outputs(out) -> dict:
    """Every number a run wrote: diagnostics (probe columns included), moments.nc, the dataset,
    the shock analysis and the VLSV files (read back)."""
    from faiser.data.vlsv_reader import open_vlsv

    csv = np.genfromtxt(out / "diagnostics.csv", delimiter=",", names=True)
    got = {f"csv:{k}": csv[k] for k in csv.dtype.names}
    with xr.open_dataset(out / "moments.nc") as ds:
        got.update({f"moments:{k}": ds[k].values for k in ds.data_vars})
    got.update({f"snapshots:{k}": v for k, v in _zarr_arrays(out / "snapshots").items()})
    shock = json.loads((out / "shock.json").read_text())
    got.update({f"shock:{k}": np.asarray(v, float) for k, v in shock.items() if np.ndim(v) or isinstance(v, float)})
    for p in sorted((out / "vlsv").glob("bulk.*.vlsv")):
        with open_vlsv(p) as v:
            got[f"{p.name}:vdf"] = v.read_vdf("proton")
            got[f"{p.name}:rho"] = v.read_variable("proton/vg_rho")
    return got


@pytest.fixture(scope="module")
def shock_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("shock")
    one = subprocess.run(
        [sys.executable, "-m", "faiser", *SHOCK, "--out", str(base / "one")],
        env=_env(), capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    two = _mpirun(["--distributed", "mpi"], base / "two", _env(), timeout=180, args=SHOCK)
    assert two.returncode == 0, two.stdout + two.stderr[-3000:]
    return base


def test_hybrid_shock_with_every_output_over_two_ranks_matches_one_process(shock_runs):
    one, two = _outputs(shock_runs / "one"), _outputs(shock_runs / "two")
    assert sorted(one) == sorted(two) and len([k for k in one if k.endswith(":vdf")]) == 3
    for name, a in one.items():
        b = two[name]
        assert a.shape == b.shape, name
        if a.dtype.kind in "fc":
            scale = max(float(np.nanmax(np.abs(a))), 1e-300)
            assert np.nanmax(np.abs(a - b)) <= 1e-6 * scale, name
        else:
            assert np.array_equal(a, b), name
    # the shock moved and the field evolved: the comparison covers a changing state
    assert np.ptp(one["csv:magnetic_energy"]) > 1e-6 * one["csv:magnetic_energy"][0]


def test_a_killed_rank_resumes_bit_identical(shock_runs, tmp_path):
    """Rank 1 dies at step 15 (after the checkpoint at 10); ``--resume`` on 2 ranks scatters the
    checkpoint from rank 0 and ends bit-identical to the uninterrupted 2-rank run."""
    out = tmp_path / "killed"
    env = dict(_env(), FAISER_TEST_MPI_CRASH="1:15")
    try:
        crashed = _mpirun(["--distributed", "mpi"], out, env, timeout=180, args=SHOCK)
    except subprocess.TimeoutExpired:
        pytest.fail("the MPI run hung after a rank crashed")
    assert crashed.returncode != 0 and "exits at step 15" in crashed.stderr
    assert (out / "checkpoints" / "10").is_dir() and not (out / "timing.json").exists()
    res = _mpirun(["--distributed", "mpi", "--resume"], out, _env(), timeout=180, args=SHOCK)
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    assert "resumed at step 10" in res.stdout
    ref, got = _outputs(shock_runs / "two"), _outputs(out)
    assert sorted(ref) == sorted(got)
    for name, a in ref.items():
        assert np.array_equal(a, got[name], equal_nan=True), name
    for p in sorted((out / "vlsv").glob("*.vlsv")):
        assert p.read_bytes() == (shock_runs / "two" / "vlsv" / p.name).read_bytes(), p.name


def _mpirun_script(text: str, tmp_path) -> subprocess.CompletedProcess:
    """``text`` run as a Python script on 2 ranks; asserts that it succeeded."""
    script = tmp_path / "script.py"
    script.write_text(text)
    cmd = [MPIRUN, "-n", "2", "--oversubscribe", sys.executable, str(script)]
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    return res


def test_four_ranks_on_a_2x2_grid_match_one_process(tmp_path):
    """Halos along x and y between MPI ranks (2 x 2 blocks of the hybrid KHI, 4 x 4 cells each)."""
    khi = ["simulate", "khi", "--set", "nx=8", "--set", "ny=8", "--set", "nv=8", "--set", "t_end=1.0"]
    khi += ["--set", "diag_every=2", "--set", "dtype=float64", "--quiet"]
    one = subprocess.run(
        [sys.executable, "-m", "faiser", *khi, "--out", str(tmp_path / "one")],
        env=_env(), capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    cmd = [MPIRUN, "-n", "4", "--oversubscribe", sys.executable, "-m", "faiser", *khi, "--distributed", "mpi"]
    cmd += ["--out", str(tmp_path / "four")]
    four = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=240)
    assert four.returncode == 0, four.stdout + four.stderr[-3000:]
    assert "on 4 MPI ranks" in four.stdout
    a = np.genfromtxt(tmp_path / "one" / "diagnostics.csv", delimiter=",", names=True)
    b = np.genfromtxt(tmp_path / "four" / "diagnostics.csv", delimiter=",", names=True)
    assert a.dtype.names == b.dtype.names and len(a) == len(b) == 3
    for name in a.dtype.names:  # relative to the column's scale: a sum that cancels to ~0 keeps its rounding
        assert np.max(np.abs(b[name] - a[name])) <= 1e-6 * max(np.max(np.abs(a[name])), 1e-300), name
    with xr.open_dataset(tmp_path / "one" / "moments.nc") as x, xr.open_dataset(tmp_path / "four" / "moments.nc") as y:
        for name in x.data_vars:
            u, v = x[name].values, y[name].values
            assert np.nanmax(np.abs(u - v)) <= 1e-6 * max(np.nanmax(np.abs(u)), 1e-300), name


BLOCK_SCRIPT = """
from mpi4py import MPI
import jax
jax.config.update("jax_enable_x64", True)
from faiser.run.simulate import simulate

res = simulate("landau", {"nx": 16, "nv": 32, "t_end": 0.5, "dtype": "float64"}, progress=False, distributed="mpi")
print(f"rank={MPI.COMM_WORLD.Get_rank()} f={tuple(res.state.f[0].shape)} E={tuple(res.state.E.shape)} "
      f"global_kept={res.case.state is not None} mass={float(res.diagnostics['mass'][-1]):.15e}", flush=True)
"""


def test_each_rank_holds_only_its_block(tmp_path):
    res = _mpirun_script(BLOCK_SCRIPT, tmp_path)
    lines = sorted(line for line in res.stdout.splitlines() if line.startswith("rank="))
    assert len(lines) == 2
    for line in lines:
        assert "f=(8, 1, 1, 32, 1, 1) E=(8, 1, 1, 3) global_kept=False" in line, line
    # the reduced diagnostics are the same global numbers on every rank
    assert lines[0].split("mass=")[1] == lines[1].split("mass=")[1]


JAX_RUNTIME_SCRIPT = """
import sys
import numpy as np
from faiser.parallel.launch import initialize_from_mpi

process, processes = initialize_from_mpi()
import jax
from jax.experimental import multihost_utils

from faiser.parallel.domain import DomainStepper
from faiser.run.simulate import resolve_config
from faiser.cases import build_case

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
    res = _mpirun_script(JAX_RUNTIME_SCRIPT, tmp_path)
    assert "processes=2 devices=2" in res.stdout
