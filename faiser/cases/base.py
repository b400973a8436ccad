"""What every case shares: the common config keys and the built :class:`Case`.

A case config is a frozen dataclass whose fields are the ``--set`` keys of ``faiser simulate``;
the time-stepping keys resolve to :attr:`CommonConfig.n_steps` and
:attr:`CommonConfig.effective_dt`.

Checks made from a config before anything is built, so that bad input ends in one line and not in
an allocation failure or a numerical warning: :func:`check_representable` (scales that overflow
the dtype; the memory estimate is :func:`faiser.run.memory.estimate_run_bytes`), and once the
initial state exists :func:`check_f_min` (a sparsity threshold that would remove the distribution).
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
from faiser.vlasov.state import State
from faiser.vlasov.stepper import Stepper

Vec3 = tuple[float, float, float]


@dataclasses.dataclass(frozen=True)
class CommonConfig:
    """Keys every case has: time stepping, numerics, precision and output thinning."""

    dt: float = 0.1
    t_end: float = 40.0
    scheme: str = "ppm"
    limiter: str = "ep"
    f_min: float = 0.0
    dtype: str = "float32"
    diag_every: int = 1
    vdf_stride: int = 1  # --vlsv-every output: VDFs of every vdf_stride-th cell (moments of all)

    def phase_space_cells(self) -> list[int]:
        """Phase-space cells of f per species from the config keys alone (nothing is built), for the
        memory estimate; empty where a case does not say or a size is not a positive integer (the
        builder then reports the bad value)."""
        return []

    @property
    def n_steps(self) -> int:
        """Number of steps to ``t_end`` (``ceil(t_end / dt)``, 0 for ``t_end == 0``); checks the
        time-stepping keys and raises :class:`ConfigError` on bad values."""
        if not (self.dt > 0):
            raise ConfigError(f"dt must be positive, got {self.dt}")
        if not (self.t_end >= 0):
            raise ConfigError(f"t_end must be >= 0, got {self.t_end}")
        if self.diag_every < 1:
            raise ConfigError("diag_every must be >= 1")
        if self.vdf_stride < 1:
            raise ConfigError("vdf_stride must be >= 1")
        return max(1, math.ceil(self.t_end / self.dt - 1e-9)) if self.t_end > 0 else 0

    @property
    def effective_dt(self) -> float:
        """The step the run uses: the largest ``dt' <= dt`` that ends exactly at ``t_end``."""
        n = self.n_steps
        return self.t_end / n if n else self.dt

    @property
    def dt_shortened(self) -> bool:
        """Whether :attr:`effective_dt` is shorter than the requested ``dt`` (beyond rounding)."""
        return self.effective_dt < self.dt * (1 - 1e-12)


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


def positive_sizes(cfg, *keys: str) -> list[int] | None:
    """The integer config values ``keys`` if each is a positive integer, else None."""
    out = []
    for key in keys:
        v = getattr(cfg, key, None)
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            return None
        out.append(int(v))
    return out


def jax_dtype(cfg: CommonConfig):
    """The array dtype of ``cfg.dtype`` (float64 switches on jax's x64 mode)."""
    if cfg.dtype not in ("float32", "float64"):
        raise ConfigError(f"dtype must be float32 or float64, got {cfg.dtype!r}")
    if cfg.dtype == "float64":
        import jax

        if not jax.config.read("jax_enable_x64"):
            jax.config.update("jax_enable_x64", True)
    return jnp.dtype(cfg.dtype)


def single_species_stepper(cfg: CommonConfig, grid: PhaseSpaceGrid, species, fields) -> Stepper:
    """The stepper of a one-species case: ``cfg.effective_dt`` and the config's numerics."""
    return Stepper(grid, (species,), fields, cfg.effective_dt, scheme=cfg.scheme, limiter=cfg.limiter, f_min=cfg.f_min)


# ---- checks made before building a case ---------------------------------------------------------
def check_representable(cfg: CommonConfig) -> None:
    """Refuse a wave number ``k`` whose box ``2 pi / k`` and grid (``1/k^2`` in the field solve,
    ``(nx k / 2)^2`` at the grid's highest wave number) do not fit the run's dtype; raises
    :class:`ConfigError` naming ``k``."""
    k = getattr(cfg, "k", None)
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not k > 0 or not math.isfinite(k):
        return  # the builder refuses k <= 0 and non-numbers with its own message
    info = np.finfo(np.float64 if cfg.dtype == "float64" else np.float32)
    limit = float(info.max) / 1e3  # headroom for the products the solvers form
    nx = getattr(cfg, "nx", 1)
    nx = nx if isinstance(nx, int) and nx >= 1 else 1
    box = 2 * math.pi / k
    if not math.isfinite(box) or (1.0 / k) ** 2 > limit:
        raise ConfigError(
            f"k={k:g} is too small for {cfg.dtype}: the box 2 pi / k = {box:.3g} gives 1/k^2 = {1 / k**2:.3g}, "
            f"beyond what {cfg.dtype} holds; use k >= {math.sqrt(1e3 / float(info.max)):.3g}"
        )
    if (nx * k / 2) ** 2 > limit or box / nx < float(info.tiny) * 1e3:
        raise ConfigError(
            f"k={k:g} is too large for {cfg.dtype}: the cell 2 pi / (k nx) = {box / nx:.3g} is below what "
            f"{cfg.dtype} resolves"
        )


F_MIN_MAX_LOSS = 0.01
"""Largest fraction of the initial mass the sparsity threshold ``f_min`` may remove at t = 0."""


def check_f_min(case: Case) -> None:
    """Refuse an ``f_min`` whose sparsity threshold (:func:`faiser.vlasov.sparsity.apply_threshold`)
    removes more than :data:`F_MIN_MAX_LOSS` of a species' initial mass; raises :class:`ConfigError`
    naming the fraction."""
    f_min = float(case.config.f_min)
    if not f_min > 0 or case.state is None:
        return
    import jax

    from faiser.vlasov.sparsity import apply_threshold

    grid = case.grid
    for f, sp in zip(case.state.f, case.stepper.species):
        removed = jax.jit(lambda f: apply_threshold(f, f_min, grid)[1])(f)  # f_new is never materialized
        mass = float(jnp.sum(f, dtype=jnp.float64 if f.dtype == jnp.float64 else None)) * grid.phase_cell_volume
        frac = float(removed) / mass if mass > 0 else 0.0
        if frac > F_MIN_MAX_LOSS:
            raise ConfigError(
                f"f_min={f_min:g} removes {100 * frac:.3g}% of the initial {sp.name} mass at t=0 (at most "
                f"{100 * F_MIN_MAX_LOSS:g}% allowed); the largest f of the initial state is "
                f"{float(jnp.max(f)):.3g}: use a smaller f_min"
            )
