"""Physics checks of moments, anisotropy, non-Maxwellianity, global diagnostics and export."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faiser.errors import ConfigError
from faiser.grid import PhaseSpaceGrid
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


def test_heat_flux_of_skewed_two_beams():
    # q_x = (1/2) sum_s n_s a_s^3 with a_s the beam drift relative to the bulk velocity
    # (the 5 a T term cancels because sum_s n_s a_s = 0); same result in 1V and 3V
    frac, v0, T = 0.8, 2.0, 0.5
    U = (2 * frac - 1) * v0
    n_s, a_s = np.array([frac, 1 - frac]), np.array([v0 - U, -v0 - U])
    q_expected = 0.5 * np.sum(n_s * a_s**3)
    for g in (GRID1V, GRID3V):
        m = diag.moments(dist.two_beams(g, v0, 1.0, T, fraction=frac, dtype=F64), g)
        np.testing.assert_allclose(m["bulk_velocity"][..., 0], U, rtol=1e-6)
        np.testing.assert_allclose(m["heat_flux"][..., 0], q_expected, rtol=1e-5)
        np.testing.assert_allclose(m["heat_flux"][..., 1:], 0.0, atol=1e-8)


def test_maxwellian_has_no_heat_flux_and_mass_scales_pressure():
    f = dist.maxwellian(GRID3V, 1.0, (0.5, -0.5, 1.0), 1.0, mass=4.0, dtype=F64)
    m = diag.moments(f, GRID3V, mass=4.0)
    np.testing.assert_allclose(m["heat_flux"], 0.0, atol=1e-6)
    np.testing.assert_allclose(m["temperature"], 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(m["pressure"])[0, 0, 0], np.eye(3), atol=1e-5)


def test_moments_float32_fast_drift_accurate():
    # central moments: a drift of 5 vth does not cost accuracy in float32
    f = dist.maxwellian(GRID3V, 1.0, (5.0, 0.0, 0.0), 0.5)
    m = diag.moments(f, GRID3V)
    assert m["temperature"].dtype == jnp.float32
    np.testing.assert_allclose(m["density"], 1.0, rtol=1e-5)
    np.testing.assert_allclose(m["bulk_velocity"][..., 0], 5.0, rtol=1e-5)
    np.testing.assert_allclose(m["temperature"], 0.5, rtol=1e-4)


def test_vacuum_gives_no_nans():
    f = np.asarray(dist.maxwellian(GRID3V, dtype=F64)).copy()
    f[1] = 0.0
    m = diag.moments(f, GRID3V)
    for k, v in m.items():
        assert np.all(np.isfinite(v)), k
    assert float(m["density"][1, 0, 0]) == 0.0 and float(m["temperature"][1, 0, 0]) == 0.0
    eps = diag.non_maxwellianity(f, GRID3V)
    assert np.all(np.isfinite(eps)) and float(eps[1, 0, 0]) == 0.0
    t_par, t_perp, ratio = diag.anisotropy(m["pressure"], m["density"], (0.0, 0.0, 1.0))
    assert np.all(np.isfinite(np.stack([t_par, t_perp, ratio])))
    np.testing.assert_allclose(ratio[1, 0, 0], 1.0)
    # gradients through the guarded divisions stay finite too
    grad = jax.grad(lambda f: jnp.sum(diag.moments(f, GRID3V)["temperature"]))(jnp.asarray(f))
    assert np.all(np.isfinite(grad))


def test_anisotropy_oblique_b_and_zero_b():
    b = np.array([[0.3, 1.0, -0.4], [0.0, 0.0, 0.0]]).reshape(2, 1, 1, 3)
    f = dist.bi_maxwellian(GRID3V, 1.0, 0.0, t_par=0.7, t_perp=1.4, b_direction=(0.3, 1.0, -0.4), dtype=F64)
    m = diag.moments(f, GRID3V)
    t_par, t_perp, ratio = diag.anisotropy(m["pressure"], m["density"], b)
    np.testing.assert_allclose(t_par[0], 0.7, rtol=1e-4)
    np.testing.assert_allclose(t_perp[0], 1.4, rtol=1e-4)
    np.testing.assert_allclose(ratio[0], 2.0, rtol=2e-4)
    # |B| = 0: the x axis is used as b
    P = np.asarray(m["pressure"])[1, 0, 0] / float(m["density"][1, 0, 0])
    np.testing.assert_allclose(t_par[1, 0, 0], P[0, 0], rtol=1e-12)
    np.testing.assert_allclose(t_perp[1, 0, 0], (P[1, 1] + P[2, 2]) / 2, rtol=1e-12)


def test_non_maxwellianity():
    fm = dist.maxwellian(GRID3V, 1.3, (0.4, 0.0, -0.2), 0.8, mass=2.0, dtype=F64)
    assert float(jnp.max(diag.non_maxwellianity(fm, GRID3V, mass=2.0))) < 1e-5
    # a drifting bi-Maxwellian is not a Maxwellian
    fb = dist.bi_maxwellian(GRID3V, 1.0, 0.0, 0.5, 1.5, (1.0, 1.0, 0.0), dtype=F64)
    eps_b = np.asarray(diag.non_maxwellianity(fb, GRID3V))
    assert np.all((eps_b > 0.05) & (eps_b < 0.5))
    # two well-separated beams: far from the Maxwellian of the same n, V, T
    for g in (GRID1V, GRID3V):
        f2 = dist.two_beams(g, v0=3.0, temperature=0.5, dtype=F64)
        eps = np.asarray(diag.non_maxwellianity(f2, g))
        assert np.all((eps > 0.3) & (eps <= 1.0))


def test_global_diagnostics_two_species():
    g = GRID3V
    ions = Species("ion", 1.0, 4.0)
    electrons = Species("electron", -1.0, 1.0)
    n, T, V = 1.2, 0.9, np.array([0.5, 0.0, -0.3])
    fi = dist.maxwellian(g, n, V, T, mass=ions.mass, dtype=F64)
    fe = dist.maxwellian(g, n, 0.0, T, mass=electrons.mass, dtype=F64)
    E = np.zeros((*g.nx, 3))
    E[..., 0] = 0.1
    B = np.zeros((*g.nx, 3))
    B[..., 2] = 2.0
    out = diag.global_diagnostics((fi, fe), E, B, g, [ions, electrons])
    volume = float(np.prod(g.length))  # 3 * 1 * 1
    mass = (ions.mass + electrons.mass) * n * volume
    kinetic = n * volume * (1.5 * T + 0.5 * ions.mass * V @ V + 1.5 * T)
    np.testing.assert_allclose(out["mass"], mass, rtol=1e-6)
    np.testing.assert_allclose(out["momentum_x"], ions.mass * n * V[0] * volume, rtol=1e-5)
    np.testing.assert_allclose(out["momentum_y"], 0.0, atol=1e-6)
    np.testing.assert_allclose(out["momentum_z"], ions.mass * n * V[2] * volume, rtol=1e-5)
    np.testing.assert_allclose(out["kinetic_energy"], kinetic, rtol=1e-5)
    np.testing.assert_allclose(out["electric_energy"], 0.5 * 0.01 * volume, rtol=1e-12)
    np.testing.assert_allclose(out["magnetic_energy"], 0.5 * 4.0 * volume, rtol=1e-12)
    np.testing.assert_allclose(
        out["total_energy"], out["kinetic_energy"] + out["electric_energy"] + out["magnetic_energy"]
    )
    l2 = math.sqrt(float(jnp.sum(fi**2) + jnp.sum(fe**2)) * g.phase_cell_volume)
    np.testing.assert_allclose(out["l2_norm"], l2, rtol=1e-12)
    assert float(out["f_min"]) >= 0.0
    np.testing.assert_allclose(out["f_max"], max(float(fi.max()), float(fe.max())))
    for v in out.values():
        assert v.shape == ()


def test_global_diagnostics_single_array_no_fields_1v():
    # 1V: kinetic energy per particle is T/2 (only one resolved dimension)
    f = dist.maxwellian(GRID1V, 2.0, 0.0, 1.5, dtype=F64)
    out = diag.global_diagnostics(f, None, None, GRID1V, [Species("e", -1.0, 1.0)])
    np.testing.assert_allclose(out["mass"], 2.0 * 2.0, rtol=1e-10)
    np.testing.assert_allclose(out["kinetic_energy"], 2.0 * 2.0 * 0.5 * 1.5, rtol=1e-8)
    assert float(out["electric_energy"]) == 0.0
    with pytest.raises(ConfigError):
        diag.global_diagnostics((f, f), None, None, GRID1V, [Species("e", -1.0, 1.0)])


def test_global_diagnostics_jit_and_grad():
    g = GRID1V
    sp = (Species("e", -1.0, 2.0),)
    f = dist.maxwellian(g, 1.0, 0.5, 1.0, dtype=F64)
    E = jnp.ones((*g.nx, 3))
    B = jnp.zeros((*g.nx, 3))
    jitted = jax.jit(diag.global_diagnostics, static_argnums=(3, 4))
    out = jitted((f,), E, B, g, sp)
    ref = diag.global_diagnostics((f,), E, B, g, sp)
    for k in ref:
        np.testing.assert_allclose(out[k], ref[k], rtol=1e-12)
    # d(total energy)/df = (m/2) |v|^2 dx dv
    grad = jax.grad(lambda f: jitted((f,), E, B, g, sp)["total_energy"])(f)
    expected = 0.5 * 2.0 * np.asarray(g.v_mesh(0)) ** 2 * g.phase_cell_volume
    np.testing.assert_allclose(grad, np.broadcast_to(expected, g.shape), rtol=1e-12)
    # inside a user's jit as well
    eps = jax.jit(lambda f: diag.non_maxwellianity(f, g))(f)
    assert np.all(np.isfinite(eps))


def test_moments_shape_check():
    with pytest.raises(ConfigError):
        diag.moments(np.zeros((2, 1, 1, 32, 32, 31)), GRID3V)
