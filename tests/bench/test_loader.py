"""``faiser bench loader``: JSON structure and positive figures on tiny datasets (no timing thresholds)."""

from __future__ import annotations

import json

import pytest

from faiser.bench.loader import resolve_loader_settings, synthetic_dataset
from faiser.cli import main
from faiser.errors import ConfigError


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic_dataset(tmp_path_factory.mktemp("bench-loader") / "a", nx=8, nv=4, snapshots=3)


def _check(res: dict, repeats: int = 5) -> None:
    assert res["benchmark"] == "loader" and "environment" in res
    env = res["environment"]
    assert env["load_average_start"] is not None and env["load_average_end"] is not None
    for name in ("vdf_global", "vdf_chunks", "patch", "window"):
        for mode in ("prefetch", "no_prefetch"):
            r = res["loaders"][name][mode]
            assert r["samples_per_s"] > 0 and r["mb_per_s"] > 0
            assert len(r["times_s"]) == r["repeats"] == repeats
            assert 0 < r["min_s"] <= r["median_s"] <= r["max_s"]
    assert res["baselines"]["zarr_read"]["mb_per_s"] > 0
    assert len(res["baselines"]["zarr_read"]["times_s"]) == repeats


def test_bench_loader_tiny(tmp_path, data):
    out = tmp_path / "b.json"
    args = ["data=" + str(data), "batch=8", "batches=2", "patch=2", "window=1", "patch_batch=4"]
    assert main(["bench", "loader", *sum((["--set", a] for a in args), []), "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    _check(res)
    assert res["settings"]["data"] == [str(data)] and res["dataset"]["paths"] == [str(data)]


def test_bench_loader_tiny_synthetic(tmp_path):
    out = tmp_path / "b.json"
    assert main(["bench", "loader", "--set", "tiny=true", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    _check(res)
    assert res["dataset"]["paths"] == "synthetic (temporary)" and res["dataset"]["grid_shape"][0] == 16
    assert res["settings"]["tiny"] is True and res["settings"]["nx"] == 16


def test_bench_loader_bad_input_exit_2(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert main(["bench", "loader", "--set", "nx=0", "--out", str(out)]) == 2
    assert main(["bench", "loader", "--set", "data=" + str(tmp_path / "missing"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "nx" in err[0] and "missing" in err[1] and not out.exists()
    assert main(["bench", "loader", "--out", str(out), "--set", "bogus=1"]) == 2
    assert "bogus" in capsys.readouterr().err


@pytest.mark.parametrize("overrides", [{"repeats": "3"}, {"nv": "1"}, {"prefetch": "0"}, {"cache_mb": "-1"}])
def test_bench_loader_bad_settings(overrides):
    with pytest.raises(ConfigError):
        resolve_loader_settings(overrides)
