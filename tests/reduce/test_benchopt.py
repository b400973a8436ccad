"""The benchopt benchmark benchmarks/benchopt_dpca runs end to end at a tiny size (synthetic data,
three solvers), and its plot script reads the result."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("benchopt")
pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "benchopt_dpca"


def _benchopt() -> list[str]:
    exe = Path(sys.executable).with_name("benchopt")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "benchopt"]


@pytest.mark.timeout(120)
def test_benchopt_run_tiny_synthetic(tmp_path):
    out = tmp_path / "result.parquet"
    cmd = [
        *_benchopt(), "run", str(BENCH),
        "-d", "synthetic[ranks=4,split=non-iid,dim=24,n_per_rank=30]",
        "-o", "dpca[k=4]",
        "-s", "tree", "-s", "subspace", "-s", "sklearn-pca",
        "-n", "4", "--no-plot", "--no-cache", "--output", str(out),
    ]  # fmt: skip
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert out.exists()

    from benchopt.results import read_results

    df = read_results(out)
    final = df.sort_values("stop_val").groupby(df["solver_name"].str.split("[").str[0]).last()
    assert set(final.index) == {"tree", "subspace", "sklearn-pca"}
    # the centralized reference is optimal, the exact methods are close to it, nothing beats it
    assert final.loc["sklearn-pca", "objective_value"] == pytest.approx(1.0, abs=1e-9)
    assert final.loc["subspace", "objective_value"] == pytest.approx(1.0, abs=1e-6)
    assert (final["objective_value"] > 1 - 1e-9).all()
    assert final.loc["tree", "objective_value"] < 1.1
    assert (final["objective_bytes_per_rank_max"] > 0).all()
    assert (final["objective_rounds"] >= 1).all()
    assert final.loc["subspace", "objective_sin_theta"] < 1e-3

    plot = subprocess.run(
        [sys.executable, str(BENCH / "plot.py"), str(out), "--out-dir", str(tmp_path), "--table", "--ranks", "4"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert plot.returncode == 0, plot.stdout[-3000:] + plot.stderr[-3000:]
    pngs = list(tmp_path.glob("result_synthetic_k4.png"))
    assert pngs and pngs[0].stat().st_size > 1000
    assert "| tree |" in plot.stdout


@pytest.mark.timeout(300)
def test_benchopt_test_passes(tmp_path):
    """benchopt's own checks of the benchmark (objective, every dataset, every solver on the test
    configurations); the simulated runs go to a fresh cache, as on a machine that never ran it."""
    cmd = [*_benchopt(), "test", str(BENCH), "--skip-install"]
    env = {**os.environ, "MPLBACKEND": "Agg", "FAISER_DPCA_CACHE": str(tmp_path / "cache")}
    # benchopt test starts `python -m pytest` from PATH: this interpreter's, also without an activated venv
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout
