"""What ``faiser train-codec``, ``faiser compress`` and ``faiser decompress`` do (cli.py parses)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from faiser.codecs.base import Codec
from faiser.codecs.io import compress_file, decompress_file, load_vdfs
from faiser.codecs.registry import codec_class, get_codec
from faiser.errors import CodecError
from faiser.run.outputs import prepare_output_file, prepare_run_dir, run_dir_lock

FLAG_KEYS = {
    "max_vdfs": "--max-vdfs N", "seed": "--seed S", "population": "--population NAME", "snapshot": "--snapshot I",
    "checkpoint_every": "--checkpoint-every N",
}  # fmt: skip
"""Data selection and run-time switches that are named flags, not ``--set`` keys (unless the codec
has a setting of that name, as ``seed`` of mlp and vqvae)."""


def codec_settings(codec_name: str, overrides: dict[str, Any], command: str) -> dict[str, Any]:
    """``--set`` values of codec ``codec_name``; a key of :data:`FLAG_KEYS` that is not one of the codec's
    settings raises :class:`CodecError` naming the flag to use."""
    known = {f.name for f in dataclasses.fields(codec_class(codec_name).Settings)}
    for k in overrides:
        if k in FLAG_KEYS and k not in known:
            raise CodecError(
                f"--set {k}=... is not a setting of codec {codec_name!r}: use faiser {command} {FLAG_KEYS[k]}"
            )
    return dict(overrides)


def train_codec(
    codec_name: str,
    data_paths: list[str],
    out: str,
    overrides: dict[str, Any],
    progress: bool = True,
    resume: bool = False,
    *,
    max_vdfs: int | None = None,
    seed: int = 0,
    population: str | None = None,
    checkpoint_every: int | None = None,
) -> dict[str, Any]:
    """Fit codec ``codec_name`` on VDFs from ``data_paths`` and save it to ``out``; returns a summary.

    ``overrides`` are codec settings; ``max_vdfs`` trains on a random subset (drawn with ``seed``),
    ``population`` names the species (default: each input's first). ``checkpoint_every=N`` (VQ-VAE)
    checkpoints the training under ``out/checkpoints``; ``resume`` continues from the newest valid
    one (a run killed at any moment ends with the same model).
    """
    settings = codec_settings(codec_name, overrides, "train-codec")
    codec = get_codec(codec_name, settings)
    if max_vdfs is not None and max_vdfs < 1:
        raise CodecError(f"--max-vdfs must be >= 1, got {max_vdfs}")
    out_dir = prepare_run_dir(out, "model directory")
    ckpt = out_dir / "checkpoints"
    has_ckpt = ckpt.is_dir() and any(p.name.isdigit() for p in ckpt.iterdir())
    if resume and not has_ckpt:
        raise CodecError(f"--resume: no training checkpoint in {ckpt}")
    if has_ckpt and not resume:
        raise CodecError(f"{ckpt} holds training checkpoints: pass --resume to continue, or choose another --out")
    if checkpoint_every or resume:
        if not hasattr(codec, "checkpoint_dir"):
            raise CodecError(f"codec {codec_name!r} trains in one pass and has no training checkpoints")
        codec.checkpoint_dir, codec.checkpoint_every, codec.resume = ckpt, checkpoint_every or 0, resume
    with run_dir_lock(out_dir):
        f, mesh = load_vdfs(data_paths, max_vdfs=max_vdfs, seed=seed, population=population)
        codec.fit(f, mesh, progress=progress)
        codec.save(out_dir)
    return {
        "codec": codec.name,
        "model_dir": str(out),
        "model_id": codec.model_id(),
        "model_bytes": codec.model_bytes(),
        "n_train_vdfs": int(len(f)),
        "mesh": mesh.to_json(),
    }


def train_codec_distributed(
    codec_name: str,
    data_paths: list[str],
    out: str,
    overrides: dict[str, Any],
    progress: bool = True,
    *,
    population: str | None = None,
    snapshot: int | None = None,
    seed: int = 0,
) -> dict[str, Any] | None:
    """``train-codec --distributed mpi``: every rank of the ``mpirun`` job reads only its spatial block
    of the inputs and the PCA codec is fitted with the ``merge`` strategy (``--set merge=NAME``)
    without gathering the data; rank 0 saves the model and ``distributed.json`` (what each rank
    communicated). Returns the summary on rank 0, ``None`` on the others."""
    from faiser.atomic import atomic_write_text
    from faiser.parallel.mpi import world
    from faiser.reduce.codec import fit_pca_codec
    from faiser.reduce.comm import MpiComm

    if codec_name != "pca":
        raise CodecError(f"--distributed mpi fits the pca codec only (got {codec_name!r})")
    codec = get_codec(codec_name, codec_settings(codec_name, overrides, "train-codec"))
    comm = world()
    root = comm.Get_rank() == 0
    out_dir = prepare_run_dir(out, "model directory") if root else None
    comm.Barrier()
    mc = MpiComm(comm)
    res = fit_pca_codec(codec, data_paths, mc, merge=codec.settings.merge, population=population,
                        snapshot=snapshot, seed=seed)  # fmt: skip
    stats = mc.gather_stats()
    if not root:
        return None
    info = {"ranks": mc.size, "merge": codec.settings.merge, **stats.summary(),
            "bytes_per_rank": stats.bytes_sent.tolist(), "fit_seconds": res.seconds}  # fmt: skip
    with run_dir_lock(out_dir):
        codec.save(out_dir)
        atomic_write_text(out_dir / "distributed.json", json.dumps(info, indent=2))
    return {
        "codec": codec.name,
        "model_dir": str(out),
        "model_id": codec.model_id(),
        "model_bytes": codec.model_bytes(),
        "n_train_vdfs": int(res.first.n),
        "mesh": res.mesh.to_json(),
        "distributed": info,
    }


def compress(
    codec_name: str,
    src: str,
    out: str,
    model: str | None,
    overrides: dict[str, Any],
    progress: bool = True,
    *,
    snapshot: int = -1,
    population: str | None = None,
) -> dict[str, Any]:
    """Compress ``src`` (VLSV file or dataset snapshot ``snapshot``) into ``out``; returns the byte
    report. ``population`` compresses that species only (default: every one)."""
    settings = codec_settings(codec_name, overrides, "compress")
    prepare_output_file(out, "compressed file")
    if model is not None:
        codec = Codec.load(model)
        if codec.name != codec_name:
            raise CodecError(f"--model {model} holds a {codec.name!r} model, not {codec_name!r}")
        if settings:
            raise CodecError("settings of a trained codec come from its model; pass no --set with --model")
    else:
        if codec_class(codec_name).trainable:
            raise CodecError(f"codec {codec_name!r} is trained: run faiser train-codec first and pass --model DIR")
        codec = get_codec(codec_name, settings)
    pops = None if population is None else [population]
    return compress_file(src, codec, out, snapshot=snapshot, populations=pops, progress=progress)


def decompress(src: str, out: str, model: str | None, progress: bool = True) -> dict[str, Any]:
    """Decode ``src`` into the VLSV file ``out``."""
    prepare_output_file(out, "decompressed file")
    return decompress_file(src, out, model=model, progress=progress)


def summary(report: dict[str, Any]) -> str:
    """One line for the terminal."""
    if "ratio_vs_sparse" in report:
        r = report["ratio_vs_sparse"]
        return (
            f"{report['file']}: {report['n_vdfs']} VDFs, {report['file_bytes']} bytes "
            f"(payload {report['payload_bytes']}, side {report['side_bytes']}, header {report['header_bytes']}); "
            f"{r:.1f}x vs Vlasiator's sparse float32 ({report['sparse_float32_bytes']} bytes)"
            + (
                f", {report['ratio_vs_sparse_with_model']:.1f}x counting the {report['model_bytes']}-byte model"
                if report["model_bytes"]
                else ""
            )
        )
    return json.dumps(report)
