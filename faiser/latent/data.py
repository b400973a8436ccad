"""Trajectory data for the latent solver: datasets -> normalized arrays, conditioning, normalization.

A training set is a list of trajectory datasets (``faiser simulate --save-every`` or a sweep root,
whose runs are all taken) of one case, one species, one grid shape (cells and boundary kinds) and
one snapshot interval. The runs' grids may differ in extent and spacing (e.g. Landau damping over
k, whose box is 2 pi / k): the networks work in cell-index space, and the parameter that sets the
grid, varying across the runs, is part of the conditioning. The latent solver sees:

- ``x = sqrt(f / f_ref)`` per VDF cell (``f_ref``: the largest f of the training set), so values
  lie in [0, 1] and the decoded ``f = f_ref * max(x, 0)^2`` is never negative;
- the fields ``(E, B)`` per cell, each component shifted and scaled by its training mean and
  standard deviation;
- the case parameters that vary across the training runs (scalar config entries and vector
  components, e.g. ``V_left_kms[0]``) as the conditioning vector, standardized.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from faiser.config import JsonConfig
from faiser.errors import ConfigError, DatasetError

__all__ = ["Normalization", "Trajectories", "condition_value", "dataset_paths", "grid_shape", "load_trajectories"]

# config keys that never condition the dynamics (output and numerics settings)
_NOT_CONDITIONS = {"t_end", "diag_every", "vdf_stride", "dtype", "seed", "save_every", "vlsv_every"}


@dataclasses.dataclass(frozen=True)
class Normalization(JsonConfig):
    """Value transform of the latent solver (see the module docstring).

    Attributes:
      f_ref: reference f (case units): ``x = sqrt(f / f_ref)``.
      field_mean, field_std: per-component shift and scale of ``(Ex, Ey, Ez, Bx, By, Bz)``.
      cond_keys: names of the conditioning parameters; cond_mean, cond_std: their standardization.
      field_constant: components that never varied in training (e.g. B of an electrostatic run):
        they decode to their training value exactly, not to whatever the network outputs.
    """

    f_ref: float = 1.0
    field_mean: tuple[float, ...] = (0.0,) * 6
    field_std: tuple[float, ...] = (1.0,) * 6
    cond_keys: tuple[str, ...] = ()
    cond_mean: tuple[float, ...] = ()
    cond_std: tuple[float, ...] = ()
    field_constant: tuple[bool, ...] = (False,) * 6

    def __post_init__(self):
        for name in ("field_mean", "field_std", "cond_keys", "cond_mean", "cond_std", "field_constant"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    def to_x(self, f: np.ndarray) -> np.ndarray:
        """Model values of f (any shape)."""
        return np.sqrt(np.maximum(np.asarray(f, np.float32), 0.0) / np.float32(self.f_ref))

    def from_x(self, x):
        """f (case units) of model values; works on numpy and jax arrays."""
        import jax.numpy as jnp

        return jnp.float32(self.f_ref) * jnp.maximum(x, 0.0) ** 2

    def to_fields(self, E: np.ndarray, B: np.ndarray) -> np.ndarray:
        """``(..., 6)`` normalized fields of ``E``, ``B`` ``(..., 3)``."""
        eb = np.concatenate([np.asarray(E, np.float32), np.asarray(B, np.float32)], axis=-1)
        return (eb - np.float32(self.field_mean)) / np.float32(self.field_std)

    def from_fields(self, h):
        """``(E, B)`` of normalized fields ``(..., 6)`` (numpy or jax)."""
        import jax.numpy as jnp

        mean = np.float32(self.field_mean)
        eb = jnp.where(np.asarray(self.field_constant), mean, h * np.float32(self.field_std) + mean)
        return eb[..., :3], eb[..., 3:]

    def condition(self, config: Mapping) -> np.ndarray:
        """Standardized conditioning vector ``(n_cond,)`` of a case config (a dict)."""
        raw = np.asarray([condition_value(config, k) for k in self.cond_keys], np.float64)
        return ((raw - np.asarray(self.cond_mean)) / np.asarray(self.cond_std)).astype(np.float32)


def condition_value(config: Mapping, key: str) -> float:
    """The number a conditioning key names in a case config (``"V_left_kms[0]"``: a component)."""
    name, _, idx = key.partition("[")
    if name not in config:
        raise ConfigError(f"the case config has no key {name!r} the latent model is conditioned on")
    v = config[name]
    if idx:
        v = v[int(idx.rstrip("]"))]
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"conditioning key {key!r} is not a number: {v!r}") from None


def _flat_numbers(config: Mapping) -> dict[str, float]:
    out = {}
    for k, v in config.items():
        if k in _NOT_CONDITIONS or isinstance(v, bool):
            continue
        if isinstance(v, int | float):
            out[k] = float(v)
        elif isinstance(v, list | tuple) and all(isinstance(e, int | float) and not isinstance(e, bool) for e in v):
            out.update({f"{k}[{i}]": float(e) for i, e in enumerate(v)})
    return out


def dataset_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Trajectory datasets named by ``paths``: run directories, zarr stores, or sweep roots (every run
    whose dataset is complete), resolved by :func:`faiser.data.sources.resolve_runs`.

    Raises:
      DatasetError: a path that is not a dataset or a sweep root, or no dataset at all.
    """
    from faiser.data.sources import is_dataset, resolve_runs

    out = resolve_runs(paths, complete=True)
    for p in out:
        if not is_dataset(p):
            raise DatasetError(f"{p} is not a trajectory dataset")
    if not out:
        raise DatasetError(f"no trajectory datasets in {', '.join(map(str, paths))}")
    return out


@dataclasses.dataclass
class Trajectories:
    """Raw trajectories (physical units) of one case: ``f`` ``(R, T, nx, ny, nz, nvx, nvy, nvz)``,
    ``E``, ``B`` ``(R, T, nx, ny, nz, 3)``, ``times`` ``(T,)``, per-run ``configs``, ``case``,
    ``species``, ``grid`` (JSON dict of the phase-space grid), ``dt`` (the reference step) and
    ``snapshot_steps`` (reference steps between snapshots)."""

    f: np.ndarray
    E: np.ndarray
    B: np.ndarray
    times: np.ndarray
    configs: list[dict]
    case: str
    species: str
    grid: dict
    dt: float
    snapshot_steps: int
    names: list[str]
    grids: list[dict] = dataclasses.field(default_factory=list)  # per run (JSON dicts)

    @property
    def grid_varies(self) -> bool:
        """Whether the runs' grids differ in extent or spacing (their cells and boundaries agree)."""
        return any(g != self.grid for g in self.grids)

    @property
    def n_runs(self) -> int:
        return self.f.shape[0]

    def varying_keys(self) -> list[str]:
        """Numeric config entries (vector components split) that differ across runs, sorted."""
        flats = [_flat_numbers(c) for c in self.configs]
        keys = set(flats[0]).intersection(*flats[1:]) if flats else set()
        return sorted(k for k in keys if len({f[k] for f in flats}) > 1)

    def normalization(self, cond_keys: Sequence[str] | None = None) -> Normalization:
        """:class:`Normalization` fitted on these trajectories (``cond_keys``: default the varying keys)."""
        keys = tuple(self.varying_keys() if cond_keys is None else cond_keys)
        eb = np.concatenate([self.E, self.B], axis=-1).reshape(-1, 6).astype(np.float64)
        std = eb.std(axis=0)
        constant = std <= 1e-6 * np.maximum(np.abs(eb).max(axis=0), 1e-30)
        std = np.where(std > 1e-6 * max(float(np.abs(eb).max()), 1e-30), std, max(float(np.abs(eb).max()), 1.0))
        raw = np.asarray([[condition_value(c, k) for k in keys] for c in self.configs], np.float64).reshape(
            len(self.configs), len(keys)
        )
        cstd = raw.std(axis=0) if len(keys) else np.zeros(0)
        cstd = np.where(cstd > 0, cstd, 1.0)
        return Normalization(
            f_ref=float(self.f.max()),
            field_mean=tuple(float(v) for v in eb.mean(axis=0)),
            field_std=tuple(float(v) for v in std),
            cond_keys=keys,
            cond_mean=tuple(float(v) for v in raw.mean(axis=0)) if len(keys) else (),
            cond_std=tuple(float(v) for v in cstd),
            field_constant=tuple(bool(c) for c in constant),
        )


def load_trajectories(
    paths: Sequence[str | Path], species: str | None = None, max_snapshots: int | None = None
) -> Trajectories:
    """Read every snapshot of the datasets at ``paths`` (see :func:`dataset_paths`) into memory.

    Raises:
      DatasetError: no dataset, or datasets of different cases, grids, species or snapshot times.
    """
    from faiser.data.dataset import open_dataset

    runs = dataset_paths(paths)
    fs, Es, Bs, configs, names, grids = [], [], [], [], [], []
    ref = None
    for p in runs:
        ds = open_dataset(p)
        sp = species or ds.species_names[0]
        if len(ds.species_names) > 1 and species is None:
            raise DatasetError(f"{p} holds species {ds.species_names}: name one with species=...")
        times = np.asarray(ds.times, np.float64)
        steps = np.asarray(ds.steps, np.int64)
        n = len(times) if max_snapshots is None else min(len(times), max_snapshots)
        key = (ds.case, sp, json.dumps(grid_shape(ds.grid.to_json())), n)
        if len(steps) < 2:
            raise DatasetError(f"{p} holds {len(steps)} snapshot(s): a trajectory needs at least 2")
        interval = np.diff(steps[:n])
        if ref is None:
            ref = (key, steps[:n], ds)
        elif key != ref[0] or not np.array_equal(steps[:n], ref[1]):
            raise DatasetError(
                f"{p} does not match {runs[0]} (case, species, grid cells and boundaries, snapshot steps must agree)"
            )
        elif not np.allclose(times[:n], np.asarray(ref[2].times[:n], np.float64), rtol=1e-6, atol=0):
            raise DatasetError(f"{p}: the snapshot times differ from {runs[0]}'s (the time step must agree)")
        if np.any(interval != interval[0]) and n > 2 and np.any(interval[:-1] != interval[0]):
            raise DatasetError(f"{p}: snapshots are not evenly spaced in steps ({steps[:n].tolist()})")
        fs.append(np.asarray(ds.f(sp, time=slice(0, n)), np.float32))
        E, B = ds.fields(time=slice(0, n))
        Es.append(np.asarray(E, np.float32))
        Bs.append(np.asarray(B, np.float32))
        configs.append(dict(ds.config))
        names.append(Path(p).name)
        grids.append(ds.grid.to_json())
    (case, sp, _, n), steps, ds0 = ref
    interval = np.diff(steps)
    # the last snapshot of a run may be off the regular interval (t_end not a multiple): drop it
    keep = n if np.all(interval == interval[0]) else n - 1
    grid = ds0.grid.to_json()
    dt = float(configs[0].get("dt", np.nan))
    times = np.asarray(ds0.times[:keep], np.float64)
    if keep >= 2:
        dt_actual = (times[1] - times[0]) / interval[0]
        dt = float(dt_actual) if np.isfinite(dt_actual) and dt_actual > 0 else dt
    return Trajectories(
        f=np.stack(fs)[:, :keep], E=np.stack(Es)[:, :keep], B=np.stack(Bs)[:, :keep], times=times,
        configs=configs, case=case or "", species=sp, grid=grid, dt=dt, snapshot_steps=int(interval[0]), names=names,
        grids=grids,
    )  # fmt: skip


def grid_shape(grid: Mapping) -> dict:
    """The part of a grid (JSON dict) that the networks see: cell counts and boundary kinds."""
    return {"nx": list(grid["nx"]), "nv": list(grid["nv"]), "boundaries": [list(b) for b in grid["boundaries"]]}
