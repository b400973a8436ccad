"""What ``faiser train-codec``, ``faiser compress`` and ``faiser decompress`` do (cli.py parses)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from faiser.codecs.base import Codec
from faiser.codecs.io import compress_file, decompress_file, load_vdfs
from faiser.codecs.registry import codec_class, get_codec
from faiser.errors import CodecError

DATA_KEYS = {"max_vdfs": int, "seed": int, "population": str, "snapshot": int, "checkpoint_every": int}


def split_settings(codec_name: str, overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``--set`` values into codec settings and data-selection keys (:data:`DATA_KEYS`)."""
    known = {f.name for f in dataclasses.fields(codec_class(codec_name).Settings)}
    settings, data = {}, {}
    for k, v in overrides.items():
        if k in DATA_KEYS and k not in known:
            try:
                data[k] = DATA_KEYS[k](v)
            except (TypeError, ValueError):
                raise CodecError(f"--set {k}: cannot use {v!r}") from None
        else:
            settings[k] = v
    return settings, data


def train_codec(codec_name: str, data_paths: list[str], out: str, overrides: dict[str, Any],
                progress: bool = True, resume: bool = False) -> dict[str, Any]:
    """Fit codec ``codec_name`` on VDFs from ``data_paths`` and save it to ``out``; returns a summary.

    ``--set checkpoint_every=N`` (VQ-VAE) checkpoints the training under ``out/checkpoints``;
    ``resume`` continues from the newest valid one (a run killed at any moment ends with the same model).
    """
    from pathlib import Path

    settings, data = split_settings(codec_name, overrides)
    codec = get_codec(codec_name, settings)
    ckpt = Path(out) / "checkpoints"
    has_ckpt = ckpt.is_dir() and any(p.name.isdigit() for p in ckpt.iterdir())
    if resume and not has_ckpt:
        raise CodecError(f"--resume: no training checkpoint in {ckpt}")
    if has_ckpt and not resume:
        raise CodecError(f"{ckpt} holds training checkpoints: pass --resume to continue, or choose another --out")
    if data.get("checkpoint_every") or resume:
        if not hasattr(codec, "checkpoint_dir"):
            raise CodecError(f"codec {codec_name!r} trains in one pass and has no training checkpoints")
        codec.checkpoint_dir, codec.checkpoint_every, codec.resume = ckpt, data.get("checkpoint_every", 0), resume
    f, mesh = load_vdfs(data_paths, max_vdfs=data.get("max_vdfs"), seed=data.get("seed", 0),
                        population=data.get("population"))
    codec.fit(f, mesh, progress=progress)
    codec.save(out)
    return {"codec": codec.name, "model_dir": str(out), "model_id": codec.model_id(),
            "model_bytes": codec.model_bytes(), "n_train_vdfs": int(len(f)), "mesh": mesh.to_json()}


def compress(codec_name: str, src: str, out: str, model: str | None, overrides: dict[str, Any],
             progress: bool = True) -> dict[str, Any]:
    """Compress ``src`` (VLSV file or dataset) into ``out``; returns the byte report."""
    settings, data = split_settings(codec_name, overrides)
    if model is not None:
        codec = Codec.load(model)
        if codec.name != codec_name:
            raise CodecError(f"--model {model} holds a {codec.name!r} model, not {codec_name!r}")
        if settings:
            raise CodecError("settings of a trained codec come from its model; --set only selects data here")
    else:
        if codec_class(codec_name).trainable:
            raise CodecError(f"codec {codec_name!r} is trained: run faiser train-codec first and pass --model DIR")
        codec = get_codec(codec_name, settings)
    return compress_file(src, codec, out, snapshot=data.get("snapshot", -1), progress=progress)


def decompress(src: str, out: str, model: str | None, progress: bool = True) -> dict[str, Any]:
    """Decode ``src`` into the VLSV file ``out``."""
    return decompress_file(src, out, model=model, progress=progress)


def summary(report: dict[str, Any]) -> str:
    """One line for the terminal."""
    if "ratio_vs_sparse" in report:
        r = report["ratio_vs_sparse"]
        return (f"{report['file']}: {report['n_vdfs']} VDFs, {report['file_bytes']} bytes "
                f"(payload {report['payload_bytes']}, side {report['side_bytes']}, header {report['header_bytes']}); "
                f"{r:.1f}x vs Vlasiator's sparse float32 ({report['sparse_float32_bytes']} bytes)"
                + (f", {report['ratio_vs_sparse_with_model']:.1f}x counting the {report['model_bytes']}-byte model"
                   if report["model_bytes"] else ""))
    return json.dumps(report)
