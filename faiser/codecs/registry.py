"""Codec names -> classes. The learned codecs (``mlp``, ``vqvae``) import flax lazily."""

from __future__ import annotations

import importlib

from faiser.errors import CodecError

_CODECS = {
    "sparse": ("faiser.codecs.reference", "SparseCodec"),
    "maxwellian": ("faiser.codecs.reference", "MaxwellianCodec"),
    "zfp": ("faiser.codecs.baselines", "ZfpCodec"),
    "sz3": ("faiser.codecs.baselines", "Sz3Codec"),
    "pca": ("faiser.codecs.pca", "PcaCodec"),
    "mlp": ("faiser.codecs.mlp", "MlpCodec"),
    "vqvae": ("faiser.codecs.vqvae", "VqvaeCodec"),
}


def codec_names() -> list[str]:
    """Names of the known codecs."""
    return list(_CODECS)


def codec_class(name: str):
    """The codec class called ``name``; :class:`CodecError` if unknown or its module is missing."""
    try:
        module, cls = _CODECS[name]
    except KeyError:
        raise CodecError(f"unknown codec {name!r} (known: {', '.join(_CODECS)})") from None
    try:
        return getattr(importlib.import_module(module), cls)
    except ModuleNotFoundError as e:
        raise CodecError(f"codec {name!r} needs {e.name!r}: pip install 'faiser[ml,baselines]'") from None


def get_codec(name: str, settings=None, **overrides):
    """A new codec ``name`` with ``settings`` (dict, strings allowed) and keyword overrides."""
    return codec_class(name)(settings, **overrides)
