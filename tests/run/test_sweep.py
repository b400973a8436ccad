"""Parameter sweeps: deterministic names, skip what is done, redo what a crash left, fail fast."""

import json
from pathlib import Path

import pytest

from faiser.cli import main
from faiser.data.dataset import open_dataset
from faiser.errors import ConfigError
from faiser.run.sweep import load_sweep, run_name, run_sweep, sweep_runs

SWEEPS = Path(__file__).resolve().parents[2] / "experiments" / "sweeps"


def test_run_names_are_deterministic_and_sorted():
    assert run_name("landau", {"k": 0.5, "alpha": 0.01}) == "landau-alpha=0.01-k=0.5"
    assert run_name("larmor", {"B": (0.0, 0.0, 1.0)}) == "larmor-B=0,0,1"
    with pytest.raises(ConfigError):
        run_name("landau", {"tag": "../x"})


@pytest.mark.parametrize("path", sorted(SWEEPS.glob("*.json")), ids=lambda p: p.stem)
def test_shipped_sweep_files_expand(path):
    runs = sweep_runs(load_sweep(path))
    assert runs and len({r.name for r in runs}) == len(runs)


def test_sweep_runs_skips_and_redoes(tmp_path):
    root = tmp_path / "family"
    index = run_sweep(SWEEPS / "tiny_landau.json", root, progress=False)
    assert [e["status"] for e in index] == ["done", "done"]
    names = [e["name"] for e in index]
    ds = open_dataset(root / names[1])
    assert ds.complete and ds.config["k"] == 0.5 and len(ds) == 5
    assert json.loads((root / "index.json").read_text()) == index
    # a run that a crash left incomplete is redone; complete ones are skipped
    attrs_file = root / names[0] / "snapshots" / "zarr.json"
    meta = json.loads(attrs_file.read_text())
    meta["attributes"]["complete"] = False
    attrs_file.write_text(json.dumps(meta))
    again = run_sweep(SWEEPS / "tiny_landau.json", root, progress=False)
    assert [e["status"] for e in again] == ["done", "skipped"]
    assert open_dataset(root / names[0]).complete


def test_bad_sweeps_fail_before_running(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"case": "landau", "save_every": 1, "product": {"kk": [1, 2]}}))
    assert main(["sweep", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "kk" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    bad.write_text(json.dumps({"case": "landau", "save_every": 1, "zip": {"k": [1, 2], "alpha": [0.1]}}))
    assert main(["sweep", str(bad), "--out", str(tmp_path / "o")]) == 2
    bad.write_text(json.dumps({"case": "landau", "product": {"k": [1]}}))
    assert main(["sweep", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "save_every" in capsys.readouterr().err
