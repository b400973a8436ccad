"""Numerical properties of the conservative 1D remap (faiser.vlasov.remap).

Every expected value here comes from the physics of the map (exact cell averages of the mapped
density, conservation, np.roll for integer shifts), never from stored outputs of the code.
Index coordinates: cell ``i`` of a line spans ``[i, i + 1]``; a shift ``s`` moves content
towards higher indices; ``remap_affine`` maps ``xi -> a xi + c`` so a target cell's value is the
integral of the source density over its pre-image ``[(j - c) / a, (j + 1 - c) / a]``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import erf, erfc

from faiser.vlasov.remap import remap_affine, remap_shift

SCHEMES = ("ppm", "plm")
N = 48  # cells per line in the randomized tests (one shape keeps the eager-op caches warm)


@pytest.fixture
def x64():
    """float64 for one test; the previous setting is restored afterwards."""
    with jax.enable_x64(True):
        yield


def _profile(seed: int, kind: str, shape=(N,)) -> np.ndarray:
    """Random non-negative line profiles (float64 numpy; cast by the caller)."""
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return rng.uniform(0.0, 1.0, shape)
    if kind == "logspan":  # values spanning 15 orders of magnitude
        return 10.0 ** rng.uniform(-15.0, 0.0, shape)
    if kind == "holes":  # log-spanning with exact zeros: discontinuities everywhere
        f = 10.0 ** rng.uniform(-15.0, 0.0, shape)
        f[rng.random(shape) < 0.3] = 0.0
        return f
    if kind == "steps":  # piecewise constant with jumps of many orders of magnitude
        n = shape[-1]
        edges = np.sort(rng.integers(0, n, 4))
        levels = 10.0 ** rng.uniform(-12.0, 0.0, 5)
        levels[rng.random(5) < 0.3] = 0.0
        line = np.concatenate([np.full(k, lv) for k, lv in zip(np.diff([0, *edges, n]), levels)])
        return np.broadcast_to(line, shape).copy()
    raise ValueError(kind)


def _gauss_integral(a, b):
    """Integral of exp(-x^2 / 2) over [a, b] (float64), accurate to relative rounding in both tails.

    Uses erfc of the side away from the centre, so values near 1e-30 are not differences of
    numbers near 1.
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    c, r2 = math.sqrt(math.pi / 2), math.sqrt(2.0)
    right = c * (erfc(a / r2) - erfc(b / r2))
    left = c * (erfc(-b / r2) - erfc(-a / r2))
    mid = c * (2.0 - erfc(-a / r2) - erfc(b / r2))
    return np.where(a >= 0, right, np.where(b <= 0, left, mid))


def _box_overlap(lo, hi, p, q):
    """Length of [lo, hi] intersected with [p, q] (elementwise)."""
    return np.maximum(0.0, np.minimum(hi, q) - np.maximum(lo, p))


# ---------------------------------------------------------------------------------------------
# shift == affine with unit stretch; bounded == gather
# ---------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    shift=st.one_of(
        st.floats(-60.0, 60.0, allow_nan=False, allow_infinity=False),
        st.sampled_from([37.3, -37.3, 1.5, -1.5, 0.999, -0.999, 47.9, -59.25]),
    ),
    scheme=st.sampled_from(SCHEMES),
)
def test_shift_matches_unit_stretch_affine_periodic(seed, shift, scheme):
    f = jnp.asarray(_profile(seed, "uniform", (4, N)), jnp.float32)
    s = jnp.asarray([[shift], [-shift], [0.37 * shift], [shift + 0.5]], jnp.float32)  # a shear
    a = np.asarray(remap_shift(f, s, 1, "periodic", "periodic", scheme))
    b = np.asarray(remap_affine(f, 1.0, s, 1, "periodic", "periodic", scheme))
    # The affine kernel works with absolute index positions j - offset: float32 rounding of
    # positions of size N + |shift| (not an error of the method).
    tol = 4 * np.finfo(np.float32).eps * (N + abs(shift) + 1) * float(jnp.max(f))
    np.testing.assert_allclose(a, b, rtol=0, atol=tol)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_shift_matches_unit_stretch_affine_float64_shear(x64, scheme):
    """Per-line shifts (a shear) of every size on every boundary kind; float64, to 1e-12."""
    rng = np.random.default_rng(7)
    f = jnp.asarray(rng.uniform(0.0, 1.0, (12, 40)))
    shifts = np.array([37.3, -37.3, 0.25, -0.25, 3.5, -3.5, 1e-9, 79.999, -81.01, 0.0, 5.0, -12.75])
    shifts = jnp.asarray(shifts[:, None])
    for bc in ("periodic", "open", "copy"):
        a = np.asarray(remap_shift(f, shifts, 1, bc, bc, scheme))
        b = np.asarray(remap_affine(f, 1.0, shifts, 1, bc, bc, scheme))
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12, err_msg=bc)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    kind=st.sampled_from(["uniform", "holes", "steps"]),
    scheme=st.sampled_from(SCHEMES),
    bc=st.sampled_from(["periodic", "open", "copy"]),
)
def test_bounded_path_matches_gather_path(seed, kind, scheme, bc):
    rng = np.random.default_rng(seed)
    f = jnp.asarray(_profile(seed, kind, (4, N)), jnp.float32)
    shift = rng.uniform(-0.999, 0.999, (4, 1))
    shift[0, 0], shift[1, 0] = 0.0, -0.5  # whole parts 0 and -1 both present
    shift = jnp.asarray(shift, jnp.float32)
    a = np.asarray(remap_shift(f, shift, 1, bc, bc, scheme, bounded=True))
    b = np.asarray(remap_shift(f, shift, 1, bc, bc, scheme, bounded=False))
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7 * float(jnp.max(f)))


# ---------------------------------------------------------------------------------------------
# integer shifts are exact
# ---------------------------------------------------------------------------------------------


def _roll_lines(f, ks, fill=None):
    """np.roll of each line (last axis) by ks[line]; with ``fill`` (left, right) non-periodic."""
    out = np.empty_like(f)
    for i, k in enumerate(ks):
        out[i] = np.roll(f[i], k)
        if fill is not None and k > 0:
            out[i, :k] = fill[0][i]
        elif fill is not None and k < 0:
            out[i, k:] = fill[1][i]
    return out


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("ks", [(0, 1, -1, 2), (-3, 7, -13, 37), (-48, 48, 100, -101)])
def test_integer_shift_is_exact_roll_periodic(scheme, ks):
    f = _profile(sum(map(abs, ks)), "holes", (4, N)).astype(np.float32)
    expect = _roll_lines(f, ks)
    s = jnp.asarray(np.array(ks, np.float32)[:, None])
    out = np.asarray(remap_shift(jnp.asarray(f), s, 1, "periodic", "periodic", scheme))
    np.testing.assert_array_equal(out, expect)
    out = np.asarray(remap_affine(jnp.asarray(f), 1.0, s, 1, "periodic", "periodic", scheme))
    np.testing.assert_array_equal(out, expect)
    out = np.asarray(remap_shift(jnp.asarray(f), 0.0, 1, "periodic", "periodic", scheme, bounded=True))
    np.testing.assert_array_equal(out, f)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_integer_shift_per_line_shear_is_exact_along_axis0(scheme):
    """Different integer shifts per line, remapping along the first axis of a 2D block."""
    f = _profile(11, "logspan", (9, N)).astype(np.float32)
    ks = [-40, -7, -2, -1, 0, 1, 2, 7, 40]
    s = jnp.asarray(np.array(ks, np.float32)[None, :])
    out = np.asarray(remap_shift(jnp.asarray(f.T.copy()), s, 0, "periodic", "periodic", scheme))
    np.testing.assert_array_equal(out, _roll_lines(f, ks).T)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_integer_shift_open_and_copy_fill(scheme):
    f = _profile(5, "uniform", (4, N)).astype(np.float32)
    ks = (3, -2, -5, 10)
    s = jnp.asarray(np.array(ks, np.float32)[:, None])
    zeros = (np.zeros(4), np.zeros(4))
    out = np.asarray(remap_shift(jnp.asarray(f), s, 1, "open", "open", scheme))
    np.testing.assert_array_equal(out, _roll_lines(f, ks, zeros))
    out = np.asarray(remap_shift(jnp.asarray(f), s, 1, "copy", "copy", scheme))
    np.testing.assert_array_equal(out, _roll_lines(f, ks, (f[:, 0], f[:, -1])))


# ---------------------------------------------------------------------------------------------
# conservation
# ---------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    kind=st.sampled_from(["uniform", "logspan", "holes", "steps"]),
    scheme=st.sampled_from(SCHEMES),
    scale=st.sampled_from([1.0, 60.0]),
)
def test_periodic_shift_conserves_mass(seed, kind, scheme, scale):
    rng = np.random.default_rng(seed)
    f = jnp.asarray(_profile(seed, kind, (4, N)), jnp.float32)
    shift = jnp.asarray(rng.uniform(-scale, scale, (4, 1)), jnp.float32)  # a shear across lines
    out = remap_shift(f, shift, 1, "periodic", "periodic", scheme)
    before = np.asarray(f, np.float64).sum(axis=1)
    after = np.asarray(out, np.float64).sum(axis=1)
    np.testing.assert_allclose(after, before, rtol=1e-6)
    out = remap_affine(f, 1.0, shift, 1, "periodic", "periodic", scheme)
    np.testing.assert_allclose(np.asarray(out, np.float64).sum(axis=1), before, rtol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    kind=st.sampled_from(["uniform", "logspan", "holes", "steps"]),
    scheme=st.sampled_from(SCHEMES),
    stretch=st.floats(0.7, 1.4),
    where=st.floats(0.0, 1.0),
)
def test_stretch_conserves_mass_on_open_line(seed, kind, scheme, stretch, where):
    """Support in cells [16, 32) of 48; the image [16 a + c, 32 a + c] stays inside [2, 46]."""
    p, q = 16, 32
    f = np.zeros((4, N))
    f[:, p:q] = _profile(seed, kind, (4, q - p))
    # per-line stretches around the drawn one: a shear with stretch
    a = np.clip(stretch * np.array([1.0, 1.05, 0.95, 1.1]), 0.7, 1.4)[:, None]
    c_lo, c_hi = 2.0 - p * a, (N - 2.0) - q * a
    off = c_lo + where * (c_hi - c_lo)
    fj = jnp.asarray(f, jnp.float32)
    out = remap_affine(fj, jnp.asarray(a, jnp.float32), jnp.asarray(off, jnp.float32), 1, "open", "open", scheme)
    out = np.asarray(out, np.float64)
    np.testing.assert_allclose(out.sum(axis=1), np.asarray(fj, np.float64).sum(axis=1), rtol=1e-6)
    # nothing lands outside the image of the support (a margin for float32 positions)
    lo, hi = p * a + off, q * a + off
    j = np.arange(N)[None, :]
    outside = (j + 1 < lo - 1e-3) | (j > hi + 1e-3)
    assert np.all(out[outside] == 0.0)


# ---------------------------------------------------------------------------------------------
# positivity
# ---------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    kind=st.sampled_from(["uniform", "logspan", "holes", "steps"]),
    scheme=st.sampled_from(SCHEMES),
    bc=st.sampled_from(["periodic", "open", "copy"]),
    shift=st.floats(-50.0, 50.0),
    stretch=st.floats(0.7, 1.4),
)
def test_remap_keeps_f_non_negative(seed, kind, scheme, bc, shift, stretch):
    f = jnp.asarray(_profile(seed, kind, (4, N)), jnp.float32)
    floor = -1e-7 * float(jnp.max(f))
    rng = np.random.default_rng(seed)
    shifts = jnp.asarray(np.array([shift, -shift, 0.5 * shift, rng.uniform(-1, 1)])[:, None], jnp.float32)
    outs = {
        "shift": remap_shift(f, shifts, 1, bc, bc, scheme),
        "bounded": remap_shift(f, jnp.clip(shifts, -0.999, 0.999), 1, bc, bc, scheme, bounded=True),
        "affine": remap_affine(f, stretch, shifts, 1, bc, bc, scheme),
    }
    for name, out in outs.items():
        out = np.asarray(out)
        assert np.all(np.isfinite(out)), name
        assert out.min() >= floor, (name, out.min(), floor)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_repeated_remaps_stay_non_negative_over_15_decades(scheme):
    """100 successive random shifts/stretches of a line spanning 1e-15 .. 1 with zeros."""
    f = jnp.asarray(_profile(99, "holes", (4, N)), jnp.float32)
    fmax = float(jnp.max(f))
    rng = np.random.default_rng(1)
    step = jax.jit(
        lambda f, s, a: remap_affine(
            remap_shift(f, s, 1, "periodic", "periodic", scheme, bounded=True), a, 0.3, 1, "open", "open", scheme
        )
    )
    for _ in range(100):
        s = jnp.asarray(rng.uniform(-0.99, 0.99, (4, 1)), jnp.float32)
        a = jnp.asarray(rng.uniform(0.95, 1.05, (4, 1)), jnp.float32)
        f = step(f, s, a)
        assert float(jnp.min(f)) >= -1e-7 * fmax
    assert np.all(np.isfinite(np.asarray(f)))


# ---------------------------------------------------------------------------------------------
# accuracy in the tails (no cancellation of cumulative sums)
# ---------------------------------------------------------------------------------------------


def test_tail_cells_keep_relative_accuracy(x64):
    """A Gaussian whose far tails reach 1e-33, shifted by fractions of a cell (one per line).

    The cells whose exact average lies in [1e-30, 1e-20] must be reproduced to a relative error
    well below 1 (PPM ~1e-2 here). A remap differencing cumulative sums (of size ~1) would have
    absolute errors ~1e-16 and so relative errors ~1e4..1e14 there.
    """
    dx, x0, n = 0.1, -12.5, 250
    edges = x0 + dx * np.arange(n + 1)
    shifts = np.array([0.3, -0.45, 0.77])[:, None]
    f = np.broadcast_to(_gauss_integral(edges[:-1], edges[1:]) / dx, (3, n))
    exact = _gauss_integral(edges[:-1] - shifts * dx, edges[1:] - shifts * dx) / dx
    tail = (exact > 1e-30) & (exact < 1e-20)
    assert np.all(tail.sum(axis=1) >= 30)  # both tails are resolved
    fj, sj = jnp.asarray(f), jnp.asarray(shifts)
    for scheme, tol in (("ppm", 0.03), ("plm", 0.1)):
        for out in (
            remap_shift(fj, sj, 1, "open", "open", scheme),
            remap_shift(fj, sj, 1, "open", "open", scheme, bounded=True),
            remap_affine(fj, 1.0, sj, 1, "open", "open", scheme),
        ):
            out = np.asarray(out)
            assert out.dtype == np.float64
            rel = np.abs(out[tail] / exact[tail] - 1.0)
            assert rel.max() < tol, (scheme, rel.max())
            assert np.abs(out - exact).max() < 2e-3 * exact.max()  # and the bulk is accurate


def test_tail_accuracy_under_stretch(x64):
    """Stretched Gaussians: exact averages over the pre-images, tail cells 1e-30..1e-20."""
    dx, x0, n = 0.1, -12.5, 250
    edges = x0 + dx * np.arange(n + 1)
    f = np.broadcast_to(_gauss_integral(edges[:-1], edges[1:]) / dx, (2, n))
    a = np.array([0.9, 1.1])[:, None]
    c = 0.5 * n * (1.0 - a)  # keeps the centre (index n/2) fixed
    pre = x0 + dx * (np.arange(n + 1.0) - c) / a  # physical pre-image edges of the target cells
    exact = _gauss_integral(pre[:, :-1], pre[:, 1:]) / dx
    tail = (exact > 1e-30) & (exact < 1e-20)
    assert np.all(tail.sum(axis=1) >= 20)
    out = np.asarray(remap_affine(jnp.asarray(f), jnp.asarray(a), jnp.asarray(c), 1, "open", "open", "ppm"))
    rel = np.abs(out[tail] / exact[tail] - 1.0)
    assert rel.max() < 0.05, rel.max()


# ---------------------------------------------------------------------------------------------
# boundaries
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_open_boundary_loses_the_preimage_outside(scheme):
    """A box of height h in the last w cells, shifted right by s: it loses exactly s * h.

    (A box is reconstructed exactly by both limited schemes, so the remaining content is the
    exact cell averages of the shifted box.) Mirrored for the left edge with negative shifts.
    """
    w, h = 6, 3.0
    shifts = np.array([0.5, 0.25, 0.9, 2.75])[:, None]
    f = np.zeros((4, N), np.float32)
    f[:, N - w:] = h
    cells = np.arange(N)
    expect = h * _box_overlap(cells, cells + 1.0, N - w + shifts, N)
    for bounded in (False, True):
        s = np.minimum(shifts, 0.999) if bounded else shifts
        exp_b = h * _box_overlap(cells, cells + 1.0, N - w + s, N) if bounded else expect
        out = remap_shift(jnp.asarray(f), jnp.asarray(s, jnp.float32), 1, "open", "open", scheme, bounded=bounded)
        out = np.asarray(out, np.float64)
        np.testing.assert_allclose(out, exp_b, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(out.sum(axis=1), h * (w - s[:, 0]), rtol=1e-6)
        # left edge, shifting left
        out = remap_shift(jnp.asarray(f[:, ::-1].copy()), jnp.asarray(-s, jnp.float32), 1, "open", "open", scheme,
                          bounded=bounded)
        np.testing.assert_allclose(np.asarray(out), exp_b[:, ::-1], rtol=1e-6, atol=1e-6)


def _extend(f, m, left, right):
    """The line extended by m cells each side with what the boundary kind promises is outside."""
    def side(kind, edge):
        if isinstance(kind, str):
            return np.zeros((*f.shape[:-1], m)) if kind == "open" else np.repeat(edge, m, axis=-1)
        return np.repeat(np.broadcast_to(kind, edge.shape), m, axis=-1)

    return np.concatenate([side(left, f[..., :1]), f, side(right, f[..., -1:])], axis=-1)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    scheme=st.sampled_from(SCHEMES),
    left=st.sampled_from(["open", "copy", "inflow"]),
    right=st.sampled_from(["open", "copy", "inflow"]),
    shift=st.floats(-20.0, 20.0),
    stretch=st.floats(0.8, 1.25),
)
def test_boundary_equals_extended_line(seed, scheme, left, right, shift, stretch):
    with jax.enable_x64(True):
        _check_boundary_equals_extended_line(seed, scheme, left, right, shift, stretch)


def _check_boundary_equals_extended_line(seed, scheme, left, right, shift, stretch):
    """Non-periodic boundaries behave as if the line continued with the promised values.

    Remapping on a line extended by m cells of ghost content (zeros, the edge value, or the
    inflow value) gives the same values in the original window; for 'open', the mass lost is
    exactly the mass that ends up outside the window of the extended line.
    """
    rng = np.random.default_rng(seed)
    L, n, m = 3, 24, 64
    f = rng.uniform(0.0, 1.0, (L, n))
    ghosts = rng.uniform(0.0, 2.0, (2, L, 1))
    lk = ghosts[0] if left == "inflow" else left
    rk = ghosts[1] if right == "inflow" else right
    ext = _extend(f, m, lk, rk)
    s = jnp.asarray([[shift], [-shift], [0.37 * shift]])
    lj = jnp.asarray(lk) if left == "inflow" else lk
    rj = jnp.asarray(rk) if right == "inflow" else rk

    out = np.asarray(remap_shift(jnp.asarray(f), s, 1, lj, rj, scheme))
    ref = np.asarray(remap_shift(jnp.asarray(ext), s, 1, lj, rj, scheme))
    np.testing.assert_allclose(out, ref[:, m:m + n], rtol=1e-12, atol=1e-12)

    # affine map around the line's centre (offset chosen so the centre moves by `shift`)
    c = 0.5 * n * (1.0 - stretch) + s
    out = np.asarray(remap_affine(jnp.asarray(f), stretch, c, 1, lj, rj, scheme))
    c_ext = 0.5 * (n + 2 * m) * (1.0 - stretch) + s
    ref = np.asarray(remap_affine(jnp.asarray(ext), stretch, c_ext, 1, lj, rj, scheme))
    np.testing.assert_allclose(out, ref[:, m:m + n], rtol=1e-12, atol=1e-12)

    if left == right == "open":
        ref = np.asarray(remap_shift(jnp.asarray(ext), s, 1, "open", "open", scheme))
        lost = f.sum(axis=1) - remap_shift(jnp.asarray(f), s, 1, "open", "open", scheme).sum(axis=1)
        outside = ref[:, :m].sum(axis=1) + ref[:, m + n:].sum(axis=1)
        np.testing.assert_allclose(np.asarray(lost), outside, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ref.sum(axis=1), f.sum(axis=1), rtol=1e-12)  # nothing left ext


@settings(max_examples=30, deadline=None)
@given(
    value=st.floats(1e-20, 1e6),
    shift=st.floats(-80.0, 80.0),
    scheme=st.sampled_from(SCHEMES),
)
def test_copy_boundary_keeps_constant_line_constant(value, shift, scheme):
    f = jnp.full((4, N), value, jnp.float32)
    s = jnp.asarray([[shift], [-shift], [0.01 * shift], [0.5]], jnp.float32)
    out = np.asarray(remap_shift(f, s, 1, "copy", "copy", scheme))
    np.testing.assert_allclose(out, np.float32(value), rtol=2e-6)
    bounded = jnp.clip(s, -0.999, 0.999)
    out = np.asarray(remap_shift(f, bounded, 1, "copy", "copy", scheme, bounded=True))
    np.testing.assert_allclose(out, np.float32(value), rtol=2e-6)
    out = np.asarray(remap_affine(f, 1.0, s, 1, "copy", "copy", scheme))
    # float32 positions j - offset of size N + |shift| limit the affine kernel here
    np.testing.assert_allclose(out, np.float32(value), rtol=4 * np.finfo(np.float32).eps * (N + abs(shift) + 1))


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("bounded", [True, False])
def test_inflow_ghost_value_enters_the_line(x64, scheme, bounded):
    """A line of zeros with inflow c on the left, shifted right by s for K steps.

    Exactly K s c enters (the ghost is flat at c), nothing overshoots c, nothing goes negative,
    the region well behind the front (at K s cells) is filled with c and far ahead stays empty.
    """
    n, K, s = 64, 30, 0.6
    c = np.array([1.0, 2.5, 1e-12, 0.0])[:, None]  # per-line inflow values
    f = jnp.zeros((4, n))
    step = jax.jit(lambda f: remap_shift(f, s, 1, jnp.asarray(c), "open", scheme, bounded=bounded))
    for k in range(1, K + 1):
        f = step(f)
        total = np.asarray(f).sum(axis=1)
        np.testing.assert_allclose(total, k * s * c[:, 0], rtol=1e-12, atol=1e-300)
    out = np.asarray(f)
    assert np.all(out >= 0.0)
    assert np.all(out <= c * (1 + 1e-12))
    front = int(K * s)  # 18 cells
    np.testing.assert_allclose(out[:, : front - 6], np.broadcast_to(c, (4, front - 6)), rtol=1e-6)
    assert np.all(out[:, front + 12:] <= 1e-6 * c)


# ---------------------------------------------------------------------------------------------
# stretch
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("a, c", [(0.7, 13.3), (0.83, 5.0), (1.0, -3.25), (1.17, -6.6), (1.4, -15.1)])
def test_stretch_of_a_box_is_exact(x64, scheme, a, c):
    """f = 1 on [p, q]: the image has density 1/a on [a p + c, a q + c], mass conserved."""
    n, p, q = 80, 25, 55
    f = np.zeros(n)
    f[p:q] = 1.0
    out = np.asarray(remap_affine(jnp.asarray(f), a, c, 0, "open", "open", scheme))
    j = np.arange(n + 1.0)
    lo, hi = (j[:-1] - c) / a, (j[1:] - c) / a
    np.testing.assert_allclose(out, _box_overlap(lo, hi, p, q), rtol=1e-12, atol=1e-13)
    inside = (j[:-1] >= a * p + c) & (j[1:] <= a * q + c)
    assert inside.sum() >= 15
    np.testing.assert_allclose(out[inside], 1.0 / a, rtol=1e-12)
    np.testing.assert_allclose(out.sum(), q - p, rtol=1e-12)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("a, c", [(0.72, 11.1), (0.9, 3.3), (1.23, -7.4), (1.38, -12.9)])
def test_stretch_of_a_linear_profile_is_exact(x64, scheme, a, c):
    """Linear density A + B xi: target cell j gets (1/a)(A + B (j + 1/2 - c)/a) exactly.

    Only target cells whose pre-image lies in source cells with a fully linear stencil
    (i in [2, n - 3]) are compared; the open boundary legitimately differs near the edges.
    """
    n, A, B = 64, 2.0, -0.02  # stays positive on the line
    i = np.arange(n)
    f = A + B * (i + 0.5)
    assert f.min() > 0
    j = np.arange(n)
    lo, hi = (j - c) / a, (j + 1 - c) / a
    expect = (A + B * (j + 0.5 - c) / a) / a
    ok = (np.floor(lo) >= 2) & (np.ceil(hi) <= n - 2)
    assert ok.sum() >= 30
    out = np.asarray(remap_affine(jnp.asarray(f), a, c, 0, "open", "open", scheme))
    np.testing.assert_allclose(out[ok], expect[ok], rtol=1e-12)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("a, b", [(1.3, -0.1), (0.75, 0.24)])
def test_stretched_gaussian_converges_with_resolution(x64, scheme, a, b):
    """x -> a x + b on [0, 1] applied to a Gaussian (centre 0.45, width 0.06) at n = 32..256.

    The L1 error against the exact cell averages over the pre-images falls with every doubling
    and at second order overall.
    """
    errs = []
    ns = (32, 64, 128, 256)
    for n in ns:
        mu, sig = 0.45 * n, 0.06 * n
        e = np.arange(n + 1.0)

        def avg(lo_hi, mu=mu, sig=sig):
            z = (lo_hi - mu) / (math.sqrt(2) * sig)
            return math.sqrt(math.pi / 2) * sig * np.diff(erf(z))

        f = avg(e)
        out = np.asarray(remap_affine(jnp.asarray(f), a, b * n, 0, "open", "open", scheme))
        exact = avg((e - b * n) / a)
        np.testing.assert_allclose(out.sum(), exact.sum(), rtol=1e-8)  # conservative
        errs.append(np.abs(out - exact).sum() / np.abs(exact).sum())
    errs = np.array(errs)
    assert np.all(errs[1:] < errs[:-1] / 2.5), errs
    order = math.log2(errs[0] / errs[-1]) / (len(ns) - 1)
    assert order >= 1.8, (errs, order)
