"""Run outputs: the export of diagnostics to xarray and CSV, and the writers of a run directory.

Every file is written atomically (:mod:`faiser.atomic`): a reader sees the old file or the whole
new one. :func:`prepare_run_dir` and :func:`prepare_output_file` check an output path before any
work (empty, too long, a file where a directory is wanted, a location that cannot be written:
one-line :class:`~faiser.errors.ConfigError` / :class:`~faiser.errors.DataError`), and
:func:`run_dir_lock` keeps two runs out of one directory.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from jax.typing import ArrayLike

from faiser.atomic import atomic_path
from faiser.errors import ConfigError, DataError, NumericalError
from faiser.grid import PhaseSpaceGrid
from faiser.vlasov.diagnostics import cell_diagnostics

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


# ---- output paths ------------------------------------------------------------------------------
def _show(path) -> str:
    """``path`` for a one-line message (long names shortened in the middle)."""
    s = os.fspath(path)
    s = s if isinstance(s, str) else os.fsdecode(s)
    return s if len(s) <= 120 else f"{s[:60]}...{s[-40:]} ({len(s)} characters)"


def _check_path_text(path, what: str) -> Path:
    """``path`` as a Path after refusing an empty name, a NUL byte and over-long names."""
    if path is None:
        raise ConfigError(f"no {what} given")
    try:
        text = os.fspath(path)
    except TypeError:
        raise ConfigError(f"{what} must be a path, got {path!r}") from None
    text = text if isinstance(text, str) else os.fsdecode(text)
    if not text.strip():
        raise ConfigError(f"the {what} is an empty name; give a path (use . for the current directory)")
    if "\0" in text:
        raise ConfigError(f"the {what} {text!r} contains a NUL byte")
    p = Path(text)
    longest = max((len(os.fsencode(part)) for part in p.parts), default=0)
    if longest > 255 or len(os.fsencode(text)) > 4095:
        raise DataError(f"the {what} {_show(text)} is too long (names hold 255 bytes, paths 4095)")
    return p


def _probe_writable(directory: Path, what: str, shown) -> None:
    """Create and remove a file in ``directory``: the only test that sees read-only mounts,
    /proc and /sys, and permissions also for root."""
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".faiser-write-test-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise DataError(f"the {what} {_show(shown)} cannot be written ({e.strerror or e})") from None


def prepare_run_dir(path, what: str = "output directory") -> Path:
    """Check and create the directory ``path`` for a run's outputs (or a model); returns it.

    Raises :class:`~faiser.errors.ConfigError` for an empty name, and
    :class:`~faiser.errors.DataError` for a name that is too long, an existing file, or a location
    where the directory cannot be created or written (read-only, /proc, permissions)."""
    p = _check_path_text(path, what)
    if p.exists() and not p.is_dir():
        raise DataError(f"the {what} {_show(p)} exists and is not a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the {what} {_show(p)} ({e.strerror or e})") from None
    _probe_writable(p, what, p)
    return p


def prepare_output_file(path, what: str = "output file") -> Path:
    """Check that the file ``path`` can be written (its folder is created); returns it.

    Raises :class:`~faiser.errors.ConfigError` for an empty name and
    :class:`~faiser.errors.DataError` for a name that is too long, an existing directory, or a
    folder that cannot be created or written."""
    p = _check_path_text(path, what)
    if p.is_dir():
        raise DataError(f"the {what} {_show(p)} is a directory; name a file")
    parent = p.parent
    if parent.exists() and not parent.is_dir():
        raise DataError(f"the {what} {_show(p)} lies under {_show(parent)}, which is not a directory")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the folder of the {what} {_show(p)} ({e.strerror or e})") from None
    _probe_writable(parent, f"folder of the {what}", parent)
    return p


LOCK_NAME = ".lock"


@contextlib.contextmanager
def run_dir_lock(directory) -> Iterator[Path]:
    """Hold an exclusive lock on ``directory`` (``fcntl.flock`` on ``DIR/.lock``, non-blocking)
    for the block; a second run into the same directory is refused at once with a
    :class:`~faiser.errors.DataError` naming it. The lock is released when the block ends (and by
    the kernel when the process dies); the lock file stays. Without ``fcntl`` (Windows) nothing is
    locked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover (not POSIX)
        yield Path(directory)
        return
    d = Path(directory)
    lock = d / LOCK_NAME
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise DataError(f"cannot lock the output directory {_show(d)} ({e.strerror or e})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                pid = int(os.pread(fd, 32, 0).decode().split()[0])
                holder = f" (process {pid})"
            raise DataError(
                f"the output directory {_show(d)} is in use by another faiser run{holder}; wait for it to "
                "finish or choose another directory"
            ) from None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield d
    finally:
        os.close(fd)  # closing the last descriptor releases the flock


# ---- the files of a run directory ------------------------------------------------------------
CSV_COLUMNS = [
    "step", "time", "mass", "momentum_x", "momentum_y", "momentum_z", "kinetic_energy",
    "electric_energy", "magnetic_energy", "total_energy", "l2_norm", "f_min", "f_max", "mass_lost",
    "bulk_velocity_x", "bulk_velocity_y", "bulk_velocity_z",
]  # fmt: skip


def output_plan(
    n_steps: int, diag_every: int, save_every: int | None, vlsv_every: int | None, checkpoint_every: int | None = None
) -> dict:
    """Steps at which a run stops for outputs.

    Returns ``{"chunks": [n1, n2, ...], "diag": set, "save": list, "vlsv": list, "checkpoint":
    list}``: the lengths of the compiled step chunks between stops, and the steps of the
    diagnostics rows, dataset snapshots and VLSV files (each includes step 0 and the last step)
    and of the checkpoints (every ``checkpoint_every`` steps, excluding 0 and the last step).
    """

    def at(every):
        if not every:
            return []
        return sorted(set(range(0, n_steps + 1, every)) | {0, n_steps})

    diag = set(at(diag_every))
    save, vlsv = at(save_every), at(vlsv_every)
    checkpoint = list(range(checkpoint_every, n_steps, checkpoint_every)) if checkpoint_every else []
    stops = sorted(diag | set(save) | set(vlsv) | set(checkpoint))
    chunks = [b - a for a, b in zip(stops, stops[1:])]
    return {"chunks": chunks, "diag": diag, "save": save, "vlsv": vlsv, "checkpoint": checkpoint}


def diagnostics_row(d: Mapping[str, ArrayLike]) -> dict:
    """Host copy of one diagnostics dict (one transfer), with the bulk velocity; raises
    :class:`~faiser.errors.NumericalError` if the state stopped being finite (the mass and energy
    sums propagate any NaN or inf of f, E or B, so no extra pass over f is needed)."""
    import jax

    row = {k: float(v) for k, v in jax.device_get(dict(d)).items()}
    if not all(np.isfinite(v) for v in row.values()):
        raise NumericalError(f"the state became non-finite at step {int(row['step'])} (t={row['time']:g})")
    row["step"] = int(row["step"])
    mass = row["mass"] if row["mass"] != 0 else 1.0
    for c in "xyz":
        row[f"bulk_velocity_{c}"] = row[f"momentum_{c}"] / mass
    return row


def cell_moments(species, grid: PhaseSpaceGrid, state) -> list[dict]:
    """:func:`~faiser.vlasov.diagnostics.cell_diagnostics` of every species of ``state`` on ``grid``."""
    return [cell_diagnostics(f, grid, state.B, sp.mass) for f, sp in zip(state.f, species)]


def dataset_writer(case, meta: dict, path: Path, capacity: int, aux):
    """A new :class:`~faiser.data.dataset.DatasetWriter` for ``capacity`` snapshots of ``case``."""
    from faiser.data.dataset import DatasetWriter

    return DatasetWriter(
        path, case.grid, case.stepper.species, capacity, metadata=meta, dtype=case.config.dtype, aux=aux
    )


def write_vlsv(path: Path, case, state, meta: dict) -> None:
    """``state`` of ``case`` as a Vlasiator-style VLSV file in SI units."""
    import jax

    from faiser.data.vlsv import write_snapshot

    write_snapshot(
        path,
        jax.device_get(state),
        case.grid,
        case.units,
        case.stepper.species,
        config=meta,
        vdf_stride=case.config.vdf_stride,
    )


def drop_vlsv_from(vlsv_dir: Path, n: int) -> None:
    """Remove VLSV files numbered ``n`` and later (written after the checkpoint a run resumes from)."""
    for p in vlsv_dir.glob("bulk.*.vlsv"):
        index = p.name.split(".")[1]
        if index.isdigit() and int(index) >= n:
            p.unlink()
    for p in vlsv_dir.glob(".bulk.*.tmp"):  # a write the kill interrupted (see faiser.atomic)
        p.unlink()


def write_cell_diagnostics(case, initial, final, path: Path) -> xr.Dataset:
    """Per-cell diagnostics (moments, T_perp/T_par, heat flux, eps_M) of every species at the
    first and last time, as netCDF (``time`` x species variables ``<species>_<name>``)."""
    import jax

    species = case.stepper.species
    frames = [(float(st.time), jax.device_get(cell_moments(species, case.grid, st))) for st in (initial, final)]
    return write_cell_frames(case, frames, path)


def write_cell_frames(case, frames, path: Path) -> xr.Dataset:
    """``moments.nc`` from ``[(time, [per-cell diagnostics of each species]), ...]`` (global arrays)."""
    parts_t = []
    for t, per_species in frames:
        parts = []
        for d, sp in zip(per_species, case.stepper.species):
            x = to_xarray(d, case.grid)
            parts.append(x.rename({k: f"{sp.name}_{k}" for k in x.data_vars}))
        parts_t.append(xr.merge(parts).expand_dims(time=[t]))
    ds = xr.concat(parts_t, dim="time")
    ds.attrs.update(case=case.name, units="normalized (see config.json)")
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="scipy")
    return ds


def save_figure(fig, path: str | os.PathLike, **kw) -> None:
    """``fig.savefig`` to ``path`` atomically (the format from the file name's suffix)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, **kw)


def plot_diagnostics(ds: xr.Dataset, case, path: Path) -> None:
    """Plot the case's main diagnostic and the relative mass change to ``path`` (PNG).

    Uses matplotlib's object API only, so it leaves the caller's pyplot backend alone."""
    from matplotlib.figure import Figure

    t = ds["time"].values
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    axes = fig.subplots(1, 2)
    ax = axes[0]
    if case.main_diagnostic == "electric_energy" and np.any(ds["electric_energy"].values > 0):
        ax.semilogy(t, ds["electric_energy"].values, lw=1)
        ax.set_ylabel("electric energy")
        ax.set_title(f"{case.name}: electric field energy")
    elif case.main_diagnostic == "l2_norm":
        ax.plot(t, ds["l2_norm"].values / ds["l2_norm"].values[0])
        ax.set_ylabel("L2 norm / initial")
        ax.set_title(f"{case.name}: L2 norm (numerical dissipation)")
    else:
        for c in "xyz":
            ax.plot(t, ds[f"bulk_velocity_{c}"].values, label=f"V{c}")
        ax.set_ylabel("bulk velocity")
        ax.legend()
        ax.set_title(f"{case.name}: bulk velocity")
    ax.set_xlabel("time")
    m = ds["mass"].values
    axes[1].plot(t, (m + ds["mass_lost"].values - m[0]) / m[0])
    axes[1].set_xlabel("time")
    axes[1].set_ylabel("relative mass change (incl. lost)")
    axes[1].set_title("mass conservation")
    save_figure(fig, path, dpi=110)
