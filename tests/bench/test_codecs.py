"""`faiser bench codecs`: JSON figures and the rate-distortion plot, on a tiny shock run."""

import json

import pytest

from faiser.bench.codecs import resolve_codecs_settings
from faiser.cli import main
from faiser.errors import ConfigError


def test_bench_codecs_tiny(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["bench", "codecs", "--out", str(out), "--set", "cases=shock", "--set", "shock=nx=24,t_end=1.5",
            "--set", "codecs=maxwellian,zfp,pca", "--set", "zfp_tolerance=1e-2,1e-3", "--set", "pca_components=2",
            "--set", "eps_split=0.05"]  # fmt: skip
    assert main(args) == 0
    doc = json.loads(out.read_text())
    assert (tmp_path / "bench_rd.png").stat().st_size > 1000
    assert doc["sets"] and doc["results"]
    for name, info in doc["sets"].items():
        assert name.startswith("shock/") and info["sparse_bytes_per_vdf"] > 0
    for r in doc["results"]:
        assert {"ratio_vs_sparse", "rel_l2", "err_vs_non_maxwellian", "n_err", "P_err", "anisotropy_err",
                "eps_m_err", "encode_MBps", "decode_MBps"} <= set(r)  # fmt: skip
        info = doc["sets"][r["set"]]
        assert r["ratio_vs_sparse"] == pytest.approx(info["sparse_bytes_per_vdf"] / r["bytes_per_vdf"])
        assert r["ratio_vs_sparse_with_model"] <= r["ratio_vs_sparse"]
        assert r["n_err"] < 1e-6 and r["P_err"] < 1e-6  # restoration on by default
        for t in ("encode_s", "decode_s"):  # median of `repeats` timings, with min and max
            assert len(r[t]["times_s"]) == r[t]["repeats"] == 5
            assert 0 < r[t]["min_s"] <= r[t]["median_s"] <= r[t]["max_s"]
    assert doc["settings"]["codecs"] == ["maxwellian", "zfp", "pca"] and doc["settings"]["repeats"] == 5
    env = doc["environment"]
    assert env["load_average_start"] is not None and env["load_average_end"] is not None and env["cpu_model"]
    zfp = sorted((r for r in doc["results"] if r["codec"] == "zfp"), key=lambda r: r["settings"]["tolerance"])
    assert zfp[0]["rel_l2"] < zfp[-1]["rel_l2"] and zfp[0]["ratio_vs_sparse"] < zfp[-1]["ratio_vs_sparse"]
    capsys.readouterr()
    assert main(["bench", "codecs", "--out", str(out), "--set", "cases=moon"]) == 2
    assert main(["bench", "codecs", "--out", str(out), "--set", "nonsense=1"]) == 2


@pytest.mark.parametrize(
    "overrides",
    [{"cases": "moon"}, {"codecs": "gzip"}, {"repeats": "2"}, {"zfp_tolerance": "x"}, {"shock": "nx"},
     {"window": "2"}],
)  # fmt: skip
def test_bench_codecs_bad_settings(overrides):
    with pytest.raises(ConfigError):
        resolve_codecs_settings(overrides)


def test_bench_codecs_settings():
    s = resolve_codecs_settings({"vlsv": "a.vlsv;b.vlsv", "zfp_tolerance": "1e-2,1e-3", "tiny": "true"})
    assert s.vlsv == ("a.vlsv", "b.vlsv") and s.zfp_tolerance == (1e-2, 1e-3)
    e = s.effective()
    assert e.tiny and e.max_vdfs <= 64 and e.shock.endswith("t_end=1.5") and s.max_vdfs == 400
