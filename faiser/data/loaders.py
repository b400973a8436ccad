"""Training loaders: per-VDF samples, phase-space patches and time windows, batched for JAX.

Three loaders share one iteration machinery (:class:`Loader`) and differ in what a sample is:

* :class:`VdfLoader`: one VDF, ``f`` of shape ``(batch, nvx, nvy, nvz)``;
* :class:`PatchLoader`: a spatial patch of VDFs, ``(batch, px, py, pz, nvx, nvy, nvz)``;
* :class:`WindowLoader`: ``window + 1`` states ``t0, t0 + stride, ..., t0 + window * stride``
  (snapshot indices) of the whole mesh or of a patch, ``(batch, window + 1, px, py, pz, nv...)``
  (a latent propagator's input state and its next ``window`` targets).

A batch is a dict of arrays with the sample axis first:

    f           the (normalized, when ``stats`` is given) VDFs, float32
    scale, shift   per-VDF side information of the normalization (only with ``stats``)
    mask        (batch,) bool: False for padding in a last short batch (``drop_last=False``)
    index       (batch,) the sample's id in ``[0, num_samples)``
    run, species   (batch,) run (dataset / VLSV file) and species indices into the source
    t_index     (batch,) snapshot index (``(batch, window + 1)`` for windows)
    origin      (batch, 3) cell (per-VDF) or first cell of the patch (``x, y, z`` indices)
    + the ``conditioning`` entries asked for: ``time`` (like ``t_index``, the snapshot times),
      ``position`` ``(batch, 3)`` centre of the ``origin`` cell, and per-VDF moments of the raw
      VDFs ``density`` (leading dims of ``f``), ``bulk_velocity`` (``(..., 3)``), ``temperature``.

Typical use::

    src = ZarrSource(["runs/a", "runs/b"])                      # or a sweep root, or VLSV files
    stats = fit_normalization(src, center=True, seed=0)         # once; stats.save(model_dir)
    loader = VdfLoader(src, batch_size=256, stats=stats, mesh=make_mesh(), seed=0)  # faiser.parallel.mesh
    for epoch in range(10):
        for batch in loader:                                     # dict of sharded jax.Arrays
            state = train_step(state, batch["f"], batch["mask"])
        ckpt["loader"] = loader.state_dict()                     # JSON; resume with load_state_dict
    f = denormalize(model(batch["f"]), stats, batch)             # back to physical units

Iteration. Samples are ordered per epoch by a permutation drawn from
``numpy.random.default_rng([seed, epoch])`` (``shuffle_mode="global"``), or chunk-aware
(``"chunks"``: storage chunks are permuted, then samples are shuffled within blocks of
``shuffle_block`` consecutive chunks, so a batch touches few chunks; the source's chunk cache is
grown to hold a block), or not at all
(``shuffle=False``). Epoch ``e`` is a pure function of ``(seed, e)``, so batches are deterministic
and an iterator resumes exactly from ``state_dict()`` = ``{"epoch", "position", "seed", ...}`` (JSON).
With ``drop_last=True`` (default) an epoch has ``num_samples // batch_size`` full batches and the
last ``num_samples % batch_size`` samples of that epoch's order are skipped (a different tail each
epoch); with ``drop_last=False`` the last batch is filled up with the epoch's first samples and
``mask`` is False on those, so every sample is visited exactly once with ``mask`` True.

``iter(loader)`` runs to the end of the current epoch (``for epoch in ...: for batch in loader``);
:meth:`Loader.stream` crosses epochs. Batches are built in a background thread when
``prefetch > 0`` (a bounded queue of that many batches; errors are re-raised in the consumer;
``close()`` or leaving the iterator stops the thread).

Distribution. Each process reads only its share, the contiguous slice ``process_index`` of
``process_count`` of every global batch (default ``jax.process_index()`` / ``jax.process_count()``;
with a mesh on several JAX processes, the rows that this process's devices hold).
With a ``mesh`` holding a ``data`` axis every array is placed as
``NamedSharding(mesh, PartitionSpec("data"))`` (``jax.device_put`` on one process,
``jax.make_array_from_process_local_data`` on several); without one, on the default device
(``to_device=True``) or left in numpy.
"""

from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from faiser.data.normalization import NormStats, normalize, vdf_moments
from faiser.data.sources import SampleSpace, Source, open_source
from faiser.errors import ConfigError, DataError

__all__ = ["CONDITIONING", "Loader", "LoaderIterator", "PatchLoader", "VdfLoader", "WindowLoader"]

CONDITIONING = ("time", "position", "density", "bulk_velocity", "temperature")
SHUFFLE_MODES = ("global", "chunks")
WRAP_MODES = ("auto", "periodic", "valid")
_MOMENTS = ("density", "bulk_velocity", "temperature")


class Loader:
    """Base of the loaders: sample order, batching, state, prefetch, sharding, placement.

    Args:
      source: a :class:`~faiser.data.sources.Source` or dataset / VLSV path(s) (see ``open_source``).
      batch_size: the *global* batch size (over all processes).
      species: species name(s) to sample (default: all of the source's).
      shuffle, shuffle_mode, shuffle_block, seed: the sample order (see the module docstring).
      drop_last: skip the short last batch of an epoch (True) or pad it and mask the padding (False).
      stats: :class:`~faiser.data.normalization.NormStats` (or a JSON path) to normalize ``f`` with.
      conditioning: extra entries among :data:`CONDITIONING`.
      prefetch: batches built ahead in a background thread (0: built on demand in the caller).
      process_index, process_count: this process's share (default from JAX).
      mesh: a ``jax.sharding.Mesh`` with a ``data`` axis to shard batches over
        (:func:`faiser.parallel.mesh.make_mesh`).
      to_device: without a mesh, put batches on the default device (True) or keep numpy (False).
      cache_bytes, read_workers: chunk cache bound and concurrent chunk decodes of a source opened from
        paths (see :class:`~faiser.data.sources.ZarrSource`).
    """

    kind = "base"

    def __init__(
        self,
        source: Source | str | Path | Sequence[str | Path],
        *,
        batch_size: int,
        species: str | Sequence[str] | None = None,
        shuffle: bool = True,
        shuffle_mode: str = "global",
        shuffle_block: int = 8,
        seed: int = 0,
        drop_last: bool = True,
        stats: NormStats | str | Path | None = None,
        conditioning: Sequence[str] = (),
        prefetch: int = 2,
        process_index: int | None = None,
        process_count: int | None = None,
        mesh: jax.sharding.Mesh | None = None,
        to_device: bool = True,
        cache_bytes: int | None = None,
        read_workers: int | None = None,
    ):
        kw = {k: int(v) for k, v in (("cache_bytes", cache_bytes), ("read_workers", read_workers)) if v is not None}
        self.source = open_source(source, **kw)
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if shuffle_mode not in SHUFFLE_MODES:
            raise ConfigError(f"shuffle_mode must be one of {SHUFFLE_MODES}, got {shuffle_mode!r}")
        if int(shuffle_block) < 1 or int(prefetch) < 0:
            raise ConfigError("shuffle_block must be >= 1 and prefetch >= 0")
        unknown = [c for c in conditioning if c not in CONDITIONING]
        if unknown:
            raise ConfigError(f"unknown conditioning {unknown}; choose from {CONDITIONING}")
        self.species_ids = self.source.species_index(species)
        self.shuffle, self.shuffle_mode, self.shuffle_block = bool(shuffle), shuffle_mode, int(shuffle_block)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.conditioning = tuple(dict.fromkeys(conditioning))
        self.prefetch = int(prefetch)
        if isinstance(stats, str | Path):
            stats = NormStats.load(stats)
        if stats is not None and not stats.mesh.same_as(self.source.mesh):
            raise DataError(f"normalization statistics fitted on {stats.mesh}, but the source has {self.source.mesh}")
        self.stats = stats
        self.process_index = jax.process_index() if process_index is None else int(process_index)
        self.process_count = jax.process_count() if process_count is None else int(process_count)
        if not 0 <= self.process_index < self.process_count:
            raise ConfigError(f"process_index {self.process_index} out of range for {self.process_count} processes")
        if self.batch_size % self.process_count:
            raise ConfigError(f"batch_size {self.batch_size} is not divisible by {self.process_count} processes")
        self.mesh = mesh
        self.to_device = bool(to_device)
        self._sharding = None
        nloc = self.local_batch_size
        self._share = slice(self.process_index * nloc, (self.process_index + 1) * nloc)
        if mesh is not None:
            if "data" not in mesh.axis_names:
                raise ConfigError(f"the mesh needs a 'data' axis, it has {mesh.axis_names}")
            self._sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
            placed = self.batch_size if jax.process_count() > 1 else self.local_batch_size
            if placed % mesh.shape["data"]:
                raise ConfigError(f"batch of {placed} is not divisible by the mesh's data axis "
                                  f"({mesh.shape['data']} devices)")  # fmt: skip
            if jax.process_count() > 1:
                self._share = self._mesh_share()
        self.space = self._build_space()
        if shuffle and shuffle_mode == "chunks":  # the cache must hold a shuffle block, or chunks are decoded again
            need = (self.shuffle_block + 1) * self.source.max_chunk_bytes()
            self.source.cache.max_bytes = max(self.source.cache.max_bytes, need)
        if self.space.size == 0:
            raise DataError(f"{self.kind} loader: no sample in {self.source.describe()}")
        if self.batches_per_epoch == 0:
            raise ConfigError(f"batch_size {self.batch_size} exceeds the {self.space.size} samples (drop_last=True)")
        self._epoch = 0
        self._position = 0
        self._orders: dict[int, np.ndarray] = {}
        self._order_lock = threading.Lock()
        self._active: weakref.ref | None = None

    # -- subclass hooks ---------------------------------------------------------------------------
    def _build_space(self) -> SampleSpace:
        raise NotImplementedError

    def _read(self, ids: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Raw VDFs of samples ``ids`` (sample axis first) and ``t_index`` / ``origin`` / ``run`` / ``species``."""
        raise NotImplementedError

    def _chunk_of(self, run, sp, t, origin) -> tuple[np.ndarray, ...]:
        """Keys of the storage chunk holding each sample's first VDF (chunk-aware shuffle)."""
        tiles = np.empty((len(run), 3), dtype=np.int64)
        for r, s in np.unique(np.stack([run, sp], axis=1), axis=0):
            tiles[(run == r) & (sp == s)] = self.source.chunk_tile(int(r), int(s))
        c = origin // tiles
        return run, sp, t, c[:, 0], c[:, 1], c[:, 2]

    # -- sizes ------------------------------------------------------------------------------------
    @property
    def num_samples(self) -> int:
        return self.space.size

    @property
    def batches_per_epoch(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __len__(self) -> int:
        return self.batches_per_epoch

    @property
    def local_batch_size(self) -> int:
        return self.batch_size // self.process_count

    def _mesh_share(self) -> slice:
        """Rows of the global batch held by this JAX process's devices (must be one contiguous range)."""
        b = self.batch_size
        index = self._sharding.addressable_devices_indices_map((b,))
        rows = sorted({(s[0].indices(b)[0], s[0].indices(b)[1]) for s in index.values()})
        lo, hi = rows[0][0], rows[-1][1]
        if sum(r[1] - r[0] for r in rows) != hi - lo or hi - lo != self.local_batch_size:
            raise ConfigError(f"this process's devices hold rows {rows} of the batch: not one contiguous share of "
                              f"{self.local_batch_size}; order the mesh's devices by process")  # fmt: skip
        return slice(lo, hi)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one sample's ``f`` (without the batch axis)."""
        raise NotImplementedError

    # -- order and state --------------------------------------------------------------------------
    def epoch_order(self, epoch: int) -> np.ndarray:
        """The sample ids of ``epoch`` in visiting order (a permutation of ``range(num_samples)``)."""
        with self._order_lock:
            if epoch in self._orders:
                return self._orders[epoch]
        n = self.num_samples
        if not self.shuffle:
            order = np.arange(n, dtype=np.int64)
        else:
            rng = np.random.default_rng([self.seed, int(epoch)])
            if self.shuffle_mode == "global":
                order = rng.permutation(n).astype(np.int64)
            else:
                order = self._chunk_order(rng)
        with self._order_lock:
            self._orders = {k: v for k, v in self._orders.items() if k >= epoch - 1}
            self._orders[epoch] = order
        return order

    def _chunk_order(self, rng: np.random.Generator) -> np.ndarray:
        n = self.num_samples
        keys = []
        for lo in range(0, n, 1 << 20):  # bounded temporaries
            ids = np.arange(lo, min(n, lo + (1 << 20)))
            keys.append(np.stack(self._chunk_of(*self.space.decode(ids)), axis=1))
        _, group = np.unique(np.concatenate(keys), axis=0, return_inverse=True)
        group = group.reshape(-1)
        rank = np.empty(group.max() + 1, dtype=np.int64)
        rank[rng.permutation(len(rank))] = np.arange(len(rank))
        block = rank[group] // self.shuffle_block
        return np.lexsort((rng.random(n), block)).astype(np.int64)

    def batch_ids(self, epoch: int, position: int) -> tuple[np.ndarray, np.ndarray]:
        """Global sample ids ``(batch_size,)`` of batch ``position`` of ``epoch`` and the mask of real samples."""
        if not 0 <= position < self.batches_per_epoch:
            raise DataError(f"batch position {position} out of range [0, {self.batches_per_epoch})")
        order = self.epoch_order(epoch)
        b = self.batch_size
        ids = order[position * b : (position + 1) * b]
        mask = np.ones(b, dtype=bool)
        if len(ids) < b:  # drop_last=False: pad with the epoch's first samples
            mask[len(ids) :] = False
            ids = np.concatenate([ids, order[: b - len(ids)]])
        return ids, mask

    def state_dict(self) -> dict:
        """Where iteration stands (the next batch to be delivered), as a small JSON-ready dict."""
        return {"epoch": self._epoch, "position": self._position, "seed": self.seed, "kind": self.kind,
                "num_samples": self.num_samples, "batch_size": self.batch_size}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state`` (from :meth:`state_dict`, possibly through JSON); closes a running iterator."""
        try:
            epoch, position, seed = int(state["epoch"]), int(state["position"]), int(state["seed"])
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"malformed loader state {state!r}") from e
        for key in ("num_samples", "batch_size", "kind"):
            if key in state and state[key] != getattr(self, key):
                raise DataError(f"loader state is for {key}={state[key]!r}, this loader has {getattr(self, key)!r}")
        if epoch < 0 or not 0 <= position <= self.batches_per_epoch:
            raise DataError(f"loader state out of range: epoch {epoch}, position {position}")
        self.close()
        if seed != self.seed:
            self.seed = seed
            self._orders = {}
        self._epoch, self._position = epoch, position
        if position == self.batches_per_epoch:
            self._epoch, self._position = epoch + 1, 0

    # -- batches ----------------------------------------------------------------------------------
    def read_batch(self, ids: np.ndarray, mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """This process's share of the global batch ``ids`` as host (numpy) arrays."""
        if len(ids) != self.batch_size:
            raise DataError(f"read_batch takes a global batch of {self.batch_size} ids, got {len(ids)}")
        ids = np.asarray(ids, dtype=np.int64)[self._share]
        mask = np.ones(len(ids), bool) if mask is None else np.asarray(mask, bool)[self._share]
        f, meta = self._read(ids)
        idx_type = np.int32 if self.num_samples < 2**31 else np.int64
        out: dict[str, Any] = {"mask": mask, "index": ids.astype(idx_type)}
        out.update({k: v.astype(np.int32) for k, v in meta.items()})
        if "time" in self.conditioning:
            out["time"] = self._times(meta["run"], meta["t_index"])
        if "position" in self.conditioning:
            pos = np.empty((len(ids), 3), np.float32)
            for r in np.unique(meta["run"]):
                sel = meta["run"] == r
                pos[sel] = self.source.positions(int(r), meta["origin"][sel])
            out["position"] = pos
        wanted = [m for m in _MOMENTS if m in self.conditioning]
        if wanted:
            mom = vdf_moments(f, self.source.mesh)
            out.update({m: np.asarray(mom[m], np.float32) for m in wanted})
        if self.stats is not None:
            z, side = normalize(f, self.stats)
            out["f"] = np.asarray(z, np.float32)
            out["scale"] = np.asarray(side["scale"], np.float32)
            out["shift"] = np.asarray(side["shift"], np.int32)
        else:
            out["f"] = np.asarray(f, np.float32)
        return out

    def _times(self, run: np.ndarray, t: np.ndarray) -> np.ndarray:
        out = np.empty(t.shape, np.float32)
        for r in np.unique(run):
            sel = run == r
            out[sel] = self.source.run_times(int(r))[t[sel]]
        return out

    def place(self, batch: dict[str, np.ndarray]):
        """Put a process-local host batch where the model wants it (see the module docstring)."""
        if self._sharding is not None:
            if jax.process_count() == 1:
                return jax.device_put(batch, self._sharding)
            b = self.batch_size
            return {k: jax.make_array_from_process_local_data(self._sharding, v, (b, *v.shape[1:]))
                    for k, v in batch.items()}  # fmt: skip
        if self.to_device:
            return jax.device_put(batch)
        return batch

    def make_batch(self, epoch: int, position: int):
        """Batch ``position`` of ``epoch``, read, normalized and placed (what iteration yields)."""
        return self.place(self.read_batch(*self.batch_ids(epoch, position)))

    # -- iteration --------------------------------------------------------------------------------
    def __iter__(self) -> LoaderIterator:
        """Batches from the current state to the end of the current epoch."""
        return self._start(cross_epochs=False, num_batches=None)

    def stream(self, num_batches: int | None = None) -> LoaderIterator:
        """Batches from the current state across epochs: ``num_batches`` of them, or forever."""
        return self._start(cross_epochs=True, num_batches=num_batches)

    def iter_from(self, state: dict, num_batches: int | None = None) -> LoaderIterator:
        """:meth:`load_state_dict` then :meth:`stream`."""
        self.load_state_dict(state)
        return self.stream(num_batches)

    def _start(self, cross_epochs: bool, num_batches: int | None) -> LoaderIterator:
        self.close()
        it = LoaderIterator(self, cross_epochs, num_batches)
        self._active = weakref.ref(it)
        return it

    def _advance(self, it: LoaderIterator, epoch: int, position: int) -> None:
        if self._active is not None and self._active() is it:
            position += 1
            if position == self.batches_per_epoch:
                epoch, position = epoch + 1, 0
            self._epoch, self._position = epoch, position

    def close(self) -> None:
        """Stop the running iterator (and its prefetch thread), if any."""
        it = self._active() if self._active is not None else None
        if it is not None:
            it.close()
        self._active = None

    def describe(self) -> dict:
        """JSON-ready summary: kind, sizes, shapes and the source."""
        return {
            "kind": self.kind,
            "num_samples": self.num_samples,
            "batch_size": self.batch_size,
            "batches_per_epoch": self.batches_per_epoch,
            "sample_shape": list(self.sample_shape),
            "species": [self.source.species[i] for i in self.species_ids],
            "source": self.source.describe(),
        }


def _produce(make_batch, plan, q: queue.Queue, stop: threading.Event) -> None:
    """Prefetch thread body: build batches of ``plan`` into ``q`` until done, stopped or failed."""

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    try:
        for epoch, position in plan:
            if stop.is_set():
                return
            if not put(("batch", epoch, position, make_batch(epoch, position))):
                return
        put(("end",))
    except BaseException as exc:  # handed to the consumer
        put(("error", exc))


class LoaderIterator(Iterator):
    """Iterator over a loader's batches; updates the loader's state as batches are delivered.

    Use it as a context manager or call :meth:`close` to stop its prefetch thread early.
    """

    def __init__(self, loader: Loader, cross_epochs: bool, num_batches: int | None):
        self._loader = loader
        self._plan = self._positions(loader._epoch, loader._position, loader.batches_per_epoch, cross_epochs,
                                     num_batches)  # fmt: skip
        self._done = False
        self._thread = None
        if loader.prefetch > 0:
            self._queue: queue.Queue = queue.Queue(maxsize=loader.prefetch)
            self._stop = threading.Event()
            args = (loader.make_batch, self._plan, self._queue, self._stop)
            self._thread = threading.Thread(target=_produce, args=args, name="faiser-loader-prefetch", daemon=True)
            self._thread.start()

    @staticmethod
    def _positions(epoch: int, position: int, per_epoch: int, cross: bool, limit: int | None):
        count = 0
        while limit is None or count < limit:
            if position >= per_epoch:
                if not cross:
                    return
                epoch, position = epoch + 1, 0
            yield epoch, position
            position += 1
            count += 1

    def __next__(self):
        if self._done:
            raise StopIteration
        if self._thread is None:
            try:
                epoch, position = next(self._plan)
            except StopIteration:
                self._done = True
                raise
            try:
                batch = self._loader.make_batch(epoch, position)
            except BaseException:
                self._done = True  # like the prefetching path: a new iterator retries this batch
                raise
        else:
            while True:
                try:
                    item = self._queue.get(timeout=0.1)
                    break
                except queue.Empty:
                    if not self._thread.is_alive() and self._queue.empty():
                        self._done = True
                        raise StopIteration from None
            if item[0] == "end":
                self.close()
                raise StopIteration
            if item[0] == "error":
                self.close()
                raise item[1]
            _, epoch, position, batch = item
        self._loader._advance(self, epoch, position)
        return batch

    def close(self) -> None:
        """Stop prefetching and release queued batches (idempotent)."""
        self._done = True
        if self._thread is not None:
            self._stop.set()
            while self._thread.is_alive():
                try:
                    while True:
                        self._queue.get_nowait()
                except queue.Empty:
                    pass
                self._thread.join(timeout=0.05)
            self._thread = None

    def __enter__(self) -> LoaderIterator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


# ---- the three loaders -------------------------------------------------------------------------------
class VdfLoader(Loader):
    """Per-VDF samples: ``f`` ``(batch, nvx, nvy, nvz)`` of every cell, snapshot, species and run.

    Reads group the batch's samples by storage chunk (one decode per chunk, vectorized gathers).
    See :class:`Loader` for the arguments.
    """

    kind = "vdf"

    def _build_space(self) -> SampleSpace:
        return self.source.vdf_index([self.source.species[i] for i in self.species_ids])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.source.mesh.nv)

    def _read(self, ids):
        run, sp, t, origin = self.space.decode(ids)
        return self.source.read_vdfs(self.space, ids), {"run": run, "species": sp, "t_index": t, "origin": origin}


def _axis_modes(wrap, ndim: int = 3) -> tuple[str, ...]:
    modes = (wrap,) * ndim if isinstance(wrap, str) else tuple(wrap)
    if len(modes) != ndim or any(m not in WRAP_MODES for m in modes):
        raise ConfigError(f"wrap must be one of {WRAP_MODES} or one per spatial axis, got {wrap!r}")
    return modes


def _patch_size(patch, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    if isinstance(patch, int | np.integer):
        patch = tuple(int(patch) if n > 1 else 1 for n in shape)
    patch = tuple(int(p) for p in patch)
    if len(patch) != 3 or any(p < 1 for p in patch):
        raise ConfigError(f"patch must be a positive int or 3 positive ints, got {patch!r}")
    return patch


class _Patches:
    """Patch geometry shared by :class:`PatchLoader` and :class:`WindowLoader`."""

    def _setup_patches(self, patch, stride, wrap) -> None:
        src = self.source
        if not src.structured:
            raise ConfigError(f"{self.kind} samples need a spatial mesh; {src.describe()} has none (per-VDF only)")
        shapes = [src.run_shape(r) for r in range(src.n_runs)]
        if patch is None:
            if len(set(shapes)) != 1:
                raise ConfigError(f"whole-mesh samples need one spatial mesh; the runs have {sorted(set(shapes))}")
            patch = shapes[0]
        self.patch = _patch_size(patch, shapes[0])
        stride = self.patch if stride is None else _patch_size(stride, (2, 2, 2))
        self.patch_stride = stride
        self.wrap = _axis_modes(wrap)
        self._origins = []
        for r, shape in enumerate(shapes):
            periodic = src.run_periodic(r)
            axes = []
            for a in range(3):
                n, p, s, m = shape[a], self.patch[a], stride[a], self.wrap[a]
                if p > n:
                    raise ConfigError(f"patch {self.patch} exceeds the spatial mesh {shape} of run {r}")
                wraps = m == "periodic" or (m == "auto" and periodic[a] and p < n)
                axes.append(np.arange(0, n if wraps else n - p + 1, s))
            self._origins.append(axes)

    def _cells(self, run: int, origin: np.ndarray) -> list[np.ndarray]:
        shape = self.source.run_shape(run)
        return [(origin[a] + np.arange(self.patch[a])) % shape[a] for a in range(3)]

    def _read_regions(self, run, sp, t_index, origin) -> np.ndarray:
        """Patches ``(n, W, px, py, pz, nv...)`` at snapshots ``t_index`` ``(n, W)``; every chunk that
        the batch needs is decoded once, ``read_workers`` at a time, then copied region by region."""
        src = self.source
        out = np.empty((len(run), t_index.shape[1], *self.patch, *src.mesh.nv), dtype=src.dtype)
        cells = [self._cells(int(r), o) for r, o in zip(run, origin)]
        jobs = [(i, k, int(run[i]), int(sp[i]), int(t)) for i in range(len(run)) for k, t in enumerate(t_index[i])]
        memo: dict = {}
        src.load_chunks([key for i, _, r, s, t in jobs for key in src.region_chunks(r, s, t, *cells[i])], memo)
        for i, k, r, s, t in jobs:
            src.read_region(r, s, t, *cells[i], memo=memo, out=out[i, k])
        return out


class PatchLoader(_Patches, Loader):
    """6D phase-space patches: ``f`` ``(batch, px, py, pz, nvx, nvy, nvz)``.

    Args:
      patch: spatial cells per patch ``(px, py, pz)``; an int ``p`` means ``p`` along every axis
        with more than one cell (of the first run) and 1 elsewhere.
      patch_stride: spacing of patch origins per axis (default: ``patch``, non-overlapping tiles;
        1: every origin).
      wrap: ``"periodic"`` (origins anywhere, patches wrap around the mesh), ``"valid"`` (patches
        lie inside the mesh) or ``"auto"`` (periodic along axes whose boundary is periodic); one
        mode or one per axis.
      **kwargs: see :class:`Loader`.
    """

    kind = "patch"

    def __init__(self, source, *, patch: int | Sequence[int], patch_stride: int | Sequence[int] | None = None,
                 wrap: str | Sequence[str] = "auto", **kwargs):  # fmt: skip
        self._patch_args = (patch, patch_stride, wrap)
        super().__init__(source, **kwargs)

    def _build_space(self) -> SampleSpace:
        self._setup_patches(*self._patch_args)
        runs = [(r, np.arange(len(self.source.run_times(r))), self._origins[r]) for r in range(self.source.n_runs)]
        return SampleSpace(self.species_ids, runs)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (*self.patch, *self.source.mesh.nv)

    def _read(self, ids):
        run, sp, t, origin = self.space.decode(ids)
        out = self._read_regions(run, sp, t[:, None], origin)[:, 0]
        return out, {"run": run, "species": sp, "t_index": t, "origin": origin}


class WindowLoader(_Patches, Loader):
    """Time windows: ``f`` ``(batch, window + 1, px, py, pz, nvx, nvy, nvz)``.

    Sample ``(run, species, t0, origin)`` holds snapshots ``t0 + k * stride`` for ``k = 0..window``
    (snapshot indices, not times; ``t_index`` gives them, ``time`` their times) of the whole mesh
    (``patch=None``) or of a patch.

    Args:
      window: future states per sample (``K``); the sample holds ``K + 1`` states.
      stride: snapshots between consecutive states (``D``).
      patch, patch_stride, wrap: as for :class:`PatchLoader` (``patch=None``: the whole mesh).
      **kwargs: see :class:`Loader`.
    """

    kind = "window"

    def __init__(
        self,
        source,
        *,
        window: int = 1,
        stride: int = 1,
        patch: int | Sequence[int] | None = None,
        patch_stride: int | Sequence[int] | None = None,
        wrap: str | Sequence[str] = "auto",
        **kwargs,
    ):
        if int(window) < 0 or int(stride) < 1:
            raise ConfigError(f"window must be >= 0 and stride >= 1, got {window}, {stride}")
        self.window, self.stride = int(window), int(stride)
        self._patch_args = (patch, patch_stride, wrap)
        super().__init__(source, **kwargs)

    def _build_space(self) -> SampleSpace:
        self._setup_patches(*self._patch_args)
        span = self.window * self.stride
        runs = [(r, np.arange(max(0, len(self.source.run_times(r)) - span)), self._origins[r])
                for r in range(self.source.n_runs)]  # fmt: skip
        return SampleSpace(self.species_ids, runs)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (self.window + 1, *self.patch, *self.source.mesh.nv)

    def _read(self, ids):
        run, sp, t0, origin = self.space.decode(ids)
        t_index = t0[:, None] + np.arange(self.window + 1)[None, :] * self.stride
        out = self._read_regions(run, sp, t_index, origin)
        return out, {"run": run, "species": sp, "t_index": t_index, "origin": origin}
