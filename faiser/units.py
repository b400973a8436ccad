"""Normalized units and conversion to SI at the I/O boundary.

The stepper works in normalized units. Two systems are used:

* electrostatic (:class:`ElectrostaticUnits`): time ``1/omega_p``, length Debye length,
  velocity thermal speed ``sqrt(k T / m)``, density ``n0``;
* hybrid (:class:`HybridUnits`): time ``1/Omega_i``, length ion inertial length ``d_i``,
  velocity Alfven speed ``v_A``, magnetic field ``B0``, density ``n0``.

In both, ``f`` is normalized by ``n0 / v0**3`` (SI: s^3/m^6) and the electric field by
``v0 * B0`` (hybrid) or ``m v0 omega_p / e`` (electrostatic).
"""

from __future__ import annotations

import dataclasses
import math

from faiser.errors import ConfigError

# CODATA 2018
ELEMENTARY_CHARGE = 1.602176634e-19  # C
PROTON_MASS = 1.67262192369e-27  # kg
ELECTRON_MASS = 9.1093837015e-31  # kg
EPSILON_0 = 8.8541878128e-12  # F/m
MU_0 = 1.25663706212e-6  # H/m
BOLTZMANN = 1.380649e-23  # J/K


def _positive(**kw):
    for k, v in kw.items():
        if not (math.isfinite(v) and v > 0):
            raise ConfigError(f"{k} must be a positive finite number, got {v!r}")


class _Units:
    """Shared part of the unit systems: subclasses define n0, time, velocity, fields, SYSTEM."""

    SYSTEM = ""

    @property
    def length(self) -> float:
        """Unit of length in m: velocity unit times time unit."""
        return self.velocity * self.time

    @property
    def density(self) -> float:
        """Unit of density in m^-3."""
        return self.n0

    @property
    def f(self) -> float:
        """Unit of f in s^3/m^6: n0 / v0^3."""
        return self.n0 / self.velocity**3

    def factors(self) -> dict:
        """SI value of one normalized unit of each quantity."""
        return {
            "time_s": self.time,
            "length_m": self.length,
            "velocity_m_per_s": self.velocity,
            "density_m3": self.density,
            "f_s3_per_m6": self.f,
            "electric_field_V_per_m": self.electric_field,
            "magnetic_field_T": self.magnetic_field,
        }

    def to_json(self) -> dict:
        return {"system": self.SYSTEM, **dataclasses.asdict(self), **self.factors()}


@dataclasses.dataclass(frozen=True)
class ElectrostaticUnits(_Units):
    """Plasma-frequency units for a species of mass ``mass`` (kg) and charge ``e``.

    Args:
      n0: reference density (m^-3).
      temperature: reference temperature (K).
      mass: particle mass (kg); electrons by default.
    """

    n0: float = 1e6
    temperature: float = 1e5
    mass: float = ELECTRON_MASS
    SYSTEM = "electrostatic"  # (class attribute; length unit = Debye length)

    def __post_init__(self):
        _positive(n0=self.n0, temperature=self.temperature, mass=self.mass)

    @property
    def time(self) -> float:
        """1/omega_p in s."""
        return math.sqrt(EPSILON_0 * self.mass / (self.n0 * ELEMENTARY_CHARGE**2))

    @property
    def velocity(self) -> float:
        """Thermal speed sqrt(kT/m) in m/s."""
        return math.sqrt(BOLTZMANN * self.temperature / self.mass)

    @property
    def electric_field(self) -> float:
        """Unit of E in V/m: m v0 / (e t0)."""
        return self.mass * self.velocity / (ELEMENTARY_CHARGE * self.time)

    @property
    def magnetic_field(self) -> float:
        """Unit of B in T: m / (e t0) (so that Omega t0 = B in these units)."""
        return self.mass / (ELEMENTARY_CHARGE * self.time)



@dataclasses.dataclass(frozen=True)
class HybridUnits(_Units):
    """Ion-cyclotron units for ions of mass ``mass`` (kg) and charge ``e``.

    Args:
      n0: reference density (m^-3).
      B0: reference magnetic field (T).
      mass: ion mass (kg); protons by default.
    """

    n0: float = 1e6
    B0: float = 1e-9
    mass: float = PROTON_MASS
    SYSTEM = "hybrid"  # (class attribute; length unit = ion inertial length d_i)

    def __post_init__(self):
        _positive(n0=self.n0, B0=self.B0, mass=self.mass)

    @property
    def time(self) -> float:
        """1/Omega_i in s."""
        return self.mass / (ELEMENTARY_CHARGE * self.B0)

    @property
    def velocity(self) -> float:
        """Alfven speed in m/s."""
        return self.B0 / math.sqrt(MU_0 * self.n0 * self.mass)

    @property
    def electric_field(self) -> float:
        """v_A B0 in V/m."""
        return self.velocity * self.B0

    @property
    def magnetic_field(self) -> float:
        return self.B0

    def temperature_to_thermal_speed(self, temperature_K: float) -> float:
        """sqrt(kT/m) of the ions at ``temperature_K``, in units of v_A."""
        return math.sqrt(BOLTZMANN * temperature_K / self.mass) / self.velocity


def units_from_json(d: dict) -> ElectrostaticUnits | HybridUnits:
    """Rebuild a unit system from its :meth:`_Units.to_json` dict (derived factors are ignored)."""
    systems = {cls.SYSTEM: cls for cls in (ElectrostaticUnits, HybridUnits)}
    cls = systems.get(d.get("system"))
    if cls is None:
        raise ConfigError(f"unknown unit system {d.get('system')!r}; expected one of {sorted(systems)}")
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: float(v) for k, v in d.items() if k in names})
