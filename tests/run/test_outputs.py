"""Export of diagnostics: per-cell fields and time series to xarray, scalar series to CSV."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from faiser.errors import ConfigError
from faiser.grid import PhaseSpaceGrid
from faiser.run import outputs
from faiser.vlasov import diagnostics as diag
from faiser.vlasov import distributions as dist
from faiser.vlasov.state import Species

F64 = jnp.float64
GRID3V = PhaseSpaceGrid.make((2, 1, 1), (3.0, 1.0, 1.0), (32, 32, 32), 8.0)
GRID1V = PhaseSpaceGrid.make_1d1v(nx=4, length=2.0, nv=128, vmax=12.0)


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def test_to_xarray():
    m = diag.moments(dist.maxwellian(GRID3V, dtype=F64), GRID3V)
    t_par, t_perp, ratio = diag.anisotropy(m["pressure"], m["density"], (0.0, 0.0, 1.0))
    ds = outputs.to_xarray({**m, "t_par": t_par}, GRID3V)
    assert ds["density"].dims == ("x", "y", "z")
    assert ds["bulk_velocity"].dims == ("x", "y", "z", "i")
    assert ds["pressure"].dims == ("x", "y", "z", "i", "j")
    np.testing.assert_allclose(ds["x"], GRID3V.x_centers(0))
    assert list(ds["i"].values) == ["x", "y", "z"]
    np.testing.assert_allclose(ds["pressure"].sel(i="y", j="y"), m["pressure"][..., 1, 1])
    np.testing.assert_allclose(ds["t_par"], t_par)


def test_timeseries_and_csv(tmp_path):
    g = GRID1V
    sp = [Species("e", -1.0, 1.0)]
    records = []
    for step, t in enumerate([0.0, 0.5, 1.0]):
        f = dist.maxwellian(g, 1.0 + 0.1 * step, dtype=F64)
        records.append({"time": t, **diag.global_diagnostics(f, None, None, g, sp)})
    ds = outputs.timeseries_to_xarray(records)
    assert ds["mass"].dims == ("time",)
    np.testing.assert_allclose(ds["time"], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(ds["mass"], [2.0, 2.2, 2.4], rtol=1e-8)
    # dict of arrays, time given explicitly
    ds2 = outputs.timeseries_to_xarray({"mass": [1.0, 2.0]}, time=[0.0, 0.1])
    np.testing.assert_allclose(ds2["time"], [0.0, 0.1])
    # per-cell moments over time with the grid
    ms = [diag.moments(dist.maxwellian(g, dtype=F64), g) for _ in range(2)]
    ds3 = outputs.timeseries_to_xarray(ms, time=[0.0, 1.0], grid=g)
    assert ds3["pressure"].dims == ("time", "x", "y", "z", "i", "j")

    path = tmp_path / "sub" / "diag.csv"
    outputs.write_csv(records, path, columns=["time", "total_energy", "mass"])
    df = pd.read_csv(path)
    assert list(df.columns) == ["time", "total_energy", "mass"]
    assert len(df) == 3
    np.testing.assert_allclose(df["mass"], [float(r["mass"]) for r in records], rtol=1e-14)
    with pytest.raises(ConfigError):
        outputs.write_csv(records, path, columns=["time", "no_such_column"])
