"""One Codec interface over every VDF compressor, with byte accounting and moment restoration.

>>> from faiser.codecs import get_codec
>>> codec = get_codec("zfp", tolerance=1e-3)
>>> enc = codec.encode(f, mesh)          # f: (N, nvx, nvy, nvz), mesh: VelocityMesh
>>> f_rec = codec.decode(enc)            # moments n, V, P restored exactly, f >= 0
>>> enc.nbytes()                         # {"payload": ..., "side": ..., "sum": ...}
"""

from faiser.codecs.base import Codec, Encoded
from faiser.codecs.moments import maxwellian, moment_errors, moments
from faiser.codecs.registry import codec_class, codec_names, get_codec
from faiser.codecs.restoration import restore_moments

__all__ = [
    "Codec", "Encoded", "codec_class", "codec_names", "get_codec", "maxwellian", "moment_errors", "moments",
    "restore_moments",
]
