"""``faiser bench loader``: the training loaders' throughput from the store on disk to the device.

A synthetic 1D3V dataset (:func:`synthetic_dataset`) is written to a temporary directory unless
``data`` names datasets. Loaders timed, each with ``prefetch`` (a queue of that depth) and without:
``vdf_global`` (per-VDF, global shuffle), ``vdf_chunks`` (per-VDF, chunk-aware shuffle), ``patch``
(``patch`` cells along each resolved spatial axis, periodic wrap) and ``window`` (``window + 1``
states ``stride`` snapshots apart of such patches). Every batch is placed with
``NamedSharding(mesh, PartitionSpec("data"))`` over all devices and waited for. Baselines: plain
zarr reads of whole snapshots and random gathers from an in-memory numpy array. Every figure is the
median of ``repeats`` (>= 5) timed repeats of ``batches`` batches, with min and max.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from faiser.bench.common import BenchSettings, document, resolve, summarize, time_repeats, write_json
from faiser.bench.env import environment, finish
from faiser.grid import PhaseSpaceGrid
from faiser.vlasov.state import ELECTRON

__all__ = ["LoaderSettings", "bench_loader", "resolve_loader_settings", "synthetic_dataset"]


@dataclasses.dataclass(frozen=True)
class LoaderSettings(BenchSettings):
    """``--set`` keys of ``faiser bench loader`` (and ``repeats``, ``tiny`` of :class:`BenchSettings`).

    data: dataset paths or sweep roots (default: a synthetic 1D3V dataset in a temporary directory
    of ``nx`` cells, ``nv^3`` VDFs and ``snapshots`` snapshots). batch: global batch of the per-VDF
    loaders. patch_batch: global batch of the patch and window loaders. batches: batches per timed
    repeat. prefetch: queue depth of the prefetching runs (the others use prefetch=0). patch: patch
    cells along each resolved spatial axis. window: future states per window sample. stride:
    snapshots between the states of a window. cache_mb: decoded-chunk cache per loader (0: every
    chunk decoded from the store). step_ms: a simulated training step per batch (sleep), to show
    prefetch overlap. read_workers: chunks decoded concurrently per batch (0: min(8, cpu_count)).
    tiny: nx <= 16, nv <= 8, snapshots <= 3, batch <= 8, patch_batch <= 4, batches <= 2, patch <= 2,
    window 1, stride 1.
    """

    data: tuple[str, ...] = ()
    nx: int = 256
    nv: int = 32
    snapshots: int = 6
    batch: int = 64
    patch_batch: int = 16
    batches: int = 8
    prefetch: int = 4
    patch: int = 8
    window: int = 2
    stride: int = 1
    cache_mb: int = 0
    step_ms: int = 0
    read_workers: int = 0

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "data", tuple(p.strip() for p in self.data if p.strip()))
        minimum = {"nx": 1, "nv": 2, "snapshots": 1, "batch": 1, "patch_batch": 1, "batches": 1, "prefetch": 1,
                   "patch": 1, "window": 1, "stride": 1, "cache_mb": 0, "step_ms": 0, "read_workers": 0}  # fmt: skip
        for key, low in minimum.items():
            self.check(key, getattr(self, key) >= low, f"an integer >= {low}")

    def effective(self) -> LoaderSettings:
        """The settings measured: ``tiny`` applied."""
        if not self.tiny:
            return self
        return dataclasses.replace(
            self, nx=min(self.nx, 16), nv=min(self.nv, 8), snapshots=min(self.snapshots, 3),
            batch=min(self.batch, 8), patch_batch=min(self.patch_batch, 4), batches=min(self.batches, 2),
            patch=min(self.patch, 2), window=1, stride=1,
        )  # fmt: skip


def resolve_loader_settings(overrides: Mapping[str, object] | LoaderSettings | None = None) -> LoaderSettings:
    """:class:`LoaderSettings` with ``overrides``; unknown keys and bad values raise :class:`ConfigError`."""
    return resolve(LoaderSettings, overrides)


def synthetic_dataset(path: str | Path, nx: int = 256, nv: int = 32, snapshots: int = 6, seed: int = 0) -> Path:
    """Write a 1D3V dataset of drifting, heated Maxwellians (electrons) for loader benchmarks.

    Cell ``x`` at snapshot ``t`` holds ``(1 + 0.2 cos(k (x - 0.5 t))) M(v; u(x), T(x))`` with bulk
    velocity ``u = (0.8 sin kx, 0.3 cos kx, 0)`` and temperature ``T = 1 + 0.3 cos kx`` (plus 1%
    noise), on ``|v| <= 5``, box ``2 pi / k`` with ``k = 0.5``. Not a Vlasov solution: only data of
    realistic shape and compressibility.
    """
    from faiser.data.dataset import DatasetWriter

    k = 0.5
    grid = PhaseSpaceGrid.make_1d3v(nx, 2 * math.pi / k, nv, 5.0)
    x = grid.x_centers(0)[:, None, None, None]
    v = [grid.v_centers(a) for a in range(3)]
    vx, vy, vz = v[0][None, :, None, None], v[1][None, None, :, None], v[2][None, None, None, :]
    u = (0.8 * np.sin(k * x), 0.3 * np.cos(k * x))
    temp = 1.0 + 0.3 * np.cos(k * x)
    shape = ((vx - u[0]) ** 2 + (vy - u[1]) ** 2 + vz**2) / (2 * temp)
    maxwellian = np.exp(-shape) / (2 * np.pi * temp) ** 1.5
    rng = np.random.default_rng(seed)
    zero = np.zeros((*grid.nx, 3))
    with DatasetWriter(path, grid, (ELECTRON,), capacity=snapshots, metadata={"case": "synthetic_1d3v"}) as w:
        for t in range(snapshots):
            dens = 1.0 + 0.2 * np.cos(k * (x - 0.5 * t))
            f = dens * maxwellian * (1 + 0.01 * rng.standard_normal(maxwellian.shape))
            w.append(float(t), t, [np.maximum(f, 0).astype(np.float32).reshape(grid.shape)], zero, zero)
    return Path(path)


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def _time_loader(loader, settings: LoaderSettings, bar) -> dict:
    """Median time of ``repeats`` runs of ``batches`` batches, each batch waited for on the device."""
    batches, step = settings.batches, settings.step_ms / 1e3
    it = loader.stream()
    cache = loader.source.cache
    try:
        for _ in range(max(1, loader.prefetch) + 1):  # warm-up: thread started, queue at steady state
            jax.block_until_ready(next(it))
        times, decoded = [], []
        f_bytes = 0
        for _ in range(settings.repeats):
            read0 = cache.bytes_read
            t0 = time.perf_counter()
            for _ in range(batches):
                b = jax.block_until_ready(next(it))
                if step:
                    time.sleep(step)
            times.append(time.perf_counter() - t0)
            decoded.append(cache.bytes_read - read0)
            f_bytes = b["f"].nbytes
            bar.update(1)
    finally:
        it.close()
        loader.close()
    t = summarize(times)
    med = t["median_s"]
    n = loader.batch_size * batches
    return {
        "batch_size": loader.batch_size,
        "batches": batches,
        "prefetch": loader.prefetch,
        **t,
        "batch_mb": f_bytes / 1e6,
        "samples_per_s": n / med,
        "samples_per_s_best": n / t["min_s"],
        "samples_per_s_worst": n / t["max_s"],
        "vdfs_per_s": n * math.prod(loader.sample_shape[:-3]) / med,
        "mb_per_s": f_bytes * batches / med / 1e6,
        "decoded_mb_per_s": float(np.median(decoded)) / med / 1e6,
    }


def _baselines(paths: list[str], settings: LoaderSettings, mesh) -> dict:
    """Plain zarr reads of whole snapshots, and gathers of random VDFs from an in-memory numpy array."""
    from faiser.data.dataset import open_dataset

    ds = open_dataset(paths[0])  # a dataset path (bench_loader expands sweep roots)
    sp = ds.species_names[0]
    nbytes = sum(ds.f(sp, t).nbytes for t in range(len(ds)))
    t = summarize(time_repeats(lambda: [ds.f(sp, i) for i in range(len(ds))], settings.repeats))
    vdfs = len(ds) * math.prod(ds.grid.nx)
    out = {
        "zarr_read": {
            "what": "every snapshot of f read whole with Dataset.f (decode only, no device transfer)",
            **t,
            "mb_per_s": nbytes / t["median_s"] / 1e6,
            "vdfs_per_s": vdfs / t["median_s"],
        }
    }
    if nbytes <= 2 << 30:
        allf = ds.vdfs(sp)
        rng = np.random.default_rng(0)
        sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
        b = settings.batch

        def gather():
            for _ in range(settings.batches):
                jax.block_until_ready(jax.device_put(allf[np.sort(rng.integers(0, len(allf), b))], sharding))

        t = summarize(time_repeats(gather, settings.repeats))
        n = b * settings.batches
        out["numpy_gather"] = {
            "what": "random batches gathered from the whole f held in memory, then device_put (upper bound)",
            "batch_size": b, **t, "samples_per_s": n / t["median_s"],
            "mb_per_s": n * allf[0].nbytes / t["median_s"] / 1e6,
        }  # fmt: skip
    return out


def bench_loader(
    out: str | Path, overrides: Mapping[str, object] | LoaderSettings | None = None, progress: bool = True
) -> dict:
    """Measure the training loaders' throughput from the store on disk to the device, as JSON.

    Args:
      out: JSON file written atomically.
      overrides: ``--set`` keys of :class:`LoaderSettings` (or the settings themselves).
      progress: tqdm progress bar on stderr.

    Returns:
      The JSON object (also printed): ``settings``, ``environment``, ``dataset``, ``baselines``,
      ``loaders[name]["prefetch" | "no_prefetch"]`` with ``samples_per_s``, ``mb_per_s`` (delivered
      ``f`` bytes), ``decoded_mb_per_s`` (chunk bytes decoded from the store), ``median_s``,
      ``min_s``, ``max_s``, ...
    """
    from faiser.data.loaders import PatchLoader, VdfLoader, WindowLoader
    from faiser.data.sources import ZarrSource
    from faiser.parallel.mesh import make_mesh

    settings = resolve_loader_settings(overrides).effective()
    env = environment()
    with contextlib.ExitStack() as stack:
        t0 = time.perf_counter()
        if settings.data:
            paths = list(settings.data)
            generated = None
        else:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="faiser-bench-loader-"))
            paths = [str(synthetic_dataset(Path(tmp) / "data", settings.nx, settings.nv, settings.snapshots))]
            generated = time.perf_counter() - t0
        datasets = ZarrSource(paths).datasets  # sweep roots expand into their runs
        paths = [str(d.path) for d in datasets]
        ds = datasets[0]
        mesh = make_mesh()
        common = dict(seed=0, mesh=mesh, cache_bytes=settings.cache_mb << 20,
                      read_workers=settings.read_workers or None)  # fmt: skip
        pb, p = settings.patch_batch, settings.patch
        builders = {
            "vdf_global": lambda pf: VdfLoader(paths, batch_size=settings.batch, prefetch=pf, **common),
            "vdf_chunks": lambda pf: VdfLoader(paths, batch_size=settings.batch, shuffle_mode="chunks",
                                               prefetch=pf, **common),
            "patch": lambda pf: PatchLoader(paths, batch_size=pb, patch=p, patch_stride=1, wrap="periodic",
                                            prefetch=pf, **common),
            "window": lambda pf: WindowLoader(paths, batch_size=pb, window=settings.window,
                                              stride=settings.stride, patch=p, patch_stride=1, wrap="periodic",
                                              prefetch=pf, **common),
        }  # fmt: skip
        total = 2 * len(builders) * settings.repeats
        results = {}
        with tqdm(total=total, desc="bench loader", unit="repeat", file=sys.stderr, disable=not progress) as bar:
            for name, build in builders.items():
                bar.set_postfix_str(name)
                entry = {}
                for mode, pf in (("prefetch", settings.prefetch), ("no_prefetch", 0)):
                    loader = build(pf)
                    entry.setdefault("describe", loader.describe())
                    entry[mode] = _time_loader(loader, settings, bar)
                entry["prefetch_speedup"] = entry["no_prefetch"]["median_s"] / entry["prefetch"]["median_s"]
                results[name] = entry
            bar.set_postfix_str("baselines")
            baselines = _baselines(paths, settings, mesh)
        itemsize = ds.f_dtype(ds.species_names[0]).itemsize
        raw = sum(len(d) * math.prod(d.grid.shape) * itemsize * len(d.species) for d in datasets)
        disk = sum(_dir_bytes(d.path) for d in datasets)
        dataset = {
            "paths": paths if generated is None else "synthetic (temporary)",
            "generate_s": generated,
            "grid_shape": list(ds.grid.shape),
            "snapshots": [len(d) for d in datasets],
            "vdfs": sum(len(d) * math.prod(d.grid.nx) * len(d.species) for d in datasets),
            "vdf_kb": math.prod(ds.grid.nv) * itemsize / 1e3,
            "chunk_shape": list(ds.f_chunks(ds.species_names[0])),
            "raw_mb": raw / 1e6,
            "disk_mb": disk / 1e6,
            "compression_ratio": raw / disk if disk else None,
        }
    report = document(
        "loader",
        settings,
        finish(env),
        unit="samples/s and MB/s of f delivered on the device (median of repeats); decoded_mb_per_s from the store",
        dataset=dataset,
        baselines=baselines,
        loaders=results,
    )
    write_json(out, report)
    print(json.dumps(report, indent=2))
    return report
