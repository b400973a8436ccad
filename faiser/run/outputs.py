"""Run outputs: the export of diagnostics to xarray and CSV, and the writers of a run directory.

Every file is written atomically (:mod:`faiser.atomic`): a reader sees the old file or the whole
new one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr
from jax.typing import ArrayLike

from faiser.atomic import atomic_path
from faiser.errors import ConfigError
from faiser.grid import PhaseSpaceGrid

_COMPONENTS = ("x", "y", "z")


def _dims_for(name: str, shape: tuple[int, ...], grid: PhaseSpaceGrid | None, lead: tuple[str, ...] = ()):
    """Dimension names for a field of ``shape``: spatial ``x, y, z`` then component axes ``i, j``."""
    if grid is not None and shape[:3] == tuple(grid.nx):
        rest = shape[3:]
        if len(rest) <= 2 and all(r == 3 for r in rest):
            return (*lead, "x", "y", "z", *("i", "j")[: len(rest)])
    return (*lead, *(f"{name}_dim{k}" for k in range(len(shape))))


def _coords(grid: PhaseSpaceGrid | None, dims: Sequence[str]) -> dict:
    coords = {}
    if grid is not None:
        for d, c in enumerate(_COMPONENTS):
            if c in dims:
                coords[c] = grid.x_centers(d)
    for c in ("i", "j"):
        if c in dims:
            coords[c] = list(_COMPONENTS)
    return coords


def to_xarray(moments_dict: Mapping[str, ArrayLike], grid: PhaseSpaceGrid) -> xr.Dataset:
    """Per-cell fields (e.g. :func:`moments` output) as an :class:`xarray.Dataset`.

    Arrays of shape ``(nx, ny, nz)`` get dims ``("x", "y", "z")`` with the cell centres as
    coordinates; ``(nx, ny, nz, 3)`` adds a component dim ``"i"`` and ``(nx, ny, nz, 3, 3)`` adds
    ``("i", "j")``, both labelled ``["x", "y", "z"]``. Scalars become 0-d variables; any other shape
    gets generic dims ``<name>_dim<k>``. Values are copied to the host.
    """
    data_vars = {}
    coords: dict = {}
    for name, value in moments_dict.items():
        a = np.asarray(value)
        dims = _dims_for(name, a.shape, grid)
        data_vars[name] = (dims, a)
        coords.update(_coords(grid, dims))
    return xr.Dataset(data_vars, coords=coords, attrs={"units": "normalized"})


def _columns(records) -> dict[str, np.ndarray]:
    """Records (list of dicts, one per time) or a dict of arrays -> dict of stacked host arrays."""
    if isinstance(records, Mapping):
        return {k: np.asarray(v) for k, v in records.items()}
    records = list(records)
    if not records:
        raise ConfigError("no records given")
    keys: list[str] = []
    for r in records:
        keys.extend(k for k in r if k not in keys)
    out = {}
    for k in keys:
        missing = [i for i, r in enumerate(records) if k not in r]
        if missing:
            raise ConfigError(f"record {missing[0]} has no {k!r} (every record needs the same keys)")
        out[k] = np.stack([np.asarray(r[k]) for r in records])
    return out


def timeseries_to_xarray(
    records: Sequence[Mapping[str, ArrayLike]] | Mapping[str, ArrayLike],
    time: ArrayLike | None = None,
    grid: PhaseSpaceGrid | None = None,
) -> xr.Dataset:
    """Time series as an :class:`xarray.Dataset` indexed by ``time``.

    Args:
      records: a list of dicts (one per output time, e.g. :func:`global_diagnostics` results plus a
        ``"time"`` entry) or a dict of arrays whose first axis is time.
      time: the time coordinate; by default the ``"time"`` entry of the records, else ``0, 1, ...``.
      grid: if given, per-cell entries (``(nt, nx, ny, nz[, 3[, 3]])``) get ``x, y, z, i, j`` dims
        and coordinates as in :func:`to_xarray`.

    Returns:
      Dataset with dim ``time``; scalar series are 1D variables.
    """
    cols = _columns(records)
    t = cols.pop("time", None) if time is None else np.asarray(time)
    cols.pop("time", None)
    lengths = {k: v.shape[0] if v.ndim else None for k, v in cols.items()}
    nt = next((n for n in lengths.values() if n is not None), 0 if t is None else len(t))
    t = np.arange(nt) if t is None else np.asarray(t)
    data_vars, coords = {}, {"time": t}
    for name, a in cols.items():
        if a.ndim == 0 or a.shape[0] != len(t):
            raise ConfigError(f"{name!r} has shape {a.shape}, expected a leading time axis of {len(t)}")
        dims = _dims_for(name, a.shape[1:], grid, lead=("time",))
        data_vars[name] = (dims, a)
        coords.update(_coords(grid, dims))
    return xr.Dataset(data_vars, coords=coords, attrs={"units": "normalized"})


def write_csv(
    records: Sequence[Mapping[str, ArrayLike]] | Mapping[str, ArrayLike],
    path: str | os.PathLike,
    columns: Sequence[str] | None = None,
) -> str:
    """Write scalar time series as CSV, one row per output time.

    Args:
      records: a list of dicts (one per time) or a dict of 1D arrays; values must be scalars.
      path: output file (parent directories are created).
      columns: column order; default ``time`` first (if present), then the records' key order.

    Returns:
      ``path`` as a string.

    Raises:
      ConfigError: a requested column is missing or a value is not a scalar.
    """
    cols = _columns(records)
    if columns is None:
        columns = (["time"] if "time" in cols else []) + [k for k in cols if k != "time"]
    columns = list(columns)
    missing = [c for c in columns if c not in cols]
    if missing:
        raise ConfigError(f"unknown CSV column(s) {missing}; available: {sorted(cols)}")
    for c in columns:
        if cols[c].ndim != 1:
            raise ConfigError(f"CSV column {c!r} must be one scalar per time, got shape {cols[c].shape}")
    df = pd.DataFrame({c: cols[c] for c in columns}, columns=columns)
    with atomic_path(path) as tmp:  # a reader never sees a half-written file
        df.to_csv(tmp, index=False)
    return os.fspath(path)
