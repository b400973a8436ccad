"""``faiser bench latent``: a tiny Landau family end to end (variants, errors, timings, plots)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from faiser.bench import bench_latent
from faiser.cli import main


def test_bench_latent_tiny(tmp_path):
    out = tmp_path / "latent.json"
    doc = bench_latent(out, {"tiny": True, "horizon": 2, "families": "landau", "progress": False})
    saved = json.loads(out.read_text())
    assert saved["results"] == doc["results"] and {r["variant"] for r in doc["results"]} == {
        "latent", "one_step", "linear", "persistence", "interpolation", "pod8", "pod32", "autoencoder"}  # fmt: skip
    variants = doc["families"][0]["held_out"][0]["variants"]
    # Landau's initial f, (1 + alpha cos kx) M(v), is linear in alpha: blending the training runs at
    # alpha = 0.02 and 0.2 gives the held-out alpha = 0.075 exactly, and so does any POD basis that
    # holds the two training initial states (mean + 1 mode spans them)
    assert [k for k, _ in variants["interpolation"]["weights"]] == [0, 1]
    assert variants["interpolation"]["weights"][1][1] == pytest.approx((0.075 - 0.02) / (0.2 - 0.02))
    for name in ("interpolation", "pod8", "pod32"):
        assert variants[name]["l2_f"][0] < 1e-5 and variants[name]["density"][0] < 1e-5, name
        assert 0 < max(variants[name]["l2_f"]) < 1 and len(variants[name]["time"]) == 3, name
    assert variants["pod8"]["rank"] == variants["pod32"]["rank"] <= 6  # 2 runs x 3 snapshots, centred
    assert variants["autoencoder"]["l2_f"][0] > 1e-4  # an untrained-size model is not lossless
    held = doc["families"][0]["held_out"][0]
    assert abs(held["reference_drift"]["mass"]) < 1e-5  # periodic Landau: the reference keeps its mass
    lat = variants["latent"]
    assert lat["drift_minus_reference"]["mass"] == pytest.approx(lat["drift"]["mass"] - held["reference_drift"]["mass"])
    be = held["timing"]["break_even_rollouts"]
    assert be is None or be > 0
    for r in doc["results"]:
        assert np.isfinite(r["l2_f_final"]) and np.isfinite(r["density_final"]) and r["horizon"] == 2
    fam = doc["families"][0]
    assert fam["held_out"][0]["timing"]["speedup"] > 0 and len(fam["held_out"][0]["variants"]["latent"]["time"]) == 3
    timing = fam["held_out"][0]["timing"]
    for name, w in timing["wall_s"].items():  # every wall time: the median of `repeats` runs, with min and max
        assert len(w["times_s"]) == w["repeats"] == 5 and 0 < w["min_s"] <= w["median_s"] <= w["max_s"], name
    assert timing["latent_wall_s"] == timing["wall_s"]["latent"]["median_s"]
    assert doc["benchmark"] == doc["bench"] == "latent" and doc["settings"]["repeats"] == 5
    assert doc["environment"]["load_average_end"] is not None
    for p in doc["plots"]:
        assert (tmp_path / p.split("/")[-1]).stat().st_size > 1000
    assert main(["bench", "latent", "--set", "families=nope", "--out", str(tmp_path / "x.json")]) == 2
    assert main(["bench", "latent", "--set", "repeats=3", "--out", str(tmp_path / "x.json")]) == 2


def test_bench_latent_baselines_only(tmp_path):
    """Reference runs and f-space baselines without training a model (nothing timed, no plots)."""
    doc = bench_latent(tmp_path / "b.json", {"tiny": True, "horizon": 2, "families": "landau", "baselines_only": True})
    assert {r["variant"] for r in doc["results"]} == {"interpolation", "pod8", "pod32"}
    assert doc["plots"] == [] and doc["speed"] == []
    inter = doc["families"][0]["held_out"][0]["variants"]["interpolation"]
    assert inter["l2_f"][0] < 1e-5 < inter["l2_f"][-1] < 1  # exact at t = 0 (f0 linear in alpha), then not
