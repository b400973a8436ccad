"""Phase-space grid: frozen, hashable, static under ``jit``.

The distribution ``f`` is always 6D, ``(nx, ny, nz, nvx, nvy, nvz)``; axes that are not resolved
have one cell. Coordinates are cell-centred. All quantities are in the normalized units of the
case (see :mod:`faiser.units`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from faiser.errors import ConfigError

BOUNDARIES = ("periodic", "outflow", "inflow")

Vec3 = tuple[float, float, float]


def _vec3(value, name: str, kind=float) -> tuple:
    if np.isscalar(value):
        value = (value, value, value)
    value = tuple(kind(v) for v in value)
    if len(value) != 3:
        raise ConfigError(f"{name} must have 3 components, got {len(value)}")
    return value


def _boundary_pair(b, axis: int) -> tuple[str, str]:
    pair = (b, b) if isinstance(b, str) else tuple(b)
    if len(pair) != 2 or any(p not in BOUNDARIES for p in pair):
        raise ConfigError(
            f"boundary of spatial axis {axis} must be one of {BOUNDARIES} (or a left/right pair), got {b!r}"
        )
    if ("periodic" in pair) and pair[0] != pair[1]:
        raise ConfigError(f"periodic boundary of axis {axis} must be periodic on both sides")
    return pair  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True)
class PhaseSpaceGrid:
    """Uniform Cartesian phase-space grid.

    Attributes:
      x_min, x_max: spatial box per axis (normalized length).
      nx: spatial cells per axis (1 for an unresolved axis).
      v_min, v_max: velocity box per axis (normalized velocity).
      nv: velocity cells per axis (1 for an unresolved axis).
      boundaries: per spatial axis a (left, right) pair of ``periodic``, ``outflow``, ``inflow``.
    """

    x_min: Vec3
    x_max: Vec3
    nx: tuple[int, int, int]
    v_min: Vec3
    v_max: Vec3
    nv: tuple[int, int, int]
    boundaries: tuple[tuple[str, str], tuple[str, str], tuple[str, str]] = (
        ("periodic", "periodic"),
    ) * 3

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("x_min", _vec3(self.x_min, "x_min"))
        set_("x_max", _vec3(self.x_max, "x_max"))
        set_("v_min", _vec3(self.v_min, "v_min"))
        set_("v_max", _vec3(self.v_max, "v_max"))
        set_("nx", _vec3(self.nx, "nx", int))
        set_("nv", _vec3(self.nv, "nv", int))
        b = self.boundaries
        if isinstance(b, str):
            b = (b, b, b)
        if len(b) != 3:
            raise ConfigError("boundaries must be given for 3 spatial axes")
        set_("boundaries", tuple(_boundary_pair(bi, i) for i, bi in enumerate(b)))
        for name, lo, hi, n in (
            ("x", self.x_min, self.x_max, self.nx),
            ("v", self.v_min, self.v_max, self.nv),
        ):
            for d in range(3):
                if n[d] < 1:
                    raise ConfigError(f"n{name}[{d}] must be >= 1, got {n[d]}")
                if not (np.isfinite(lo[d]) and np.isfinite(hi[d]) and hi[d] > lo[d]):
                    raise ConfigError(f"{name}_max[{d}] must exceed {name}_min[{d}] (both finite)")

    # ---- named constructors -------------------------------------------------------------
    @classmethod
    def make(
        cls,
        nx: Sequence[int] = (1, 1, 1),
        length: Sequence[float] | float = 1.0,
        nv: Sequence[int] = (1, 1, 1),
        vmax: Sequence[float] | float = 1.0,
        boundaries="periodic",
        x_min: Sequence[float] | float = 0.0,
    ) -> PhaseSpaceGrid:
        """Grid with spatial box ``[x_min, x_min + length]`` and velocity box ``[-vmax, vmax]``.

        Unresolved velocity axes (``nv == 1``) are given the cell ``[-0.5, 0.5]`` so that the
        single cell sits at v = 0 with unit width.
        """
        nv3 = _vec3(nv, "nv", int)
        vmax3 = _vec3(vmax, "vmax")
        vmax3 = tuple(vm if n > 1 else 0.5 for vm, n in zip(vmax3, nv3))
        x0 = _vec3(x_min, "x_min")
        L = _vec3(length, "length")
        return cls(
            x_min=x0,
            x_max=tuple(a + b for a, b in zip(x0, L)),
            nx=nx,
            v_min=tuple(-v for v in vmax3),
            v_max=vmax3,
            nv=nv3,
            boundaries=boundaries,
        )

    @classmethod
    def make_1d1v(cls, nx: int, length: float, nv: int, vmax: float, boundaries="periodic"):
        """1D1V grid ``(nx, 1, 1, nv, 1, 1)``."""
        return cls.make((nx, 1, 1), (length, 1.0, 1.0), (nv, 1, 1), vmax, boundaries)

    @classmethod
    def make_1d3v(cls, nx: int, length: float, nv: int, vmax: float, boundaries="periodic"):
        """1D3V grid ``(nx, 1, 1, nv, nv, nv)``."""
        return cls.make((nx, 1, 1), (length, 1.0, 1.0), (nv, nv, nv), vmax, boundaries)

    @classmethod
    def make_2d3v(cls, nx: int, ny: int, length, nv: int, vmax: float, boundaries="periodic"):
        """2D3V grid ``(nx, ny, 1, nv, nv, nv)``; ``length`` is a scalar or an (Lx, Ly) pair."""
        Lx, Ly = (length, length) if np.isscalar(length) else tuple(length)
        return cls.make((nx, ny, 1), (Lx, Ly, 1.0), (nv, nv, nv), vmax, boundaries)

    @classmethod
    def make_velocity_only(cls, nv: int, vmax: float):
        """Single spatial cell with a 3D velocity mesh ``(1, 1, 1, nv, nv, nv)``."""
        return cls.make((1, 1, 1), 1.0, (nv, nv, nv), vmax)

    # ---- derived quantities -------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int, int, int, int]:
        """Shape of ``f``: ``(nx, ny, nz, nvx, nvy, nvz)``."""
        return (*self.nx, *self.nv)

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        return self.nx

    @property
    def dx(self) -> Vec3:
        return tuple((b - a) / n for a, b, n in zip(self.x_min, self.x_max, self.nx))

    @property
    def dv(self) -> Vec3:
        return tuple((b - a) / n for a, b, n in zip(self.v_min, self.v_max, self.nv))

    @property
    def length(self) -> Vec3:
        return tuple(b - a for a, b in zip(self.x_min, self.x_max))

    @property
    def cell_volume(self) -> float:
        """Spatial cell volume (unresolved axes count with their full extent)."""
        return float(np.prod(self.dx))

    @property
    def velocity_cell_volume(self) -> float:
        return float(np.prod(self.dv))

    @property
    def phase_cell_volume(self) -> float:
        return self.cell_volume * self.velocity_cell_volume

    @property
    def num_cells(self) -> int:
        """Number of phase-space cells."""
        return int(np.prod(self.shape))

    @property
    def spatial_dims(self) -> tuple[int, ...]:
        """Spatial axes with more than one cell."""
        return tuple(d for d in range(3) if self.nx[d] > 1)

    @property
    def velocity_dims(self) -> tuple[int, ...]:
        """Velocity axes (0..2) with more than one cell."""
        return tuple(d for d in range(3) if self.nv[d] > 1)

    def x_centers(self, axis: int) -> np.ndarray:
        """Cell centres along spatial axis ``axis`` (0..2), shape ``(nx[axis],)``."""
        return self.x_min[axis] + (np.arange(self.nx[axis]) + 0.5) * self.dx[axis]

    def v_centers(self, axis: int) -> np.ndarray:
        """Cell centres along velocity axis ``axis`` (0..2), shape ``(nv[axis],)``."""
        return self.v_min[axis] + (np.arange(self.nv[axis]) + 0.5) * self.dv[axis]

    def x_mesh(self, axis: int) -> np.ndarray:
        """Spatial centres along ``axis`` shaped to broadcast against ``f`` (6D)."""
        shape = [1] * 6
        shape[axis] = self.nx[axis]
        return self.x_centers(axis).reshape(shape)

    def v_mesh(self, axis: int) -> np.ndarray:
        """Velocity centres along ``axis`` shaped to broadcast against ``f`` (6D)."""
        shape = [1] * 6
        shape[3 + axis] = self.nv[axis]
        return self.v_centers(axis).reshape(shape)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> PhaseSpaceGrid:
        return cls(**d)
