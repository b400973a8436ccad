"""VDF normalization shared by training and inference: centering, per-VDF scale, log10 with a floor.

The forward transform of one VDF ``f`` (the last three axes of an array of any leading shape)::

    1. centering (optional): circular shift by the whole number of velocity cells ``s`` nearest to
       ``(v_mid - V) / dv`` per resolved velocity axis (``V`` the VDF's bulk velocity, ``v_mid``
       the centre of the velocity box), so the bulk velocity lands within half a cell of the box
       centre. The shift is an integer ``np.roll``: exact and exactly invertible; cells pushed
       past one edge of the box re-enter at the other (the mesh is assumed wide enough that they
       hold values at the floor). It is not a conservative fractional shift.
    2. scale: ``x = f / scale`` with ``scale`` the VDF's maximum (``"max"``), its density
       ``sum(f) dv^3`` (``"density"``) or 1 (``"none"``); a VDF without a positive value gets 1.
    3. floor and log: ``y = log10(max(x, floor))`` (the floor applies to the *scaled* values).
    4. standardization (optional): ``z = (y - mean) / std`` with dataset statistics.

The side information ``{"scale": (...,), "shift": (..., 3) int32}`` (one entry per VDF) is returned
with the normalized values and is what :func:`denormalize` needs to undo steps 1-2.
:func:`denormalize` maps values at the floor back to 0 (default) or to the floor, so
``denormalize(normalize(f)) == f`` to float rounding wherever ``f / scale > floor``.

:class:`NormStats` holds the settings and dataset statistics; :func:`fit_normalization` computes
them from a seeded subsample of a source; they are stored as JSON (``normalization.json`` next to
the dataset or model), never pickled. Both functions accept numpy or JAX arrays (JAX arrays stay
on device and can be traced under ``jit``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faiser._version import __version__
from faiser.atomic import atomic_write_text
from faiser.data.sparse_blocks import VelocityMesh
from faiser.errors import ConfigError, DataError
from faiser.vlasov.diagnostics import velocity_moments

if TYPE_CHECKING:
    from faiser.data.sources import Source

__all__ = [
    "NORM_FILE",
    "SCALES",
    "NormStats",
    "centering_shift",
    "denormalize",
    "fit_normalization",
    "normalize",
    "shift_vdf",
    "vdf_moments",
]

NORM_FILE = "normalization.json"
SCALES = ("max", "density", "none")
_FLOOR_TOL = 1e-4  # relative: denormalize treats x <= floor * (1 + _FLOOR_TOL) as "at the floor"


def _resolved(mesh: VelocityMesh) -> tuple[int, ...]:
    return tuple(a for a in range(3) if mesh.nv[a] > 1)


def _xp(a):
    """numpy for host arrays, jax.numpy for JAX arrays and tracers."""
    if isinstance(a, np.ndarray | np.generic):
        return np
    import jax.numpy as jnp

    return jnp


def vdf_moments(f, mesh: VelocityMesh) -> dict[str, Any]:
    """Density, bulk velocity and temperature of each VDF (reduction over the last three axes).

    Args:
      f: ``(..., nvx, nvy, nvz)`` phase-space density.
      mesh: its velocity mesh.

    Returns:
      ``{"density": (...), "bulk_velocity": (..., 3), "temperature": (...)}`` in the units of ``f``
      and ``mesh``, from :func:`faiser.vlasov.diagnostics.velocity_moments` (unit mass, so the
      temperature is in velocity squared and averages over the resolved velocity axes), in ``f``'s
      dtype (at least float32). Zero-density VDFs get zero velocity and temperature.
    """
    xp = _xp(f)
    dt = f.dtype if xp is not np else np.result_type(f.dtype, np.float32)
    v = [mesh.v_centers(a) for a in range(3)]
    m = velocity_moments(f, v, mesh.dv3, resolved=_resolved(mesh), dtype=dt)
    return {k: m[k] for k in ("density", "bulk_velocity", "temperature")}


def centering_shift(f, mesh: VelocityMesh):
    """Whole-cell shifts ``(..., 3)`` (int32) that move each VDF's bulk velocity next to the box centre.

    ``s_a = round((v_mid_a - V_a) / dv_a)`` on resolved axes, 0 on unresolved ones and for empty VDFs.
    """
    xp = _xp(f)
    V = vdf_moments(f, mesh)["bulk_velocity"]
    mid = np.asarray([(a + b) / 2 for a, b in zip(mesh.vmin, mesh.vmax)])
    dv = np.asarray(mesh.dv)
    res = np.asarray([n > 1 for n in mesh.nv])
    s = xp.round((xp.asarray(mid, dtype=V.dtype) - V) / xp.asarray(dv, dtype=V.dtype))
    s = xp.where(xp.asarray(res), s, 0)
    return s.astype(xp.int32)


def shift_vdf(f, shift):
    """Circular shift of each VDF by whole cells: ``out[i] = f[(i - shift) mod nv]`` per velocity axis.

    ``f`` is ``(..., nvx, nvy, nvz)``, ``shift`` is ``(..., 3)`` integer (broadcast against the leading
    axes). ``shift_vdf(shift_vdf(f, s), -s) == f`` exactly.
    """
    xp = _xp(f)
    shift = xp.asarray(shift)
    lead = f.shape[:-3]
    out = f
    for k, ax in enumerate((-3, -2, -1)):
        n = f.shape[ax]
        if n == 1:
            continue
        s = xp.broadcast_to(shift[..., k], lead)
        idx_shape = [1, 1, 1]
        idx_shape[k] = n
        base = xp.arange(n).reshape(idx_shape)
        idx = (base - s.reshape(lead + (1, 1, 1))) % n
        out = xp.take_along_axis(out, idx, axis=ax)
    return out


@dataclasses.dataclass(frozen=True)
class NormStats:
    """Normalization settings and dataset statistics (see the module docstring for the transform).

    Attributes:
      mesh: the velocity mesh the statistics were fitted on (centering and density scale use it).
      floor: lower bound applied to the scaled values before ``log10`` (> 0).
      scale: ``"max"``, ``"density"`` or ``"none"``.
      center: shift each VDF's bulk velocity to the box centre (whole cells).
      standardize: subtract ``mean`` and divide by ``std`` after the log.
      mean, std: mean and standard deviation of ``log10(max(f / scale, floor))`` over the fitted subsample.
      log_min, log_max: extreme log values of the subsample (``log_min >= log10(floor)``).
      n_vdfs: number of VDFs in the subsample; seed: its seed; source: a description of the data.
    """

    mesh: VelocityMesh
    floor: float
    scale: str = "max"
    center: bool = False
    standardize: bool = True
    mean: float = 0.0
    std: float = 1.0
    log_min: float | None = None
    log_max: float | None = None
    n_vdfs: int = 0
    seed: int | None = None
    source: str | None = None

    def __post_init__(self):
        if self.scale not in SCALES:
            raise ConfigError(f"scale must be one of {SCALES}, got {self.scale!r}")
        if not (math.isfinite(self.floor) and self.floor > 0):
            raise ConfigError(f"floor must be a positive number, got {self.floor!r}")
        if not (math.isfinite(self.std) and self.std > 0 and math.isfinite(self.mean)):
            raise ConfigError(f"bad statistics mean={self.mean!r} std={self.std!r}")

    def to_json(self) -> dict:
        """A JSON-ready dict (``from_json`` inverts it)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["mesh"] = self.mesh.to_json()
        return {"format": "faiser-normalization", "version": 1, "faiser_version": __version__, **d}

    @classmethod
    def from_json(cls, d: Mapping) -> NormStats:
        """Rebuild from :meth:`to_json` output; raises :class:`DataError` on a malformed dict."""
        try:
            if d.get("format") != "faiser-normalization":
                raise ValueError(f"format {d.get('format')!r}")
            kw = {f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d}
            kw["mesh"] = VelocityMesh(**d["mesh"])
            return cls(**kw)
        except (KeyError, TypeError, ValueError, AttributeError, ConfigError) as e:
            raise DataError(f"malformed normalization statistics: {e}") from e

    def save(self, path: str | Path) -> Path:
        """Write JSON to ``path`` (a directory gets ``path/normalization.json``); returns the file."""
        path = Path(path)
        if path.is_dir():
            path = path / NORM_FILE
        return atomic_write_text(path, json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> NormStats:
        """Read JSON written by :meth:`save` (a directory means ``path/normalization.json``)."""
        path = Path(path)
        if path.is_dir():
            path = path / NORM_FILE
        try:
            d = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read normalization statistics {path}: {e}") from e
        return cls.from_json(d)


def _check_mesh(f, stats: NormStats) -> None:
    if tuple(f.shape[-3:]) != stats.mesh.nv:
        raise DataError(f"VDFs of shape {tuple(f.shape[-3:])} do not match the statistics' mesh {stats.mesh.nv}")


def _scale(f, stats: NormStats):
    xp = _xp(f)
    if stats.scale == "none":
        return xp.ones(f.shape[:-3], dtype=f.dtype)
    if stats.scale == "max":
        s = f.max(axis=(-3, -2, -1))
    else:
        s = f.sum(axis=(-3, -2, -1)) * stats.mesh.dv3
    return xp.where(s > 0, s, 1).astype(f.dtype)


def normalize(f, stats: NormStats) -> tuple[Any, dict[str, Any]]:
    """Forward transform of VDFs ``f`` ``(..., nvx, nvy, nvz)`` (numpy or JAX).

    Returns:
      ``(z, side)``: ``z`` of ``f``'s shape (float32 for float32 input, float64 for float64) and
      ``side = {"scale": (...), "shift": (..., 3) int32}`` for :func:`denormalize`.
    """
    _check_mesh(f, stats)
    xp = _xp(f)
    f = f.astype(xp.result_type(f.dtype, xp.float32))
    if stats.center:
        shift = centering_shift(f, stats.mesh)
        f = shift_vdf(f, shift)
    else:
        shift = xp.zeros((*f.shape[:-3], 3), dtype=xp.int32)
    scale = _scale(f, stats)
    y = xp.log10(xp.maximum(f / scale[..., None, None, None], stats.floor))
    if stats.standardize:
        y = (y - stats.mean) / stats.std
    return y.astype(f.dtype), {"scale": scale, "shift": shift}


def denormalize(z, stats: NormStats, side: Mapping[str, Any], below_floor: str = "zero"):
    """Inverse of :func:`normalize`: ``z`` ``(..., nvx, nvy, nvz)`` and its side information -> ``f``.

    Args:
      z: normalized values (e.g. a model output), numpy or JAX.
      stats: the statistics used by :func:`normalize`.
      side: a mapping with ``"scale"`` ``(...)`` and ``"shift"`` ``(..., 3)`` (a loader batch will do).
      below_floor: ``"zero"`` maps values at or below the floor (within a relative 1e-4) to 0;
        ``"floor"`` keeps them at ``floor * scale``.
    """
    if below_floor not in ("zero", "floor"):
        raise ConfigError(f"below_floor must be 'zero' or 'floor', got {below_floor!r}")
    _check_mesh(z, stats)
    xp = _xp(z)
    z = z.astype(xp.result_type(z.dtype, xp.float32))
    y = z * stats.std + stats.mean if stats.standardize else z
    x = xp.power(xp.asarray(10.0, dtype=z.dtype), y)
    if below_floor == "zero":
        x = xp.where(x <= stats.floor * (1 + _FLOOR_TOL), 0, x)
    scale = xp.asarray(side["scale"], dtype=z.dtype)
    f = x * scale[..., None, None, None]
    if stats.center:
        f = shift_vdf(f, -xp.asarray(side["shift"]))
    return f


def fit_normalization(
    source: Source | str | Path | Sequence[str | Path],
    *,
    scale: str = "max",
    center: bool = False,
    floor: float | None = None,
    floor_rel: float = 1e-6,
    floor_quantile: float | None = None,
    min_floor: float = 1e-30,
    standardize: bool = True,
    n_vdfs: int = 1024,
    seed: int = 0,
    species: str | Sequence[str] | None = None,
    batch: int = 128,
) -> NormStats:
    """Fit :class:`NormStats` on a seeded random subsample of the VDFs of ``source``.

    Args:
      source: a :class:`~faiser.data.sources.Source` or what :func:`~faiser.data.sources.open_source` takes.
      scale, center, standardize: the transform (see the module docstring).
      floor: the floor on scaled values. None fits it: ``floor_rel`` times the median peak of the
        scaled VDFs (with ``scale="max"`` exactly ``floor_rel``: 6 decades by default), or, when
        ``floor_quantile`` is given, that quantile of the positive scaled values of the subsample
        (which lands in the empty tails when most of the velocity mesh holds negligible values, as
        in Vlasiator files); never below ``min_floor``.
      n_vdfs: subsample size (VDFs drawn without replacement; all of them if there are fewer).
      seed: seed of the subsample (``numpy.random.default_rng``).
      species: species to sample (default: all of the source's).
      batch: VDFs read at a time (memory is ``batch * nv^3`` values, never the whole dataset).

    Returns:
      Frozen :class:`NormStats` (``save`` it next to the dataset or model).
    """
    from faiser.data.sources import open_source

    src = open_source(source)
    if scale not in SCALES:
        raise ConfigError(f"scale must be one of {SCALES}, got {scale!r}")
    if floor_quantile is not None and not 0 <= floor_quantile < 1:
        raise ConfigError(f"floor_quantile must be in [0, 1), got {floor_quantile}")
    if not 0 < floor_rel < 1:
        raise ConfigError(f"floor_rel must be in (0, 1), got {floor_rel}")
    if floor is not None and not floor > 0:
        raise ConfigError(f"floor must be positive, got {floor}")
    space = src.vdf_index(species)
    n = space.size
    if n == 0:
        raise DataError(f"{src.describe()} holds no VDF")
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(n, size=min(n_vdfs, n), replace=False))
    proto = NormStats(mesh=src.mesh, floor=1.0, scale=scale, center=center, standardize=False)

    def scaled_batches():
        for i in range(0, len(ids), batch):
            f = src.read_vdfs(space, ids[i : i + batch])
            if center:
                f = shift_vdf(f, centering_shift(f, src.mesh))
            s = _scale(f, proto)
            yield f / s[:, None, None, None]

    if floor is None and floor_quantile is None:
        if scale == "max":  # every scaled VDF peaks at 1
            floor = max(floor_rel, min_floor)
        else:
            peaks = np.concatenate([x.max(axis=(1, 2, 3)) for x in scaled_batches()])
            floor = max(floor_rel * float(np.median(peaks)), min_floor)
    elif floor is None:
        per_vdf = max(1, 200_000 // len(ids))  # bounded sample of positive values for the quantile
        vals = []
        for x in scaled_batches():
            pos = x[x > 0]
            if pos.size:
                vals.append(rng.choice(pos, size=min(pos.size, per_vdf * len(x)), replace=False))
        pos = np.concatenate(vals) if vals else np.ones(1)
        floor = max(float(np.quantile(pos.astype(np.float64), floor_quantile)), min_floor)
    total, s1, s2, lo, hi = 0, 0.0, 0.0, math.inf, -math.inf
    for x in scaled_batches():
        y = np.log10(np.maximum(x.astype(np.float64), floor))
        total += y.size
        s1 += float(y.sum())
        s2 += float((y * y).sum())
        lo, hi = min(lo, float(y.min())), max(hi, float(y.max()))
    mean = s1 / total
    std = math.sqrt(max(s2 / total - mean * mean, 0.0))
    return NormStats(
        mesh=src.mesh, floor=float(floor), scale=scale, center=center, standardize=standardize,
        mean=mean, std=std if std > 0 else 1.0,
        log_min=lo, log_max=hi, n_vdfs=len(ids), seed=seed, source=src.describe(),
    )  # fmt: skip
