"""Run a named case end to end: the public function behind ``faiser simulate``.

Writes ``config.json``, ``diagnostics.csv``, ``timing.json``, ``diagnostics.png`` and
``moments.nc`` into the output directory (see the command-line contract in DESIGN.md), and with
``checkpoint_every`` checkpoints under ``DIR/checkpoints`` from which ``resume=True`` continues a
killed run bit for bit. The stepper is any :class:`~faiser.vlasov.stepper.SteppingBackend`
(one device, shard_map over devices, or MPI ranks); the files are written by
:mod:`faiser.run.outputs`, checkpoints by :mod:`faiser.run.resume`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Mapping
from pathlib import Path

import jax
import numpy as np
import xarray as xr
from tqdm import tqdm

from faiser._version import __version__
from faiser.atomic import atomic_write_text
from faiser.cases import Case, build_case, default_config
from faiser.cases.base import check_f_min, check_representable
from faiser.config import apply_overrides, load_json, to_json
from faiser.errors import (
    CheckpointError,
    ConfigError,
    DatasetError,
    ResourceError,
    is_out_of_memory,
    out_of_memory_error,
)
from faiser.parallel.backends import distribute
from faiser.run import outputs as io
from faiser.run import resume as ck
from faiser.run.memory import check_fits_in_memory
from faiser.run.outputs import CSV_COLUMNS, output_plan, prepare_run_dir, run_dir_lock

__all__ = ["CSV_COLUMNS", "SimulationResult", "resolve_config", "run_metadata", "simulate"]


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


def run_metadata(case: Case) -> dict:
    """``config.json`` of a run of ``case``: the resolved config, grid, units, species and stepper
    settings (the step actually used, and the requested one when it was shortened to end at t_end)."""
    cfg, stepper = case.config, case.stepper
    meta = {
        "case": case.name,
        "config": to_json(cfg),
        "grid": case.grid.to_json(),
        "units": case.units.to_json(),
        "species": [dataclasses.asdict(s) for s in stepper.species],
        "stepper": {
            "splitting": "strang",
            "dt": stepper.dt,
            "dt_requested": cfg.dt,
            "dt_shortened_to_end_at_t_end": cfg.dt_shortened,
            "translation_cfl": stepper.cfl,
            "rotation_substeps": stepper.rotation_substeps,
            "rotation_per_substep_deg": float(np.degrees(stepper.rotation_per_substep)),
        },
        "faiser_version": __version__,
    }
    if hasattr(cfg, "describe"):  # SI and normalized parameters of cases configured in SI
        meta["derived"] = cfg.describe()
    return meta


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
    :mod:`faiser.run.resume`). Checkpoint steps are stops of the compiled step chunks like
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
    comm = _world() if distributed == "mpi" else None  # every rank runs this; rank 0 writes the files
    root = comm is None or comm.Get_rank() == 0
    outputs = {"save_every": save_every, "vlsv_every": vlsv_every, "checkpoint_every": checkpoint_every}
    _check_output_options(out_dir, outputs, resume)
    check_representable(cfg)
    check_fits_in_memory(case, cfg, devices=devices, distributed=distributed)
    out = None
    if out_dir is not None:
        out = prepare_run_dir(out_dir) if root else Path(out_dir)
    lock = run_dir_lock(out) if out is not None and root else contextlib.nullcontext()
    with lock, _memory_errors(f"simulate {case}"):
        return _run(case, cfg, out, outputs, comm, progress, resume, devices, distributed)


def _run(case: str, cfg, out: Path | None, outputs: dict, comm, progress: bool, resume: bool, devices, distributed):
    """:func:`simulate` once the config, the output directory (locked) and the memory are checked."""
    root = comm is None or comm.Get_rank() == 0
    save_every, vlsv_every = outputs["save_every"], outputs["vlsv_every"]
    built = _build(case, cfg, on_host=comm is not None)
    if root:
        check_f_min(built)
    store, resumed = _open_checkpoints(out, built, outputs, resume, root, comm)
    checkpoint_every = outputs["checkpoint_every"]
    meta = run_metadata(built)
    writes = out is not None and root
    if writes:
        atomic_write_text(out / "config.json", json.dumps(meta, indent=2))

    n_steps = built.n_steps
    plan = output_plan(n_steps, cfg.diag_every, save_every, vlsv_every, checkpoint_every)
    start = _check_resume_plan(resumed, plan, n_steps, store)
    if store is None and checkpoint_every and writes:
        store = ck.checkpoint_store(out / "checkpoints")
    writer = _open_dataset(out, built, meta, plan, resumed) if save_every and writes else None
    vlsv_dir = out / "vlsv" if vlsv_every else None
    if vlsv_dir is not None and writes:
        vlsv_dir.mkdir(exist_ok=True)

    stepper = distribute(built.stepper, devices, distributed)
    state = stepper.shard(built.state)
    t0 = time.perf_counter()
    diag_fn = stepper.compile(stepper.diagnostics, state)
    species, local_grid = stepper.species, stepper.local_grid  # per-cell outputs: this process's cells
    cells_fn = stepper.compile(lambda st: io.cell_moments(species, local_grid, st), state) if out else None
    todo = [n for n, s in zip(plan["chunks"], np.cumsum(plan["chunks"]).tolist()) if s > start]
    chunks = {n: stepper.compile_chunk(state, n) for n in sorted(set(todo))}
    compile_s = time.perf_counter() - t0
    probe_fn = jax.jit(lambda st: stepper.probe(built.probe, st)) if built.probe is not None else None

    # moments.nc's first frame: the case's initial state (also when resuming)
    initial_cells = stepper.gather_cells(cells_fn(state)) if cells_fn is not None else None
    wall, n_vlsv, snapshots = 0.0, 0, []
    if resumed:
        state = stepper.scatter(resumed.state, built.state)
        records, snapshots = resumed.records, resumed.probe
        wall, n_vlsv = float(resumed.meta["wall_s"]), int(resumed.meta["n_vlsv"])
        if vlsv_dir is not None and writes:
            io.drop_vlsv_from(vlsv_dir, n_vlsv)
    else:
        records = [_probe_row(probe_fn, state, io.diagnostics_row(diag_fn(state)), snapshots)]
    initial_time = float(built.state.time)
    if comm is not None:
        built = dataclasses.replace(built, state=None)  # each rank keeps only its block
    bar = tqdm(total=n_steps, initial=start, desc=f"simulate {case}", unit="step", disable=not progress)
    step = start
    try:
        for n in todo if resumed else [0, *plan["chunks"]]:
            if n:
                t1 = time.perf_counter()
                state = chunks[n](state)
                jax.block_until_ready(state)
                wall += time.perf_counter() - t1
                step += n
                if step in plan["diag"]:
                    records.append(_probe_row(probe_fn, state, io.diagnostics_row(diag_fn(state)), snapshots))
                bar.update(n)
            if save_every and step in plan["save"]:
                if step not in plan["diag"]:
                    io.diagnostics_row(diag_fn(state))  # refuse to store a non-finite state
                host = stepper.gather_cells((state.f, state.E, state.B, cells_fn(state)))
                aux = stepper.gather_aux(state)
                if writer is not None:
                    writer.append(float(state.time), step, *host, aux)
            whole = None
            if (vlsv_dir is not None and step in plan["vlsv"]) or (checkpoint_every and step in plan["checkpoint"]):
                whole = stepper.gather_state(state)  # None on the ranks that do not write
            if vlsv_dir is not None and step in plan["vlsv"]:
                if writes:
                    io.write_vlsv(vlsv_dir / f"bulk.{n_vlsv:07d}.vlsv", built, whole, meta)
                n_vlsv += 1
            if store is not None and step in plan["checkpoint"]:  # after this step's outputs
                if writer is not None:
                    writer.flush()  # the checkpoint counts only committed snapshots
                ck_meta = {
                    "case": case, "config": meta["config"], "outputs": outputs, "n_steps": n_steps,
                    "dt": float(stepper.dt), "n_saved": writer.count if writer else 0, "n_vlsv": n_vlsv,
                    "wall_s": wall,
                }  # fmt: skip
                ck.save_checkpoint(store, step, whole, records, snapshots, ck_meta)
                io.write_csv(records, out / "diagnostics.csv", CSV_COLUMNS)  # rows up to the checkpoint
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
        "devices": stepper.num_devices,
        "phase_space_cells": built.grid.num_cells,
        "cell_updates_per_s": built.grid.num_cells * n_steps / wall if wall > 0 else None,
        "snapshots": len(plan["save"]) if save_every else 0,
        "vlsv_files": n_vlsv,
        "resumed_from_step": start if resumed else None,
        "dt": stepper.dt,
        "dt_requested": cfg.dt,
    }
    ds = io.timeseries_to_xarray(records)
    final_cells = stepper.gather_cells(cells_fn(state)) if cells_fn is not None else None  # collective
    if writes:
        frames = [(initial_time, initial_cells), (float(state.time), final_cells)]
        io.write_cell_frames(built, frames, out / "moments.nc")
        io.write_csv(records, out / "diagnostics.csv", CSV_COLUMNS)
        atomic_write_text(out / "timing.json", json.dumps(timing, indent=2))
        io.plot_diagnostics(ds, built, out / "diagnostics.png")
        if built.extra_outputs is not None:
            built.extra_outputs(built, records, snapshots, out)
    return SimulationResult(built, state, ds, timing, out, snapshots)


@contextlib.contextmanager
def _memory_errors(what: str):
    """Turn a failed allocation (XLA's RESOURCE_EXHAUSTED, MemoryError) into a one-line ResourceError."""
    try:
        yield
    except ResourceError:
        raise
    except Exception as e:
        if is_out_of_memory(e):
            raise out_of_memory_error(e, what) from None
        raise


def _world():
    from faiser.parallel.mpi import world

    return world()


def _build(case: str, cfg, on_host: bool) -> Case:
    """:func:`build_case`; with ``on_host`` the global initial state is built in host memory (the
    CPU device), so a rank of a decomposed run puts only its block on its accelerator."""
    if not on_host:
        return build_case(case, cfg)
    with jax.default_device(jax.devices("cpu")[0]):
        return build_case(case, cfg)


def _check_output_options(out: Path | None, outputs: dict, resume: bool) -> None:
    for name, n in outputs.items():
        if n is not None and n < 1:
            raise ConfigError(f"{name} must be >= 1, got {n}")
        if n is not None and out is None:
            raise ConfigError(f"{name} needs an output directory")
    if resume and out is None:
        raise ConfigError("resume needs an output directory")


def _open_checkpoints(out: Path | None, built: Case, outputs: dict, resume: bool, root: bool, comm):
    """``(store, resumed)``: the newest checkpoint of the run in ``out`` when resuming (its
    ``checkpoint_every`` fills ``outputs``), else ``(None, None)`` after refusing to write over an
    earlier run's dataset or checkpoints. Every refusal comes before anything in ``out`` is touched."""
    if not resume:
        if outputs["save_every"] and (out / "snapshots" / "zarr.json").exists():
            raise DatasetError(f"{out / 'snapshots'} already holds a dataset; choose another output directory")
        if outputs["checkpoint_every"] and ck.has_checkpoints(out / "checkpoints"):
            raise CheckpointError(
                f"{out / 'checkpoints'} already holds checkpoints; resume with --resume or choose another output "
                "directory"
            )
        return None, None
    store = resumed = None
    if root:
        store, resumed = ck.resume_from(out / "checkpoints", built.name, built.config, outputs, built.state)
    if comm is not None:  # the other ranks learn the step and counters; the state follows by scatter
        from faiser.parallel.mpi import bcast_json

        meta = bcast_json(resumed.meta if root else None, comm)
        resumed = resumed if root else ck.Resumed(int(meta["step"]), None, [], [], meta)
    outputs["checkpoint_every"] = resumed.meta["outputs"]["checkpoint_every"]
    return store, resumed


def _check_resume_plan(resumed, plan: dict, n_steps: int, store) -> int:
    """The step a run starts from (0, or the checkpoint's after checking it fits the plan)."""
    if not resumed:
        return 0
    start = resumed.step
    if start not in {0, *np.cumsum(plan["chunks"]).tolist()} or resumed.meta.get("n_steps") != n_steps:
        raise CheckpointError(f"checkpoint step {start} does not fit this run's plan of {n_steps} steps")
    if store is not None:
        store.prune_after(start)
    return start


def _open_dataset(out: Path, built: Case, meta: dict, plan: dict, resumed):
    if resumed:
        return ck.reopen_dataset(out / "snapshots", resumed.meta["n_saved"], len(plan["save"]))
    return io.dataset_writer(built, meta, out / "snapshots", len(plan["save"]), jax.device_get(built.state.aux))


def _probe_row(probe_fn, state, row: dict, snapshots: list) -> dict:
    """``row`` with the case probe's scalars; its arrays go to ``snapshots`` (with the time)."""
    if probe_fn is not None:
        extra = jax.device_get(probe_fn(state))
        row.update({k: float(v) for k, v in extra.items() if np.ndim(v) == 0})
        snapshots.append({"time": row["time"], **{k: np.asarray(v) for k, v in extra.items() if np.ndim(v)}})
    return row
