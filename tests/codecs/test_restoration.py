"""Moment restoration: exact n, V, P to 1e-6 with f >= 0, whatever the decoded VDF looks like."""

import numpy as np
import pytest
from codec_data import make_vdfs

from faiser.codecs.moments import maxwellian, moment_errors, moments
from faiser.codecs.restoration import restore_moments


def _max_err(ref, f, mesh):
    e = moment_errors(ref, moments(f, mesh))
    return max(float(v.max()) for v in e.values())


def test_moments_of_a_maxwellian_are_its_parameters():
    f, mesh = make_vdfs(4, nv=32, beams=False, dtype=np.float64, floor=0)
    m = moments(f, mesh)
    # the discrete Maxwellian (point values, 8 cells per thermal speed or more) matches its parameters
    rng = np.random.default_rng(0)
    ref = np.zeros((4, 10))
    ref[:, 0] = rng.uniform(0.5, 2.0, 4)
    assert np.allclose(m[:, 0], ref[:, 0], rtol=2e-3)


@pytest.mark.parametrize("noise", [0.02, 0.3])
def test_restored_moments_exact_and_positive(noise):
    f, mesh = make_vdfs(10, nv=24, dtype=np.float64)
    ref = moments(f, mesh)
    rng = np.random.default_rng(1)
    g = f * rng.uniform(1 - noise, 1 + noise, f.shape)
    # plus a noise floor everywhere, as error-bounded compressors leave in empty tails
    g_floor = g + noise * 1e-3 * f.max() * rng.random(f.shape)
    for x in (g, g_floor):
        assert _max_err(ref, x, mesh) > 1e-4  # the perturbation really breaks the moments
        r = restore_moments(x.astype(np.float32), ref, mesh)
        assert r.dtype == np.float32 and r.shape == f.shape
        assert r.min() >= 0
        assert _max_err(ref, r, mesh) < 1e-6
    # without a noise floor restoration is a small correction: it does not move the VDF away from the truth
    r = restore_moments(g, ref, mesh)
    assert np.linalg.norm(r - f) < 1.05 * np.linalg.norm(g - f)


def test_restoration_from_a_poor_guess_and_from_nothing():
    f, mesh = make_vdfs(6, nv=24, dtype=np.float64)
    ref = moments(f, mesh)
    g = np.zeros_like(f)
    g[:3] = f[:3, ::-1]  # mirrored along vx: wrong bulk velocity, skewed
    r = restore_moments(g, ref, mesh)
    assert r.min() >= 0 and _max_err(ref, r, mesh) < 1e-6  # the empty ones become Maxwellians


def test_zero_density_stays_zero():
    f, mesh = make_vdfs(2, nv=16, dtype=np.float64)
    f[1] = 0
    r = restore_moments(f * 1.1, moments(f, mesh), mesh)
    assert np.all(r[1] == 0) and _max_err(moments(f, mesh)[:1], r[:1], mesh) < 1e-6


def test_maxwellian_from_moments_is_restored_exactly():
    f, mesh = make_vdfs(5, nv=20, dtype=np.float64)
    ref = moments(f, mesh)
    fm = maxwellian(ref, mesh, dtype=np.float64)
    assert _max_err(ref, fm, mesh) > 1e-5
    assert _max_err(ref, restore_moments(fm, ref, mesh), mesh) < 1e-7


def test_small_support_on_a_large_mesh():
    # decoded VDFs far narrower than their stored moments, on a mesh mostly empty: the cropped solve
    # cannot carry the moments and the whole-mesh pass (Maxwellian blend) takes over
    f, mesh = make_vdfs(3, nv=40, beams=False, dtype=np.float64)
    ref = moments(f, mesh)
    g = np.zeros_like(f)
    g[:, 18:21, 18:21, 18:21] = 1.0
    g[2] = f[2]  # and one ordinary VDF in the same batch
    r = restore_moments(g, ref, mesh)
    assert r.min() >= 0 and _max_err(ref, r, mesh) < 1e-6
