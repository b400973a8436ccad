"""VDF normalization: exact round trip above the floor, centering, JSON statistics, seeded fitting."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faiser.data.dataset import DatasetWriter
from faiser.data.normalization import (
    NormStats,
    centering_shift,
    denormalize,
    fit_normalization,
    normalize,
    shift_vdf,
    vdf_moments,
)
from faiser.data.sparse_blocks import VelocityMesh
from faiser.errors import ConfigError, DataError
from faiser.grid import PhaseSpaceGrid
from faiser.vlasov.state import ELECTRON

MESH = VelocityMesh((12, 10, 8), (-4.0, -4.0, -3.0), (4.0, 4.0, 3.0))


def _maxwellians(n: int, seed: int = 0, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """``n`` drifting Maxwellians on MESH with random density, drift and temperature; and their drifts."""
    rng = np.random.default_rng(seed)
    v = [MESH.v_centers(a) for a in range(3)]
    vx, vy, vz = np.meshgrid(*v, indexing="ij")
    dens = rng.uniform(0.1, 10, n)[:, None, None, None]
    u = rng.uniform(-1.0, 1.0, (n, 3))
    temp = rng.uniform(0.3, 0.6, n)[:, None, None, None]
    r2 = (vx - u[:, 0, None, None, None]) ** 2 + (vy - u[:, 1, None, None, None]) ** 2
    r2 = r2 + (vz - u[:, 2, None, None, None]) ** 2
    return (dens * np.exp(-r2 / (2 * temp)) / (2 * np.pi * temp) ** 1.5).astype(dtype), u


@pytest.mark.parametrize("scale", ["max", "density", "none"])
@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_above_the_floor(scale, center, dtype):
    f, _ = _maxwellians(16, dtype=dtype)
    f[0] = 0  # an empty VDF survives (scale 1, no shift)
    stats = NormStats(MESH, floor=1e-6, scale=scale, center=center, mean=-2.5, std=1.7)
    z, side = normalize(f, stats)
    assert z.dtype == dtype and z.shape == f.shape
    assert side["scale"].shape == (16,) and side["shift"].shape == (16, 3) and side["shift"].dtype == np.int32
    back = denormalize(z, stats, side)
    above = f / side["scale"][:, None, None, None] > stats.floor * 1.001
    assert above.sum() > f.size // 10
    rtol = 2e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(back[above], f[above], rtol=rtol)
    limit = np.broadcast_to(stats.floor * 1.01 * side["scale"][:, None, None, None], f.shape)
    assert np.all(back[~above] <= limit[~above])
    assert np.all(back[0] == 0)
    floor_kept = denormalize(z, stats, side, below_floor="floor")
    assert np.all(floor_kept[~above] > 0)


def test_floor_and_scale_values():
    f, _ = _maxwellians(4)
    stats = NormStats(MESH, floor=1e-4, scale="max", standardize=False)
    z, side = normalize(f, stats)
    np.testing.assert_allclose(side["scale"], f.max(axis=(1, 2, 3)))
    assert z.max() == pytest.approx(0.0, abs=1e-6) and z.min() == pytest.approx(-4.0, abs=1e-6)
    dens = NormStats(MESH, floor=1e-4, scale="density")
    _, side = normalize(f, dens)
    np.testing.assert_allclose(side["scale"], f.sum(axis=(1, 2, 3)) * MESH.dv3, rtol=1e-6)


def test_centering_moves_bulk_velocity_to_the_box_centre():
    f, u = _maxwellians(8, seed=3, dtype=np.float64)
    V = vdf_moments(f, MESH)["bulk_velocity"]
    np.testing.assert_allclose(V, u, atol=0.01)  # the mesh barely truncates the tails
    s = centering_shift(f, MESH)
    g = shift_vdf(f, s)
    np.testing.assert_array_equal(shift_vdf(g, -s), f)  # exact inverse
    Vc = vdf_moments(g, MESH)["bulk_velocity"]
    assert np.all(np.abs(Vc) <= 0.5 * np.asarray(MESH.dv) + 0.01)
    np.testing.assert_allclose(Vc, V + s * np.asarray(MESH.dv), atol=0.01)  # moved by whole cells


def test_normalize_in_jax_matches_numpy_under_jit():
    f, _ = _maxwellians(6)
    stats = NormStats(MESH, floor=1e-5, scale="max", center=True, mean=-1.0, std=2.0)
    z_np, side_np = normalize(f, stats)
    z, side = jax.jit(lambda x: normalize(x, stats))(jnp.asarray(f))
    np.testing.assert_allclose(np.asarray(z), z_np, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(side["shift"]), side_np["shift"])
    back = jax.jit(lambda z, s: denormalize(z, stats, s))(z, side)
    assert isinstance(back, jax.Array)
    np.testing.assert_allclose(np.asarray(back), denormalize(z_np, stats, side_np), rtol=1e-5, atol=1e-12)


def test_stats_json_round_trip(tmp_path):
    stats = NormStats(MESH, floor=3e-7, scale="density", center=True, mean=-3.25, std=1.5, n_vdfs=12, seed=4)
    again = NormStats.from_json(json.loads(json.dumps(stats.to_json())))
    assert again == stats
    path = stats.save(tmp_path)
    assert path.name == "normalization.json" and NormStats.load(tmp_path) == stats
    d = stats.to_json()
    for bad in ({**d, "format": "pickle"}, {**d, "floor": "x"}, {k: v for k, v in d.items() if k != "mesh"}):
        with pytest.raises(DataError):
            NormStats.from_json(bad)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(DataError):
        NormStats.load(tmp_path / "broken.json")
    with pytest.raises(ConfigError):
        NormStats(MESH, floor=0.0)
    with pytest.raises(ConfigError):
        NormStats(MESH, floor=1e-3, scale="mean")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    grid = PhaseSpaceGrid(x_min=(0, 0, 0), x_max=(1, 1, 1), nx=(8, 2, 1), v_min=MESH.vmin, v_max=MESH.vmax, nv=MESH.nv)
    path = tmp_path_factory.mktemp("norm") / "ds"
    zero = np.zeros((*grid.nx, 3))
    with DatasetWriter(path, grid, [ELECTRON], capacity=3, background=False) as w:
        for t in range(3):
            f, _ = _maxwellians(16, seed=t)
            w.append(float(t), t, [f.reshape(grid.shape)], zero, zero)
    return path


def test_fit_is_seeded_and_matches_direct_statistics(dataset):
    a = fit_normalization(dataset, n_vdfs=20, seed=1, floor_quantile=0.05)
    b = fit_normalization(dataset, n_vdfs=20, seed=1, floor_quantile=0.05)
    c = fit_normalization(dataset, n_vdfs=20, seed=2, floor_quantile=0.05)
    assert a == b and a != c and a.n_vdfs == 20 and a.seed == 1
    everything = fit_normalization(dataset, n_vdfs=1000, floor=1e-6, scale="max")  # all 48 VDFs
    assert everything.n_vdfs == 48
    f = np.concatenate([_maxwellians(16, seed=t)[0] for t in range(3)]).astype(np.float64)
    y = np.log10(np.maximum(f / f.max(axis=(1, 2, 3), keepdims=True), 1e-6))
    assert everything.mean == pytest.approx(y.mean(), rel=1e-6)
    assert everything.std == pytest.approx(y.std(), rel=1e-5)
    assert everything.log_min == pytest.approx(-6.0) and everything.log_max == pytest.approx(0.0, abs=1e-6)
    # the fitted floor is the quantile of the positive scaled values of the subsample
    assert 0 < a.floor < 1 and a.log_min >= np.log10(a.floor) - 1e-9
    z, _ = normalize(f.astype(np.float32), everything)
    assert abs(float(z.mean())) < 1e-3 and float(z.std()) == pytest.approx(1.0, rel=1e-3)


def test_default_floor_is_relative_to_the_peaks(dataset):
    assert fit_normalization(dataset, n_vdfs=8).floor == pytest.approx(1e-6)
    dens = fit_normalization(dataset, n_vdfs=1000, scale="density", floor_rel=1e-4)
    f = np.concatenate([_maxwellians(16, seed=t)[0] for t in range(3)]).astype(np.float64)
    peaks = f.max(axis=(1, 2, 3)) / (f.sum(axis=(1, 2, 3)) * MESH.dv3)
    assert dens.floor == pytest.approx(1e-4 * np.median(peaks), rel=1e-5)
    with pytest.raises(ConfigError):
        fit_normalization(dataset, floor_rel=2.0)


def test_temperature_and_density_of_maxwellians():
    f, _ = _maxwellians(5, seed=7, dtype=np.float64)
    rng = np.random.default_rng(7)  # the same draws as _maxwellians
    dens = rng.uniform(0.1, 10, 5)
    rng.uniform(-1.0, 1.0, (5, 3))
    temp = rng.uniform(0.3, 0.6, 5)
    m = vdf_moments(f, MESH)
    np.testing.assert_allclose(m["density"], dens, rtol=2e-2)
    np.testing.assert_allclose(m["temperature"], temp, rtol=5e-2)
