"""Gyration cases in ion-cyclotron units (time ``1/Omega_i``, velocity ``v_A``; protons with
q = 1, m = 1) on one spatial cell: ``larmor`` (a drifting Maxwellian in uniform B) and ``exb``
(crossed uniform E and B), with prescribed fields or the hybrid model with E and B held fixed.
"""

from __future__ import annotations

import dataclasses
import math

from faiser.cases.base import Case, CommonConfig, Vec3, jax_dtype, positive_sizes, single_species_stepper
from faiser.errors import ConfigError
from faiser.grid import PhaseSpaceGrid
from faiser.units import HybridUnits
from faiser.vlasov import distributions as dist
from faiser.vlasov.fields import PrescribedFields
from faiser.vlasov.state import PROTON, State


@dataclasses.dataclass(frozen=True)
class LarmorConfig(CommonConfig):
    """Drifting Maxwellian gyrating in a uniform B, one spatial cell, 3V (protons)."""

    B: Vec3 = (0.0, 0.0, 1.0)
    E: Vec3 = (0.0, 0.0, 0.0)
    drift: Vec3 = (1.0, 0.0, 0.0)
    temperature: float = 1.0
    nv: int = 32
    vmax: float = 6.0
    dt: float = 0.37
    t_end: float = 2 * math.pi
    fields: str = "prescribed"  # or "hybrid": the hybrid field model with E and B held fixed

    def phase_space_cells(self) -> list[int]:
        n = positive_sizes(self, "nv")
        return [n[0] ** 3] if n else []


@dataclasses.dataclass(frozen=True)
class ExBConfig(LarmorConfig):
    """Maxwellian in crossed uniform E and B: the guiding centre drifts at E x B / B^2."""

    E: Vec3 = (0.5, 0.0, 0.0)
    drift: Vec3 = (0.0, 0.0, 0.0)


def build_gyration(name: str, cfg: LarmorConfig) -> Case:
    dtype = jax_dtype(cfg)
    grid = PhaseSpaceGrid.make_velocity_only(cfg.nv, cfg.vmax)
    f = dist.maxwellian(grid, 1.0, cfg.drift, cfg.temperature, dtype=dtype)
    dist.validate_distribution(f, grid)
    if cfg.fields == "hybrid":
        from faiser.cases.hybrid import hybrid_gyration_fields

        fields = hybrid_gyration_fields(cfg.B, cfg.E)
    elif cfg.fields == "prescribed":
        fields = PrescribedFields(E=tuple(cfg.E), B=tuple(cfg.B))
    else:
        raise ConfigError(f"fields must be 'prescribed' or 'hybrid', got {cfg.fields!r}")
    stepper = single_species_stepper(cfg, grid, PROTON, fields)
    state = stepper.initialize(State.create(f, dtype=dtype))
    return Case(name, cfg, stepper, state, cfg.n_steps, HybridUnits(), "bulk_velocity")
