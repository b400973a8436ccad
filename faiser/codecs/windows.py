"""VDF-adaptive windows: where a VDF sits in its mesh, and conservative resampling to and from it.

Real VDFs sit anywhere in a large velocity mesh. Two windows are offered:

- :func:`support_boxes`: the bounding box (in cells) of the VDF's support, for codecs that work
  on the mesh's own cells (ZFP, SZ3);
- :func:`thermal_edges`: a fixed-size grid of ``n`` cells per axis centred on the bulk velocity
  and spanning ``+- width`` thermal speeds, for codecs whose model has a fixed input size (PCA,
  VQ-VAE, MLP). :func:`to_window` / :func:`from_window` move a VDF between the mesh and such a
  grid one axis at a time: by conservative cell averages where the target is coarser, by cubic
  (Catmull-Rom) interpolation where it is finer; first-order averaging between two grids of similar
  spacing would smear the VDF by about a cell each way (10% L2 on beams). Moment restoration then
  makes n, V and P exact.
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


def crop_edges(m: np.ndarray, mesh: VelocityMesh, n: int) -> list[np.ndarray]:
    """Mesh-aligned window faces per axis, 3 arrays ``(N, n + 1)``: ``n`` mesh cells around the bulk velocity.

    Resampling onto such a window is an exact copy of mesh cells (cells outside the mesh are 0).
    """
    out = []
    for a in range(3):
        c = (m[:, 1 + a] - mesh.vmin[a]) / mesh.dv[a]  # bulk velocity in cells from the lower face
        i0 = np.rint(c - n / 2).astype(np.int64)
        out.append(mesh.vmin[a] + (i0[:, None] + np.arange(n + 1)[None, :]) * mesh.dv[a])
    return out


def window_edges(m: np.ndarray, mesh: VelocityMesh, n: int, width: float, mode: str) -> list[np.ndarray]:
    """Window faces for ``mode`` ``thermal`` (:func:`thermal_edges`) or ``crop`` (:func:`crop_edges`)."""
    if mode == "thermal":
        return thermal_edges(m, mesh, n, width)
    if mode == "crop":
        return crop_edges(m, mesh, n)
    raise ValueError(f"window mode must be thermal or crop, got {mode!r}")


def _overlap(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Overlap lengths ``(N, n_dst, n_src)`` of cells with faces ``src (N|1, n_src+1)``, ``dst (N, n_dst+1)``."""
    lo = np.maximum(dst[:, :-1, None], src[:, None, :-1])
    hi = np.minimum(dst[:, 1:, None], src[:, None, 1:])
    return np.maximum(hi - lo, 0.0)


def _mesh_faces(mesh: VelocityMesh, a: int) -> np.ndarray:
    return (mesh.vmin[a] + np.arange(mesh.nv[a] + 1) * mesh.dv[a])[None, :]


def _cubic(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Catmull-Rom interpolation weights ``(N, n_dst, n_src)`` from cell centres of uniform ``src``
    faces to the centres of ``dst`` faces (zero outside the source cells)."""
    N = max(src.shape[0], dst.shape[0])
    ns = src.shape[1] - 1
    h = (src[:, -1] - src[:, 0]) / ns  # (N|1,)
    x = 0.5 * (dst[:, 1:] + dst[:, :-1])  # (N, nd)
    pos = (x - src[:, :1]) / h[:, None] - 0.5  # in units of source cells, 0 at the first centre
    i0 = np.floor(pos).astype(np.int64)
    t = pos - i0
    w = [(-t**3 + 2 * t**2 - t) / 2, (3 * t**3 - 5 * t**2 + 2) / 2, (-3 * t**3 + 4 * t**2 + t) / 2, (t**3 - t**2) / 2]
    out = np.zeros((N, x.shape[1], ns))
    inside = (pos >= -0.5) & (pos <= ns - 0.5)
    rows = np.broadcast_to(np.arange(N)[:, None], x.shape)
    cols = np.broadcast_to(np.arange(x.shape[1])[None, :], x.shape)
    for k, wk in zip(range(-1, 3), w):
        j = np.clip(i0 + k, 0, ns - 1)  # clamped: edge values repeat, as for a constant extension
        np.add.at(out, (rows[inside], cols[inside], j[inside]), wk[inside])
    return out


def _resample(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Per-VDF resampling matrices ``(N, n_dst, n_src)`` of cell values: conservative averaging where
    the destination cells are coarser than the source (anti-aliasing), cubic interpolation where they
    are finer (the averaging of piecewise-constant cells would smear a VDF by a cell each way)."""
    ov = _overlap(src, dst)
    avg = ov / np.diff(dst, axis=1)[:, :, None]
    hs = (src[:, -1] - src[:, 0]) / (src.shape[1] - 1)
    hd = (dst[:, -1] - dst[:, 0]) / (dst.shape[1] - 1)
    finer = np.broadcast_to(hd < 0.999 * hs, (max(len(hs), len(hd)),))
    if not finer.any():
        return avg
    return np.where(finer[:, None, None], _cubic(src, dst), avg)


def _apply(f: np.ndarray, mats: list[np.ndarray]) -> np.ndarray:
    """``out[n, a, b, c] = sum_ijk X[n, a, i] Y[n, b, j] Z[n, c, k] f[n, i, j, k]`` (axis by axis)."""
    g = np.einsum("nck,nijk->nijc", mats[2], f, optimize=True)
    g = np.einsum("nbj,nijc->nibc", mats[1], g, optimize=True)
    return np.einsum("nai,nibc->nabc", mats[0], g, optimize=True)


def to_window(f: np.ndarray, mesh: VelocityMesh, edges: list[np.ndarray]) -> np.ndarray:
    """VDFs ``(N, nvx, nvy, nvz)`` resampled onto window cells ``edges`` -> ``(N, n, n, n)`` (0 outside the mesh)."""
    mats = [_resample(_mesh_faces(mesh, a), edges[a]) for a in range(3)]
    return _apply(np.asarray(f, dtype=np.float64), mats)


def from_window(w: np.ndarray, mesh: VelocityMesh, edges: list[np.ndarray]) -> np.ndarray:
    """Window VDFs ``w`` ``(N, n, n, n)`` resampled back onto the mesh ``(N, nvx, nvy, nvz)`` (0 outside)."""
    N = w.shape[0]
    mats = [_resample(edges[a], np.broadcast_to(_mesh_faces(mesh, a), (N, mesh.nv[a] + 1))) for a in range(3)]
    return _apply(np.asarray(w, dtype=np.float64), mats)


def window_features(f: np.ndarray, mesh: VelocityMesh, m: np.ndarray, n: int, width: float,
                    mode: str = "thermal") -> np.ndarray:
    """Dimensionless window VDFs ``(N, n, n, n)``: ``f s_x s_y s_z / n`` on the window of ``mode``."""
    w = to_window(f, mesh, window_edges(m, mesh, n, width, mode))
    s = thermal_speeds(m, mesh)
    scale = np.prod(s, axis=1) / np.where(m[:, 0] > 0, m[:, 0], 1.0)
    return w * scale[:, None, None, None]


def window_to_mesh(w: np.ndarray, mesh: VelocityMesh, m: np.ndarray, width: float,
                   mode: str = "thermal") -> np.ndarray:
    """Inverse of :func:`window_features`: dimensionless windows back to VDFs on ``mesh``."""
    s = thermal_speeds(m, mesh)
    scale = np.where(m[:, 0] > 0, m[:, 0], 0.0) / np.prod(s, axis=1)
    edges = window_edges(m, mesh, w.shape[1], width, mode)
    return from_window(np.maximum(w, 0.0) * scale[:, None, None, None], mesh, edges)


PEAK = (2 * np.pi) ** 1.5  # 1 / peak of the dimensionless unit Maxwellian
SCALES = ("sqrt", "linear", "log")


def to_scale(w: np.ndarray, scale: str, floor: float) -> np.ndarray:
    """Model targets from dimensionless window values: ``linear`` (a Maxwellian peaks at 1), ``sqrt`` of
    that, or ``log`` mapped to [0, 1] with a floor (``1 - log10(max(w, floor)) / log10(floor)``)."""
    if scale == "linear":
        return w * PEAK
    if scale == "sqrt":
        return np.sqrt(np.maximum(w, 0.0) * PEAK)
    return 1.0 - np.log10(np.maximum(w, floor)) / np.log10(floor)


def from_scale(y: np.ndarray, scale: str, floor: float) -> np.ndarray:
    """Inverse of :func:`to_scale`; negative values, and log values at the floor, become 0."""
    if scale == "linear":
        return np.maximum(y, 0.0) / PEAK
    if scale == "sqrt":
        return np.maximum(y, 0.0) ** 2 / PEAK
    return np.where(y > 1e-3, 10.0 ** ((1.0 - y) * np.log10(floor)), 0.0)


def pad_batch(a: np.ndarray, n: int) -> np.ndarray:
    """``a`` padded (repeating its last row) to the next power of two, at most ``n`` rows: few compiled
    shapes for jitted models, little wasted work."""
    if len(a) == 0:
        return a
    n = min(n, 1 << (len(a) - 1).bit_length())
    if len(a) >= n:
        return a
    return np.concatenate([a, np.repeat(a[-1:], n - len(a), axis=0)])
