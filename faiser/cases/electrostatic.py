"""Electrostatic cases in plasma units (time ``1/omega_pe``, length Debye length, velocity
thermal speed; electrons with q = -1, m = 1): Landau damping, two-stream, bump-on-tail, and
``free_streaming`` (no forces, exact solution known).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from faiser.cases.base import Case, CommonConfig, jax_dtype, positive_sizes, single_species_stepper
from faiser.errors import ConfigError
from faiser.grid import PhaseSpaceGrid
from faiser.units import ElectrostaticUnits
from faiser.vlasov import distributions as dist
from faiser.vlasov.fields import ElectrostaticFields, PrescribedFields
from faiser.vlasov.state import ELECTRON, State


@dataclasses.dataclass(frozen=True)
class ElectrostaticConfig(CommonConfig):
    """Keys shared by the 1D1V electrostatic cases: a perturbation alpha cos(kx), box 2 pi / k."""

    k: float = 0.5
    alpha: float = 0.01
    nx: int = 64
    nv: int = 256
    vmax: float = 6.0

    def phase_space_cells(self) -> list[int]:
        n = positive_sizes(self, "nx", "nv")
        return [n[0] * n[1]] if n else []


@dataclasses.dataclass(frozen=True)
class LandauConfig(ElectrostaticConfig):
    """Linear Landau damping: f0 = (1 + alpha cos kx) exp(-v^2/2)/sqrt(2 pi), 1D1V."""


@dataclasses.dataclass(frozen=True)
class TwoStreamConfig(ElectrostaticConfig):
    """Two counter-streaming Maxwellians at +-v0 (thermal speed vth), 1D1V."""

    k: float = 0.2
    alpha: float = 0.001
    v0: float = 2.4
    vth: float = 1.0
    vmax: float = 8.0
    t_end: float = 30.0


@dataclasses.dataclass(frozen=True)
class BumpOnTailConfig(ElectrostaticConfig):
    """Core Maxwellian plus a warm beam (bump on tail), 1D1V."""

    k: float = 0.3
    alpha: float = 0.04
    n_beam: float = 0.1
    v_beam: float = 4.5
    vth_beam: float = 0.5
    vmax: float = 9.0
    t_end: float = 60.0


@dataclasses.dataclass(frozen=True)
class FreeStreamingConfig(ElectrostaticConfig):
    """No forces: f(x, v, t) = f0(x - v t, v); a perturbed Maxwellian, 1D1V."""

    alpha: float = 0.5
    nv: int = 64
    t_end: float = 10.0


def _es_grid(cfg) -> PhaseSpaceGrid:
    if cfg.k <= 0:
        raise ConfigError(f"k must be positive, got {cfg.k}")
    return PhaseSpaceGrid.make_1d1v(cfg.nx, 2 * math.pi / cfg.k, cfg.nv, cfg.vmax)


def _build_es(name: str, cfg, f0, species=ELECTRON, fields=None) -> Case:
    grid = _es_grid(cfg)
    dtype = jax_dtype(cfg)
    f = f0(grid, dtype)
    dist.validate_distribution(f, grid)
    fields = fields or ElectrostaticFields()
    stepper = single_species_stepper(cfg, grid, species, fields)
    state = stepper.initialize(State.create(f, dtype=dtype))
    return Case(name, cfg, stepper, state, cfg.n_steps, ElectrostaticUnits(), "electric_energy")


def build_landau(cfg: LandauConfig) -> Case:
    def f0(grid, dtype):
        return dist.perturb(dist.maxwellian(grid, dtype=dtype), grid, cfg.alpha, cfg.k)

    return _build_es("landau", cfg, f0)


def build_two_stream(cfg: TwoStreamConfig) -> Case:
    def f0(grid, dtype):
        f = dist.two_beams(grid, cfg.v0, temperature=cfg.vth**2, dtype=dtype)
        return dist.perturb(f, grid, cfg.alpha, cfg.k)

    return _build_es("two_stream", cfg, f0)


def build_bump_on_tail(cfg: BumpOnTailConfig) -> Case:
    def f0(grid, dtype):
        f = dist.beams(
            grid,
            (1.0 - cfg.n_beam, cfg.n_beam),
            ((0.0, 0.0, 0.0), (cfg.v_beam, 0.0, 0.0)),
            (1.0, cfg.vth_beam**2),
            dtype=dtype,
        )
        return dist.perturb(f, grid, cfg.alpha, cfg.k)

    return _build_es("bump_on_tail", cfg, f0)


def build_free_streaming(cfg: FreeStreamingConfig) -> Case:
    def f0(grid, dtype):
        return dist.perturb(dist.maxwellian(grid, dtype=dtype), grid, cfg.alpha, cfg.k)

    case = _build_es("free_streaming", cfg, f0, fields=PrescribedFields())
    case.main_diagnostic = "l2_norm"
    return case


def analytic_free_streaming(cfg: FreeStreamingConfig, grid: PhaseSpaceGrid, t: float) -> np.ndarray:
    """Exact cell averages of the free-streaming solution at time ``t`` (for tests)."""
    x_lo = grid.x_mesh(0) - 0.5 * grid.dx[0]
    x_hi = x_lo + grid.dx[0]
    v = grid.v_mesh(0)
    m = np.exp(-0.5 * v**2) / math.sqrt(2 * math.pi)
    # average over the cell of 1 + alpha cos(k (x - v t))
    avg = 1 + cfg.alpha * (np.sin(cfg.k * (x_hi - v * t)) - np.sin(cfg.k * (x_lo - v * t))) / (cfg.k * grid.dx[0])
    return np.broadcast_to(avg * m, grid.shape)
