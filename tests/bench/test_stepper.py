"""``faiser bench stepper``: JSON structure and positive figures on a tiny run (no timing thresholds)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from faiser.bench import STEPPER_CASES, resolve_settings
from faiser.cli import main
from faiser.errors import ConfigError

TINY = ["--set", "tiny=true"]  # scale 0.03, nv_scale 0.25, one step per chunk, 5 chunks
ENV_KEYS = {
    "jax_version", "backend", "device_kind", "device_count", "cpu_count", "platform", "python_version",
    "cpu_model", "git_commit", "date_utc", "load_average_start", "load_average_end",
}  # fmt: skip
CASE_KEYS = {
    "grid_shape", "num_cells", "dtype", "dt", "n_steps", "repeats", "compile_s", "chunk_s",
    "median_step_s", "min_step_s", "max_step_s", "cell_updates_per_s", "translation_substeps",
    "rotation_substeps", "loop", "finite",
}  # fmt: skip


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "b.json"
    code = main(["bench", "stepper", *TINY, "--out", str(out)])
    return code, out


def test_bench_stepper_json(tiny_run, capsys):
    code, out = tiny_run
    assert code == 0
    data = json.loads(out.read_text())
    assert data["benchmark"] == "stepper"
    assert ENV_KEYS <= set(data["environment"])
    assert data["environment"]["device_count"] >= 1
    assert set(data["cases"]) == set(STEPPER_CASES)
    assert data["settings"]["steps"] == 1 and data["settings"]["repeats"] == 5 and data["settings"]["tiny"] is True
    assert data["settings"]["scale"] == 0.03 and data["settings"]["nv_scale"] == 0.25  # the sizes measured
    for name, r in data["cases"].items():
        assert CASE_KEYS <= set(r), name
        assert r["num_cells"] == math.prod(r["grid_shape"])
        assert r["num_cells"] > 0 and r["dtype"] == "float32"
        assert r["n_steps"] == 1 and len(r["chunk_s"]) == r["repeats"] == 5
        assert r["compile_s"] > 0 and r["median_step_s"] > 0
        assert 0 < r["min_step_s"] <= r["median_step_s"] <= r["max_step_s"]
        assert r["cell_updates_per_s"] == pytest.approx(r["num_cells"] / r["median_step_s"])
        assert r["finite"] is True
    # scaled sizes: nx -> max(4, int(nx * scale)), nv likewise with nv_scale
    assert data["cases"]["landau_1d1v"]["grid_shape"] == [30, 1, 1, 256, 1, 1]
    assert data["cases"]["2d3v"]["grid_shape"] == [4, 4, 1, 6, 6, 6]
    assert not list(Path(out).parent.glob(".b.json.*"))  # no temporary file left behind


def test_bench_unknown_key_exit_2(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert main(["bench", "stepper", "--set", "nx=12", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "nx" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(
    "overrides",
    [{"cases": "landau_1d1v,nope"}, {"cases": ""}, {"repeats": "0"}, {"steps": "1.5"}, {"dtype": "int8"},
     {"loop": "scan"}, {"scale": "-1"}, {"nv_scale": "nan"}, {"repeats": "4"}, {"devices": "0"},
     {"field_solve": "everywhere"}, {"weak": "maybe"}, {"tiny": "2"}],
)  # fmt: skip
def test_bench_bad_values(overrides):
    with pytest.raises(ConfigError):
        resolve_settings(overrides)


def test_bench_settings_subset():
    s = resolve_settings({"cases": "2d3v, landau_1d1v", "repeats": "5", "steps": "10", "dtype": "float64"})
    assert s.cases == ("2d3v", "landau_1d1v") and s.repeats == 5 and s.steps == 10
    assert s.dtype == "float64" and s.loop == "multi_step"  # what simulate runs
    assert resolve_settings({"loop": "step"}).loop == "step"
    assert resolve_settings({"devices": "1,2,2", "weak": "1"}).devices == (1, 2) and resolve_settings({"weak": 1}).weak
    assert resolve_settings().repeats == 5 and resolve_settings({"repeats": 7}).repeats == 7


def test_bench_stepper_bad_key_cli(tmp_path, capsys):
    assert main(["bench", "stepper", "--out", str(tmp_path / "b.json"), "--set", "bogus=1"]) == 2
    assert "bogus" in capsys.readouterr().err
    assert main(["bench", "stepper", "--out", str(tmp_path / "b.json"), "--set", "repeats=1"]) == 2
    assert "repeats" in capsys.readouterr().err and not (tmp_path / "b.json").exists()


def test_bench_stepper_weak_scaling(tmp_path):
    """``weak=1``: the x axis grows with the device count, so every device keeps the same cells."""
    out = tmp_path / "weak.json"
    args = ["--set", "cases=landau_1d1v", "--set", "scale=0.125", "--set", "nv_scale=0.0625", "--set", "steps=1"]
    args += ["--set", "warmup=0", "--set", "devices=1,2", "--set", "weak=1"]
    assert main(["bench", "stepper", *args, "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["cases"]["landau_1d1v"]["weak_scaling"]
    assert [r["devices"] for r in rows] == [1, 2]
    assert [r["grid_shape"][0] for r in rows] == [128, 256] and rows[1]["blocks"] == [2, 1, 1]
    assert rows[0]["cells_per_device"] == rows[1]["cells_per_device"] == 128 * 64
    assert rows[0]["weak_efficiency"] == 1.0 and rows[0]["cost_per_cell_overhead_vs_base"] == 0.0
    assert rows[1]["weak_efficiency"] > 0 and rows[1]["median_step_s"] > 0
