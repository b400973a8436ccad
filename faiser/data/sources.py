"""Where every reader gets VDFs from: paths -> runs, and zarr trajectory datasets or VLSV files as sources.

:func:`resolve_runs` is the one place that turns user paths into runs (the loaders, ``faiser
train-codec`` and the latent solver's data all go through it):

* a faiser dataset (:func:`is_dataset`: a zarr store, or a run directory holding ``snapshots/``)
  is one run;
* a ``faiser sweep`` root (:func:`is_sweep_root`: a directory with ``sweep.json`` that is not
  itself a dataset; :mod:`faiser.run.sweep` writes ``ROOT/sweep.json`` before its first run and
  ``ROOT/index.json`` after each) stands for the runs listed in ``sweep.json`` that hold a
  dataset, in sweep order (``complete=True``: only those that finished);
* any other file is a Vlasiator VLSV file, one run with a single snapshot.

A :class:`Source` is a list of *runs*. A run has snapshots ``t = 0 .. T-1`` on a spatial mesh of
``(nx, ny, nz)`` cells, one VDF ``(nvx, nvy, nvz)`` per cell and species, and every run of a source
shares the species names and the velocity mesh (checked on opening).

* :class:`ZarrSource`: each path is a faiser dataset (a store or a run directory holding
  ``snapshots/``) or a ``faiser sweep`` root (its runs); a run is a dataset, its mesh the
  dataset's spatial grid.
* :class:`VlsvSource`: each path is one Vlasiator VLSV file = one run with a single snapshot; its
  "mesh" is the list of cells that store a VDF, ``(n_cells, 1, 1)``, in the file's cell order. It
  is *unstructured*: per-VDF samples only (no spatial patches or time windows).

Reads go through storage *chunks* (zarr: the store's ``f`` chunk, a spatial tile of whole VDFs of
one snapshot; VLSV: a run of consecutive cells of about 4 MiB). Each chunk is decoded once per
request (``memo``) and kept in a least-recently-used cache bounded by ``cache_bytes`` (0 disables
it), so memory stays bounded whatever the size of the data; the whole dataset is held in memory
only when it fits the cache. The chunks of one request are decoded ``read_workers`` at a time.
"""

from __future__ import annotations

import collections
import itertools
import json
import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from faiser.data.sparse_blocks import VelocityMesh
from faiser.errors import DataError, DatasetError

__all__ = [
    "ChunkCache",
    "SampleSpace",
    "Source",
    "VlsvSource",
    "ZarrSource",
    "is_dataset",
    "is_sweep_root",
    "open_source",
    "resolve_runs",
]

DEFAULT_CACHE_BYTES = 256 << 20
_VLSV_CHUNK_BYTES = 4 << 20


class ChunkCache:
    """Thread-safe LRU cache of decoded chunks, bounded by their total ``nbytes``."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._items: collections.OrderedDict = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.bytes_read = 0  # decoded bytes of every miss

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key, load: Callable[[], np.ndarray]) -> np.ndarray:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
        value = load()  # outside the lock: decoding may take a while
        with self._lock:
            self.misses += 1
            self.bytes_read += value.nbytes
            if 0 < value.nbytes <= self.max_bytes and key not in self._items:
                self._items[key] = value
                self._bytes += value.nbytes
                while self._bytes > self.max_bytes:
                    _, old = self._items.popitem(last=False)
                    self._bytes -= old.nbytes
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


class SampleSpace:
    """Implicit enumeration of samples ``(run, species, start snapshot, origin cell)``.

    Per run the samples are ordered species-major, then start snapshot, then origin x, y, z; runs
    follow each other. Nothing of size ``n_samples`` is stored: ids are decoded arithmetically.

    Args:
      species: species indices (into the source's ``species``) to enumerate.
      runs: per run ``(run index, start snapshot indices (T',), (origins_x, origins_y, origins_z))``.
    """

    def __init__(self, species: Sequence[int], runs: Sequence[tuple[int, np.ndarray, Sequence[np.ndarray]]]):
        self.species = np.asarray(species, dtype=np.int64)
        self.runs = [(int(r), np.asarray(t, dtype=np.int64), tuple(np.asarray(o, dtype=np.int64) for o in org))
                     for r, t, org in runs]  # fmt: skip
        self.shapes = [(len(self.species), len(t), *(len(o) for o in org)) for _, t, org in self.runs]
        sizes = [math.prod(s) for s in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)

    @property
    def size(self) -> int:
        return int(self.offsets[-1])

    def __len__(self) -> int:
        return self.size

    def decode(self, ids) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``ids`` (n,) -> ``(run (n,), species (n,), start snapshot (n,), origin (n, 3))``, all int64."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.size):
            raise DataError(f"sample ids out of range [0, {self.size})")
        k = np.searchsorted(self.offsets, ids, side="right") - 1
        run = np.empty(ids.shape, np.int64)
        sp = np.empty(ids.shape, np.int64)
        t = np.empty(ids.shape, np.int64)
        origin = np.empty((*ids.shape, 3), np.int64)
        for j in np.unique(k):
            sel = k == j
            r, times, org = self.runs[j]
            si, ti, ox, oy, oz = np.unravel_index(ids[sel] - self.offsets[j], self.shapes[j])
            run[sel] = r
            sp[sel] = self.species[si]
            t[sel] = times[ti]
            origin[sel] = np.stack([org[0][ox], org[1][oy], org[2][oz]], axis=-1)
        return run, sp, t, origin


def _group(*keys: np.ndarray) -> list[np.ndarray]:
    """Positions of equal rows of the stacked integer ``keys``, one index array per group (sorted)."""
    if len(keys[0]) == 0:
        return []
    stacked = np.stack([np.asarray(k, dtype=np.int64) for k in keys], axis=1)
    _, inv = np.unique(stacked, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    order = np.argsort(inv, kind="stable")
    bounds = np.flatnonzero(np.diff(inv[order])) + 1
    return np.split(order, bounds)


def _as_slice(a: np.ndarray) -> slice | np.ndarray:
    """A run of consecutive integers as a slice (basic indexing copies once), anything else unchanged."""
    if len(a) and int(a[-1]) - int(a[0]) == len(a) - 1 and (len(a) < 3 or bool(np.all(np.diff(a) == 1))):
        return slice(int(a[0]), int(a[-1]) + 1)
    return a


def _as_array(v: slice | np.ndarray) -> np.ndarray:
    return np.arange(v.start, v.stop) if isinstance(v, slice) else v


class Source:
    """Base class: runs of VDFs read by chunk through a bounded cache (see the module docstring).

    Subclasses set ``species``, ``mesh``, ``dtype``, ``structured`` and implement the ``run_*``
    methods, :meth:`chunk_tile` and :meth:`_read_chunk`.
    """

    species: tuple[str, ...]
    mesh: VelocityMesh
    dtype: np.dtype
    structured: bool = True

    def __init__(self, cache_bytes: int = DEFAULT_CACHE_BYTES, read_workers: int | None = None):
        self.cache = ChunkCache(cache_bytes)
        self.read_workers = max(1, int(read_workers if read_workers is not None else min(8, os.cpu_count() or 1)))

    # -- per-run metadata (subclasses) ------------------------------------------------------------
    @property
    def n_runs(self) -> int:
        raise NotImplementedError

    def run_shape(self, run: int) -> tuple[int, int, int]:
        """Spatial cells ``(nx, ny, nz)`` of ``run``."""
        raise NotImplementedError

    def run_times(self, run: int) -> np.ndarray:
        """Time of each snapshot of ``run`` (T,), in the run's units."""
        raise NotImplementedError

    def run_periodic(self, run: int) -> tuple[bool, bool, bool]:
        """Whether each spatial axis of ``run`` is periodic."""
        return (False, False, False)

    def positions(self, run: int, cells: np.ndarray) -> np.ndarray:
        """Cell-centre coordinates ``(n, 3)`` (float64) of ``cells`` ``(n, 3)`` of ``run``."""
        raise NotImplementedError

    def chunk_tile(self, run: int, species: int) -> tuple[int, int, int]:
        """Spatial cells per storage chunk of ``run``."""
        raise NotImplementedError

    def _read_chunk(self, run: int, species: int, t: int, chunk: tuple[int, int, int]) -> np.ndarray:
        """Decode one chunk: ``(tile cells clipped to the mesh..., nvx, nvy, nvz)``."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    # -- generic reads ----------------------------------------------------------------------------
    @property
    def n_snapshots(self) -> int:
        return sum(len(self.run_times(r)) for r in range(self.n_runs))

    def species_index(self, species: str | Sequence[str] | None) -> tuple[int, ...]:
        """Indices of ``species`` (a name, names or None = all) in :attr:`species`."""
        if species is None:
            return tuple(range(len(self.species)))
        names = (species,) if isinstance(species, str) else tuple(species)
        unknown = [s for s in names if s not in self.species]
        if unknown or not names:
            raise DataError(f"unknown species {unknown or names}; the source has {self.species}")
        return tuple(self.species.index(s) for s in names)

    def max_chunk_bytes(self) -> int:
        """Bytes of the largest decoded chunk over runs and species."""
        per_vdf = math.prod(self.mesh.nv) * self.dtype.itemsize
        pairs = [(r, s) for r in range(self.n_runs) for s in range(len(self.species))]
        return max(math.prod(self.chunk_tile(r, s)) * per_vdf for r, s in pairs)

    def chunk(self, run: int, species: int, t: int, chunk: tuple[int, int, int], memo: dict | None = None):
        """One decoded chunk, from ``memo`` (a per-request dict), the LRU cache or storage."""
        key = (run, species, t, chunk)
        if memo is not None and key in memo:
            return memo[key]
        value = self.cache.get(key, lambda: self._read_chunk(run, species, t, chunk))
        if memo is not None:
            memo[key] = value
        return value

    def load_chunks(self, keys, memo: dict) -> None:
        """Decode the chunks ``keys`` (``(run, species, t, (cx, cy, cz))``) missing from ``memo`` into it,
        ``read_workers`` at a time (the codecs release the GIL, so decoding scales with cores)."""
        missing = [k for k in dict.fromkeys(keys) if k not in memo]
        if len(missing) < 2 or self.read_workers < 2:
            for k in missing:
                self.chunk(*k, memo=memo)
            return
        with ThreadPoolExecutor(min(self.read_workers, len(missing)), thread_name_prefix="faiser-chunks") as pool:
            for k, value in zip(missing, pool.map(lambda k: self.chunk(*k), missing)):
                memo[k] = value

    def cell_chunks(self, run: int, species: int, t, cells: np.ndarray) -> list[tuple]:
        """Chunk keys holding ``cells`` ``(n, 3)`` of snapshot(s) ``t`` (an int or ``(n,)``)."""
        tile = np.asarray(self.chunk_tile(run, species))
        keys = np.concatenate([np.broadcast_to(np.asarray(t).reshape(-1, 1), (len(cells), 1)),
                               np.asarray(cells, dtype=np.int64).reshape(-1, 3) // tile], axis=1)  # fmt: skip
        return [(run, species, int(k[0]), (int(k[1]), int(k[2]), int(k[3]))) for k in np.unique(keys, axis=0)]

    def region_chunks(self, run: int, species: int, t: int, ix, iy, iz) -> list[tuple]:
        """Chunk keys that :meth:`read_region` needs for these index lists."""
        tile = self.chunk_tile(run, species)
        per_axis = [np.unique(np.asarray(i, dtype=np.int64) // n).tolist() for i, n in zip((ix, iy, iz), tile)]
        return [(run, species, int(t), c) for c in itertools.product(*per_axis)]

    def read_cells(self, run: int, species: int, t: int, cells: np.ndarray, memo: dict | None = None) -> np.ndarray:
        """VDFs ``(n, nvx, nvy, nvz)`` of ``cells`` ``(n, 3)`` of one snapshot; each chunk decoded once."""
        cells = np.asarray(cells, dtype=np.int64).reshape(-1, 3)
        tile = np.asarray(self.chunk_tile(run, species))
        out = np.empty((len(cells), *self.mesh.nv), dtype=self.dtype)
        keys = cells // tile
        for sel in _group(*keys.T):
            c = keys[sel[0]]
            data = self.chunk(run, species, t, tuple(int(v) for v in c), memo)
            loc = cells[sel] - c * tile
            out[sel] = data[loc[:, 0], loc[:, 1], loc[:, 2]]
        return out

    def read_region(self, run: int, species: int, t: int, ix, iy, iz, memo: dict | None = None,
                    out: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
        """VDFs on the outer product of cell index lists: ``(len(ix), len(iy), len(iz), nv...)``.

        The lists may wrap or repeat (periodic patches); each needed chunk is decoded once. ``out``
        (optional) receives the result in place.
        """
        idx = [np.asarray(i, dtype=np.int64) for i in (ix, iy, iz)]
        tile = self.chunk_tile(run, species)
        shape = (*(len(i) for i in idx), *self.mesh.nv)
        if out is None:
            out = np.empty(shape, dtype=self.dtype)
        elif out.shape != shape:
            raise DataError(f"read_region: out has shape {out.shape}, expected {shape}")
        per_axis = []
        for a in range(3):
            c = idx[a] // tile[a]
            per_axis.append([(int(u), _as_slice(np.flatnonzero(c == u))) for u in np.unique(c)])
        for cx, sx in per_axis[0]:
            for cy, sy in per_axis[1]:
                for cz, sz in per_axis[2]:
                    data = self.chunk(run, species, t, (cx, cy, cz), memo)
                    dst = (sx, sy, sz)
                    src = tuple(_as_slice(idx[a][d] - c * tile[a]) for a, (d, c) in enumerate(zip(dst, (cx, cy, cz))))
                    if all(isinstance(v, slice) for v in dst + src):
                        out[dst] = data[src]  # contiguous boxes: one copy, no temporaries
                    else:
                        out[np.ix_(*(_as_array(v) for v in dst))] = data[np.ix_(*(_as_array(v) for v in src))]
        return out

    def vdf_index(self, species: str | Sequence[str] | None = None) -> SampleSpace:
        """Every VDF (all runs, snapshots and cells) of ``species`` as a :class:`SampleSpace`."""
        runs = [(r, np.arange(len(self.run_times(r))), [np.arange(n) for n in self.run_shape(r)])
                for r in range(self.n_runs)]  # fmt: skip
        return SampleSpace(self.species_index(species), runs)

    def read_vdfs(self, space: SampleSpace, ids, memo: dict | None = None) -> np.ndarray:
        """VDFs ``(n, nvx, nvy, nvz)`` of the samples ``ids`` of a per-cell ``space``, in the order of ``ids``."""
        run, sp, t, origin = space.decode(ids)
        out = np.empty((len(run), *self.mesh.nv), dtype=self.dtype)
        memo = {} if memo is None else memo
        groups = _group(run, sp)
        keys = [k for g in groups for k in self.cell_chunks(int(run[g[0]]), int(sp[g[0]]), t[g], origin[g])]
        self.load_chunks(keys, memo)
        for sel in _group(run, sp, t):
            i = sel[0]
            out[sel] = self.read_cells(int(run[i]), int(sp[i]), int(t[i]), origin[sel], memo)
        return out


def _check_common(names: list[tuple[str, ...]], meshes: list[VelocityMesh], what: list[str]) -> None:
    for n, m, w in zip(names[1:], meshes[1:], what[1:]):
        if n != names[0]:
            raise DataError(f"{w} has species {n}, but {what[0]} has {names[0]}: a source needs the same species")
        if not m.same_as(meshes[0]):
            raise DataError(f"{w} has velocity mesh {m}, but {what[0]} has {meshes[0]}: a source needs one mesh")


def is_dataset(path: str | Path) -> bool:
    """Whether ``path`` is a faiser trajectory dataset: a zarr store or a run directory holding ``snapshots/``."""
    p = Path(path)
    return p.is_dir() and ((p / "zarr.json").exists() or (p / "snapshots" / "zarr.json").exists())


def is_sweep_root(path: str | Path) -> bool:
    """Whether ``path`` is a ``faiser sweep`` output root: a directory holding ``sweep.json`` (written by
    :func:`faiser.run.sweep.run_sweep` before its first run) that is not itself a dataset."""
    p = Path(path)
    return (p / "sweep.json").is_file() and not is_dataset(p) and not (p / "snapshots").exists()


def _sweep_runs(root: Path, complete: bool) -> list[Path]:
    """The run directories of a sweep root that hold a dataset (finished ones only if ``complete``), sweep order."""
    try:
        names = [r["name"] for r in json.loads((root / "sweep.json").read_text())["runs"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DatasetError(f"{root}/sweep.json is not a readable sweep record: {e}") from e
    runs = [root / n for n in names if is_dataset(root / n)]
    if complete:
        from faiser.data.dataset import open_dataset

        runs = [r for r in runs if open_dataset(r).complete]
    if not runs:
        raise DatasetError(f"the sweep {root} has no {'finished ' if complete else ''}run with a dataset yet")
    return runs


def resolve_runs(paths: str | Path | Sequence[str | Path], *, complete: bool = False) -> list[Path]:
    """The runs named by ``paths``: datasets and VLSV files as they are, sweep roots as their runs.

    Args:
      paths: a path or paths (see the module docstring for what each may be).
      complete: take only the runs of a sweep root whose dataset is complete (a sweep still running,
        or killed, leaves a partial dataset); paths named directly are always taken.

    Raises:
      DatasetError: a path that does not exist, a directory that is neither a dataset nor a sweep
        root, an unreadable ``sweep.json``, or a sweep without a (finished) run yet.
    """
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    out: list[Path] = []
    for p in map(Path, items):
        if is_sweep_root(p):
            out += _sweep_runs(p, complete)
        elif is_dataset(p) or p.is_file():
            out.append(p)
        elif p.is_dir():
            raise DatasetError(f"{p}: neither a faiser dataset, a sweep root nor a VLSV file")
        else:
            raise DatasetError(f"no dataset, sweep root or VLSV file at {p}")
    return out


class ZarrSource(Source):
    """VDFs of one or several faiser trajectory datasets (a sweep family, say).

    Args:
      paths: dataset paths (stores or run directories; a ``faiser sweep`` root means every run of it
        that has a dataset, in sweep order) or opened :class:`~faiser.data.dataset.Dataset`.
      species: species to expose (default: all species of the first dataset; every dataset must have them).
      cache_bytes: bound of the decoded-chunk LRU cache (0: no cache across requests).
      read_workers: chunks decoded concurrently per request (default ``min(8, cpu_count)``).
    """

    def __init__(self, paths, species: str | Sequence[str] | None = None, cache_bytes: int = DEFAULT_CACHE_BYTES,
                 read_workers: int | None = None):  # fmt: skip
        from faiser.data.dataset import Dataset, open_dataset

        super().__init__(cache_bytes, read_workers)
        items = [paths] if isinstance(paths, str | os.PathLike | Dataset) else list(paths)
        items = [q for p in items for q in (resolve_runs(p) if isinstance(p, str | os.PathLike) else [p])]
        if not items:
            raise DataError("a zarr source needs at least one dataset")
        self.datasets = [p if isinstance(p, Dataset) else open_dataset(p) for p in items]
        first = self.datasets[0]
        names = (species,) if isinstance(species, str) else tuple(species or first.species_names)
        for ds in self.datasets:
            missing = [s for s in names if s not in ds.species_names]
            if missing:
                raise DataError(f"dataset {ds.path} lacks species {missing} (it has {ds.species_names})")
            if len(ds) == 0:
                raise DataError(f"dataset {ds.path} holds no completed snapshot")
        meshes = [VelocityMesh(ds.grid.nv, ds.grid.v_min, ds.grid.v_max) for ds in self.datasets]
        _check_common([names] * len(self.datasets), meshes, [str(ds.path) for ds in self.datasets])
        self.species = names
        self.mesh = meshes[0]
        self._times = [ds.times for ds in self.datasets]
        self._tiles: dict[tuple[int, int], tuple[int, int, int]] = {}
        self.dtype = self.datasets[0].f_dtype(self.species[0])

    @property
    def n_runs(self) -> int:
        return len(self.datasets)

    def run_shape(self, run: int) -> tuple[int, int, int]:
        return tuple(self.datasets[run].grid.nx)

    def run_times(self, run: int) -> np.ndarray:
        return self._times[run]

    def run_periodic(self, run: int) -> tuple[bool, bool, bool]:
        return tuple(b[0] == "periodic" for b in self.datasets[run].grid.boundaries)

    def positions(self, run: int, cells: np.ndarray) -> np.ndarray:
        g = self.datasets[run].grid
        cells = np.asarray(cells, dtype=np.int64).reshape(-1, 3)
        return np.stack([g.x_centers(a)[cells[:, a]] for a in range(3)], axis=-1)

    def chunk_tile(self, run: int, species: int) -> tuple[int, int, int]:
        key = (run, species)
        if key not in self._tiles:
            self._tiles[key] = self.datasets[run].f_chunks(self.species[species])[1:4]
        return self._tiles[key]

    def _read_chunk(self, run: int, species: int, t: int, chunk: tuple[int, int, int]) -> np.ndarray:
        tile, shape = self.chunk_tile(run, species), self.run_shape(run)
        sl = [slice(c * n, min((c + 1) * n, m)) for c, n, m in zip(chunk, tile, shape)]
        return self.datasets[run].f(self.species[species], int(t), x=sl[0], y=sl[1], z=sl[2])

    def describe(self) -> str:
        paths = ", ".join(str(ds.path) for ds in self.datasets)
        return f"zarr datasets [{paths}] species {list(self.species)}"


class VlsvSource(Source):
    """VDFs of Vlasiator VLSV files read with :func:`faiser.data.vlsv.open_vlsv`; one file = one snapshot.

    Cells are those that store a VDF of the population, in the order of ``cells_with_vdf``; the
    run's mesh is ``(n_cells, 1, 1)`` (unstructured: per-VDF samples only). Values stay in the
    file's units (SI: s^3/m^6, velocities m/s).

    Args:
      paths: VLSV files (every file must share the population's velocity mesh).
      population: population name, or several (default: every population of the first file).
      cache_bytes: bound of the decoded-chunk LRU cache.
      dtype: dtype of the VDFs handed out (the file's blocks may be float64).
      read_workers: chunks decoded concurrently per request (default ``min(8, cpu_count)``).
    """

    structured = False

    def __init__(self, paths, population: str | Sequence[str] | None = None, cache_bytes: int = DEFAULT_CACHE_BYTES,
                 dtype: str = "float32", read_workers: int | None = None):  # fmt: skip
        from faiser.data.vlsv import open_vlsv

        super().__init__(cache_bytes, read_workers)
        items = [paths] if isinstance(paths, str | Path) else list(paths)
        if not items:
            raise DataError("a VLSV source needs at least one file")
        self.paths = [Path(p) for p in items]
        self.files = [open_vlsv(p) for p in self.paths]
        first = self.files[0]
        names = (population,) if isinstance(population, str) else tuple(population or first.populations)
        meshes, cells = [], []
        for path, vf in zip(self.paths, self.files):
            missing = [p for p in names if p not in vf.populations]
            if missing:
                raise DataError(f"{path} lacks population(s) {missing} (it has {list(vf.populations)})")
            m = [vf.velocity_mesh(p) for p in names]
            for p, mp in zip(names[1:], m[1:]):
                if not mp.same_as(m[0]):
                    raise DataError(f"{path}: populations {names[0]} and {p} have different velocity meshes")
            meshes.append(m[0])
            cells.append([np.asarray(vf.cells_with_vdf(p), dtype=np.int64) for p in names])
        _check_common([names] * len(self.files), meshes, [str(p) for p in self.paths])
        self.species = names
        self.mesh = meshes[0]
        self.dtype = np.dtype(dtype)
        self._cells = cells  # [file][population] -> cell ids with a VDF
        for path, per_pop in zip(self.paths, cells):
            if any(len(c) != len(per_pop[0]) for c in per_pop):
                raise DataError(f"{path}: the populations store VDFs in different cells; open one population")
        self._tile = max(1, _VLSV_CHUNK_BYTES // (math.prod(self.mesh.nv) * self.dtype.itemsize))

    @property
    def n_runs(self) -> int:
        return len(self.files)

    def cellids(self, run: int, species: int = 0) -> np.ndarray:
        """Cell ids (VLSV ``CellID``) of the run's cells, in sample order."""
        return self._cells[run][species]

    def run_shape(self, run: int) -> tuple[int, int, int]:
        return (len(self._cells[run][0]), 1, 1)

    def run_times(self, run: int) -> np.ndarray:
        t = getattr(self.files[run], "time", None)
        return np.asarray([np.nan if t is None else float(t)])

    def positions(self, run: int, cells: np.ndarray) -> np.ndarray:
        """Cell centres (m) of level-0 cells from ``CellID = 1 + i + j nx + k nx ny``; NaN for refined cells."""
        cells = np.asarray(cells, dtype=np.int64).reshape(-1, 3)
        ids = self._cells[run][0][cells[:, 0]]
        sm = self.files[run].spatial_mesh
        n = np.asarray(sm.ncells, dtype=np.int64)
        k = ids.astype(np.int64) - 1
        ijk = np.stack([k % n[0], (k // n[0]) % n[1], k // (n[0] * n[1])], axis=-1)
        out = np.asarray(sm.xmin) + (ijk + 0.5) * np.asarray(sm.dx)
        out[k >= n.prod()] = np.nan  # refined (AMR) cells: not placed
        return out

    def chunk_tile(self, run: int, species: int) -> tuple[int, int, int]:
        return (self._tile, 1, 1)

    def _read_chunk(self, run: int, species: int, t: int, chunk: tuple[int, int, int]) -> np.ndarray:
        ids = self._cells[run][species][chunk[0] * self._tile : (chunk[0] + 1) * self._tile]
        vdf = self.files[run].read_vdf(self.species[species], cellids=ids)
        return np.asarray(vdf, dtype=self.dtype)[:, None, None]

    def describe(self) -> str:
        names = ", ".join(str(p) for p in self.paths)
        return f"VLSV files [{names}] populations {list(self.species)}"


def open_run(path: str | Path, population: str | None = None) -> Source:
    """The :class:`Source` of one run (dataset / run directory) or one VLSV file, holding one species:
    ``population`` (default: the input's first), with no chunk cache (each VDF is read once)."""
    if is_dataset(path):
        return ZarrSource(path, species=population, cache_bytes=0)
    from faiser.data.vlsv_reader import open_vlsv

    with open_vlsv(path) as vf:
        pops = vf.populations
    if not pops:
        raise DataError(f"{path}: the file holds no population")
    return VlsvSource(path, population=population or pops[0], cache_bytes=0)


def open_source(source, **kwargs) -> Source:
    """A :class:`Source` from a Source (returned as is), a path or a list of paths.

    The paths are resolved into runs (:func:`resolve_runs`): VLSV files make a :class:`VlsvSource`
    (``kwargs``: ``population``, ...), datasets and sweep roots a :class:`ZarrSource` (``kwargs``:
    ``species``, ``cache_bytes``).
    """
    if isinstance(source, Source):
        return source
    runs = resolve_runs(source)
    vlsv = [not is_dataset(p) for p in runs]
    if runs and all(vlsv):
        return VlsvSource(runs, **kwargs)
    if any(vlsv):
        raise DataError("mix of VLSV files and datasets: open them as separate sources")
    return ZarrSource(runs, **kwargs)
