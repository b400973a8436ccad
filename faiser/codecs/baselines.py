"""The standard error-bounded lossy compressors as codecs: ZFP (zfpy) and SZ3 (pysz).

Each VDF is cropped to the bounding box of its support (a ``side`` stream of 6 uint16 per VDF;
outside it the VDF is exactly zero) and compressed on its own, with an absolute error bound set
relative to that VDF's maximum (``tolerance * max f``): VDFs of very different densities then get
the same relative accuracy. Decoded values are clipped at 0, which never increases the error of a
non-negative VDF, so the bound holds for the raw decode (``restore=false``); moment restoration
(default on) then changes values by design.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from faiser.codecs.base import Codec, LossySettings
from faiser.codecs.container import Stream
from faiser.codecs.windows import support_boxes
from faiser.errors import CodecError, CompressedFileError


def _import(name: str):
    try:
        return __import__(name)
    except ImportError:
        raise CodecError(f"codec needs the {name!r} package: pip install 'faiser[baselines]'") from None


@dataclasses.dataclass(frozen=True)
class ErrorBoundSettings(LossySettings):
    """``tolerance``: absolute error bound as a fraction of each VDF's maximum;
    ``mode``: ZFP ``accuracy`` | ``precision`` | ``rate`` (SZ3: ``abs`` | ``l2norm``);
    ``precision``/``rate``: bits for ZFP's other modes."""

    tolerance: float = 1e-3
    mode: str = ""
    precision: int = 16
    rate: float = 8.0

    def __post_init__(self):
        super().__post_init__()
        if not self.tolerance > 0:
            raise ValueError("tolerance must be > 0")


class _PerVdfCodec(Codec):
    Settings = ErrorBoundSettings

    def _compress(self, block: np.ndarray, bound: float) -> bytes:
        raise NotImplementedError

    def _decompress(self, data: bytes, shape: tuple[int, int, int]) -> np.ndarray:
        raise NotImplementedError

    def _encode(self, f, mesh, m):
        boxes = support_boxes(f)
        scale = f.reshape(f.shape[0], -1).max(axis=1) if f.size else np.zeros(0)
        chunks, lengths = [], []
        for i in range(f.shape[0]):
            x0, y0, z0, x1, y1, z1 = boxes[i]
            if x1 <= x0:
                lengths.append(0)
                continue
            block = np.ascontiguousarray(f[i, x0:x1, y0:y1, z0:z1], dtype=np.float32)
            b = self._compress(block, float(self.settings.tolerance * scale[i]))
            chunks.append(b)
            lengths.append(len(b))
        data = np.frombuffer(b"".join(chunks), dtype=np.uint8)
        return {
            "data": Stream(data, "payload"),
            "lengths": Stream(np.asarray(lengths, dtype=np.uint32), "side", "zlib"),
            "boxes": Stream(boxes.astype(np.uint16), "side", "zlib"),
        }, {}

    def _decode(self, enc, m):
        s = enc.streams
        try:
            data = s["data"].data.tobytes()
            lengths = s["lengths"].data.astype(np.int64)
            boxes = s["boxes"].data.astype(np.int64)
        except KeyError as e:
            raise CompressedFileError(f"{self.name} data lacks stream {e}") from None
        N = enc.n_vdfs
        if lengths.shape != (N,) or boxes.shape != (N, 6) or int(lengths.sum()) != len(data):
            raise CompressedFileError(f"{self.name} streams are inconsistent (truncated or corrupt)")
        out = np.zeros(enc.shape, dtype=np.float64)
        pos = 0
        for i in range(N):
            n = int(lengths[i])
            if n == 0:
                continue
            x0, y0, z0, x1, y1, z1 = boxes[i]
            shape = (int(x1 - x0), int(y1 - y0), int(z1 - z0))
            try:
                block = self._decompress(data[pos : pos + n], shape)
            except Exception as e:  # noqa: BLE001 - the C libraries raise assorted errors on bad input
                raise CompressedFileError(f"{self.name}: cannot decompress VDF {i} ({e})") from None
            if block.shape != shape:
                raise CompressedFileError(f"{self.name}: VDF {i} decoded to {block.shape}, expected {shape}")
            out[i, x0:x1, y0:y1, z0:z1] = np.maximum(block, 0.0)
            pos += n
        return out


class ZfpCodec(_PerVdfCodec):
    """ZFP (zfpy), fixed-accuracy mode by default."""

    name = "zfp"

    def _compress(self, block, bound):
        zfpy = _import("zfpy")
        mode = self.settings.mode or "accuracy"
        if mode == "accuracy":
            return zfpy.compress_numpy(block, tolerance=bound)
        if mode == "precision":
            return zfpy.compress_numpy(block, precision=int(self.settings.precision))
        if mode == "rate":
            return zfpy.compress_numpy(block, rate=float(self.settings.rate))
        raise CodecError(f"zfp mode must be accuracy, precision or rate, got {mode!r}")

    def _decompress(self, data, shape):
        return _import("zfpy").decompress_numpy(data)


class Sz3Codec(_PerVdfCodec):
    """SZ3 (pysz), absolute error bound by default (``mode=l2norm`` bounds the L2 norm instead)."""

    name = "sz3"

    def _compress(self, block, bound):
        pysz = _import("pysz")
        mode = self.settings.mode or "abs"
        conf = pysz.szConfig(tuple(int(s) for s in block.shape))
        if mode == "abs":
            conf.errorBoundMode = pysz.szErrorBoundMode.ABS
            conf.absErrorBound = bound
        elif mode == "l2norm":
            conf.errorBoundMode = pysz.szErrorBoundMode.L2NORM
            conf.l2normErrorBound = bound
        else:
            raise CodecError(f"sz3 mode must be abs or l2norm, got {mode!r}")
        data, _ratio = pysz.sz.compress(block, conf)
        return data.tobytes()

    def _decompress(self, data, shape):
        pysz = _import("pysz")
        arr, _conf = pysz.sz.decompress(np.frombuffer(data, dtype=np.uint8), np.float32, shape)
        return np.asarray(arr).reshape(shape)
