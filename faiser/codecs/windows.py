"""VDF-adaptive windows: where a VDF sits in its mesh, and conservative resampling to and from it.

Real VDFs sit anywhere in a large velocity mesh. Two windows are offered:

- :func:`support_boxes`: the bounding box (in cells) of the VDF's support, for codecs that work
  on the mesh's own cells (ZFP, SZ3);
- :func:`thermal_edges`: a fixed-size grid of ``n`` cells per axis centred on the bulk velocity
  and spanning ``+- width`` thermal speeds, for codecs whose model has a fixed input size (PCA,
  VQ-VAE, MLP). :func:`to_window` / :func:`from_window` move a VDF between the mesh and such a
  grid with overlap integrals of piecewise-constant cells, one axis at a time, so the mass inside
  the window is conserved exactly (moment restoration then fixes n, V and P).
"""

from __future__ import annotations

import numpy as np

from faiser.codecs.moments import thermal_speeds
from faiser.data.sparse_blocks import VelocityMesh


def support_boxes(f: np.ndarray) -> np.ndarray:
    """Bounding boxes ``(N, 6)`` int64 ``[x0, y0, z0, x1, y1, z1]`` (half-open) of ``f > 0``.

    An all-zero VDF gets an empty box ``[0, 0, 0, 0, 0, 0]``.
    """
    N = f.shape[0]
    out = np.zeros((N, 6), dtype=np.int64)
    pos = f > 0
    for a in range(3):
        axes = tuple(b for b in (1, 2, 3) if b != a + 1)
        any_ = pos.any(axis=axes)  # (N, n_a)
        has = any_.any(axis=1)
        lo = np.argmax(any_, axis=1)
        hi = any_.shape[1] - np.argmax(any_[:, ::-1], axis=1)
        out[:, a] = np.where(has, lo, 0)
        out[:, 3 + a] = np.where(has, hi, 0)
    return out


def thermal_edges(m: np.ndarray, mesh: VelocityMesh, n: int, width: float) -> list[np.ndarray]:
    """Window cell faces per axis, 3 arrays ``(N, n + 1)``: ``V_a +- width * s_a`` (thermal speed ``s``)."""
    s = thermal_speeds(m, mesh)
    t = np.linspace(-1.0, 1.0, n + 1)
    return [m[:, 1 + a, None] + width * s[:, a, None] * t[None, :] for a in range(3)]


def _overlap(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Overlap lengths ``(N, n_dst, n_src)`` of cells with faces ``src (N|1, n_src+1)``, ``dst (N, n_dst+1)``."""
    lo = np.maximum(dst[:, :-1, None], src[:, None, :-1])
    hi = np.minimum(dst[:, 1:, None], src[:, None, 1:])
    return np.maximum(hi - lo, 0.0)


def _mesh_faces(mesh: VelocityMesh, a: int) -> np.ndarray:
    return (mesh.vmin[a] + np.arange(mesh.nv[a] + 1) * mesh.dv[a])[None, :]


def _apply(f: np.ndarray, mats: list[np.ndarray]) -> np.ndarray:
    """``out[n, a, b, c] = sum_ijk X[n, a, i] Y[n, b, j] Z[n, c, k] f[n, i, j, k]`` (axis by axis)."""
    g = np.einsum("nck,nijk->nijc", mats[2], f, optimize=True)
    g = np.einsum("nbj,nijc->nibc", mats[1], g, optimize=True)
    return np.einsum("nai,nibc->nabc", mats[0], g, optimize=True)


def to_window(f: np.ndarray, mesh: VelocityMesh, edges: list[np.ndarray]) -> np.ndarray:
    """Cell averages of VDFs ``(N, nvx, nvy, nvz)`` over window cells ``edges`` -> ``(N, n, n, n)``."""
    mats = []
    for a in range(3):
        ov = _overlap(_mesh_faces(mesh, a), edges[a])
        mats.append(ov / np.diff(edges[a], axis=1)[:, :, None])
    return _apply(np.asarray(f, dtype=np.float64), mats)


def from_window(w: np.ndarray, mesh: VelocityMesh, edges: list[np.ndarray]) -> np.ndarray:
    """Mesh-cell averages ``(N, nvx, nvy, nvz)`` of window VDFs ``w`` ``(N, n, n, n)`` (0 outside)."""
    mats = []
    for a in range(3):
        ov = _overlap(edges[a], np.broadcast_to(_mesh_faces(mesh, a), (w.shape[0], mesh.nv[a] + 1)))
        mats.append(ov / mesh.dv[a])
    return _apply(np.asarray(w, dtype=np.float64), mats)
