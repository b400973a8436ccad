"""Run a named case end to end: the public function behind ``faiser simulate``.

Writes ``config.json``, ``diagnostics.csv``, ``timing.json``, ``diagnostics.png`` and
``moments.nc`` into the output directory (see the command-line contract in DESIGN.md), and with
``checkpoint_every`` checkpoints under ``DIR/checkpoints`` from which ``resume=True`` continues a
killed run bit for bit.
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
from faiser.errors import CheckpointError, ConfigError, DatasetError, NumericalError
from faiser.run.outputs import timeseries_to_xarray, to_xarray, write_csv
from faiser.vlasov.cases import Case, build_case, default_config
from faiser.vlasov.diagnostics import cell_diagnostics

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
    checkpoint_every: int | None = None,
    resume: bool = False,
    devices: int | None = None,
    distributed: str = "none",
) -> SimulationResult:
    """Run case ``case`` with ``overrides`` and write the outputs into ``out_dir`` (if given).

    ``save_every=N`` also writes a zarr trajectory dataset ``out_dir/snapshots`` (t = 0, every
    N steps and the last state; see :mod:`faiser.data.dataset`), ``vlsv_every=N`` Vlasiator-style
    VLSV files ``out_dir/vlsv/bulk.NNNNNNN.vlsv`` in SI units (t = 0, every N steps and the last
    state; VDFs of every ``vdf_stride``-th cell).

    ``checkpoint_every=N`` saves the full state (every field of the State pytree, ``aux``
    included), the diagnostics rows so far and the output counters under
    ``out_dir/checkpoints`` every N steps (async, atomic, the 3 newest kept; see
    :mod:`faiser.run.checkpoint`). Checkpoint steps are stops of the compiled step chunks like
    the output steps, so a run with checkpoints is bit-identical to itself killed and resumed
    (the chunking changes the last bits against a run without them: the inner half translations
    of :meth:`~faiser.vlasov.stepper.Stepper.multi_step` are merged only within a chunk).
    ``resume=True`` continues from the newest valid checkpoint in ``out_dir`` (an incomplete
    newest one is skipped with a warning): it needs the same case, config and ``save_every`` /
    ``vlsv_every`` (``checkpoint_every`` defaults to the checkpoint's), keeps the diagnostics
    rows, dataset snapshots and VLSV files up to the checkpoint's step, drops later ones and
    carries on as if the run had never stopped.

    ``devices=N`` (N > 1) runs the stepper domain-decomposed over N devices
    (:class:`faiser.parallel.domain.DomainStepper`); ``distributed="mpi"`` over the ranks of an
    ``mpirun`` launch (:mod:`faiser.parallel.mpi`). Outputs are the same files as a single-device run.
    Under MPI every rank calls this function with the same arguments; rank 0 writes the files (and
    reads checkpoints on ``resume``), each rank holds only its block, ``result.state`` is that
    block and ``result.case.state`` (the global initial state) is dropped.

    Returns a :class:`SimulationResult` whose ``diagnostics`` is an xarray Dataset indexed by time.
    Raises :class:`~faiser.errors.ConfigError`, :class:`~faiser.errors.TimeStepError` or
    :class:`~faiser.errors.InitialConditionError` on bad input,
    :class:`~faiser.errors.CheckpointError` if ``resume`` finds no valid checkpoint, a tampered
    one, or one of a different run, and :class:`~faiser.errors.NumericalError` if the state
    stops being finite.
    """
    cfg = resolve_config(case, overrides, config_file)
    comm = None
    if distributed == "mpi":  # every rank runs this function; rank 0 writes the files
        from faiser.parallel.mpi import world

        comm = world()
    root = comm is None or comm.Get_rank() == 0
    built = _build(case, cfg, on_host=comm is not None)
    stepper, state = built.stepper, built.state
    out = Path(out_dir) if out_dir is not None else None
    for name, n in (("save_every", save_every), ("vlsv_every", vlsv_every), ("checkpoint_every", checkpoint_every)):
        if n is not None and n < 1:
            raise ConfigError(f"{name} must be >= 1, got {n}")
        if n is not None and out is None:
            raise ConfigError(f"{name} needs an output directory")
    if resume and out is None:
        raise ConfigError("resume needs an output directory")
    outputs = {"save_every": save_every, "vlsv_every": vlsv_every, "checkpoint_every": checkpoint_every}
    store, resumed = None, None
    if resume:  # refuse before touching the old run
        if root:
            store, resumed = _resume_from(out / "checkpoints", case, cfg, outputs, state, place=comm is None)
        if comm is not None:  # the other ranks learn the step and counters; the state follows by scatter
            from faiser.parallel.mpi import bcast_json

            meta = bcast_json(resumed.meta if root else None, comm)
            resumed = resumed if root else _Resumed(int(meta["step"]), None, [], [], meta)
        checkpoint_every = outputs["checkpoint_every"] = resumed.meta["outputs"]["checkpoint_every"]
    elif save_every and (out / "snapshots" / "zarr.json").exists():  # refuse before touching the old run
        raise DatasetError(f"{out / 'snapshots'} already holds a dataset; choose another output directory")
    elif checkpoint_every and _has_checkpoints(out / "checkpoints"):
        raise CheckpointError(
            f"{out / 'checkpoints'} already holds checkpoints; resume with --resume or choose another output directory"
        )
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
    writes = out is not None and root
    if writes:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.json", json.dumps(meta, indent=2))

    n_steps = built.n_steps
    plan = output_plan(n_steps, cfg.diag_every, save_every, vlsv_every, checkpoint_every)
    start = resumed.step if resumed else 0
    if resumed:
        stops = {0, *np.cumsum(plan["chunks"]).tolist()}
        if start not in stops or resumed.meta.get("n_steps") != n_steps:
            raise CheckpointError(f"checkpoint step {start} does not fit this run's plan of {n_steps} steps")
        if store is not None:
            store.prune_after(start)
    elif checkpoint_every and writes:
        store = _checkpoint_store(out / "checkpoints")
    todo = [n for n, s in zip(plan["chunks"], np.cumsum(plan["chunks"]).tolist()) if s > start]
    writer = None
    if resumed and save_every and writes:
        writer = _reopen_dataset(out / "snapshots", resumed.meta["n_saved"], len(plan["save"]))
    elif save_every and writes:
        writer = _dataset_writer(built, meta, out / "snapshots", len(plan["save"]), state)
    vlsv_dir = out / "vlsv" if vlsv_every else None
    if vlsv_dir is not None and writes:
        vlsv_dir.mkdir(exist_ok=True)

    if (devices or 1) > 1 or distributed != "none":  # domain decomposition (faiser.parallel)
        from faiser.parallel.domain import distribute

        stepper = distribute(stepper, devices, distributed)
        state = stepper.shard(state)
    # outputs of a decomposed state: per-cell arrays of its grid (a block's under MPI), collected
    # on the host of the writing rank (None on the others)
    local_grid = getattr(stepper, "local_grid", built.grid)
    to_host = getattr(stepper, "gather_cells", jax.device_get)
    full_state = getattr(stepper, "gather_state", jax.device_get)
    host_aux = getattr(stepper, "gather_aux", lambda st: jax.device_get(st.aux))
    t0 = time.perf_counter()
    diag_fn = _compile(stepper, stepper.diagnostics, state)
    # per-cell diagnostics: dataset snapshots and the frames of moments.nc
    cells_fn = _compile(stepper, lambda st: _cell_moments(built, st, local_grid), state) if out is not None else None
    chunks = {n: _compile_chunk(stepper, state, n) for n in sorted(set(todo))}
    compile_s = time.perf_counter() - t0

    probe_fn, snapshots = None, []
    if built.probe is not None:
        probe = built.probe
        probe_fn = jax.jit(lambda st: stepper.probe(probe, st)) if hasattr(stepper, "probe") else jax.jit(probe)
    initial_cells = to_host(cells_fn(state)) if cells_fn is not None and not resumed else None
    wall = 0.0
    n_vlsv = 0
    if resumed:
        if initial_cells is None and cells_fn is not None:  # the initial frame of moments.nc
            initial_cells = to_host(cells_fn(stepper.shard(built.state) if hasattr(stepper, "shard") else built.state))
        if comm is not None:
            state = stepper.scatter(resumed.state, built.state)
        else:
            state = stepper.shard(resumed.state) if hasattr(stepper, "shard") else resumed.state
        records, snapshots = resumed.records, resumed.probe
        wall, n_vlsv = float(resumed.meta["wall_s"]), int(resumed.meta["n_vlsv"])
        if vlsv_dir is not None and writes:
            _drop_vlsv_from(vlsv_dir, n_vlsv)
    else:
        records = [_probe_row(probe_fn, state, _row(diag_fn(state)), snapshots)]
    initial_time = float(built.state.time)
    if comm is not None:
        built = dataclasses.replace(built, state=None)  # each rank keeps only its block
    bar = tqdm(total=n_steps, initial=start, desc=f"simulate {case}", unit="step", disable=not progress)
    try:
        step = start
        for n in todo if resumed else [0, *plan["chunks"]]:
            if n:
                t1 = time.perf_counter()
                state = chunks[n](state)
                jax.block_until_ready(state)
                wall += time.perf_counter() - t1
                step += n
                if step in plan["diag"]:
                    records.append(_probe_row(probe_fn, state, _row(diag_fn(state)), snapshots))
                bar.update(n)
            if save_every and step in plan["save"]:
                if step not in plan["diag"]:
                    _row(diag_fn(state))  # refuse to store a non-finite state
                host = to_host((state.f, state.E, state.B, cells_fn(state)))
                aux = host_aux(state)
                if writer is not None:
                    writer.append(float(state.time), step, *host, aux)
            whole = None
            if (vlsv_dir is not None and step in plan["vlsv"]) or (checkpoint_every and step in plan["checkpoint"]):
                whole = full_state(state)  # None on the ranks that do not write
            if vlsv_dir is not None and step in plan["vlsv"]:
                if writes:
                    _write_vlsv(vlsv_dir / f"bulk.{n_vlsv:07d}.vlsv", built, whole, meta)
                n_vlsv += 1
            if store is not None and step in plan["checkpoint"]:  # after this step's outputs
                if writer is not None:
                    writer.flush()  # the checkpoint counts only committed snapshots
                ck_meta = {
                    "case": case, "config": meta["config"], "outputs": outputs, "n_steps": n_steps,
                    "dt": float(stepper.dt), "n_saved": writer.count if writer else 0, "n_vlsv": n_vlsv,
                    "wall_s": wall,
                }  # fmt: skip
                _save_checkpoint(store, step, whole, records, snapshots, ck_meta)
                write_csv(records, out / "diagnostics.csv", CSV_COLUMNS)  # rows up to the checkpoint
    except BaseException:
        if writer is not None:
            writer.close(complete=False)
        if store is not None:
            store.close()
        raise
    finally:
        bar.close()
    if writer is not None:
        writer.close(complete=True)
    if store is not None:
        store.close()
    timing = {
        "wall_s": wall,
        "compile_s": compile_s,
        "steps": n_steps,
        "simulated_time": n_steps * stepper.dt,
        "device": str(jax.devices()[0].device_kind),
        "devices": getattr(stepper, "num_devices", 1),
        "phase_space_cells": built.grid.num_cells,
        "cell_updates_per_s": built.grid.num_cells * n_steps / wall if wall > 0 else None,
        "snapshots": len(plan["save"]) if save_every else 0,
        "vlsv_files": n_vlsv,
        "resumed_from_step": start if resumed else None,
    }
    ds = timeseries_to_xarray(records)
    final_cells = to_host(cells_fn(state)) if cells_fn is not None else None
    if writes:
        frames = [(initial_time, initial_cells), (float(state.time), final_cells)]
        write_cell_frames(built, frames, out / "moments.nc")
        write_csv(records, out / "diagnostics.csv", CSV_COLUMNS)
        atomic_write_text(out / "timing.json", json.dumps(timing, indent=2))
        plot_diagnostics(ds, built, out / "diagnostics.png")
        if built.extra_outputs is not None:
            built.extra_outputs(built, records, snapshots, out)
    return SimulationResult(built, state, ds, timing, out, snapshots)


def _build(case: str, cfg, on_host: bool) -> Case:
    """:func:`build_case`; with ``on_host`` the global initial state is built in host memory (the
    CPU device), so a rank of a decomposed run puts only its block on its accelerator."""
    if not on_host:
        return build_case(case, cfg)
    with jax.default_device(jax.devices("cpu")[0]):
        return build_case(case, cfg)


def _compile(stepper, fn, state):
    """``fn`` jitted and compiled for ``state``: the compiled object, or the jitted function for
    steppers whose collectives carry ordered effects (MPI), which compiled objects cannot run."""
    jitted = jax.jit(fn)
    compiled = jitted.lower(state).compile()
    return jitted if getattr(stepper, "ordered_effects", False) else compiled


def _probe_row(probe_fn, state, row: dict, snapshots: list) -> dict:
    """``row`` with the case probe's scalars; its arrays go to ``snapshots`` (with the time)."""
    if probe_fn is not None:
        extra = jax.device_get(probe_fn(state))
        row.update({k: float(v) for k, v in extra.items() if np.ndim(v) == 0})
        snapshots.append({"time": row["time"], **{k: np.asarray(v) for k, v in extra.items() if np.ndim(v)}})
    return row


def output_plan(
    n_steps: int, diag_every: int, save_every: int | None, vlsv_every: int | None, checkpoint_every: int | None = None
) -> dict:
    """Steps at which a run stops for outputs.

    Returns ``{"chunks": [n1, n2, ...], "diag": set, "save": list, "vlsv": list, "checkpoint":
    list}``: the lengths of the compiled step chunks between stops, and the steps of the
    diagnostics rows, dataset snapshots and VLSV files (each includes step 0 and the last step)
    and of the checkpoints (every ``checkpoint_every`` steps, excluding 0 and the last step).
    """

    def at(every):
        if not every:
            return []
        return sorted(set(range(0, n_steps + 1, every)) | {0, n_steps})

    diag = set(at(diag_every))
    save, vlsv = at(save_every), at(vlsv_every)
    checkpoint = list(range(checkpoint_every, n_steps, checkpoint_every)) if checkpoint_every else []
    stops = sorted(diag | set(save) | set(vlsv) | set(checkpoint))
    chunks = [b - a for a, b in zip(stops, stops[1:])]
    return {"chunks": chunks, "diag": diag, "save": save, "vlsv": vlsv, "checkpoint": checkpoint}


# -- checkpoints and resume ------------------------------------------------------------------
# A simulation checkpoint is a faiser.run.checkpoint step whose tree is
#   {"state": {"f": [f per species], "E", "B", "time", "step", "mass_lost", "aux": {..}},
#    "records": (rows, columns) float64 diagnostics so far, "probe": {"<i>": {name: array}}}
# and whose metadata holds the case, resolved config, output options, n_steps, dt, the record
# columns and probe times, the output counters (n_saved dataset snapshots, n_vlsv files) and the
# stepping wall time so far. orbax is imported only when checkpoints are used.

CHECKPOINT_KIND = "faiser-simulation"


@dataclasses.dataclass
class _Resumed:
    step: int
    state: object
    records: list
    probe: list
    meta: dict


def _checkpoint_store(path: Path, create: bool = True):
    from faiser.run.checkpoint import CheckpointStore

    return CheckpointStore(path, keep=3, async_=True, create=create)


def _has_checkpoints(path: Path) -> bool:
    return path.is_dir() and any(p.name.isdigit() for p in path.iterdir())


def _save_checkpoint(store, step: int, state, records: list, probe: list, meta: dict) -> None:
    host = jax.device_get(state)
    tree_state = {"f": list(host.f), "E": host.E, "B": host.B, "time": host.time, "step": host.step,
                  "mass_lost": host.mass_lost}  # fmt: skip
    if host.aux:
        tree_state["aux"] = dict(host.aux)
    keys = list(records[0])
    tree = {"state": tree_state, "records": np.array([[r[k] for k in keys] for r in records], np.float64)}
    if probe:
        tree["probe"] = {str(i): {k: v for k, v in p.items() if k != "time"} for i, p in enumerate(probe)}
    meta = {"kind": CHECKPOINT_KIND, **meta, "record_keys": keys, "probe_times": [p["time"] for p in probe]}
    store.save(step, tree, meta)


def _config_diff(a: dict, b: dict) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _resume_from(path: Path, case: str, cfg, outputs: dict, like, place: bool = True) -> tuple[object, _Resumed]:
    """Open the checkpoints under ``path``, restore the newest valid one and check that it belongs
    to this run (case, config, output options). Fills ``outputs["checkpoint_every"]`` if None.
    The state is placed like ``like`` (on devices) if ``place``, else left in host memory."""
    from faiser.vlasov.state import State

    if not _has_checkpoints(path):
        raise CheckpointError(f"no checkpoint in {path}; run without --resume")
    store = _checkpoint_store(path, create=False)
    try:
        tree, meta = store.restore()
        if meta.get("kind") != CHECKPOINT_KIND:
            raise CheckpointError(f"{path} holds no simulation checkpoint")
        if meta.get("case") != case:
            raise CheckpointError(f"the checkpoint in {path} is of case {meta.get('case')!r}, not {case!r}")
        diff = _config_diff(meta.get("config", {}), to_json(cfg))
        if diff:
            raise CheckpointError(
                f"the config differs from the checkpoint's in {', '.join(diff)}; resume with the same settings"
            )
        saved = meta.get("outputs", {})
        for key, value in outputs.items():
            if value is None and key == "checkpoint_every":
                continue
            if value != saved.get(key):
                raise CheckpointError(
                    f"{key} is {value}, the checkpointed run used {saved.get(key)}; resume with the same options"
                )
        st = tree["state"]
        state = State(
            f=tuple(st["f"]), E=st["E"], B=st["B"], time=st["time"], step=st["step"], mass_lost=st["mass_lost"],
            aux=dict(st.get("aux", {})),
        )  # fmt: skip
        if jax.tree_util.tree_structure(state) != jax.tree_util.tree_structure(like) or any(
            np.shape(a) != np.shape(b) or np.dtype(a.dtype) != np.dtype(b.dtype)
            for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(like))
        ):
            raise CheckpointError(f"the state in the checkpoint in {path} does not match the case's state")
        if place:
            state = jax.tree_util.tree_map(
                lambda a, b: jax.device_put(np.asarray(a), getattr(b, "sharding", None)), state, like
            )
        keys = meta["record_keys"]
        records = [
            {k: (int(v) if k == "step" else float(v)) for k, v in zip(keys, row)} for row in np.asarray(tree["records"])
        ]
        probe_tree = tree.get("probe", {})
        probe = [
            {"time": t, **{k: np.asarray(v) for k, v in probe_tree[str(i)].items()}}
            for i, t in enumerate(meta.get("probe_times", []))
        ]
    except CheckpointError:
        store.close()
        raise
    except (KeyError, TypeError, ValueError) as e:
        store.close()
        raise CheckpointError(f"malformed simulation checkpoint in {path}: {e}") from e
    return store, _Resumed(int(meta["step"]), state, records, probe, meta)


def _reopen_dataset(path: Path, keep: int, capacity: int):
    from faiser.data.dataset import DatasetWriter

    writer = DatasetWriter.reopen(path, keep)
    if writer.capacity != capacity:
        writer.close(complete=False)
        raise CheckpointError(f"{path} was allocated for {writer.capacity} snapshots, this run needs {capacity}")
    return writer


def _drop_vlsv_from(vlsv_dir: Path, n: int) -> None:
    """Remove VLSV files numbered ``n`` and later (written after the checkpoint a run resumes from)."""
    for p in vlsv_dir.glob("bulk.*.vlsv"):
        index = p.name.split(".")[1]
        if index.isdigit() and int(index) >= n:
            p.unlink()
    for p in vlsv_dir.glob(".bulk.*.tmp"):  # a write the kill interrupted (see faiser.atomic)
        p.unlink()


def _cell_moments(case: Case, state, grid=None) -> list[dict]:
    """:func:`cell_diagnostics` of every species of ``state`` on ``grid`` (default: the case's)."""
    grid = case.grid if grid is None else grid
    return [cell_diagnostics(f, grid, state.B, sp.mass) for f, sp in zip(state.f, case.stepper.species)]


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
    frames = [(float(st.time), jax.device_get(_cell_moments(case, st))) for st in (initial, final)]
    return write_cell_frames(case, frames, path)


def write_cell_frames(case: Case, frames, path: Path) -> xr.Dataset:
    """``moments.nc`` from ``[(time, [per-cell diagnostics of each species]), ...]`` (global arrays)."""
    parts_t = []
    for t, per_species in frames:
        parts = []
        for d, sp in zip(per_species, case.stepper.species):
            x = to_xarray(d, case.grid)
            parts.append(x.rename({k: f"{sp.name}_{k}" for k in x.data_vars}))
        parts_t.append(xr.merge(parts).expand_dims(time=[t]))
    ds = xr.concat(parts_t, dim="time")
    ds.attrs.update(case=case.name, units="normalized (see config.json)")
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="scipy")
    return ds


def _compile_chunk(stepper, state, n: int):
    if hasattr(stepper, "compile_chunk"):  # e.g. the MPI stepper (ordered effects: no AOT call)
        return stepper.compile_chunk(state, n)
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
