"""Compressed files from VLSV files or faiser datasets, and VLSV files back from them.

``compress_file`` reads every population's VDFs (batches of cells, so large meshes fit in memory),
encodes them with a codec and writes one container (:mod:`faiser.codecs.container`) holding the
spatial cells, B and E when present, and per batch the encoded VDFs and their cell ids. A faiser
dataset is first written as a VLSV snapshot in SI units (:func:`faiser.data.vlsv.write_snapshot`),
so both inputs take the same path and a codec trained on simulation data applies to any VLSV file.

``decompress_file`` writes a VLSV file with the same cells and velocity meshes as the input, the
decoded VDFs as sparse blocks, per population ``vg_rho`` and ``vg_v`` computed from them, and the
stored B and E.

``load_vdfs`` gathers training VDFs from datasets, sweep roots and VLSV files for ``faiser train-codec``.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from faiser.codecs.base import Codec, Encoded
from faiser.codecs.container import Section, Stream, read_file, write_file
from faiser.codecs.moments import moments
from faiser.codecs.reference import nonzero_blocks, sparse_nbytes
from faiser.codecs.registry import codec_class, get_codec
from faiser.data.sources import is_dataset, open_run, resolve_runs
from faiser.data.sparse_blocks import SparseBlocks, VelocityMesh
from faiser.errors import CodecError, CompressedFileError, DataError

FIELD_VARIABLES = ("vg_b_vol", "vg_e_vol")
_CHUNK_BYTES = 1 << 28


def as_vlsv(path: str | os.PathLike, tmpdir: str, snapshot: int = -1) -> Path:
    """``path`` itself if it is a file, else snapshot ``snapshot`` of a dataset written as SI VLSV."""
    p = Path(path)
    if p.is_file():
        return p
    if not is_dataset(p):
        raise DataError(f"{p}: neither a VLSV file nor a faiser dataset")
    from faiser.data.dataset import open_dataset
    from faiser.data.vlsv import write_snapshot

    ds = open_dataset(p)
    if ds.units is None:
        raise DataError(f"{p}: dataset has no units, cannot convert to SI VLSV")
    out = Path(tmpdir) / "snapshot.vlsv"
    write_snapshot(out, ds.state(snapshot), ds.grid, ds.units, ds.species, f_min=0.0)
    return out


def _delta(ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.uint64)
    return np.diff(ids, prepend=np.uint64(0)) if ids.size else ids


def _undelta(d: np.ndarray) -> np.ndarray:
    return np.cumsum(d.astype(np.uint64), dtype=np.uint64)


def compress_file(
    src: str | os.PathLike,
    codec: Codec,
    out: str | os.PathLike,
    *,
    snapshot: int = -1,
    populations: Sequence[str] | None = None,
    progress: bool = False,
    chunk_bytes: int = _CHUNK_BYTES,
) -> dict[str, Any]:
    """Compress the VDFs of a VLSV file or dataset snapshot into ``out``.

    Returns a report: file bytes by role, model bytes, VDF count, raw dense bytes, Vlasiator's sparse
    float32 bytes of the same VDFs and the ratios against them (file only; file plus model), timing.
    """
    from faiser.data.vlsv_reader import open_vlsv

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = as_vlsv(src, tmp, snapshot)
        with open_vlsv(path) as vf:
            sp = vf.spatial_mesh
            all_cells = vf.cellids()
            grid = Section({"kind": "grid"}, {"cellids": Stream(_delta(all_cells), "side", "lzma")})
            for name in FIELD_VARIABLES:
                if name in vf.variables:
                    grid.streams[name] = Stream(vf.read_variable(name).astype(np.float32), "side", "zlib")
            sections = [grid]
            pops = list(vf.populations if populations is None else populations)
            n_vdfs, raw, sparse_ref = 0, 0, 0
            t_enc = 0.0
            for pop in pops:
                mesh = vf.velocity_mesh(pop)
                cells = vf.cells_with_vdf(pop)
                per = max(1, chunk_bytes // (8 * int(np.prod(mesh.nv))))
                it = range(0, len(cells), per)
                if progress:
                    from tqdm.auto import tqdm

                    it = tqdm(it, desc=f"compress {pop}", unit="batch")
                for lo in it:
                    ids = cells[lo : lo + per]
                    f = vf.read_vdf(pop, ids)
                    sparse_ref += sparse_nbytes(f, mesh)
                    raw += f.size * 4
                    t1 = time.perf_counter()
                    enc = codec.encode(f, mesh)
                    t_enc += time.perf_counter() - t1
                    sec = enc.section({"kind": "vdfs", "population": pop})
                    sec.streams["cellids"] = Stream(_delta(ids), "side", "lzma")
                    sections.append(sec)
                    n_vdfs += len(ids)
            header = {
                "codec": codec.name,
                "settings": codec.settings_json,
                "model_id": codec.model_id(),
                "input": {
                    "path": str(Path(src)),
                    "spatial": sp.to_json(),
                    "time": vf.time,
                    "timestep": vf.timestep,
                    "populations": pops,
                },
            }
    if n_vdfs == 0:
        raise DataError(
            f"{src}: no VDFs to compress (no population stores velocity blocks; 1V/2V species "
            "are written as moments only)"
        )
    counts = write_file(out, header, sections)
    model = codec.model_bytes()
    return {
        "file": str(out),
        "codec": codec.name,
        "settings": codec.settings_json,
        "n_vdfs": n_vdfs,
        "file_bytes": counts["total"],
        "payload_bytes": counts["payload"],
        "side_bytes": counts["side"],
        "header_bytes": counts["header"],
        "model_bytes": model,
        "raw_float32_bytes": raw,
        "sparse_float32_bytes": sparse_ref,
        "ratio_vs_sparse": sparse_ref / counts["total"] if counts["total"] else None,
        "ratio_vs_sparse_with_model": sparse_ref / (counts["total"] + model) if counts["total"] else None,
        "encode_s": t_enc,
        "wall_s": time.perf_counter() - t0,
    }


def _codec_from_header(header: dict, model, where: str) -> Codec:
    try:
        name, settings = header["codec"], header["settings"]
    except KeyError as e:
        raise CompressedFileError(f"{where}: header lacks {e}") from None
    klass = codec_class(name)
    if model is not None:
        codec = Codec.load(model)
        if codec.name != name:
            raise CompressedFileError(f"{where} was written by codec {name!r}, the model in {model} is {codec.name!r}")
    elif klass.trainable:
        raise CodecError(f"{where} was written by the trained codec {name!r}: pass its model with --model DIR")
    else:
        codec = get_codec(name, settings)
    if codec.model_id() != header.get("model_id"):
        raise CompressedFileError(
            f"{where} was written with {name} model {header.get('model_id')}, the given model is {codec.model_id()}"
        )
    return codec


def decompress_file(
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    model: str | os.PathLike | None = None,
    codec: Codec | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Decode ``path`` into the VLSV file ``out`` (same cells and velocity meshes as the input)."""
    from faiser.data.vlsv_reader import SpatialMesh
    from faiser.data.vlsv_writer import Population, write_vlsv

    t0 = time.perf_counter()
    header, sections = read_file(path)
    codec = codec or _codec_from_header(header, model, str(path))
    grids = [s for s in sections if s.meta.get("kind") == "grid"]
    if len(grids) != 1:
        raise CompressedFileError(f"{path}: expected one grid section, found {len(grids)}")
    grid = grids[0]
    cells = _undelta(grid.array("cellids"))
    variables: dict[str, np.ndarray] = {
        n: grid.streams[n].data
        for n in FIELD_VARIABLES
        if n in grid.streams and len(grid.streams[n].data) == len(cells)
    }
    per_pop: dict[str, list[tuple[np.ndarray, SparseBlocks, np.ndarray]]] = {}
    meshes: dict[str, VelocityMesh] = {}
    secs = [s for s in sections if s.meta.get("kind") == "vdfs"]
    it = secs
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(secs, desc="decompress", unit="batch")
    n_vdfs, t_dec = 0, 0.0
    for sec in it:
        ids = _undelta(sec.array("cellids"))
        streams = {k: v for k, v in sec.streams.items() if k != "cellids"}
        enc = Encoded.from_section(Section(sec.meta, streams))
        if len(ids) != enc.n_vdfs:
            raise CompressedFileError(f"{path}: {len(ids)} cell ids for {enc.n_vdfs} VDFs")
        t1 = time.perf_counter()
        f = codec.decode(enc)
        t_dec += time.perf_counter() - t1
        pop = str(sec.meta.get("population", "proton"))
        meshes[pop] = enc.mesh
        m = moments(f, enc.mesh)
        nz = nonzero_blocks(f, enc.mesh, f.dtype)  # only blocks holding a value, as Vlasiator stores them
        sb = SparseBlocks(enc.mesh, ids.astype(np.uint64), nz.blocks_per_cell, nz.block_ids, nz.values)
        per_pop.setdefault(pop, []).append((ids, sb, m))
        n_vdfs += enc.n_vdfs
    pops = {}
    for pop, parts in per_pop.items():
        ids = np.concatenate([p[0] for p in parts])
        sb = (
            parts[0][1]
            if len(parts) == 1
            else SparseBlocks(
                meshes[pop],
                ids,
                np.concatenate([p[1].blocks_per_cell for p in parts]),
                np.concatenate([p[1].block_ids for p in parts]),
                np.concatenate([p[1].values for p in parts]),
            )
        )
        pops[pop] = Population(meshes[pop], sb)
        m = np.concatenate([p[2] for p in parts])
        pos = np.searchsorted(cells, ids)
        if np.any(pos >= len(cells)) or np.any(cells[np.minimum(pos, len(cells) - 1)] != ids):
            raise CompressedFileError(f"{path}: VDF cells of {pop!r} are not among the file's cells")
        rho = np.zeros(len(cells))
        vel = np.zeros((len(cells), 3))
        rho[pos], vel[pos] = m[:, 0], m[:, 1:4]
        variables[f"{pop}/vg_rho"] = rho
        variables[f"{pop}/vg_v"] = vel
    inp = header.get("input", {})
    try:
        spatial = SpatialMesh(**{k: tuple(v) if isinstance(v, list) else v for k, v in inp["spatial"].items()})
    except (KeyError, TypeError) as e:
        raise CompressedFileError(f"{path}: header lacks the spatial mesh ({e})") from None
    params = {k: inp[k] for k in ("time", "timestep") if inp.get(k) is not None}
    write_vlsv(out, spatial=spatial, cellids=cells, populations=pops, variables=variables, parameters=params)
    return {
        "file": str(out),
        "codec": codec.name,
        "n_vdfs": n_vdfs,
        "decode_s": t_dec,
        "wall_s": time.perf_counter() - t0,
    }


def load_vdfs(
    paths: Sequence[str | os.PathLike],
    *,
    max_vdfs: int | None = None,
    seed: int = 0,
    population: str | None = None,
) -> tuple[np.ndarray, VelocityMesh]:
    """Training VDFs ``(N, nvx, nvy, nvz)`` float32 and their mesh from datasets, sweep roots and VLSV files.

    The paths are resolved into runs by :func:`faiser.data.sources.resolve_runs` and each run is read
    through its :class:`~faiser.data.sources.Source`. Datasets give every cell of every snapshot
    (normalized units; codecs that learn work on dimensionless thermal windows, so units do not
    matter); VLSV files every cell with a VDF. ``population`` names the species (default: each
    run's first). All inputs must share one velocity mesh. ``max_vdfs`` draws a seeded random subset.
    """
    chunks, mesh = [], None
    for p in resolve_runs(paths):
        src = open_run(p, population)
        space = src.vdf_index(src.species[0])
        m = src.mesh
        if min(m.nv) < 4:
            raise DataError(f"{p}: codecs learn from 3V VDFs; this velocity mesh is {tuple(m.nv)}")
        if mesh is None:
            mesh = m
        elif not m.same_as(mesh):
            raise DataError(f"{p}: velocity mesh {m.to_json()} differs from the first input's {mesh.to_json()}")
        chunks.append(np.asarray(src.read_vdfs(space, np.arange(space.size)), dtype=np.float32))
    if not chunks:
        raise DataError("no training data given")
    f = np.concatenate(chunks)
    f = f[f.reshape(len(f), -1).sum(axis=1) > 0]
    if max_vdfs is not None and len(f) > max_vdfs:
        idx = np.sort(np.random.default_rng(seed).choice(len(f), size=max_vdfs, replace=False))
        f = f[idx]
    return f, mesh
