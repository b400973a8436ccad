"""The command-line contract: outputs of `faiser simulate` and exit status 2 on bad input."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from faiser.cli import main
from faiser.run.outputs import CSV_COLUMNS

TINY = ["--set", "nx=16", "--set", "nv=32", "--set", "t_end=1", "--quiet"]


def _run(args, tmp_path):
    """Run the CLI in a subprocess (the real entry point) and return (code, stdout, stderr)."""
    p = subprocess.run(
        [sys.executable, "-m", "faiser", *args], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    return p.returncode, p.stdout, p.stderr


def test_simulate_writes_the_contract_files(tmp_path):
    out = tmp_path / "run"
    assert main(["simulate", "landau", *TINY, "--out", str(out)]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["case"] == "landau" and cfg["config"]["nx"] == 16 and cfg["config"]["k"] == 0.5
    assert cfg["grid"]["nx"] == [16, 1, 1]
    assert "time_s" in cfg["units"]
    df = pd.read_csv(out / "diagnostics.csv")
    assert list(df.columns[: len(CSV_COLUMNS)]) == CSV_COLUMNS
    assert df["time"].iloc[0] == 0 and df["step"].iloc[-1] == 10
    timing = json.loads((out / "timing.json").read_text())
    for key in ("wall_s", "compile_s", "steps", "simulated_time", "device"):
        assert key in timing
    assert timing["steps"] == 10 and timing["simulated_time"] == pytest.approx(1.0)
    assert (out / "diagnostics.png").stat().st_size > 1000
    import xarray as xr

    with xr.open_dataset(out / "moments.nc", engine="scipy") as m:
        assert m.sizes["time"] == 2 and m.sizes["x"] == 16
        n0 = m["electron_density"].isel(time=0).values.ravel()
        assert np.allclose(n0.mean(), 1.0, atol=1e-3)  # perturbed Maxwellian of unit mean density
        assert "electron_non_maxwellianity" in m and "electron_anisotropy" in m


def test_config_file_and_overrides(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"nx": 8, "alpha": 0.05}))
    out = tmp_path / "run"
    assert main(["simulate", "landau", "--config", str(cfg), *TINY[2:], "--set", "nx=12", "--out", str(out)]) == 0
    resolved = json.loads((out / "config.json").read_text())["config"]
    assert resolved["nx"] == 12 and resolved["alpha"] == 0.05  # --set wins over the file


@pytest.mark.parametrize(
    "args, needle",
    [
        (["simulate", "plasma_soup", "--out", "x"], "unknown case"),
        (["simulate", "landau", "--set", "kk=1", "--out", "x"], "unknown key"),
        (["simulate", "landau", "--set", "nx=abc", "--out", "x"], "bad value"),
        (["simulate", "landau", "--set", "alpha=nan", "--out", "x"], "bad value"),
        (["simulate", "landau", "--set", "alpha=3", "--out", "x"], "negative"),
        (["simulate", "landau", "--set", "dt=-0.1", "--out", "x"], "dt"),
        (["simulate", "landau", "--set", "dt=50", "--set", "t_end=100", "--out", "x"], "CFL"),
        (["simulate", "larmor", "--set", "B=0,1", "--out", "x"], "bad value"),
        (["simulate", "landau", "--config", "missing.json", "--out", "x"], "not found"),
        (["simulate", "landau", "--set", "scheme=weno", "--out", "x"], "scheme"),
        (["simulate", "landau"], "--out"),
        (["bench", "nothing", "--out", "x"], "invalid choice"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, needle, tmp_path):
    code, out, err = _run(args, tmp_path)
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert needle in lines[0]


def test_corrupt_config_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\x00\xff{not json")
    code, _, err = _run(["simulate", "landau", "--config", str(bad), "--out", "x"], tmp_path)
    assert code == 2 and "cannot read config file" in err and "Traceback" not in err


def test_non_finite_state_raises_numerical_error():
    """A NaN anywhere in f reaches the diagnostics (f_min/f_max, sums): simulate stops with a named error."""
    import jax.numpy as jnp

    from faiser.cases import build_case, default_config
    from faiser.errors import NumericalError
    from faiser.run.outputs import diagnostics_row as _row

    case = build_case("landau", default_config("landau"))
    bad = case.state.replace(f=(case.state.f[0].at[3, 0, 0, 7, 0, 0].set(jnp.nan),))
    with pytest.raises(NumericalError, match="non-finite"):
        _row(case.stepper.diagnostics(bad))
    _row(case.stepper.diagnostics(case.state))  # a finite state passes
