"""Physics of the reference stepper against analytic results (DESIGN.md validation references)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faiser.grid import PhaseSpaceGrid
from faiser.run.simulate import simulate
from faiser.vlasov import distributions as dist
from faiser.vlasov.accelerate import rotation_matrix
from faiser.vlasov.fields import ElectrostaticFields
from faiser.vlasov.linear_theory import dispersion_root, fit_damping, fit_growth
from faiser.vlasov.state import ELECTRON, State
from faiser.vlasov.stepper import Stepper

B_OBLIQUE = tuple(np.array([0.3, 0.4, 0.866]) / np.linalg.norm([0.3, 0.4, 0.866]))


def test_dispersion_root_reproduces_published_landau_value():
    w = dispersion_root(0.5, [(1.0, 0.0, 1.0)], 1.4 - 0.15j)
    assert w.real == pytest.approx(1.4157, abs=1e-4)
    assert w.imag == pytest.approx(-0.1534, abs=1e-4)


@pytest.mark.slow
def test_landau_damping_rate_and_frequency_from_defaults():
    res = simulate("landau", progress=False)  # k = 0.5, alpha = 0.01 are the defaults
    t = res.diagnostics["time"].values
    ee = res.diagnostics["electric_energy"].values
    gamma, omega, n_peaks = fit_damping(t, ee, t_min=2, t_max=35)
    assert n_peaks >= 8
    assert gamma == pytest.approx(-0.1534, rel=0.02)
    assert omega == pytest.approx(1.4157, rel=0.01)


@pytest.mark.slow
def test_two_stream_growth_rate_matches_dispersion_relation():
    k, v0 = 0.2, 2.4
    root = dispersion_root(k, [(0.5, v0, 1.0), (0.5, -v0, 1.0)], 0.2j)
    assert abs(root.real) < 1e-6 and root.imag > 0.1  # purely growing mode
    res = simulate(
        "two_stream",
        {"k": k, "v0": v0, "alpha": 1e-6, "t_end": 45, "dtype": "float64"},
        progress=False,
    )
    t = res.diagnostics["time"].values
    ee = res.diagnostics["electric_energy"].values
    gamma = fit_growth(t, ee, 25, 40)  # linear phase, after the damped modes have decayed
    assert gamma == pytest.approx(root.imag, rel=0.05)


def _angle_about(b, v_num, v_ref):
    """Signed angle from v_ref to v_num in the plane perpendicular to b."""
    perp = lambda v: v - np.outer(v @ b, b)  # noqa: E731
    a, e = perp(v_num), perp(v_ref)
    return np.arctan2(np.einsum("ij,ij->i", np.cross(e, a), np.broadcast_to(b, a.shape)), np.einsum("ij,ij->i", a, e))


def _bulk_velocity(ds):
    return np.stack([ds[f"bulk_velocity_{c}"].values for c in "xyz"], -1)


@pytest.mark.slow
def test_gyration_angle_density_and_temperature_oblique_b():
    from faiser.vlasov.diagnostics import moments

    b = np.array(B_OBLIQUE)
    period = 2 * math.pi  # Omega = q B / m = 1
    res = simulate(
        "larmor",
        {"B": B_OBLIQUE, "t_end": 10 * period, "dt": period / 17, "nv": 32},
        progress=False,
    )
    ds = res.diagnostics
    t = ds["time"].values
    V = _bulk_velocity(ds)
    exact = np.array([np.asarray(rotation_matrix(jnp.asarray(b), jnp.asarray(-tt))) @ V[0] for tt in t])
    ang = _angle_about(b, V, exact)
    quarter = np.argmin(np.abs(t - period / 4))
    # the quarter period is not a step boundary (17 steps per period): compare at the nearest one
    assert abs(ang[quarter]) < 1e-3
    assert np.all(np.abs(ang[t > 3 * period]) < 1e-3)  # several gyroperiods
    # density: what stays plus what left the open velocity box
    m = ds["mass"].values + ds["mass_lost"].values
    assert np.max(np.abs(m / m[0] - 1)) < 1e-6
    assert ds["mass_lost"].values[-1] / m[0] < 1e-4  # the box holds the VDF
    T0 = float(moments(res.case.state.f[0], res.case.grid)["temperature"].ravel()[0])
    T1 = float(moments(res.state.f[0], res.case.grid)["temperature"].ravel()[0])
    assert abs(T1 / T0 - 1) < 0.01


@pytest.mark.slow
def test_exb_drift_velocity():
    b = np.array(B_OBLIQUE)
    E = 0.5 * np.cross(b, [1.0, 0.0, 0.0])  # perpendicular to B
    u = np.cross(E, b)  # E x B / B^2 with |B| = 1
    period = 2 * math.pi
    res = simulate(
        "exb",
        {"B": tuple(b), "E": tuple(E), "drift": (0.0, 0.0, 0.0), "t_end": period, "dt": period / 34, "vmax": 5.0},
        progress=False,
    )
    V = _bulk_velocity(res.diagnostics)
    t = res.diagnostics["time"].values
    mean = np.trapezoid(V, t, axis=0) / (t[-1] - t[0])  # gyro-average over one exact period
    assert np.linalg.norm(mean - u) < 0.01 * np.linalg.norm(u)


def _landau_energy_fn(nx=32, nv=64, steps=20):
    grid = PhaseSpaceGrid.make_1d1v(nx, 4 * math.pi, nv, 6.0)
    stepper = Stepper(grid, (ELECTRON,), ElectrostaticFields(), 0.1)

    def energy(alpha):
        f = dist.perturb(dist.maxwellian(grid, dtype=jnp.float64), grid, alpha, 0.5)
        s = stepper.initialize(State.create(f))
        s = stepper.advance(s, steps)
        return 0.5 * jnp.sum(s.E**2) * grid.cell_volume

    return energy, stepper, grid


def test_gradient_of_electric_energy_matches_finite_difference():
    with jax.enable_x64(True):
        energy, _, _ = _landau_energy_fn()
        alpha, h = 0.01, 1e-5
        grad = float(jax.grad(energy)(alpha))
        fd = (float(energy(alpha + h)) - float(energy(alpha - h))) / (2 * h)
        assert grad == pytest.approx(fd, rel=1e-3)
        assert abs(grad) > 0


def test_jvp_through_the_field_solve():
    with jax.enable_x64(True):
        _, stepper, grid = _landau_energy_fn()
        f = dist.perturb(dist.maxwellian(grid, dtype=jnp.float64), grid, 0.01, 0.5)
        s = stepper.initialize(State.create(f))
        direction = dist.perturb(dist.maxwellian(grid, dtype=jnp.float64), grid, 1.0, 1.0) * 1e-3

        def e_after(f):
            return stepper.step(s.replace(f=(f,))).E

        _, tangent = jax.jvp(e_after, (s.f[0],), (direction,))
        h = 1e-4
        fd = (e_after(s.f[0] + h * direction) - e_after(s.f[0] - h * direction)) / (2 * h)
        np.testing.assert_allclose(np.asarray(tangent), np.asarray(fd), rtol=1e-4, atol=1e-9)
        assert float(jnp.max(jnp.abs(tangent))) > 0


def test_sparsity_threshold_in_the_stepper_counts_removed_mass():
    res = simulate(
        "two_stream", {"nx": 16, "nv": 64, "t_end": 2.0, "f_min": 1e-3, "vmax": 10.0}, progress=False
    )
    ds = res.diagnostics
    total = ds["mass"].values + ds["mass_lost"].values
    assert ds["mass_lost"].values[-1] > 0  # the threshold removed something
    assert np.max(np.abs(total / total[0] - 1)) < 1e-6  # and every removed bit is accounted for


@pytest.mark.slow
def test_bump_on_tail_growth_rate_matches_dispersion_relation():
    k = 0.3  # defaults: core 0.9 at rest (vth 1), beam 0.1 at 4.5 (vth 0.5)
    root = dispersion_root(k, [(0.9, 0.0, 1.0), (0.1, 4.5, 0.5)], complex(1.1, 0.1))
    assert root.imag > 0.1  # an unstable beam mode
    res = simulate("bump_on_tail", {"alpha": 1e-6, "dtype": "float64", "t_end": 50}, progress=False)
    gamma = fit_growth(res.diagnostics["time"].values, res.diagnostics["electric_energy"].values, 20, 50)
    assert gamma == pytest.approx(root.imag, rel=0.05)


def test_two_species_with_heavy_ions_reproduce_electron_landau_damping():
    """Kinetic ions (m = 1e6, vth = 1) barely move: the electron Landau rate must not change, and
    the charge densities of both species enter the Poisson solve (ions neutralize electrons)."""
    from faiser.vlasov.state import Species

    grid = PhaseSpaceGrid.make_1d1v(64, 4 * math.pi, 256, 6.0)
    ion = Species("ion", 1.0, 1e6)
    f_e = dist.perturb(dist.maxwellian(grid), grid, 0.01, 0.5)
    f_i = dist.maxwellian(grid, temperature=1e6, mass=1e6)
    stepper = Stepper(grid, (ELECTRON, ion), ElectrostaticFields(), 0.1)
    state = stepper.initialize(State.create((f_e, f_i)))
    state, series = stepper.rollout(state, 350, 1)
    gamma, omega, n_peaks = fit_damping(np.asarray(series["time"]), np.asarray(series["electric_energy"]), 2, 35)
    assert n_peaks >= 8
    assert gamma == pytest.approx(-0.1534, rel=0.02)
    assert omega == pytest.approx(1.4157, rel=0.01)
    for f0, f1 in zip((f_e, f_i), state.f):
        assert float(jnp.sum(f1)) == pytest.approx(float(jnp.sum(f0)), rel=1e-6)


def test_rollout_raises_on_a_non_finite_state_unless_asked_not_to():
    """The public rollout checks finiteness as ``simulate`` does; ``check_finite=False`` returns
    the raw series (NaN included) for callers that check themselves."""
    from faiser.errors import NumericalError

    grid = PhaseSpaceGrid.make_1d1v(16, 4 * math.pi, 32, 6.0)
    f = np.array(dist.perturb(dist.maxwellian(grid), grid, 0.01, 0.5))
    stepper = Stepper(grid, (ELECTRON,), ElectrostaticFields(), 0.1)
    state = stepper.initialize(State.create(f))
    f_bad = f.copy()  # (State.create may share f's memory on the CPU)
    f_bad[3, 0, 0, 10, 0, 0] = np.nan
    bad = state.replace(f=(jnp.asarray(f_bad),))
    with pytest.raises(NumericalError, match="non-finite"):
        stepper.rollout(bad, 3, 1)
    _, series = stepper.rollout(bad, 3, 1, check_finite=False)
    assert not np.isfinite(np.asarray(series["mass"])).any()
    _, good = stepper.rollout(state, 3, 1)  # a finite run passes the check
    assert np.isfinite(np.asarray(good["mass"])).all()
