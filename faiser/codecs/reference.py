"""The two reference codecs: ``sparse`` (Vlasiator's lossless storage) and ``maxwellian`` (moments only).

``sparse`` is the yardstick of every ratio (DESIGN.md): Vlasiator stores a VDF as the 4x4x4 blocks
that hold a value at or above the sparsity threshold plus one layer of neighbour blocks, as float32
values and one uint32 id per block. With ``f_min = 0`` every block with a nonzero cell is kept and
the codec is exact (for float32 input with ``dtype=float32``).

``maxwellian`` stores the 10 moments (n, V, P) as float32 and decodes the anisotropic Maxwellian
they define, restored to those moments exactly: the baseline no learned codec may lose to.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from faiser.codecs.base import Codec, Encoded
from faiser.codecs.container import Stream
from faiser.codecs.moments import maxwellian
from faiser.codecs.restoration import restore_moments
from faiser.data.sparse_blocks import SparseBlocks, VelocityMesh, dense_to_sparse, sparse_to_dense
from faiser.errors import CompressedFileError


@dataclasses.dataclass(frozen=True)
class SparseSettings:
    """``f_min``: Vlasiator's sparsity threshold (units of f; 0 keeps every nonzero block, lossless);
    ``dtype``: stored value type: ``auto`` (the input's, lossless), ``float32`` (Vlasiator's) or ``float64``."""

    f_min: float = 0.0
    dtype: str = "auto"

    def __post_init__(self):
        if self.dtype not in ("auto", "float32", "float64"):
            raise ValueError(f"dtype must be auto, float32 or float64, got {self.dtype!r}")
        if self.f_min < 0:
            raise ValueError("f_min must be >= 0")


class SparseCodec(Codec):
    """Vlasiator's sparse velocity blocks (lossless above the threshold)."""

    name = "sparse"
    lossy = False
    Settings = SparseSettings

    def _encode(self, f, mesh, m):
        dtype = np.dtype(f.dtype if self.settings.dtype == "auto" else self.settings.dtype)
        if self.settings.f_min > 0:
            sb = dense_to_sparse(f, mesh, self.settings.f_min, dtype=dtype)
        else:  # keep exactly the blocks with a nonzero cell (no neighbour layer needed for losslessness)
            sb = nonzero_blocks(f, mesh, dtype)
        return {
            "values": Stream(sb.values, "payload"),
            "block_ids": Stream(sb.block_ids.astype(np.uint32), "payload"),
            "blocks_per_cell": Stream(sb.blocks_per_cell.astype(np.uint32), "side", "zlib"),
        }, {}

    def _decode(self, enc, m):
        s = enc.streams
        N = enc.n_vdfs
        try:
            counts = s["blocks_per_cell"].data.astype(np.int64)
            sb = SparseBlocks(enc.mesh, np.arange(1, N + 1, dtype=np.uint64), counts,
                              s["block_ids"].data, s["values"].data.reshape(-1, enc.mesh.wid**3))
            return sparse_to_dense(sb, dtype=np.float64)
        except (KeyError, ValueError) as e:
            raise CompressedFileError(f"sparse stream inconsistent ({e})") from None


def nonzero_blocks(f: np.ndarray, mesh: VelocityMesh, dtype) -> SparseBlocks:
    """The blocks of ``f`` ``(N, nvx, nvy, nvz)`` that hold a nonzero value (lossless sparse storage)."""
    sb = dense_to_sparse(f, mesh, 0.0, dtype=dtype)
    keep = (sb.values != 0).any(axis=1)
    counts = np.bincount(sb.cell_of_block[keep], minlength=sb.ncells).astype(np.int64)
    return SparseBlocks(mesh, sb.cellids, counts, sb.block_ids[keep], np.ascontiguousarray(sb.values[keep]))


def sparse_nbytes(f: np.ndarray, mesh: VelocityMesh, f_min: float = 0.0) -> int:
    """Bytes of Vlasiator's storage of ``f``: float32 values and uint32 ids of the kept blocks."""
    if f_min > 0:
        sb = dense_to_sparse(f, mesh, f_min, dtype=np.float32)
    else:
        sb = nonzero_blocks(f, mesh, np.dtype(np.float32))
    return sb.nbytes


@dataclasses.dataclass(frozen=True)
class MaxwellianSettings:
    """``restore``: make the discrete moments of the decoded Maxwellian exact (default on)."""

    restore: bool = True


class MaxwellianCodec(Codec):
    """Moments only: 10 float32 per VDF; decodes the anisotropic Maxwellian they define."""

    name = "maxwellian"
    Settings = MaxwellianSettings

    def _encode(self, f, mesh, m):
        return {"moments": Stream(m.astype(np.float32), "payload")}, {}

    def _wrap(self, f, mesh, m, streams, meta, idx) -> Encoded:
        return Encoded(self.name, self.settings_json, self.model_id(), mesh, tuple(f.shape), f.dtype.name,
                       dict(streams), meta)

    def decode(self, enc: Encoded) -> np.ndarray:
        self._check_encoded(enc)
        m = enc.streams["moments"].data.astype(np.float64) if "moments" in enc.streams else None
        if m is None or m.shape != (enc.n_vdfs, 10):
            raise CompressedFileError("maxwellian data lacks its (N, 10) moments stream")
        fm = maxwellian(m, enc.mesh, dtype=np.float64)
        if self.settings.restore:
            return restore_moments(fm, m, enc.mesh, dtype=enc.dtype)
        return fm.astype(enc.dtype)
