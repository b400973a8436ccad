"""Free streaming (faiser.vlasov.translate and the stepper with no forces) against exact solutions.

Expected values are exact: cell averages of f0(x - v t, v) from ``analytic_free_streaming``,
np.roll for integer shifts, conservation. Errors are measured, never compared with stored runs.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faiser.cases import build_case
from faiser.cases.electrostatic import FreeStreamingConfig, analytic_free_streaming
from faiser.errors import TimeStepError
from faiser.grid import PhaseSpaceGrid
from faiser.vlasov.fields import PrescribedFields
from faiser.vlasov.state import ELECTRON, State
from faiser.vlasov.stepper import Stepper
from faiser.vlasov.translate import cfl_number, translate

_translate = jax.jit(translate, static_argnames=("grid", "scheme", "bounded", "limiter"))


@partial(jax.jit, static_argnames=("grid", "n", "scheme"))
def _stream(f, grid, dt, n, scheme):
    """n translations by dt (flux form, CFL < 1)."""
    return jax.lax.fori_loop(0, n, lambda i, g: translate(g, grid, dt, scheme), f)


def _rel_errors(f, exact):
    f, exact = np.asarray(f, np.float64), np.asarray(exact, np.float64)
    l1 = np.abs(f - exact).sum() / np.abs(exact).sum()
    l2 = math.sqrt(((f - exact) ** 2).sum() / (exact**2).sum())
    return l1, l2


def _free_streaming_run(nx: int, dt: float):
    """Stepper (PPM, extremum-preserving limiter) to t = 2 from exact cell averages at t = 0.

    The run starts from the exact cell averages (``analytic_free_streaming`` at t = 0), not from
    the case's point-sampled initial condition, so the error is that of the stepper alone.
    Returns the relative (L1, L2) errors and the CFL number of a full step.
    """
    cfg = FreeStreamingConfig(nx=nx, nv=16, dt=dt, t_end=2.0, dtype="float64")
    case = build_case("free_streaming", cfg)
    assert case.n_steps == round(2.0 / dt)
    state = case.state.replace(f=(jnp.asarray(analytic_free_streaming(cfg, case.grid, 0.0)),))
    final = case.stepper.advance(state, case.n_steps)
    f = np.asarray(final.f[0])
    assert f.dtype == np.float64
    np.testing.assert_allclose(float(final.time), 2.0, rtol=1e-12)
    # conservation (periodic box) and positivity
    np.testing.assert_allclose(f.sum(), np.asarray(state.f[0]).sum(), rtol=1e-13)
    assert f.min() >= 0.0
    return _rel_errors(f, analytic_free_streaming(cfg, case.grid, float(final.time))), case.stepper.cfl


def test_free_streaming_converges_at_third_order_with_ppm():
    """Default scheme: observed order >= 2.5 in L1 and L2 with CFL ~0.9 (nx = 32, 64, 128)."""
    with jax.enable_x64(True):
        results = [_free_streaming_run(nx, 2.0 / nx) for nx in (32, 64, 128)]
    errs = np.array([r[0] for r in results])  # (resolution, [L1, L2])
    assert all(0.5 < r[1] < 1.0 for r in results)  # CFL below 1, the same at every resolution
    order = np.log2(errs[:-1] / errs[1:])
    assert np.all(order >= 2.5), (errs, order)
    assert errs[0, 0] < 1e-4, errs


def test_free_streaming_converges_at_second_order_with_plm():
    """PLM (monotonized-central slopes, clipped at extrema) by translate alone: L1 order >= 1.8,
    L2 >= 1.7 (the clipped extrema cost a little in L2)."""
    errs = []
    with jax.enable_x64(True):
        for nx in (32, 64, 128):
            cfg = FreeStreamingConfig(nx=nx, nv=16, dtype="float64")
            grid = PhaseSpaceGrid.make_1d1v(nx, 2 * math.pi / cfg.k, cfg.nv, cfg.vmax)
            f0 = jnp.asarray(analytic_free_streaming(cfg, grid, 0.0))
            assert cfl_number(grid, 2.0 / nx) < 1.0
            f = np.asarray(_stream(f0, grid, 2.0 / nx, nx, "plm"))
            np.testing.assert_allclose(f.sum(), float(jnp.sum(f0)), rtol=1e-13)
            errs.append(_rel_errors(f, analytic_free_streaming(cfg, grid, 2.0)))
    errs = np.array(errs)
    order = np.log2(errs[:-1] / errs[1:])
    assert np.all(order[:, 0] >= 1.8), (errs, order)
    assert np.all(order[:, 1] >= 1.7), (errs, order)


def test_cfl_number_is_largest_cell_centre_shift():
    grid = PhaseSpaceGrid.make((10, 20, 1), (5.0, 4.0, 1.0), (8, 6, 1), (4.0, 3.0, 1.0))
    # centres: vx up to 3.5 (dx 0.5), vy up to 2.5 (dy 0.2); z is unresolved
    assert cfl_number(grid, 0.1) == pytest.approx(max(3.5 * 0.1 / 0.5, 2.5 * 0.1 / 0.2))
    assert cfl_number(grid, -0.1) == pytest.approx(cfl_number(grid, 0.1))


def test_time_step_crossing_the_domain_is_rejected():
    grid = PhaseSpaceGrid.make_1d1v(16, 16.0, 8, 4.0)  # dx = 1, |v| up to 3.5
    Stepper(grid, (ELECTRON,), PrescribedFields(), dt=4.0)  # 14 cells per step: allowed
    with pytest.raises(TimeStepError):
        Stepper(grid, (ELECTRON,), PrescribedFields(), dt=5.0)  # 17.5 cells > 16


# ---------------------------------------------------------------------------------------------
# integer shifts: exact
# ---------------------------------------------------------------------------------------------


def _rolled(f, grid, cells_per_unit_v):
    """f with every velocity row rolled by v_x * cells_per_unit_v cells along x (and y)."""
    out = np.array(f)
    for d in grid.spatial_dims:
        v = grid.v_centers(d) * cells_per_unit_v
        assert np.all(v == np.round(v))
        for i, k in enumerate(v.astype(int)):
            idx = [slice(None)] * 6
            idx[3 + d] = slice(i, i + 1)
            out[tuple(idx)] = np.roll(out[tuple(idx)], k, axis=d)
    return out


@pytest.mark.parametrize(
    "nv, vmax, schemes, dtype",
    [(8, 4.0, ("ppm", "plm"), np.float32), (7, 3.5, ("ppm", "plm"), np.float32), (8, 4.0, ("ppm",), np.float64)],
    ids=["half-integer-v", "with-v0", "float64"],
)
def test_integer_shift_free_streaming_is_exact_roll(nv, vmax, schemes, dtype):
    """dx = dv = 1: v dt / dx is an integer (up to +-21 cells) for every velocity row."""
    grid = PhaseSpaceGrid.make_1d1v(32, 32.0, nv, vmax)
    assert grid.dx[0] == 1.0 and grid.dv[0] == 1.0
    rng = np.random.default_rng(nv)
    f = (10.0 ** rng.uniform(-15, 0, grid.shape)).astype(dtype)
    f[rng.random(grid.shape) < 0.2] = 0.0
    dts = (2.0, 6.0, -4.0) if nv % 2 == 0 else (1.0, 3.0, -5.0)
    with jax.enable_x64(dtype == np.float64):
        for scheme in schemes:
            for dt in dts:
                out = np.asarray(_translate(jnp.asarray(f), grid, dt, scheme=scheme, bounded=False))
                assert out.dtype == dtype
                np.testing.assert_array_equal(out, _rolled(f, grid, dt), err_msg=f"{scheme} dt={dt}")


def test_stepper_with_integer_shifts_is_exact():
    """The whole Strang step with no forces (T(dt/2) A T(dt/2), halves merged): still a roll."""
    grid = PhaseSpaceGrid.make_1d1v(32, 32.0, 8, 4.0)  # dx = dv = 1, v = -3.5 .. 3.5
    rng = np.random.default_rng(0)
    f = rng.uniform(0.0, 1.0, grid.shape).astype(np.float32)
    stepper = Stepper(grid, (ELECTRON,), PrescribedFields(), dt=4.0)  # half steps: odd shifts
    state = stepper.initialize(State.create(jnp.asarray(f)))
    final = stepper.advance(state, 3)
    np.testing.assert_array_equal(np.asarray(final.f[0]), _rolled(f, grid, 12.0))
    assert float(final.time) == 12.0


def _grid_2d():
    """16 x 16 cells of size 1; vx, vy in {-1.5, -0.5, 0.5, 1.5}; vz unresolved."""
    return PhaseSpaceGrid.make((16, 16, 1), (16.0, 16.0, 1.0), (4, 4, 1), (2.0, 2.0, 1.0))


def test_2d_integer_shifts_are_exact_rolls_along_both_axes():
    grid = _grid_2d()
    assert grid.shape == (16, 16, 1, 4, 4, 1) and grid.spatial_dims == (0, 1)
    rng = np.random.default_rng(2)
    f = rng.uniform(0.0, 1.0, grid.shape).astype(np.float32)
    for dt in (2.0, -6.0):  # shifts of +-1, +-3 (and +-3, +-9) cells
        out = np.asarray(_translate(jnp.asarray(f), grid, dt, bounded=False))
        np.testing.assert_array_equal(out, _rolled(f, grid, dt))


@partial(jax.jit, static_argnames=("grid",))
def _2d_runs(f, grid):
    return {
        "20 flux-form steps": jax.lax.fori_loop(0, 20, lambda i, g: translate(g, grid, 0.37), f),  # CFL 0.555
        "one any-shift remap": translate(f, grid, 20 * 0.37, bounded=False),
        "flux form": translate(f, grid, 0.37, bounded=True),
        "any-shift form": translate(f, grid, 0.37, bounded=False),
    }


def test_2d_translation_conserves_mass_and_positivity():
    grid = _grid_2d()
    rng = np.random.default_rng(4)
    f = 10.0 ** rng.uniform(-12, 0, grid.shape)
    f[rng.random(grid.shape) < 0.25] = 0.0
    with jax.enable_x64(True):
        outs = {k: np.asarray(v) for k, v in _2d_runs(jnp.asarray(f), grid).items()}
    for key, out in outs.items():
        np.testing.assert_allclose(out.sum(), f.sum(), rtol=1e-13, err_msg=key)
        # each velocity cell's mass is conserved separately (translation moves only in space)
        np.testing.assert_allclose(out.sum(axis=(0, 1, 2)), f.sum(axis=(0, 1, 2)), rtol=1e-12, err_msg=key)
        assert out.min() >= -1e-14 * f.max(), key
    np.testing.assert_allclose(outs["any-shift form"], outs["flux form"], rtol=1e-12, atol=1e-15)


def test_2d_translation_of_a_y_uniform_profile_is_the_1d_translation():
    """With no y structure, 2D free streaming reduces to the 1D shear along x."""
    grid2 = _grid_2d()
    grid1 = PhaseSpaceGrid.make((16, 1, 1), (16.0, 1.0, 1.0), (4, 4, 1), (2.0, 2.0, 1.0))
    x = grid1.x_centers(0)
    fx = (1.0 + 0.5 * np.sin(2 * np.pi * x / 16.0))[:, None, None, None, None, None]
    fv = np.exp(-0.5 * (grid1.v_mesh(0) ** 2 + grid1.v_mesh(1) ** 2))
    f1 = np.broadcast_to(fx * fv, grid1.shape)
    f2 = np.broadcast_to(f1, grid2.shape)
    with jax.enable_x64(True):
        out1 = np.asarray(_translate(jnp.asarray(f1), grid1, 0.45))
        out2 = np.asarray(_translate(jnp.asarray(f2), grid2, 0.45))
    np.testing.assert_allclose(out2, np.broadcast_to(out1, grid2.shape), rtol=1e-13)


# ---------------------------------------------------------------------------------------------
# boundaries
# ---------------------------------------------------------------------------------------------


def test_outflow_boundaries_keep_a_uniform_plasma_uniform():
    grid = PhaseSpaceGrid.make_1d1v(24, 12.0, 10, 5.0, boundaries="outflow")
    f = np.broadcast_to(np.exp(-0.5 * grid.v_mesh(0) ** 2), grid.shape).astype(np.float32)
    for dt, bounded in ((0.1, True), (-0.09, True), (0.7, False), (-2.3, False)):
        out = np.asarray(_translate(jnp.asarray(f), grid, dt, bounded=bounded))
        np.testing.assert_allclose(out, f, rtol=2e-6)


def test_inflow_boundary_needs_ghost_values_and_fills_the_box():
    boundaries = (("inflow", "outflow"), "periodic", "periodic")
    grid = PhaseSpaceGrid.make((32, 1, 1), (32.0, 1.0, 1.0), (8, 1, 1), 4.0, boundaries=boundaries)
    with pytest.raises(ValueError, match="inflow"):
        translate(jnp.zeros(grid.shape), grid, 0.2)
    with jax.enable_x64(True):
        ghost = jnp.asarray(np.exp(-0.5 * (grid.v_mesh(0) - 1.0) ** 2)[:1])  # (1, 1, 1, nv, 1, 1)
        f = jnp.zeros(grid.shape)
        dt = 0.25
        step = jax.jit(lambda g: translate(g, grid, dt, inflow={(0, 0): ghost}))
        for k in range(1, 11):
            f = step(f)
            # what entered: ghost * v dt / dx per row with v > 0; rows with v < 0 stay empty
            v = grid.v_centers(0)
            entered = np.asarray(ghost).reshape(-1) * np.maximum(v, 0.0) * dt * k
            np.testing.assert_allclose(np.asarray(f).sum(axis=(0, 1, 2, 4, 5)), entered, rtol=1e-12, atol=1e-300)
    out = np.asarray(f)
    assert out.min() >= 0.0
    assert np.all(out[:, 0, 0, :, 0, 0] <= np.asarray(ghost).reshape(1, -1) * (1 + 1e-12))
