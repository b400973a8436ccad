"""The f-space baselines of the latent solver: parameter interpolation weights and the POD floor."""

import numpy as np
import pytest

from faiser.errors import ConfigError
from faiser.latent.reference_baselines import PodBasis, interpolation_weights


def test_interpolation_weights_bracket_the_target():
    assert interpolation_weights([80.0, 90.0, 110.0, 120.0], 85.0) == [(0, 0.5), (1, 0.5)]
    shuffled = interpolation_weights([120.0, 80.0, 110.0, 90.0], 105.0)  # any order of the runs
    assert dict(shuffled) == pytest.approx({2: 0.75, 3: 0.25})
    vec = [(80.0, 50.0, 0.0), (90.0, 50.0, 0.0), (120.0, 50.0, 0.0)]
    (a, wa), (b, wb) = interpolation_weights(vec, (105.0, 50.0, 0.0))
    assert (a, b) == (1, 2) and wa + wb == pytest.approx(1.0) and wb == pytest.approx(0.5)
    assert interpolation_weights([1.0, 2.0], 5.0) == [(1, 1.0)]  # outside: the nearest run, no extrapolation
    assert interpolation_weights([1.0, 2.0], 0.0) == [(0, 1.0)]
    with pytest.raises(ConfigError):
        interpolation_weights([1.0, 2.0], (1.0, 2.0))


def test_pod_reproduces_its_span_and_keeps_orthonormal_modes():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 4, 5, 6))
    coef = rng.normal(size=(9, 3))
    snaps = np.einsum("mk,k...->m...", coef, base) + 2.0  # an affine 3-dimensional family
    pod = PodBasis.fit(snaps, 32)
    assert pod.rank == 3  # rounding modes are dropped
    np.testing.assert_allclose(pod.modes @ pod.modes.T, np.eye(3), atol=1e-12)
    new = np.einsum("k,k...->...", rng.normal(size=3), base) + 2.0
    np.testing.assert_allclose(pod.project(new), new, atol=1e-10)
    one = PodBasis.fit(snaps, 1)
    err1 = np.linalg.norm(one.project(new) - new)
    assert one.rank == 1 and 0 < err1 <= np.linalg.norm(new.ravel() - one.mean) + 1e-12  # a projection never adds
    with pytest.raises(ConfigError):
        PodBasis.fit(snaps, 0)
