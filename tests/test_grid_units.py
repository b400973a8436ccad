"""PhaseSpaceGrid construction and the SI conversion of the normalized units."""

import math

import numpy as np
import pytest

from faiser.errors import ConfigError
from faiser.grid import PhaseSpaceGrid
from faiser.units import ELECTRON_MASS, ElectrostaticUnits, HybridUnits


def test_named_constructors_give_6d_shapes_and_centred_cells():
    g = PhaseSpaceGrid.make_1d1v(64, 4 * math.pi, 128, 6.0)
    assert g.shape == (64, 1, 1, 128, 1, 1)
    assert g.spatial_dims == (0,) and g.velocity_dims == (0,)
    v = g.v_centers(0)
    assert v[0] == pytest.approx(-6 + g.dv[0] / 2) and np.allclose(v, -v[::-1])
    assert g.dv[1] == 1.0 and g.v_centers(1)[0] == 0.0  # unresolved axis: one unit cell at v = 0
    assert PhaseSpaceGrid.make_2d3v(8, 4, (2.0, 1.0), 6, 3.0).shape == (8, 4, 1, 6, 6, 6)
    assert PhaseSpaceGrid.make_velocity_only(10, 2.0).shape == (1, 1, 1, 10, 10, 10)
    assert g.num_cells == 64 * 128
    assert g.phase_cell_volume == pytest.approx(g.cell_volume * g.velocity_cell_volume)


def test_grid_is_hashable_and_round_trips_json():
    g = PhaseSpaceGrid.make_1d3v(16, 10.0, 8, 4.0, boundaries=(("inflow", "outflow"), "periodic", "periodic"))
    assert hash(g) == hash(PhaseSpaceGrid.from_json(g.to_json()))
    assert g.boundaries[0] == ("inflow", "outflow")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"nx": (0, 1, 1)},
        {"length": -1.0},
        {"boundaries": "reflecting"},
        {"boundaries": (("periodic", "outflow"), "periodic", "periodic")},
        {"vmax": float("nan"), "nv": (4, 1, 1)},
    ],
)
def test_bad_grids_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        PhaseSpaceGrid.make(**kwargs)


def test_hybrid_units_match_textbook_values():
    u = HybridUnits(n0=1e6, B0=1e-9)  # solar-wind-like: 1 cm^-3, 1 nT
    assert u.velocity == pytest.approx(21.8e3, rel=2e-3)  # Alfven speed
    assert u.length == pytest.approx(227.7e3, rel=2e-3)  # ion inertial length
    assert 1 / u.time == pytest.approx(0.0958, rel=2e-3)  # proton gyrofrequency (rad/s)
    assert u.f == pytest.approx(u.n0 / u.velocity**3)
    assert u.electric_field == pytest.approx(u.velocity * u.B0)


def test_electrostatic_units_match_textbook_values():
    u = ElectrostaticUnits(n0=1e18, temperature=11604.5, mass=ELECTRON_MASS)  # 1 eV electrons
    assert 1 / u.time == pytest.approx(5.641e10, rel=1e-3)  # omega_pe
    assert u.length == pytest.approx(7.43e-6, rel=1e-3)  # Debye length
    with pytest.raises(ConfigError):
        ElectrostaticUnits(n0=-1.0)
