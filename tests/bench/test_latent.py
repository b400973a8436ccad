"""``faiser bench latent``: a tiny Landau family end to end (variants, errors, timings, plots)."""

from __future__ import annotations

import json

import numpy as np

from faiser.bench import bench_latent
from faiser.cli import main


def test_bench_latent_tiny(tmp_path):
    out = tmp_path / "latent.json"
    doc = bench_latent(out, {"tiny": True, "horizon": 2, "families": "landau", "progress": False})
    saved = json.loads(out.read_text())
    assert saved["results"] == doc["results"] and {r["variant"] for r in doc["results"]} == {
        "latent", "one_step", "linear", "persistence"}  # fmt: skip
    for r in doc["results"]:
        assert np.isfinite(r["l2_f_final"]) and np.isfinite(r["density_final"]) and r["horizon"] == 2
    fam = doc["families"][0]
    assert fam["held_out"][0]["timing"]["speedup"] > 0 and len(fam["held_out"][0]["variants"]["latent"]["time"]) == 3
    for p in doc["plots"]:
        assert (tmp_path / p.split("/")[-1]).stat().st_size > 1000
    assert main(["bench", "latent", "--set", "families=nope", "--out", str(tmp_path / "x.json")]) == 2
