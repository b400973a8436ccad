"""Physics checks of the initial distributions (moments recovered, reduced velocity spaces)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faiser.errors import ConfigError, InitialConditionError
from faiser.grid import PhaseSpaceGrid
from faiser.vlasov import distributions as dist
from faiser.vlasov.diagnostics import anisotropy, moments

F64 = jnp.float64


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def grid3v(nx=2, nv=32, vmax=8.0) -> PhaseSpaceGrid:
    return PhaseSpaceGrid.make((nx, 1, 1), 1.0, (nv, nv, nv), vmax)


def test_maxwellian_moments_3v_with_spatial_parameters():
    g = grid3v()
    n = np.array([1.0, 0.5]).reshape(2, 1, 1)
    T = np.array([1.0, 1.5]).reshape(2, 1, 1)
    V = np.zeros((2, 1, 1, 3))
    V[0] = (0.5, -0.3, 0.2)
    V[1] = (-0.4, 0.0, 0.6)
    mass = 2.0
    f = dist.maxwellian(g, n, V, T, mass=mass, dtype=F64)
    assert f.shape == g.shape and f.dtype == F64
    m = moments(f, g, mass=mass)
    np.testing.assert_allclose(m["density"], n, rtol=1e-6)
    np.testing.assert_allclose(m["bulk_velocity"], V, atol=1e-6)
    np.testing.assert_allclose(m["temperature"], T, rtol=1e-4)
    P = np.asarray(m["pressure"])
    np.testing.assert_allclose(P, (n * T)[..., None, None] * np.eye(3), atol=1e-5)


def test_maxwellian_1v_normalises_only_resolved_dims():
    g = PhaseSpaceGrid.make_1d1v(nx=3, length=2.0, nv=64, vmax=8.0)
    f = dist.maxwellian(g, 2.0, (0.7, 5.0, -3.0), 1.3, dtype=F64)
    v = g.v_centers(0)
    expected = 2.0 / math.sqrt(2 * math.pi * 1.3) * np.exp(-((v - 0.7) ** 2) / 2.6)
    np.testing.assert_allclose(np.asarray(f)[1, 0, 0, :, 0, 0], expected, rtol=1e-12)
    m = moments(f, g)
    np.testing.assert_allclose(m["density"], 2.0, rtol=1e-8)
    # drift along unresolved axes is integrated out
    np.testing.assert_allclose(m["bulk_velocity"][..., 0], 0.7, rtol=1e-8)
    np.testing.assert_allclose(m["bulk_velocity"][..., 1:], 0.0, atol=1e-14)
    np.testing.assert_allclose(m["temperature"], 1.3, rtol=1e-6)


def test_maxwellian_2v_temperature_uses_resolved_dims():
    g = PhaseSpaceGrid.make((1, 1, 1), 1.0, (48, 1, 48), 7.0)
    f = dist.maxwellian(g, 1.0, (0.2, 0.0, -0.1), 0.9, dtype=F64)
    m = moments(f, g)
    np.testing.assert_allclose(m["density"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(m["temperature"], 0.9, rtol=1e-5)


def test_default_dtype_is_float32():
    g = grid3v(nx=1, nv=8)
    assert dist.maxwellian(g).dtype == jnp.float32
    assert dist.kappa(g, kappa=3.0).dtype == jnp.float32
    assert dist.ring(g).dtype == jnp.float32


def test_bad_parameters_raise_config_error():
    g = grid3v(nx=2, nv=8)
    with pytest.raises(ConfigError):
        dist.maxwellian(g, density=np.ones((3, 1, 1)))
    with pytest.raises(ConfigError):
        dist.maxwellian(g, temperature=-1.0)
    with pytest.raises(ConfigError):
        dist.maxwellian(g, bulk_velocity=(1.0, 2.0))
    with pytest.raises(ConfigError):
        dist.bi_maxwellian(g, b_direction=(0.0, 0.0, 0.0))
    with pytest.raises(ConfigError):
        dist.kappa(g, kappa=1.5)


def test_bi_maxwellian_oblique_b_recovered_by_anisotropy():
    g = PhaseSpaceGrid.make_velocity_only(nv=40, vmax=9.0)
    b = np.array([1.0, -2.0, 0.5])
    f = dist.bi_maxwellian(g, 1.2, (0.3, 0.1, -0.2), t_par=0.6, t_perp=1.8, b_direction=b, dtype=F64)
    m = moments(f, g)
    np.testing.assert_allclose(m["density"], 1.2, rtol=1e-6)
    # B of any magnitude along b
    t_par, t_perp, ratio = anisotropy(m["pressure"], m["density"], 3.0 * b)
    np.testing.assert_allclose(t_par, 0.6, rtol=1e-4)
    np.testing.assert_allclose(t_perp, 1.8, rtol=1e-4)
    np.testing.assert_allclose(ratio, 3.0, rtol=2e-4)
    # full tensor: P = n (T_perp I + (T_par - T_perp) b b^T)
    bh = b / np.linalg.norm(b)
    P_expected = 1.2 * (1.8 * np.eye(3) + (0.6 - 1.8) * np.outer(bh, bh))
    np.testing.assert_allclose(np.asarray(m["pressure"])[0, 0, 0], P_expected, atol=2e-4)


def test_bi_maxwellian_isotropic_limit_is_maxwellian():
    g = grid3v(nx=1, nv=16, vmax=6.0)
    a = dist.bi_maxwellian(g, 1.0, (0.2, 0.0, 0.1), 1.1, 1.1, (1.0, 1.0, 1.0), dtype=F64)
    b = dist.maxwellian(g, 1.0, (0.2, 0.0, 0.1), 1.1, dtype=F64)
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-300)


def test_bi_maxwellian_reduced_dims_is_exact_marginal():
    # 2V (vx, vy) with b in the x-z plane: the vx variance is T_perp + (T_par - T_perp) b_x^2
    g = PhaseSpaceGrid.make((1, 1, 1), 1.0, (48, 48, 1), 8.0)
    b = np.array([1.0, 0.0, 1.0]) / math.sqrt(2)
    f = dist.bi_maxwellian(g, 1.0, 0.0, t_par=0.5, t_perp=2.0, b_direction=b, dtype=F64)
    m = moments(f, g)
    np.testing.assert_allclose(m["density"], 1.0, rtol=1e-6)
    P = np.asarray(m["pressure"])[0, 0, 0]
    np.testing.assert_allclose(P[0, 0], 2.0 + (0.5 - 2.0) * 0.5, rtol=1e-5)
    np.testing.assert_allclose(P[1, 1], 2.0, rtol=1e-5)


def test_kappa_density_temperature_and_maxwellian_limit():
    g = grid3v(nx=1, nv=32, vmax=8.0)
    f = dist.kappa(g, 1.5, (0.2, -0.1, 0.0), 1.0, kappa=4.0, dtype=F64)
    m = moments(f, g)
    np.testing.assert_allclose(m["density"], 1.5, rtol=1e-12)  # numerical normalization
    np.testing.assert_allclose(m["bulk_velocity"][0, 0, 0], (0.2, -0.1, 0.0), atol=1e-3)
    # power-law tails are cut by the box, so the temperature is a bit below T
    assert 0.85 < float(m["temperature"][0, 0, 0]) < 1.0
    # analytic normalization: density deficit = tail mass outside the box, small
    fa = dist.kappa(g, 1.5, (0.2, -0.1, 0.0), 1.0, kappa=4.0, renormalize=False, dtype=F64)
    na = float(moments(fa, g)["density"][0, 0, 0])
    assert 0.98 * 1.5 < na < 1.5
    # kappa -> infinity is the Maxwellian
    fk = dist.kappa(g, 1.0, 0.0, 1.0, kappa=1e5, renormalize=False, dtype=F64)
    fm = dist.maxwellian(g, 1.0, 0.0, 1.0, dtype=F64)
    np.testing.assert_allclose(fk, fm, atol=1e-4 * float(fm.max()))


def test_kappa_1v_is_marginal_of_3v():
    # wide 1V box: the marginal has variance T/m, so density and T come out right
    g = PhaseSpaceGrid.make_1d1v(nx=1, length=1.0, nv=2000, vmax=400.0)
    f = dist.kappa(g, 1.0, 0.0, 0.8, kappa=5.0, mass=2.0, renormalize=False, dtype=F64)
    m = moments(f, g, mass=2.0)
    np.testing.assert_allclose(m["density"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(m["temperature"], 0.8, rtol=1e-3)


def test_ring_moments():
    g = PhaseSpaceGrid.make_velocity_only(nv=40, vmax=5.0)
    b = np.array([0.0, 1.0, 1.0])
    f = dist.ring(g, 2.0, v_perp0=2.5, thermal_speed=0.4, b_direction=b, bulk_velocity=(0.3, 0.0, 0.0), dtype=F64)
    assert float(f.min()) >= 0.0
    m = moments(f, g)
    np.testing.assert_allclose(m["density"], 2.0, rtol=1e-12)
    np.testing.assert_allclose(m["bulk_velocity"][0, 0, 0], (0.3, 0.0, 0.0), atol=1e-3)
    t_par, t_perp, _ = anisotropy(m["pressure"], m["density"], b)
    np.testing.assert_allclose(t_par, 0.4**2, rtol=1e-3)
    # <w_perp^2> / 2 of a thin ring of radius u0 and spread vth: (u0^2 + 3 vth^2) / 2 to O(vth^4/u0^2)
    np.testing.assert_allclose(t_perp, (2.5**2 + 3 * 0.4**2) / 2, rtol=2e-2)


def test_two_beams_and_beams():
    g = PhaseSpaceGrid.make_1d1v(nx=2, length=1.0, nv=128, vmax=10.0)
    f = dist.two_beams(g, v0=3.0, density=1.0, temperature=0.5, fraction=0.75, dtype=F64)
    m = moments(f, g)
    np.testing.assert_allclose(m["density"], 1.0, rtol=1e-10)
    np.testing.assert_allclose(m["bulk_velocity"][..., 0], 0.5 * 3.0, rtol=1e-8)
    # T = T_beam + variance of the drifts
    np.testing.assert_allclose(m["temperature"], 0.5 + 0.75 * 0.25 * 36.0, rtol=1e-8)
    f2 = dist.beams(g, [0.75, 0.25], [(3.0, 0, 0), (-3.0, 0, 0)], 0.5, dtype=F64)
    np.testing.assert_allclose(f, f2, rtol=1e-12)
    with pytest.raises(ConfigError):
        dist.two_beams(g, v0=3.0, axis=1)


def test_perturb_density_profile():
    g = PhaseSpaceGrid.make_1d1v(nx=16, length=4 * math.pi, nv=32, vmax=6.0)
    k = 0.5
    f = dist.perturb(dist.maxwellian(g, dtype=F64), g, alpha=0.1, k=k, phase=0.3)
    n = np.asarray(moments(f, g)["density"])[:, 0, 0]
    np.testing.assert_allclose(n, 1 + 0.1 * np.cos(k * g.x_centers(0) + 0.3), rtol=1e-8)
    assert dist.perturb(dist.maxwellian(g), g, 0.1, k).dtype == jnp.float32


def test_validate_distribution():
    g = grid3v(nx=2, nv=8)
    f = np.asarray(dist.maxwellian(g))
    dist.validate_distribution(f, g)
    with pytest.raises(InitialConditionError, match="shape"):
        dist.validate_distribution(f[:1], g)
    bad = f.copy()
    bad[1, 0, 0, 3, 4, 5] = np.nan
    with pytest.raises(InitialConditionError, match="non-finite"):
        dist.validate_distribution(bad, g)
    bad = f.copy()
    bad[0, 0, 0, 0, 0, 0] = np.inf
    with pytest.raises(InitialConditionError, match="non-finite"):
        dist.validate_distribution(bad, g)
    bad = f.copy()
    bad[0, 0, 0, 1, 2, 3] = -1e-9
    with pytest.raises(InitialConditionError, match="negative"):
        dist.validate_distribution(bad, g)


def test_maxwellian_jits_with_traced_parameters():
    g = grid3v(nx=2, nv=16)
    fn = jax.jit(lambda n, V, T: dist.maxwellian(g, n, V, T, dtype=F64))
    n = jnp.array([1.0, 2.0]).reshape(2, 1, 1)
    V = jnp.zeros((2, 1, 1, 3))
    T = jnp.array([0.5, 1.0]).reshape(2, 1, 1)
    np.testing.assert_allclose(fn(n, V, T), dist.maxwellian(g, n, V, T, dtype=F64), rtol=1e-12)


PROPERTY_GRID = PhaseSpaceGrid.make((1, 1, 1), 1.0, (48, 1, 48), 8.0)


@settings(max_examples=15, deadline=None)
@given(
    n=st.floats(0.1, 10.0),
    vx=st.floats(-1.0, 1.0),
    vz=st.floats(-1.0, 1.0),
    T=st.floats(0.5, 1.5),
    mass=st.floats(1.0, 3.0),
)
def test_maxwellian_moments_property(n, vx, vz, T, mass):
    g = PROPERTY_GRID  # one grid: no recompilation per example
    with jax.enable_x64(True):
        m = moments(dist.maxwellian(g, n, (vx, 0.3, vz), T, mass, dtype=F64), g, mass)
    np.testing.assert_allclose(m["density"], n, rtol=1e-6)
    np.testing.assert_allclose(m["bulk_velocity"][0, 0, 0], (vx, 0.0, vz), atol=1e-6)
    np.testing.assert_allclose(m["temperature"], T, rtol=1e-5)
