"""Tests of Vlasiator's sparse velocity-space rule (faiser.vlasov.sparsity)."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faiser.errors import ConfigError
from faiser.grid import PhaseSpaceGrid
from faiser.vlasov.sparsity import WID, apply_threshold, block_layout, block_mask


def _reference_block_mask(f: np.ndarray, f_min: float, block: int = WID) -> np.ndarray:
    """Slow loop-based reference of the rule (test only)."""
    nv = f.shape[3:]
    ext = [min(block, n) for n in nv]
    nb = [math.ceil(n / e) for n, e in zip(nv, ext)]
    content = np.zeros(f.shape[:3] + tuple(nb), bool)
    for b in itertools.product(*(range(n) for n in nb)):
        sl = tuple(slice(bi * e, (bi + 1) * e) for bi, e in zip(b, ext))
        content[(..., *b)] = np.any(f[(..., *sl)] >= f_min, axis=(-3, -2, -1))
    kept = np.zeros_like(content)
    for b in itertools.product(*(range(n) for n in nb)):
        for d in itertools.product((-1, 0, 1), repeat=3):
            nbr = tuple(bi + di for bi, di in zip(b, d))
            if all(0 <= x < n for x, n in zip(nbr, nb)):
                kept[(..., *b)] |= content[(..., *nbr)]
    return kept


def _grid(nx=(1, 1, 1), nv=(16, 16, 16), vmax=4.0) -> PhaseSpaceGrid:
    return PhaseSpaceGrid.make(nx=nx, length=2.0, nv=nv, vmax=vmax)


def _spike(nv, cell, nx=(1, 1, 1)) -> np.ndarray:
    f = np.zeros((*nx, *nv), np.float32)
    f[(0, 0, 0, *cell)] = 1.0
    return f


def test_block_layout():
    assert block_layout((16, 10, 1)) == ((4, 4, 1), (4, 3, 1))
    assert block_layout((3, 4, 5), block=4) == ((3, 4, 4), (1, 1, 2))
    with pytest.raises(ConfigError):
        block_layout((4, 4, 4), block=0)


def test_interior_spike_keeps_27_blocks():
    nv = (20, 20, 20)  # 5 blocks per axis; block (2, 2, 2) is interior
    f = _spike(nv, (9, 10, 11))
    mask = np.asarray(block_mask(jnp.asarray(f), 0.5))
    assert mask.shape == (1, 1, 1, 5, 5, 5)
    assert mask.sum() == 27
    assert mask[0, 0, 0, 1:4, 1:4, 1:4].all()
    grid = _grid(nv=nv)
    f_new, removed = apply_threshold(jnp.asarray(f), 0.5, grid)
    np.testing.assert_array_equal(np.asarray(f_new), f)
    assert float(removed) == 0.0


@pytest.mark.parametrize(
    "cell, expected",
    [((0, 0, 0), 8), ((0, 9, 9), 18), ((0, 0, 10), 12), ((19, 19, 19), 8)],
)
def test_edge_spike_keeps_fewer_blocks(cell, expected):
    f = _spike((20, 20, 20), cell)
    mask = np.asarray(block_mask(jnp.asarray(f), 0.5))
    assert mask.sum() == expected
    np.testing.assert_array_equal(mask, _reference_block_mask(f, 0.5))


def test_neighbour_values_below_threshold_are_kept_far_cells_removed():
    nv = (20, 20, 20)
    grid = _grid(nv=nv)
    f = _spike(nv, (9, 10, 11))
    f[0, 0, 0, 4, 4, 4] = 1e-9  # in a neighbour block (1, 1, 1): kept although below f_min
    f[0, 0, 0, 19, 0, 0] = 1e-9  # in block (4, 0, 0): far, removed
    f_new, removed = apply_threshold(jnp.asarray(f), 0.5, grid)
    f_new = np.asarray(f_new)
    assert f_new[0, 0, 0, 4, 4, 4] == np.float32(1e-9)
    assert f_new[0, 0, 0, 19, 0, 0] == 0.0
    np.testing.assert_allclose(float(removed), 1e-9 * grid.phase_cell_volume, rtol=1e-6)


def test_spatial_cells_are_independent():
    nv = (12, 12, 12)
    f = np.zeros((3, 2, 1, *nv), np.float32)
    f[0, 0, 0, 0, 0, 0] = 1.0
    f[2, 1, 0, 11, 11, 11] = 1.0
    mask = np.asarray(block_mask(jnp.asarray(f), 0.5))
    assert mask.shape == (3, 2, 1, 3, 3, 3)
    assert mask[0, 0, 0].sum() == 8 and mask[2, 1, 0].sum() == 8
    assert mask.sum() == 16
    assert mask[0, 0, 0, 0, 0, 0] and mask[2, 1, 0, 2, 2, 2]
    assert not mask[0, 0, 0, 2, 2, 2] and not mask[2, 1, 0, 0, 0, 0]


def _maxwellian(grid: PhaseSpaceGrid, vth: float = 0.5) -> jnp.ndarray:
    v2 = sum(grid.v_mesh(d) ** 2 for d in range(3))
    f = np.exp(-v2 / (2 * vth**2)) / (2 * np.pi * vth**2) ** 1.5
    return jnp.asarray(np.broadcast_to(f, grid.shape), dtype=jnp.float32)


def test_maxwellian_mass_bookkeeping():
    grid = _grid(nx=(2, 1, 1), nv=(32, 32, 32), vmax=4.0)
    f = _maxwellian(grid)
    f_min = 1e-6 * float(jnp.max(f))
    f_new, removed = apply_threshold(f, f_min, grid)
    f_np, f_new_np = np.asarray(f, np.float64), np.asarray(f_new, np.float64)
    zeroed = (f_new_np == 0) & (f_np != 0)
    assert zeroed.any()  # the corners of the box are far out in the tail
    mass_zeroed = f_np[zeroed].sum() * grid.phase_cell_volume
    mass_before = f_np.sum() * grid.phase_cell_volume
    mass_after = f_new_np.sum() * grid.phase_cell_volume
    np.testing.assert_allclose(float(removed), mass_zeroed, rtol=1e-5)
    assert 0 < float(removed) < 1e-6 * mass_before
    np.testing.assert_allclose(mass_after + float(removed), mass_before, rtol=1e-6)
    # surviving cells are unchanged; cells >= f_min are all kept
    kept = f_new_np != 0
    np.testing.assert_array_equal(f_new_np[kept], f_np[kept])
    assert np.all(f_new_np[f_np >= f_min] == f_np[f_np >= f_min])
    # cells below f_min survive in kept blocks (Vlasiator's rule)
    assert np.any(kept & (f_np < f_min))


_SHAPES = [(1, 1, 1, 8, 8, 8), (2, 1, 1, 10, 7, 1), (1, 2, 1, 5, 13, 4), (3, 1, 1, 16, 1, 1)]


@settings(max_examples=40, deadline=None)
@given(
    shape=st.sampled_from(_SHAPES),
    seed=st.integers(0, 2**32 - 1),
    quantile=st.floats(0.0, 1.0),
    log_range=st.floats(0.0, 12.0),
)
def test_cells_above_threshold_never_removed(shape, seed, quantile, log_range):
    rng = np.random.default_rng(seed)
    f = (10.0 ** (-log_range * rng.random(shape))).astype(np.float32)
    f *= rng.random(shape) < 0.7  # some exact zeros
    f_min = float(np.quantile(f, quantile)) * 1.0001 + 1e-30
    grid = _grid(nx=shape[:3], nv=shape[3:])
    f_new, removed = apply_threshold(jnp.asarray(f), f_min, grid)
    f_new = np.asarray(f_new)
    above = f >= np.float32(f_min)
    np.testing.assert_array_equal(f_new[above], f[above])
    # every cell either keeps its value or is zeroed
    assert np.all((f_new == f) | (f_new == 0))
    # exact agreement with the loop reference, and the removed-mass bookkeeping
    ref = _reference_block_mask(f, np.float32(f_min))
    np.testing.assert_array_equal(np.asarray(block_mask(jnp.asarray(f), f_min)), ref)
    expect = (f.astype(np.float64) - f_new).sum() * grid.phase_cell_volume
    np.testing.assert_allclose(float(removed), expect, rtol=1e-5, atol=1e-30)


def test_non_divisible_nv():
    nv = (10, 10, 10)  # blocks of 4, 4, 2 cells: 3 blocks per axis
    grid = _grid(nv=nv)
    f = _spike(nv, (9, 9, 9))
    f[0, 0, 0, 0, 0, 0] = 0.25  # block (0, 0, 0): not adjacent to the partial block (2, 2, 2)
    f[0, 0, 0, 5, 5, 5] = 0.25  # block (1, 1, 1): adjacent, kept
    mask = np.asarray(block_mask(jnp.asarray(f), 0.5))
    assert mask.shape == (1, 1, 1, 3, 3, 3)
    assert mask.sum() == 8 and mask[0, 0, 0, 1:, 1:, 1:].all()
    f_new, removed = apply_threshold(jnp.asarray(f), 0.5, grid)
    f_new = np.asarray(f_new)
    assert f_new.shape == f.shape
    assert f_new[0, 0, 0, 9, 9, 9] == 1.0 and f_new[0, 0, 0, 5, 5, 5] == 0.25
    assert f_new[0, 0, 0, 0, 0, 0] == 0.0
    np.testing.assert_allclose(float(removed), 0.25 * grid.phase_cell_volume, rtol=1e-6)


def test_1d1v_small_axes():
    grid = PhaseSpaceGrid.make_1d1v(nx=3, length=1.0, nv=18, vmax=3.0)
    f = np.zeros(grid.shape, np.float32)
    f[1, 0, 0, 17, 0, 0] = 1.0  # last (partial, 2-cell) block
    f[1, 0, 0, 0, 0, 0] = 0.1
    mask = np.asarray(block_mask(jnp.asarray(f), 0.5))
    assert mask.shape == (3, 1, 1, 5, 1, 1)
    np.testing.assert_array_equal(mask[1, 0, 0, :, 0, 0], [False, False, False, True, True])
    assert not mask[0].any() and not mask[2].any()
    f_new, removed = apply_threshold(jnp.asarray(f), 0.5, grid)
    assert float(f_new[1, 0, 0, 0, 0, 0]) == 0.0
    np.testing.assert_allclose(float(removed), 0.1 * grid.phase_cell_volume, rtol=1e-6)


def test_jit_with_traced_f_min():
    grid = _grid(nx=(2, 1, 1), nv=(12, 12, 12))
    f = _maxwellian(grid)
    traces = []

    def counted(f, f_min, grid):
        traces.append(1)
        return apply_threshold(f, f_min, grid)

    fn = jax.jit(counted, static_argnames="grid")
    fmax = float(jnp.max(f))
    for f_min in (1e-3 * fmax, 1e-1 * fmax, 0.0, -1.0):
        got, rem = fn(f, jnp.float32(f_min), grid=grid)
        want, rem_want = apply_threshold(f, f_min, grid)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
        np.testing.assert_allclose(float(rem), float(rem_want), rtol=1e-6)
    assert len(traces) == 1  # one trace for every traced threshold
    # traced f_min <= 0 keeps everything, including tiny negative rounding values
    f_neg = f.at[0, 0, 0, 0, 0, 0].set(-1e-12)
    got, rem = fn(f_neg, jnp.float32(0.0), grid=grid)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(f_neg))
    assert float(rem) == 0.0
    mask = jax.jit(block_mask, static_argnames="block")(f_neg, jnp.float32(0.0))
    assert bool(jnp.all(mask))


@pytest.mark.parametrize("f_min", [0.0, -1.0, 0])
def test_nonpositive_f_min_is_identity(f_min):
    grid = _grid(nv=(8, 8, 8))
    f = _maxwellian(grid).at[0, 0, 0, 0, 0, 0].set(-1e-12)
    f_new, removed = apply_threshold(f, f_min, grid)
    np.testing.assert_array_equal(np.asarray(f_new), np.asarray(f))
    assert float(removed) == 0.0
    assert bool(jnp.all(block_mask(f, f_min)))


def test_shape_errors():
    grid = _grid(nv=(8, 8, 8))
    with pytest.raises(ConfigError):
        apply_threshold(jnp.zeros((1, 1, 1, 8, 8, 4)), 0.1, grid)
    with pytest.raises(ConfigError):
        block_mask(jnp.zeros((8, 8, 8)), 0.1)
