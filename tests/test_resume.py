"""Simulation checkpoints and exact resume (`faiser simulate --checkpoint-every N` / `--resume`).

A run killed with SIGKILL at a random moment and resumed ends bit-identical to an uninterrupted
run (diagnostics.csv, every dataset snapshot, VLSV files, moments.nc); an incomplete newest
checkpoint is skipped with a warning, a tampered one is refused with exit status 2, and nothing
in a checkpoint is a pickle.
"""

from __future__ import annotations

import json
import os
import pickletools
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from faiser.cli import main
from faiser.data.dataset import open_dataset

pytestmark = pytest.mark.timeout(240)

# landau on 16 x 32 cells, 150 steps of dt = 0.1: a diagnostics row every step, a snapshot every
# 10, a VLSV file every 25 and a checkpoint every 7 steps (so a kill lands between checkpoints)
ARGS = ["landau", "--set", "nx=16", "--set", "nv=32", "--set", "t_end=15", "--quiet",
        "--save-every", "10", "--vlsv-every", "25", "--checkpoint-every", "7"]  # fmt: skip


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run with the same options (in-process)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert main(["simulate", *ARGS, "--out", str(out)]) == 0
    return out


def _assert_same_run(a: Path, b: Path) -> None:
    """Bit-identical outputs of two runs."""
    assert (a / "diagnostics.csv").read_text() == (b / "diagnostics.csv").read_text()
    da, db = open_dataset(a), open_dataset(b)
    assert db.complete and len(da) == len(db)
    np.testing.assert_array_equal(da.steps, db.steps)
    np.testing.assert_array_equal(da.times, db.times)
    np.testing.assert_array_equal(da.f(time=slice(None)), db.f(time=slice(None)))  # final state included
    for x, y in zip(da.fields(), db.fields()):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(da.moments(name="density"), db.moments(name="density"))
    va, vb = sorted(p.name for p in (a / "vlsv").iterdir()), sorted(p.name for p in (b / "vlsv").iterdir())
    assert va == vb and len(va) == 7  # t = 0, every 25 of 150 steps
    for name in va:
        assert (a / "vlsv" / name).read_bytes() == (b / "vlsv" / name).read_bytes(), name
    assert xr.load_dataset(a / "moments.nc").equals(xr.load_dataset(b / "moments.nc"))


def _steps(run: Path) -> list[int]:
    return sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())


def test_killed_run_resumes_bit_identical(reference, tmp_path):
    out = tmp_path / "run"
    seed = int(os.environ.get("FAISER_KILL_SEED", random.randrange(1 << 30)))
    delay = random.Random(seed).uniform(0.0, 2.5)
    proc = subprocess.Popen(
        [sys.executable, "-m", "faiser", "simulate", *ARGS, "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not ((out / "checkpoints").is_dir() and _steps(out)):
            assert proc.poll() is None, f"the run ended before its first checkpoint: {proc.stderr.read()!r}"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.02)
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stderr.close()
    killed = proc.returncode == -signal.SIGKILL
    print(f"seed={seed} delay={delay:.3f}s killed={killed} checkpoints={_steps(out)}")
    assert main(["simulate", *ARGS, "--out", str(out), "--resume"]) == 0
    timing = json.loads((out / "timing.json").read_text())
    if killed:
        assert timing["resumed_from_step"] is not None and 0 < timing["resumed_from_step"] < 150
    _assert_same_run(reference, out)
    assert _steps(out) == _steps(reference)  # keep-3 of the same steps: 133, 140, 147


def test_incomplete_newest_checkpoint_is_skipped(reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    newest = out / "checkpoints" / str(_steps(out)[-1])
    victim = max((p for p in (newest / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[:10])  # a truncated copy, a full disk
    with pytest.warns(UserWarning, match="skipping checkpoint"):
        assert main(["simulate", *ARGS, "--out", str(out), "--resume"]) == 0
    assert json.loads((out / "timing.json").read_text())["resumed_from_step"] == _steps(reference)[-2]
    _assert_same_run(reference, out)


def test_tampered_checkpoint_is_refused(reference, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    newest = out / "checkpoints" / str(_steps(out)[-1])
    data_files = [p for p in (newest / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    victim = max(data_files, key=lambda p: p.stat().st_size)  # a chunk of f
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    csv_before = (out / "diagnostics.csv").read_bytes()
    capsys.readouterr()
    assert main(["simulate", *ARGS, "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "modified after it was written" in err[0], err
    assert (out / "diagnostics.csv").read_bytes() == csv_before  # nothing was touched


def test_resume_refusals(reference, tmp_path, capsys):
    empty = tmp_path / "empty"
    assert main(["simulate", *ARGS, "--out", str(empty), "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    assert main(["simulate", *ARGS, "--set", "k=0.4", "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config differs" in err[0] and " k" in err[0]
    assert main(["simulate", *ARGS[:-2], "--checkpoint-every", "5", "--out", str(out), "--resume"]) == 2
    assert "checkpoint_every" in capsys.readouterr().err
    assert main(["simulate", *ARGS, "--out", str(out)]) == 2  # a fresh run would clobber the old one
    assert "already holds" in capsys.readouterr().err
    assert main(["simulate", *ARGS, "--checkpoint-every", "0", "--out", str(tmp_path / "x")]) == 2


def test_checkpoints_hold_no_pickles(reference):
    files = [p for p in (reference / "checkpoints").rglob("*") if p.is_file()]
    assert files
    for p in files:
        assert p.suffix not in (".pkl", ".pickle"), p
        data = p.read_bytes()
        if data[:1] == b"\x80" and len(data) > 1 and data[1] <= 5:  # PROTO opcode of a pickle
            with pytest.raises(Exception):  # noqa: B017 (must not parse as a pickle)
                list(pickletools.genops(data))
        assert b"cpickle" not in data.lower() and b"pickle" not in data.lower(), p
    for meta in (reference / "checkpoints").glob("*/_CHECKPOINT_METADATA"):
        handlers = json.loads(meta.read_text())["item_handlers"]
        assert "JsonCheckpointHandler" in handlers["meta"]
        assert "StandardCheckpointHandler" in handlers["state"] or "PyTree" in handlers["state"]


def test_dataset_reopen_keeps_k_snapshots_and_continues(tmp_path):
    from faiser.data.dataset import DatasetWriter
    from faiser.errors import DatasetError
    from faiser.grid import PhaseSpaceGrid
    from faiser.vlasov.state import PROTON

    grid = PhaseSpaceGrid.make_1d3v(4, 1.0, 4, 3.0)
    E = np.zeros((*grid.nx, 3), np.float32)

    def f(i):
        return np.full(grid.shape, float(i), np.float32)

    with DatasetWriter(tmp_path / "d", grid, (PROTON,), capacity=4, background=False) as w:
        for i in range(3):
            w.append(0.1 * i, i, [f(i)], E, E)
    with pytest.raises(DatasetError, match="cannot continue after 5"):
        DatasetWriter.reopen(tmp_path / "d", 5)
    w = DatasetWriter.reopen(tmp_path / "d", 1)
    assert len(open_dataset(tmp_path / "d")) == 1 and not open_dataset(tmp_path / "d").complete
    for i in (7, 8, 9):
        w.append(0.1 * i, i, [f(i)], E, E)
    w.close()
    ds = open_dataset(tmp_path / "d")
    assert ds.complete and ds.steps.tolist() == [0, 7, 8, 9]
    np.testing.assert_array_equal(ds.f(time=slice(None))[:, 0, 0, 0, 0, 0, 0], [0, 7, 8, 9])
