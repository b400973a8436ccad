"""Trajectory datasets: what simulate writes, lazy slicing, kill safety, clear errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from faiser.cli import main
from faiser.data.dataset import DatasetWriter, open_dataset
from faiser.errors import DatasetError
from faiser.grid import PhaseSpaceGrid
from faiser.run.outputs import output_plan
from faiser.run.simulate import simulate
from faiser.vlasov.state import ELECTRON, PROTON

LANDAU = {"t_end": 2.0, "nx": 16, "nv": 64}


@pytest.fixture(scope="module")
def landau_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("landau")
    res = simulate("landau", LANDAU, out, progress=False, save_every=4)
    return res, out


def test_output_plan_includes_first_last_and_multiples():
    p = output_plan(10, 3, 4, None)
    assert p["save"] == [0, 4, 8, 10]
    assert p["diag"] == {0, 3, 6, 9, 10}
    assert sum(p["chunks"]) == 10
    assert p["vlsv"] == []
    stops = np.cumsum(p["chunks"]).tolist()
    assert set(p["save"][1:]) | (p["diag"] - {0}) == set(stops)


def test_snapshots_match_the_run(landau_run):
    res, out = landau_run
    ds = open_dataset(out)
    assert ds.complete and ds.case == "landau" and ds.species_names == ("electron",)
    assert len(ds) == len(output_plan(res.case.n_steps, 1, 4, None)["save"])
    assert ds.steps[0] == 0 and ds.steps[-1] == res.case.n_steps
    np.testing.assert_allclose(ds.times[-1], float(res.state.time), rtol=1e-6)
    # the stored last snapshot is the final state, bit for bit
    assert np.array_equal(ds.f("electron", time=-1), np.asarray(res.state.f[0]))
    assert np.array_equal(ds.f(time=0), np.asarray(res.initial_state.f[0]))
    E, B = ds.fields(time=-1)
    assert np.array_equal(E, np.asarray(res.state.E))
    assert ds.grid == res.grid and ds.config["k"] == 0.5
    assert ds.units == res.case.units


def test_stored_moments_are_the_moments_of_stored_f(landau_run):
    _, out = landau_run
    ds = open_dataset(out)
    f = ds.f()  # (T, nx, 1, 1, nv, 1, 1)
    dv = np.prod(ds.grid.dv)
    n_from_f = f.sum(axis=(-3, -2, -1)) * dv
    np.testing.assert_allclose(ds.moments(name="density"), n_from_f, rtol=1e-5)
    # Landau: the density perturbation is alpha cos(kx) at t=0
    n0 = ds.moments(name="density", time=0)[:, 0, 0]
    assert n0.max() - 1 == pytest.approx(ds.config["alpha"], rel=0.05)


def test_slicing_by_time_cell_and_species(landau_run):
    _, out = landau_run
    ds = open_dataset(out / "snapshots")
    nx, nv = ds.grid.nx[0], ds.grid.nv[0]
    assert ds.f(time=slice(1, 3)).shape == (2, nx, 1, 1, nv, 1, 1)
    assert ds.f(time=[0, -1], x=3).shape == (2, 1, 1, nv, 1, 1)
    assert ds.f(time=1, x=slice(2, 5), y=0, z=0).shape == (3, nv, 1, 1)
    assert ds.vdfs(time=[0, 1]).shape == (2 * nx, nv, 1, 1)
    assert np.array_equal(ds.f(time=2, x=5), ds.f(time=slice(None))[2, 5])
    xr = ds.to_xarray()
    assert xr.sizes["time"] == len(ds) and "density" in xr and "B" in xr
    state = ds.state(1)
    assert float(state.time) == pytest.approx(ds.times[1])


def test_bad_requests_raise_dataset_error(landau_run, tmp_path):
    _, out = landau_run
    ds = open_dataset(out)
    with pytest.raises(DatasetError, match="out of range"):
        ds.f(time=len(ds))
    with pytest.raises(DatasetError, match="unknown species"):
        ds.f("proton")
    with pytest.raises(DatasetError, match="unknown moment"):
        ds.moments(name="entropy")
    with pytest.raises(DatasetError, match="no faiser dataset"):
        open_dataset(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "zarr.json").write_text("{not json")
    with pytest.raises(DatasetError):
        open_dataset(broken)


def test_writer_refuses_to_overwrite_and_reports_shape_errors(tmp_path):
    grid = PhaseSpaceGrid.make_1d3v(4, 1.0, 4, 3.0)
    with DatasetWriter(tmp_path / "d", grid, (PROTON,), capacity=2, background=False) as w:
        f = np.ones(grid.shape, np.float32)
        w.append(0.0, 0, [f], np.zeros((4, 1, 1, 3)), np.zeros((4, 1, 1, 3)))
        with pytest.raises(DatasetError, match="expected 1 f arrays"):
            w.append(0.1, 1, [f, f], np.zeros((4, 1, 1, 3)), np.zeros((4, 1, 1, 3)))
    assert len(open_dataset(tmp_path / "d")) == 1
    with pytest.raises(DatasetError, match="already holds a dataset"):
        DatasetWriter(tmp_path / "d", grid, (PROTON,), capacity=2)
    with pytest.raises(DatasetError, match="unique"):
        DatasetWriter(tmp_path / "e", grid, (PROTON, PROTON), capacity=2)


def test_background_writer_failure_surfaces(tmp_path):
    grid = PhaseSpaceGrid.make_1d3v(4, 1.0, 4, 3.0)
    w = DatasetWriter(tmp_path / "d", grid, (ELECTRON,), capacity=3)
    bad = np.ones((5, 5), np.float32)  # wrong shape: fails inside the writer thread
    w.append(0.0, 0, [bad], np.zeros((4, 1, 1, 3)), np.zeros((4, 1, 1, 3)))
    with pytest.raises(DatasetError, match="writing dataset"):
        w.close()


def test_cli_save_every_errors(tmp_path, capsys):
    assert main(["simulate", "landau", "--set", "t_end=0.2", "--out", str(tmp_path), "--save-every", "0"]) == 2
    assert "save_every must be >= 1" in capsys.readouterr().err
    args = ["simulate", "landau", "--set", "t_end=0.2", "--set", "nx=8", "--set", "nv=16", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "r"), "--save-every", "1"]) == 0
    config_before = (tmp_path / "r" / "config.json").read_text()
    args2 = [a if a != "t_end=0.2" else "t_end=0.3" for a in args]
    assert main([*args2, "--out", str(tmp_path / "r"), "--save-every", "1"]) == 2  # never overwrite data
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a dataset" in err[0]
    assert (tmp_path / "r" / "config.json").read_text() == config_before  # the old run is untouched


def _committed(store: Path) -> int:
    try:
        return json.loads((store / "zarr.json").read_text())["attributes"]["n_snapshots"]
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow
def test_sigkill_mid_run_leaves_every_completed_snapshot(tmp_path):
    """Kill a run with SIGKILL while it writes; the dataset opens and holds exactly the committed
    snapshots, each identical to the same snapshot of an uninterrupted run."""
    sets = ["nx=64", "nv=512", "t_end=400", "dt=0.1"]
    cmd = [sys.executable, "-m", "faiser.cli", "simulate", "landau", "--quiet", "--save-every", "1"]
    for s in sets:
        cmd += ["--set", s]
    run = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, "--out", str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while _committed(run / "snapshots") < 5:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the run wrote no snapshots"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    ds = open_dataset(run)
    n = len(ds)
    assert n >= 5 and not ds.complete
    assert n < 4001, "the run finished before it was killed"
    assert np.array_equal(ds.steps, np.arange(n))
    # an uninterrupted run over the same steps gives the same snapshots, bit for bit
    ref = simulate(
        "landau", dict(s.split("=") for s in sets[:-2]) | {"t_end": 0.1 * (n - 1), "dt": 0.1},
        tmp_path / "ref", progress=False, save_every=1,
    )  # fmt: skip
    ref_ds = open_dataset(tmp_path / "ref")
    assert len(ref_ds) == n and ref.case.n_steps == n - 1
    assert np.array_equal(ds.f(), ref_ds.f())
    assert np.allclose(ds.times, ref_ds.times)


def test_aux_field_arrays_round_trip_into_state(tmp_path):
    grid = PhaseSpaceGrid.make_1d3v(4, 1.0, 4, 3.0)
    aux = {"B_face": np.arange(12, dtype=np.float64).reshape(4, 1, 1, 3), "subcycles": np.int32(3)}
    with DatasetWriter(tmp_path / "d", grid, (PROTON,), capacity=1, background=False, aux=aux) as w:
        f = np.full(grid.shape, 0.5, np.float32)
        w.append(0.25, 7, [f], np.zeros((4, 1, 1, 3)), np.ones((4, 1, 1, 3)), aux=aux)
        with pytest.raises(DatasetError, match="aux"):
            w.append(0.5, 8, [f], np.zeros((4, 1, 1, 3)), np.ones((4, 1, 1, 3)))
    state = open_dataset(tmp_path / "d").state(0)
    assert np.array_equal(np.asarray(state.aux["B_face"]), aux["B_face"])
    assert int(state.aux["subcycles"]) == 3 and int(state.step) == 7
    assert np.array_equal(np.asarray(state.f[0]), f)
