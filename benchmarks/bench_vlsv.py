"""VLSV VDF read throughput: faiser's reader against a plain numpy read of the same bytes.

Writes a VLSV file of about ``--size-gb`` GB (many cells, sparse float32 VDFs on a 64^3 mesh,
cells in a shuffled file order as Vlasiator's MPI ranks leave them) to a temporary folder,
then times, median of ``--repeats`` runs:

- ``plain_fromfile``: ``np.fromfile`` of the BLOCKIDS and BLOCKVARIABLE bytes (the floor);
- ``plain_memmap_copy``: the same bytes copied out of an ``np.memmap``;
- ``faiser_sparse``: ``VlsvFile.read_vdf_sparse(pop)`` (all cells, sorted by CellID: a gather);
- ``faiser_dense``: ``VlsvFile.read_vdf(pop, batch)`` over batches of cells (dense output).

Repeats of the three sparse reads are interleaved. Throughputs are MB/s of stored VDF data
(block values + block ids, 1 MB = 1e6 bytes). The page cache cannot be dropped here, so every
figure is a warm-cache figure (the file is read once before timing). The file is deleted at the
end. Prints one JSON object.

    python benchmarks/bench_vlsv.py --size-gb 1.0 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from faiser.data.sparse_blocks import SparseBlocks, VelocityMesh, dense_to_sparse
from faiser.data.vlsv import open_vlsv, write_vlsv


def _templates(mesh: VelocityMesh, k: int, rng) -> list[SparseBlocks]:
    """``k`` drifting Maxwellians (SI) thresholded like Vlasiator (f_min 1e-15 s^3/m^6)."""
    v = [mesh.v_centers(a) for a in range(3)]
    vx, vy, vz = np.meshgrid(*v, indexing="ij")
    out = []
    vth = 1.2e5
    for _ in range(k):
        u = rng.uniform(-2e5, 2e5, 3)
        n = rng.uniform(0.5e6, 2e6)
        r2 = (vx - u[0]) ** 2 + (vy - u[1]) ** 2 + (vz - u[2]) ** 2
        f = n / (2 * np.pi * vth**2) ** 1.5 * np.exp(-r2 / (2 * vth**2))
        out.append(dense_to_sparse(f[None].astype(np.float32), mesh, 1e-15))
    return out


def make_file(path: Path, size_bytes: float, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    mesh = VelocityMesh((64, 64, 64), -1.28e6, 1.28e6)  # 16^3 blocks
    temps = _templates(mesh, 16, rng)
    per_cell = np.mean([t.nbytes for t in temps])
    ncells = max(2, int(size_bytes / per_cell))
    which = rng.integers(0, len(temps), ncells)
    counts = np.array([temps[w].nblocks_total for w in which], dtype=np.int64)
    ids = np.concatenate([temps[w].block_ids for w in which])
    scale = rng.uniform(0.9, 1.1, ncells).astype(np.float32)
    vals = np.empty((int(counts.sum()), 64), np.float32)
    o = 0
    for c, w in enumerate(which):  # building the synthetic input only (not timed)
        t = temps[w]
        vals[o : o + t.nblocks_total] = t.values * scale[c]
        o += t.nblocks_total
    nx = int(np.ceil(ncells ** (1 / 2)))
    cellids = rng.permutation(np.arange(1, ncells + 1, dtype=np.uint64))  # shuffled file order
    sb = SparseBlocks(mesh, cellids, counts, ids, vals)
    spatial = dict(nx=nx, ny=nx, nz=1, xmin=0, xmax=nx * 1e6, ymin=0, ymax=nx * 1e6, zmin=0, zmax=1e6)
    t0 = time.perf_counter()
    write_vlsv(path, spatial=spatial, cellids=cellids, populations={"proton": (mesh, sb)}, parameters={"time": 0.0})
    return {
        "ncells": int(ncells),
        "velocity_mesh": list(mesh.nv),
        "blocks": int(counts.sum()),
        "mean_blocks_per_cell": float(counts.mean()),
        "fill_fraction": float(counts.mean() / mesh.num_blocks),
        "vdf_bytes": int(sb.nbytes),
        "file_bytes": int(os.path.getsize(path)),
        "write_s": time.perf_counter() - t0,
    }


def _median_time(fn, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def run(size_gb: float, repeats: int, folder: str | None, dense_batch: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="faiser-bench-vlsv-", dir=folder) as tmp:
        path = Path(tmp) / "bulk.bench.vlsv"
        info = make_file(path, size_gb * 1e9)
        with open(path, "rb") as fh:  # warm the page cache
            while fh.read(1 << 24):
                pass
        with open_vlsv(path) as f:
            ids_e, val_e = f.entry("BLOCKIDS", name="proton"), f.entry("BLOCKVARIABLE", name="proton")
            cells = f.cells_with_vdf("proton")
        nbytes = ids_e.nbytes + val_e.nbytes

        def plain_fromfile():
            a = np.fromfile(path, dtype="<u4", count=ids_e.arraysize, offset=ids_e.offset)
            b = np.fromfile(path, dtype="<f4", count=val_e.arraysize * 64, offset=val_e.offset)
            return a, b

        def plain_memmap():
            a = np.array(np.memmap(path, dtype="<u4", mode="r", offset=ids_e.offset, shape=(ids_e.arraysize,)))
            b = np.array(np.memmap(path, dtype="<f4", mode="r", offset=val_e.offset, shape=(val_e.arraysize, 64)))
            return a, b

        def faiser_sparse():
            with open_vlsv(path) as f:
                return f.read_vdf_sparse("proton")

        def faiser_dense():
            out = 0.0
            with open_vlsv(path) as f:
                for s in range(0, cells.size, dense_batch):
                    d = f.read_vdf("proton", cells[s : s + dense_batch])
                    out += float(d[0, 0, 0, 0])
            return out

        # correctness of what is timed: the reader returns exactly the stored bytes
        sb = faiser_sparse()
        a, b = plain_fromfile()
        assert np.array_equal(np.sort(sb.values[:, 0]), np.sort(b.reshape(-1, 64)[:, 0]))
        assert sb.nblocks_total == a.size and np.array_equal(np.sort(sb.block_ids), np.sort(a))
        del sb, a, b

        # interleaved repeats: background load on a shared machine hits every method alike
        fns = {"plain_fromfile": plain_fromfile, "plain_memmap_copy": plain_memmap, "faiser_sparse": faiser_sparse}
        samples: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(repeats):
            for k, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                samples[k].append(time.perf_counter() - t0)
        t = {k: statistics.median(v) for k, v in samples.items()}
        t["faiser_dense"] = _median_time(faiser_dense, max(1, min(repeats, 3)))
    mbps = {k: nbytes / v / 1e6 for k, v in t.items()}
    dense_out = info["ncells"] * 64**3 * 4
    return {
        "benchmark": "vlsv_vdf_read",
        "cache": "warm page cache (dropping it is not possible here); file read once before timing",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]},
        "size_gb_requested": size_gb,
        "repeats": repeats,
        "all_samples_s": {k: [round(x, 4) for x in v] for k, v in samples.items()},
        "dense_batch_cells": dense_batch,
        "file": info,
        "vdf_mb": nbytes / 1e6,
        "median_s": t,
        "throughput_mb_per_s": mbps,
        "dense_output_mb_per_s": dense_out / t["faiser_dense"] / 1e6,
        "slowdown_sparse_vs_plain_fromfile": t["faiser_sparse"] / t["plain_fromfile"],
        "slowdown_sparse_vs_best_plain": t["faiser_sparse"] / min(t["plain_fromfile"], t["plain_memmap_copy"]),
        "within_2x_of_plain": bool(t["faiser_sparse"] <= 2 * min(t["plain_fromfile"], t["plain_memmap_copy"])),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-gb", type=float, default=1.0, help="approximate VDF bytes in the file (GB)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dir", default=None, help="folder for the temporary file (default: system temp)")
    p.add_argument("--dense-batch", type=int, default=256, help="cells per dense read")
    p.add_argument("--out", default=None, help="also write the JSON here")
    a = p.parse_args(argv)
    res = run(a.size_gb, a.repeats, a.dir, a.dense_batch)
    text = json.dumps(res, indent=2)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
