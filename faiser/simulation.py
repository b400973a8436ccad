"""Run a named case end to end: the public function behind ``faiser simulate``.

Writes ``config.json``, ``diagnostics.csv``, ``timing.json``, ``diagnostics.png`` and
``moments.nc`` into the output directory (see the command-line contract in DESIGN.md).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from pathlib import Path

import jax
import numpy as np
import xarray as xr
from tqdm import tqdm

from faiser import __version__
from faiser.atomic import atomic_path, atomic_write_text
from faiser.config import apply_overrides, load_json, to_json
from faiser.errors import ConfigError, DatasetError, NumericalError
from faiser.vlasov.cases import Case, build_case, default_config
from faiser.vlasov.diagnostics import cell_diagnostics, timeseries_to_xarray, to_xarray, write_csv

CSV_COLUMNS = [
    "step", "time", "mass", "momentum_x", "momentum_y", "momentum_z", "kinetic_energy",
    "electric_energy", "magnetic_energy", "total_energy", "l2_norm", "f_min", "f_max", "mass_lost",
    "bulk_velocity_x", "bulk_velocity_y", "bulk_velocity_z",
]  # fmt: skip


@dataclasses.dataclass
class SimulationResult:
    """What :func:`simulate` returns: the built case, final state, diagnostics and timing."""

    case: Case
    state: object
    diagnostics: xr.Dataset
    timing: dict
    out_dir: Path | None
    snapshots: list = dataclasses.field(default_factory=list)  # case probe arrays per output (hybrid)

    @property
    def initial_state(self):
        """The state at t = 0 (fields initialized)."""
        return self.case.state

    @property
    def grid(self):
        return self.case.grid

    @property
    def config(self):
        return self.case.config


def resolve_config(case: str, overrides: Mapping[str, object] | None = None, config_file=None):
    """Default config of ``case`` updated by a JSON file, then by ``overrides`` (``--set``)."""
    cfg = default_config(case)
    if config_file is not None:
        data = load_json(config_file)
        data = data.get("config", data) if isinstance(data.get("config"), dict) else data
        if "case" in data and data["case"] != case:
            raise ConfigError(f"config file is for case {data['case']!r}, not {case!r}")
        cfg = apply_overrides(cfg, data, ignore=("case",))
    return apply_overrides(cfg, overrides or {})


def _row(d: dict) -> dict:
    """Host copy of one diagnostics dict (one transfer), with the bulk velocity; raises
    :class:`NumericalError` if the state stopped being finite (the mass and energy sums propagate
    any NaN or inf of f, E or B, so no extra pass over f is needed)."""
    row = {k: float(v) for k, v in jax.device_get(d).items()}
    if not all(np.isfinite(v) for v in row.values()):
        raise NumericalError(f"the state became non-finite at step {int(row['step'])} (t={row['time']:g})")
    row["step"] = int(row["step"])
    mass = row["mass"] if row["mass"] != 0 else 1.0
    for c in "xyz":
        row[f"bulk_velocity_{c}"] = row[f"momentum_{c}"] / mass
    return row


def simulate(
    case: str,
    overrides: Mapping[str, object] | None = None,
    out_dir: str | Path | None = None,
    config_file: str | Path | None = None,
    progress: bool = True,
    save_every: int | None = None,
    vlsv_every: int | None = None,
) -> SimulationResult:
    """Run case ``case`` with ``overrides`` and write the outputs into ``out_dir`` (if given).

    ``save_every=N`` also writes a zarr trajectory dataset ``out_dir/snapshots`` (t = 0, every
    N steps and the last state; see :mod:`faiser.data.dataset`), ``vlsv_every=N`` Vlasiator-style
    VLSV files ``out_dir/vlsv/bulk.NNNNNNN.vlsv`` in SI units (t = 0, every N steps and the last
    state; VDFs of every ``vdf_stride``-th cell).

    Returns a :class:`SimulationResult` whose ``diagnostics`` is an xarray Dataset indexed by time.
    Raises :class:`~faiser.errors.ConfigError`, :class:`~faiser.errors.TimeStepError` or
    :class:`~faiser.errors.InitialConditionError` on bad input and
    :class:`~faiser.errors.NumericalError` if the state stops being finite.
    """
    cfg = resolve_config(case, overrides, config_file)
    built = build_case(case, cfg)
    stepper, state = built.stepper, built.state
    out = Path(out_dir) if out_dir is not None else None
    for name, n in (("save_every", save_every), ("vlsv_every", vlsv_every)):
        if n is not None and n < 1:
            raise ConfigError(f"{name} must be >= 1, got {n}")
        if n is not None and out is None:
            raise ConfigError(f"{name} needs an output directory")
    if save_every and (out / "snapshots" / "zarr.json").exists():  # refuse before touching the old run
        raise DatasetError(f"{out / 'snapshots'} already holds a dataset; choose another output directory")
    meta = {
        "case": case,
        "config": to_json(cfg),
        "grid": built.grid.to_json(),
        "units": built.units.to_json(),
        "species": [dataclasses.asdict(s) for s in stepper.species],
        "stepper": {
            "splitting": "strang",
            "dt": stepper.dt,
            "translation_cfl": stepper.cfl,
            "rotation_substeps": stepper.rotation_substeps,
            "rotation_per_substep_deg": float(np.degrees(stepper.rotation_per_substep)),
        },
        "faiser_version": __version__,
    }
    if hasattr(cfg, "describe"):  # SI and normalized parameters of cases configured in SI
        meta["derived"] = cfg.describe()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.json", json.dumps(meta, indent=2))

    n_steps = built.n_steps
    plan = output_plan(n_steps, cfg.diag_every, save_every, vlsv_every)
    writer = _dataset_writer(built, meta, out / "snapshots", len(plan["save"]), state) if save_every else None
    vlsv_dir = None
    if vlsv_every:
        vlsv_dir = out / "vlsv"
        vlsv_dir.mkdir(exist_ok=True)

    t0 = time.perf_counter()
    diag_fn = jax.jit(stepper.diagnostics).lower(state).compile()
    snap_fn = jax.jit(lambda st: _cell_moments(built, st)).lower(state).compile() if writer else None
    chunks = {n: _compile_chunk(stepper, state, n) for n in sorted(set(plan["chunks"]))}
    compile_s = time.perf_counter() - t0

    probe_fn, snapshots = (jax.jit(built.probe) if built.probe else None), []
    records = [_probe_row(probe_fn, state, _row(diag_fn(state)), snapshots)]
    wall = 0.0
    n_vlsv = 0
    bar = tqdm(total=n_steps, desc=f"simulate {case}", unit="step", disable=not progress)
    try:
        step = 0
        for n in [0, *plan["chunks"]]:
            if n:
                t1 = time.perf_counter()
                state = chunks[n](state)
                jax.block_until_ready(state)
                wall += time.perf_counter() - t1
                step += n
                if step in plan["diag"]:
                    records.append(_probe_row(probe_fn, state, _row(diag_fn(state)), snapshots))
                bar.update(n)
            if writer is not None and step in plan["save"]:
                if step not in plan["diag"]:
                    _row(diag_fn(state))  # refuse to store a non-finite state
                host = jax.device_get((state.f, state.E, state.B, snap_fn(state), state.aux))
                writer.append(float(state.time), step, *host)
            if vlsv_dir is not None and step in plan["vlsv"]:
                _write_vlsv(vlsv_dir / f"bulk.{n_vlsv:07d}.vlsv", built, state, meta)
                n_vlsv += 1
    except BaseException:
        if writer is not None:
            writer.close(complete=False)
        raise
    finally:
        bar.close()
    if writer is not None:
        writer.close(complete=True)
    timing = {
        "wall_s": wall,
        "compile_s": compile_s,
        "steps": n_steps,
        "simulated_time": n_steps * stepper.dt,
        "device": str(jax.devices()[0].device_kind),
        "phase_space_cells": built.grid.num_cells,
        "cell_updates_per_s": built.grid.num_cells * n_steps / wall if wall > 0 else None,
        "snapshots": len(plan["save"]) if writer else 0,
        "vlsv_files": n_vlsv,
    }
    ds = timeseries_to_xarray(records)
    if out is not None:
        write_cell_diagnostics(built, built.state, state, out / "moments.nc")
        write_csv(records, out / "diagnostics.csv", CSV_COLUMNS)
        atomic_write_text(out / "timing.json", json.dumps(timing, indent=2))
        plot_diagnostics(ds, built, out / "diagnostics.png")
        if built.extra_outputs is not None:
            built.extra_outputs(built, records, snapshots, out)
    return SimulationResult(built, state, ds, timing, out, snapshots)


def _probe_row(probe_fn, state, row: dict, snapshots: list) -> dict:
    """``row`` with the case probe's scalars; its arrays go to ``snapshots`` (with the time)."""
    if probe_fn is not None:
        extra = jax.device_get(probe_fn(state))
        row.update({k: float(v) for k, v in extra.items() if np.ndim(v) == 0})
        snapshots.append({"time": row["time"], **{k: np.asarray(v) for k, v in extra.items() if np.ndim(v)}})
    return row


def output_plan(n_steps: int, diag_every: int, save_every: int | None, vlsv_every: int | None) -> dict:
    """Steps at which a run stops for outputs.

    Returns ``{"chunks": [n1, n2, ...], "diag": set, "save": list, "vlsv": list}``: the lengths of
    the compiled step chunks between stops, and the steps of the diagnostics rows, dataset
    snapshots and VLSV files (each includes step 0 and the last step).
    """

    def at(every):
        if not every:
            return []
        return sorted(set(range(0, n_steps + 1, every)) | {0, n_steps})

    diag = set(at(diag_every))
    save, vlsv = at(save_every), at(vlsv_every)
    stops = sorted(diag | set(save) | set(vlsv))
    chunks = [b - a for a, b in zip(stops, stops[1:])]
    return {"chunks": chunks, "diag": diag, "save": save, "vlsv": vlsv}


def _cell_moments(case: Case, state) -> list[dict]:
    return [cell_diagnostics(f, case.grid, state.B, sp.mass) for f, sp in zip(state.f, case.stepper.species)]


def _dataset_writer(case: Case, meta: dict, path: Path, capacity: int, state):
    from faiser.data.dataset import DatasetWriter

    return DatasetWriter(
        path, case.grid, case.stepper.species, capacity, metadata=meta, dtype=case.config.dtype,
        aux=jax.device_get(state.aux),
    )  # fmt: skip


def _write_vlsv(path: Path, case: Case, state, meta: dict) -> None:
    from faiser.data.vlsv import write_snapshot

    write_snapshot(
        path, jax.device_get(state), case.grid, case.units, case.stepper.species,
        config=meta, vdf_stride=case.config.vdf_stride,
    )  # fmt: skip


def write_cell_diagnostics(case: Case, initial, final, path: Path) -> xr.Dataset:
    """Per-cell diagnostics (moments, T_perp/T_par, heat flux, eps_M) of every species at the
    first and last time, as netCDF (``time`` x species variables ``<species>_<name>``)."""
    frames = []
    for st in (initial, final):
        parts = []
        for f, sp in zip(st.f, case.stepper.species):
            d = to_xarray(cell_diagnostics(f, case.grid, st.B, sp.mass), case.grid)
            parts.append(d.rename({k: f"{sp.name}_{k}" for k in d.data_vars}))
        frames.append(xr.merge(parts).expand_dims(time=[float(st.time)]))
    ds = xr.concat(frames, dim="time")
    ds.attrs.update(case=case.name, units="normalized (see config.json)")
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="scipy")
    return ds


def _compile_chunk(stepper, state, n: int):
    return jax.jit(lambda s: stepper.multi_step(s, n)).lower(state).compile()


def plot_diagnostics(ds: xr.Dataset, case: Case, path: Path) -> None:
    """Plot the case's main diagnostic and the relative mass change to ``path`` (PNG).

    Uses matplotlib's object API only, so it leaves the caller's pyplot backend alone."""
    from matplotlib.figure import Figure

    t = ds["time"].values
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    axes = fig.subplots(1, 2)
    ax = axes[0]
    if case.main_diagnostic == "electric_energy" and np.any(ds["electric_energy"].values > 0):
        ax.semilogy(t, ds["electric_energy"].values, lw=1)
        ax.set_ylabel("electric energy")
        ax.set_title(f"{case.name}: electric field energy")
    elif case.main_diagnostic == "l2_norm":
        ax.plot(t, ds["l2_norm"].values / ds["l2_norm"].values[0])
        ax.set_ylabel("L2 norm / initial")
        ax.set_title(f"{case.name}: L2 norm (numerical dissipation)")
    else:
        for c in "xyz":
            ax.plot(t, ds[f"bulk_velocity_{c}"].values, label=f"V{c}")
        ax.set_ylabel("bulk velocity")
        ax.legend()
        ax.set_title(f"{case.name}: bulk velocity")
    ax.set_xlabel("time")
    m = ds["mass"].values
    axes[1].plot(t, (m + ds["mass_lost"].values - m[0]) / m[0])
    axes[1].set_xlabel("time")
    axes[1].set_ylabel("relative mass change (incl. lost)")
    axes[1].set_title("mass conservation")
    fig.savefig(path, dpi=110)
