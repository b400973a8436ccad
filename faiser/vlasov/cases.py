"""Named test cases: frozen config dataclasses and builders of (stepper, initial state).

Each case has a config dataclass whose fields are the ``--set`` keys of ``faiser simulate``.
Electrostatic cases are in plasma units (time ``1/omega_pe``, length Debye length, velocity
thermal speed; electrons with q = -1, m = 1); so is ``free_streaming`` (no forces).
``larmor`` and ``exb`` use ion-cyclotron units (time ``1/Omega_i``, velocity ``v_A``; protons with q = 1, m = 1).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

from faiser.errors import ConfigError
from faiser.grid import PhaseSpaceGrid
from faiser.units import ElectrostaticUnits, HybridUnits
from faiser.vlasov import distributions as dist
from faiser.vlasov.fields import ElectrostaticFields, PrescribedFields
from faiser.vlasov.state import ELECTRON, PROTON, State
from faiser.vlasov.stepper import Stepper

Vec3 = tuple[float, float, float]


@dataclasses.dataclass(frozen=True)
class CommonConfig:
    dt: float = 0.1
    t_end: float = 40.0
    scheme: str = "ppm"
    limiter: str = "ep"
    f_min: float = 0.0
    dtype: str = "float32"
    diag_every: int = 1
    vdf_stride: int = 1  # --vlsv-every output: VDFs of every vdf_stride-th cell (moments of all)


@dataclasses.dataclass(frozen=True)
class ElectrostaticConfig(CommonConfig):
    """Keys shared by the 1D1V electrostatic cases: a perturbation alpha cos(kx), box 2 pi / k."""

    k: float = 0.5
    alpha: float = 0.01
    nx: int = 64
    nv: int = 256
    vmax: float = 6.0


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


@dataclasses.dataclass(frozen=True)
class ExBConfig(LarmorConfig):
    """Maxwellian in crossed uniform E and B: the guiding centre drifts at E x B / B^2."""

    E: Vec3 = (0.5, 0.0, 0.0)
    drift: Vec3 = (0.0, 0.0, 0.0)


@dataclasses.dataclass
class Case:
    """A built case: stepper, initial state (fields initialized), step count and units."""

    name: str
    config: CommonConfig
    stepper: Stepper
    state: State
    n_steps: int
    units: ElectrostaticUnits | HybridUnits
    main_diagnostic: str
    # optional jit-able probe(state) -> dict called by simulate at every output (scalars join the
    # time series, arrays are kept as snapshots) and extra_outputs(case, records, snapshots, out_dir)
    # called once at the end to write case-specific plots
    probe: Callable | None = None
    extra_outputs: Callable | None = None

    @property
    def grid(self) -> PhaseSpaceGrid:
        return self.stepper.grid


def _dtype(cfg: CommonConfig):
    if cfg.dtype not in ("float32", "float64"):
        raise ConfigError(f"dtype must be float32 or float64, got {cfg.dtype!r}")
    if cfg.dtype == "float64":
        import jax

        if not jax.config.read("jax_enable_x64"):
            jax.config.update("jax_enable_x64", True)
    return jnp.dtype(cfg.dtype)


def _steps(cfg: CommonConfig) -> int:
    if not (cfg.dt > 0):
        raise ConfigError(f"dt must be positive, got {cfg.dt}")
    if not (cfg.t_end >= 0):
        raise ConfigError(f"t_end must be >= 0, got {cfg.t_end}")
    if cfg.diag_every < 1:
        raise ConfigError("diag_every must be >= 1")
    if cfg.vdf_stride < 1:
        raise ConfigError("vdf_stride must be >= 1")
    return max(1, math.ceil(cfg.t_end / cfg.dt - 1e-9)) if cfg.t_end > 0 else 0


def _effective_dt(cfg: CommonConfig) -> float:
    """The largest dt <= cfg.dt that ends exactly at t_end."""
    n = _steps(cfg)
    return cfg.t_end / n if n else cfg.dt


def _stepper(cfg: CommonConfig, grid: PhaseSpaceGrid, species, fields) -> Stepper:
    dt = _effective_dt(cfg)
    return Stepper(grid, (species,), fields, dt, scheme=cfg.scheme, limiter=cfg.limiter, f_min=cfg.f_min)


def _es_grid(cfg) -> PhaseSpaceGrid:
    if cfg.k <= 0:
        raise ConfigError(f"k must be positive, got {cfg.k}")
    return PhaseSpaceGrid.make_1d1v(cfg.nx, 2 * math.pi / cfg.k, cfg.nv, cfg.vmax)


def _build_es(name: str, cfg, f0, species=ELECTRON, fields=None) -> Case:
    grid = _es_grid(cfg)
    dtype = _dtype(cfg)
    f = f0(grid, dtype)
    dist.validate_distribution(f, grid)
    fields = fields or ElectrostaticFields()
    stepper = _stepper(cfg, grid, species, fields)
    state = stepper.initialize(State.create(f, dtype=dtype))
    return Case(name, cfg, stepper, state, _steps(cfg), ElectrostaticUnits(), "electric_energy")


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


def _build_gyration(name: str, cfg: LarmorConfig) -> Case:
    dtype = _dtype(cfg)
    grid = PhaseSpaceGrid.make_velocity_only(cfg.nv, cfg.vmax)
    f = dist.maxwellian(grid, 1.0, cfg.drift, cfg.temperature, dtype=dtype)
    dist.validate_distribution(f, grid)
    if cfg.fields == "hybrid":
        from faiser.vlasov.hybrid_cases import hybrid_gyration_fields

        fields = hybrid_gyration_fields(cfg.B, cfg.E)
    elif cfg.fields == "prescribed":
        fields = PrescribedFields(E=tuple(cfg.E), B=tuple(cfg.B))
    else:
        raise ConfigError(f"fields must be 'prescribed' or 'hybrid', got {cfg.fields!r}")
    stepper = _stepper(cfg, grid, PROTON, fields)
    state = stepper.initialize(State.create(f, dtype=dtype))
    return Case(name, cfg, stepper, state, _steps(cfg), HybridUnits(), "bulk_velocity")


CASES: dict[str, tuple[type, Callable[..., Case]]] = {
    "landau": (LandauConfig, build_landau),
    "two_stream": (TwoStreamConfig, build_two_stream),
    "bump_on_tail": (BumpOnTailConfig, build_bump_on_tail),
    "free_streaming": (FreeStreamingConfig, build_free_streaming),
    "larmor": (LarmorConfig, lambda c: _build_gyration("larmor", c)),
    "exb": (ExBConfig, lambda c: _build_gyration("exb", c)),
}


import faiser.vlasov.hybrid_cases  # noqa: E402, F401  (registers alfven, shock, khi in CASES)


def default_config(name: str) -> CommonConfig:
    """The default config of case ``name``."""
    if name not in CASES:
        raise ConfigError(f"unknown case {name!r}; choose one of: {', '.join(CASES)}")
    return CASES[name][0]()


def build_case(name: str, config: CommonConfig | None = None) -> Case:
    """Build case ``name`` from ``config`` (its defaults if None)."""
    config = config or default_config(name)
    if not isinstance(config, CASES[name][0]):
        raise ConfigError(f"config of type {type(config).__name__} does not belong to case {name!r}")
    return CASES[name][1](config)


def analytic_free_streaming(cfg: FreeStreamingConfig, grid: PhaseSpaceGrid, t: float) -> np.ndarray:
    """Exact cell averages of the free-streaming solution at time ``t`` (for tests)."""
    x_lo = grid.x_mesh(0) - 0.5 * grid.dx[0]
    x_hi = x_lo + grid.dx[0]
    v = grid.v_mesh(0)
    m = np.exp(-0.5 * v**2) / math.sqrt(2 * math.pi)
    # average over the cell of 1 + alpha cos(k (x - v t))
    avg = 1 + cfg.alpha * (np.sin(cfg.k * (x_hi - v * t)) - np.sin(cfg.k * (x_lo - v * t))) / (cfg.k * grid.dx[0])
    return np.broadcast_to(avg * m, grid.shape)
