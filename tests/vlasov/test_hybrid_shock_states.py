"""Shock states solved from the jump conditions (``downstream=rankine_hugoniot``): fluxes match."""

import numpy as np
import pytest

from faiser.errors import ConfigError
from faiser.run.simulate import resolve_config


@pytest.mark.parametrize("s", [0.8, 1.0, 1.3])
def test_rankine_hugoniot_downstream_conserves_fluxes(s):
    cfg = resolve_config("shock", {"downstream": "rankine_hugoniot", "V_left_kms": (100 * s, 50 * s, 0.0)})
    p = cfg.normalized()
    L, R = p["left"], p["right"]
    assert R["density"] * R["velocity"][0] == pytest.approx(L["density"] * L["velocity"][0], rel=1e-8)
    ez = lambda st: st["velocity"][0] * st["B"][1] - st["velocity"][1] * st["B"][0]  # noqa: E731
    assert ez(R) == pytest.approx(ez(L), abs=1e-8)  # tangential E continuous (de Hoffmann-Teller: 0)
    assert R["B"][0] == L["B"][0] and 1 < R["density"] / L["density"] < 4
    mach = cfg.describe()["upstream_alfven_mach"]
    assert mach == pytest.approx(s * resolve_config("shock", {}).describe()["upstream_alfven_mach"], rel=1e-12)


def test_rankine_hugoniot_reproduces_the_shocktest_right_state():
    configured = resolve_config("shock", {}).normalized()["right"]
    solved = resolve_config("shock", {"downstream": "rankine_hugoniot"}).normalized()["right"]
    assert solved["density"] == pytest.approx(configured["density"], rel=0.01)
    np.testing.assert_allclose(solved["velocity"], configured["velocity"], rtol=0.02, atol=1e-6)
    np.testing.assert_allclose(solved["B"], configured["B"], rtol=0.02, atol=1e-6)
    with pytest.raises(ConfigError, match="downstream"):
        resolve_config("shock", {"downstream": "guess"}).normalized()
