"""Trajectory datasets: zarr stores written snapshot by snapshot, read lazily.

Layout of a store (``DIR/snapshots`` for ``faiser simulate --save-every N``)::

    zarr.json                 group attributes: format, version, case, config, grid, units,
                              species, capacity, n_snapshots (the commit marker), complete
    time      (T,)            float64, normalized time of each snapshot
    step      (T,)            int64, step counter
    E, B      (T, nx, ny, nz, 3)
    f/<species>               (T, nx, ny, nz, nvx, nvy, nvz): chunks of one snapshot and a spatial
                              tile of ~4 MiB (whole VDFs), blosc-lz4 compressed
    moments/<species>/<name>  density (T, nx, ny, nz), bulk_velocity (T, nx, ny, nz, 3),
                              pressure (T, nx, ny, nz, 3, 3), temperature, t_par, t_perp,
                              anisotropy, non_maxwellianity (T, nx, ny, nz)

Arrays are allocated for ``capacity`` snapshots up front. A snapshot is committed by rewriting
the group attribute ``n_snapshots`` (zarr writes metadata files atomically) only after every array
of that snapshot is on disk, so a run killed at any moment (even with SIGKILL) leaves a store whose
first ``n_snapshots`` entries are complete; readers never look past that count. A run resumed
from a checkpoint continues the store with :meth:`DatasetWriter.reopen`, which first sets
``n_snapshots`` back to the checkpoint's count (later snapshots are then overwritten).

Everything is in the normalized units of the case (``units`` holds the SI factors).
"""

from __future__ import annotations

import dataclasses
import json
import math
import queue
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from faiser._version import __version__
from faiser.errors import DatasetError
from faiser.grid import PhaseSpaceGrid
from faiser.units import units_from_json
from faiser.vlasov.state import Species

FORMAT = "faiser-trajectory"
VERSION = 1
MOMENT_NAMES = (
    "density", "bulk_velocity", "pressure", "temperature", "t_par", "t_perp", "anisotropy", "non_maxwellianity",
)  # fmt: skip
# Target bytes of one f chunk (whole VDFs; the unit of a read). Measured with `faiser bench loader`
# (256 x 32^3, 2 cores): 4 MiB chunks read whole snapshots at ~1.2 GB/s and chunk-aware shuffled
# VDFs at ~5000/s; 128 KiB chunks in 4 MiB zarr shards doubled globally shuffled VDFs (430 -> 840/s)
# but cut the others 2-5x (per-chunk overhead), so chunks stay large and unsharded.
_CHUNK_BYTES = 4 << 20
_COMPRESSOR = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")

__all__ = ["Dataset", "DatasetWriter", "FORMAT", "VERSION", "open_dataset"]


def _spatial_chunks(nx: Sequence[int], bytes_per_cell: int, target: int = _CHUNK_BYTES) -> tuple[int, int, int]:
    """Spatial tile of one f chunk: whole velocity meshes, about ``target`` bytes per chunk."""
    cells = max(1, target // max(1, bytes_per_cell))
    out = []
    for n in nx:  # fill x first, then y, then z
        c = min(int(n), cells)
        out.append(c)
        cells = max(1, cells // c)
    return tuple(out)  # type: ignore[return-value]


class DatasetWriter:
    """Append snapshots of one run to a zarr store; see the module docstring for the layout.

    Args:
      path: directory of the store (created; must not already hold a store; :meth:`reopen`
        continues an existing one).
      grid: the phase-space grid.
      species: kinetic species, one f array each (names must be unique).
      capacity: number of snapshots to allocate (a run writes at most this many).
      metadata: JSON-ready dict merged into the group attributes (``case``, ``config``, ``units``...).
      dtype: dtype of f and the fields on disk.
      background: write in a background thread so stepping overlaps I/O (``close`` waits).
      aux: field-model arrays beyond E and B (``State.aux``, e.g. the hybrid model's face-centred
        ``B_face``) whose shapes and dtypes the store allocates; each snapshot then stores them.

    ``append`` takes host or device arrays; call ``close`` (or use as a context manager) at the end.
    """

    def __init__(
        self,
        path: str | Path,
        grid: PhaseSpaceGrid,
        species: Sequence[Species],
        capacity: int,
        metadata: dict | None = None,
        dtype: str = "float32",
        background: bool = True,
        aux: dict | None = None,
    ):
        self.path = Path(path)
        self.grid = grid
        self.species = tuple(species)
        names = [s.name for s in self.species]
        if len(set(names)) != len(names):
            raise DatasetError(f"species names must be unique, got {names}")
        if capacity < 1:
            raise DatasetError(f"capacity must be >= 1, got {capacity}")
        if (self.path / "zarr.json").exists():
            raise DatasetError(f"{self.path} already holds a dataset; choose another output directory")
        self.capacity = int(capacity)
        self.count = 0
        dt = np.dtype(dtype)
        nx, nv = tuple(grid.nx), tuple(grid.nv)
        root = zarr.open_group(str(self.path), mode="w")
        attrs = {
            "format": FORMAT,
            "version": VERSION,
            "faiser_version": __version__,
            "grid": json.loads(json.dumps(grid.to_json())),
            "species": [dataclasses.asdict(s) for s in self.species],
            "capacity": self.capacity,
            "n_snapshots": 0,
            "complete": False,
            **(metadata or {}),
        }
        root.attrs.update(attrs)

        def make(name, shape, chunks, dtype=dt):
            return root.create_array(
                name, shape=(self.capacity, *shape), chunks=(1, *chunks), dtype=dtype,
                compressors=_COMPRESSOR, fill_value=0,
            )  # fmt: skip

        self._arrays: dict[str, zarr.Array] = {
            "time": root.create_array("time", shape=(self.capacity,), chunks=(self.capacity,), dtype="float64"),
            "step": root.create_array("step", shape=(self.capacity,), chunks=(self.capacity,), dtype="int64"),
            "E": make("E", (*nx, 3), (*nx, 3)),
            "B": make("B", (*nx, 3), (*nx, 3)),
        }
        self._aux_names = tuple(sorted(aux or {}))
        for name in self._aux_names:
            a = np.asarray(aux[name])
            self._arrays[f"aux/{name}"] = make(f"aux/{name}", a.shape, a.shape, dtype=a.dtype)
        tile = _spatial_chunks(nx, math.prod(nv) * dt.itemsize)
        for sp in self.species:
            self._arrays[f"f/{sp.name}"] = make(f"f/{sp.name}", (*nx, *nv), (*tile, *nv))
            for m in MOMENT_NAMES:
                extra = {"bulk_velocity": (3,), "pressure": (3, 3)}.get(m, ())
                self._arrays[f"moments/{sp.name}/{m}"] = make(f"moments/{sp.name}/{m}", (*nx, *extra), (*nx, *extra))
        self._root = root
        self._times: list[float] = []
        self._steps: list[int] = []
        self._start(background)

    def _start(self, background: bool) -> None:
        self._error: BaseException | None = None
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._queue = queue.Queue(maxsize=2)
            self._thread = threading.Thread(target=self._worker, name="faiser-dataset-writer", daemon=True)
            self._thread.start()

    @classmethod
    def reopen(cls, path: str | Path, keep: int, background: bool = True) -> DatasetWriter:
        """Continue an existing store (a run resumed from a checkpoint): keep its first ``keep``
        committed snapshots and append after them.

        The commit marker ``n_snapshots`` is set to ``keep`` (and ``complete`` to False) first, so
        snapshots a killed run wrote after its checkpoint disappear at once; the next appends
        overwrite them. Raises :class:`~faiser.errors.DatasetError` if ``path`` holds no dataset
        or fewer than ``keep`` committed snapshots.
        """
        ds = Dataset(path)
        if not 0 <= keep <= len(ds):
            raise DatasetError(f"{ds.path} holds {len(ds)} committed snapshots; cannot continue after {keep}")
        self = cls.__new__(cls)
        self.path, self.grid, self.species = ds.path, ds.grid, ds.species
        try:
            self.capacity = int(ds.attrs["capacity"])
            root = zarr.open_group(str(self.path), mode="r+")
            self._aux_names = tuple(sorted(root["aux"].array_keys())) if "aux" in root else ()
            names = ["time", "step", "E", "B", *(f"aux/{n}" for n in self._aux_names)]
            for sp in self.species:
                names += [f"f/{sp.name}", *(f"moments/{sp.name}/{m}" for m in MOMENT_NAMES)]
            self._arrays = {name: root[name] for name in names}
        except (KeyError, TypeError, ValueError) as e:
            raise DatasetError(f"{ds.path}: cannot continue this dataset ({e})") from e
        self._times = [float(t) for t in ds.times[:keep]]
        self._steps = [int(s) for s in ds.steps[:keep]]
        root.attrs.update({"n_snapshots": int(keep), "complete": False})
        self._root = root
        self.count = int(keep)
        self._start(background)
        return self

    def append(
        self, time: float, step: int, f: Sequence, E, B, moments: Sequence[dict] | None = None, aux: dict | None = None
    ) -> None:
        """Queue one snapshot: ``f`` one 6D array per species, ``E``/``B`` (nx, ny, nz, 3),
        ``moments`` one dict per species with the keys of :data:`MOMENT_NAMES` (optional), ``aux``
        the arrays named at construction."""
        self._raise_pending()
        if self.count >= self.capacity:
            raise DatasetError(f"dataset {self.path} is full ({self.capacity} snapshots)")
        if len(f) != len(self.species):
            raise DatasetError(f"expected {len(self.species)} f arrays, got {len(f)}")
        if set(aux or {}) != set(self._aux_names):
            raise DatasetError(f"expected aux arrays {list(self._aux_names)}, got {sorted(aux or {})}")
        host_moments = [{k: np.asarray(v) for k, v in m.items()} for m in moments] if moments is not None else None
        item = (self.count, float(time), int(step), [np.asarray(a) for a in f], np.asarray(E), np.asarray(B),
                host_moments, {k: np.asarray(v) for k, v in (aux or {}).items()})  # fmt: skip
        self.count += 1
        if self._queue is None:
            self._write(item)
        else:
            self._queue.put(item)

    def _worker(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None:
                    self._write(item)
            except BaseException as e:  # reported to the caller by the next append/close
                self._error = e
            finally:
                self._queue.task_done()

    def _write(self, item) -> None:
        i, t, step, fs, E, B, moments, aux = item
        a = self._arrays
        for name, value in aux.items():
            a[f"aux/{name}"][i] = value
        for sp, f in zip(self.species, fs):
            a[f"f/{sp.name}"][i] = f
        a["E"][i] = E
        a["B"][i] = B
        if moments is not None:
            for sp, m in zip(self.species, moments):
                for name in MOMENT_NAMES:
                    if name in m:
                        a[f"moments/{sp.name}/{name}"][i] = m[name]
        self._times.append(t)
        self._steps.append(step)
        a["time"][: i + 1] = np.asarray(self._times)
        a["step"][: i + 1] = np.asarray(self._steps)
        self._root.attrs["n_snapshots"] = i + 1  # the commit marker: written last, atomically

    def _raise_pending(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise DatasetError(f"writing dataset {self.path} failed: {err}") from err

    def flush(self) -> None:
        """Wait until every queued snapshot is on disk."""
        if self._queue is not None:
            self._queue.join()
        self._raise_pending()

    def close(self, complete: bool = True) -> None:
        """Flush, stop the writer thread and mark the run ``complete`` (False after a failure)."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise_pending()
        self._root.attrs["complete"] = bool(complete)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(complete=exc_type is None)


def _find_store(path: Path) -> Path:
    if (path / "zarr.json").exists():
        return path
    if (path / "snapshots" / "zarr.json").exists():
        return path / "snapshots"
    raise DatasetError(f"no faiser dataset at {path} (expected a zarr store or a run directory with snapshots/)")


class Dataset:
    """Lazy read access to a trajectory dataset written by :class:`DatasetWriter`.

    Only the first ``len(dataset)`` (committed) snapshots are visible. Indexing arguments accept
    an int, a slice or a sequence of ints, along time and along each spatial axis; arrays come
    back as numpy, in normalized units, read from disk only when asked.

    Example::

        ds = open_dataset("runs/landau")              # a run directory or the store itself
        ds.times                                       # (T,) normalized times
        f = ds.f("electron", time=-1)                  # (nx, ny, nz, nvx, nvy, nvz) last snapshot
        vdf = ds.f("electron", time=slice(None), x=5)  # (T, ny, nz, nvx, nvy, nvz) one column
        rho = ds.moments("electron", "density")       # (T, nx, ny, nz)
    """

    def __init__(self, path: str | Path):
        self.path = _find_store(Path(path))
        try:
            self._root = zarr.open_group(str(self.path), mode="r")
            attrs = dict(self._root.attrs)
        except Exception as e:  # zarr raises several types for broken metadata
            raise DatasetError(f"cannot open dataset {self.path}: {e}") from e
        if attrs.get("format") != FORMAT:
            raise DatasetError(f"{self.path} is not a faiser trajectory dataset (format={attrs.get('format')!r})")
        if attrs.get("version") != VERSION:
            raise DatasetError(f"{self.path}: dataset version {attrs.get('version')!r} is not supported ({VERSION})")
        self.attrs = attrs
        try:
            self.grid = PhaseSpaceGrid.from_json(attrs["grid"])
            self.species = tuple(Species(**s) for s in attrs["species"])
            self.units = units_from_json(attrs["units"]) if "units" in attrs else None
            n = int(attrs["n_snapshots"])
        except (KeyError, TypeError, ValueError) as e:
            raise DatasetError(f"{self.path}: malformed dataset metadata ({e})") from e
        self._n = n
        self._cache: dict[str, zarr.Array] = {}

    # -- metadata ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        names = ", ".join(s.name for s in self.species)
        return (f"Dataset({str(self.path)!r}, case={self.case!r}, snapshots={self._n}, species=[{names}], "
                f"f shape={self.grid.shape})")  # fmt: skip

    @property
    def case(self) -> str | None:
        return self.attrs.get("case")

    @property
    def config(self) -> dict:
        """The run's fully resolved config (JSON dict)."""
        return dict(self.attrs.get("config", {}))

    @property
    def complete(self) -> bool:
        """True when the run finished normally (False for a killed or failed run)."""
        return bool(self.attrs.get("complete", False))

    @property
    def species_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.species)

    @property
    def times(self) -> np.ndarray:
        return np.asarray(self._array("time")[: self._n])

    @property
    def steps(self) -> np.ndarray:
        return np.asarray(self._array("step")[: self._n])

    # -- arrays -----------------------------------------------------------------------------
    def _array(self, name: str) -> zarr.Array:
        if name not in self._cache:
            try:
                self._cache[name] = self._root[name]
            except KeyError:
                raise DatasetError(f"{self.path} has no array {name!r}") from None
        return self._cache[name]

    def _time_index(self, time) -> int | slice | list[int]:
        n = self._n
        if n == 0:
            raise DatasetError(f"{self.path} holds no completed snapshot")
        if isinstance(time, slice):
            return slice(*time.indices(n))
        if isinstance(time, (int, np.integer)):
            i = int(time) + (n if time < 0 else 0)
            if not 0 <= i < n:
                raise DatasetError(f"time index {time} out of range for {n} snapshots")
            return i
        idx = [int(i) + (n if i < 0 else 0) for i in time]
        if any(not 0 <= i < n for i in idx):
            raise DatasetError(f"time indices {list(time)} out of range for {n} snapshots")
        return idx

    def _species(self, species: str | None) -> str:
        names = self.species_names
        if species is None:
            if len(names) != 1:
                raise DatasetError(f"several species {names}: name one")
            return names[0]
        if species not in names:
            raise DatasetError(f"unknown species {species!r}; the dataset has {names}")
        return species

    def _read(self, name: str, time, spatial) -> np.ndarray:
        arr = self._array(name)
        t = self._time_index(time)
        sel = [slice(None) if s is None else s for s in spatial]
        if isinstance(t, list):
            return np.stack([np.asarray(arr[(i, *sel)]) for i in t])
        return np.asarray(arr[(t, *sel)])

    def f(self, species: str | None = None, time=slice(None), x=None, y=None, z=None) -> np.ndarray:
        """Distribution of ``species``: dims (time, x, y, z, vx, vy, vz) minus the int-indexed ones."""
        return self._read(f"f/{self._species(species)}", time, (x, y, z))

    def f_chunks(self, species: str | None = None) -> tuple[int, ...]:
        """Shape of one stored chunk of ``f/<species>`` (the smallest unit a read decodes),
        ``(1, cx, cy, cz, nvx, nvy, nvz)``."""
        return tuple(int(c) for c in self._array(f"f/{self._species(species)}").chunks)

    def f_dtype(self, species: str | None = None) -> np.dtype:
        """dtype of the stored ``f/<species>``."""
        return np.dtype(self._array(f"f/{self._species(species)}").dtype)

    def vdfs(self, species: str | None = None, time=slice(None)) -> np.ndarray:
        """Every VDF of the selected snapshots as ``(n_vdfs, nvx, nvy, nvz)`` (time-major, then x, y, z)."""
        f = self.f(species, time)
        return f.reshape((-1, *self.grid.nv))

    def fields(self, time=slice(None), x=None, y=None, z=None) -> tuple[np.ndarray, np.ndarray]:
        """``(E, B)``, each with dims (time, x, y, z, 3) minus the int-indexed ones."""
        return self._read("E", time, (x, y, z)), self._read("B", time, (x, y, z))

    def moments(self, species: str | None = None, name: str = "density", time=slice(None), x=None, y=None, z=None):
        """A stored per-cell moment (see :data:`MOMENT_NAMES`) of ``species``."""
        if name not in MOMENT_NAMES:
            raise DatasetError(f"unknown moment {name!r}; choose from {MOMENT_NAMES}")
        return self._read(f"moments/{self._species(species)}/{name}", time, (x, y, z))

    def state(self, time: int = -1):
        """The snapshot ``time`` as a :class:`~faiser.vlasov.state.State` (on the default device)."""
        import jax.numpy as jnp

        from faiser.vlasov.state import State

        i = self._time_index(time)
        if not isinstance(i, int):
            raise DatasetError("state() takes a single time index")
        E, B = self.fields(i)
        aux_names = list(self._root["aux"].array_keys()) if "aux" in self._root else []
        aux = {name: jnp.asarray(np.asarray(self._array(f"aux/{name}")[i])) for name in sorted(aux_names)}
        return State(
            f=tuple(jnp.asarray(self.f(s.name, i)) for s in self.species),
            E=jnp.asarray(E),
            B=jnp.asarray(B),
            time=jnp.asarray(self.times[i]),
            step=jnp.asarray(int(self.steps[i]), dtype=jnp.int32),
            mass_lost=jnp.zeros(len(self.species)),
            aux=aux,
        )

    def to_xarray(self, species: str | None = None):
        """Stored moments of ``species`` and the fields as an (eager) xarray Dataset over time."""
        import xarray as xr

        sp = self._species(species)
        t = self.times
        E, B = self.fields()
        data = {"E": (("time", "x", "y", "z", "component"), E), "B": (("time", "x", "y", "z", "component"), B)}
        for name in MOMENT_NAMES:
            v = self.moments(sp, name)
            dims = ("time", "x", "y", "z") + {"bulk_velocity": ("component",), "pressure": ("i", "j")}.get(name, ())
            data[name] = (dims, v)
        coords = {"time": t, "step": ("time", self.steps)}
        for axis, d in enumerate("xyz"):
            coords[d] = np.asarray(self.grid.x_centers(axis))
        ds = xr.Dataset(data, coords=coords)
        ds.attrs.update(case=str(self.case), species=sp, units="normalized (see Dataset.units)")
        return ds


def open_dataset(path: str | Path) -> Dataset:
    """Open a trajectory dataset: a store written by :class:`DatasetWriter` or a run directory
    holding ``snapshots/``. Raises :class:`~faiser.errors.DatasetError` if there is none."""
    return Dataset(path)
