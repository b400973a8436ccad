"""``faiser rollout``: advance a case in latent space and write the same files as ``faiser simulate``.

The case's initial state (built exactly as ``simulate`` builds it) is encoded once; the propagator
advances the latent state ``n_steps / D`` latent steps (``D`` reference steps each, fixed by the
training data); the state is decoded only at output times (diagnostics rows, dataset snapshots, VLSV
files, the last state). At each decoded time the distribution is made physically consistent:
``f >= 0`` by construction of the decoder, and for closed systems (every boundary periodic, no
inflow) f is rescaled so that the mass equals the initial mass exactly (``mass="conserve"``; the
rescaling keeps the shape of f, so bulk velocity and temperature are unchanged). Open systems (the
shock's inflow and outflow) keep the decoded mass (``mass="decoded"``); the drift of mass, momentum
and energy against the initial state is reported in ``timing.json`` for both. Electrostatic cases get
E from Poisson's equation of the decoded f (as the reference computes it); field components that were
constant in training decode to that constant.

``timing.json`` has the contract's keys (``wall_s``: encoding + latent steps + decoding at output
times, without compilation) plus the breakdown and the conservation drifts.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from tqdm import tqdm

from faiser.atomic import atomic_write_text
from faiser.cases import build_case
from faiser.config import to_json
from faiser.errors import ConfigError, DatasetError, ExtrapolationWarning
from faiser.grid import PhaseSpaceGrid
from faiser.latent.data import condition_value, grid_shape
from faiser.latent.model import LatentModel, load_latent_model
from faiser.run.memory import check_fits_in_memory
from faiser.run.outputs import (
    CSV_COLUMNS,
    cell_moments,
    dataset_writer,
    diagnostics_row,
    output_plan,
    plot_diagnostics,
    prepare_run_dir,
    timeseries_to_xarray,
    write_cell_diagnostics,
    write_csv,
    write_vlsv,
)
from faiser.run.simulate import resolve_config, run_metadata
from faiser.vlasov.state import State

__all__ = ["RolloutResult", "rollout", "MASS_MODES"]

MASS_MODES = ("auto", "conserve", "decoded")


@dataclasses.dataclass
class RolloutResult:
    """What :func:`rollout` returns: the built case, decoded states at the output steps, diagnostics, timing."""

    case: object
    steps: list[int]
    states: list[State]
    diagnostics: xr.Dataset
    timing: dict
    out_dir: Path | None


def _check_compatible(model: LatentModel, case: str, built) -> tuple[int, int]:
    meta = model.meta
    if meta.get("case") and meta["case"] != case:
        raise ConfigError(f"the latent model was trained on case {meta['case']!r}, not {case!r}")
    grid = PhaseSpaceGrid.from_json(meta["grid"])
    if meta.get("grid_varies"):  # trained across extents: the cells and boundaries must agree
        fits = grid_shape(grid.to_json()) == grid_shape(built.grid.to_json())
    else:
        fits = grid == built.grid
    if not fits:
        same_cells = grid.nx == built.grid.nx and grid.nv == built.grid.nv
        hint = "; the model was trained on one grid extent only" if same_cells and not meta.get("grid_varies") else ""
        raise ConfigError(
            f"the case's grid (nx={built.grid.nx}, nv={built.grid.nv}) differs from the model's "
            f"(nx={grid.nx}, nv={grid.nv}){hint}"
        )
    species = [s.name for s in built.stepper.species]
    if meta["species"] not in species:
        raise ConfigError(f"the model is for species {meta['species']!r}; the case has {species}")
    if len(species) > 1:
        raise ConfigError(f"latent rollouts need a single-species case; this one has {species}")
    D = model.steps_per_latent
    dt = float(built.stepper.dt)
    if not math.isclose(dt, float(meta["dt"]), rel_tol=1e-5):
        raise ConfigError(
            f"the case steps dt={dt:g}; the model was trained on dt={meta['dt']:g} (set dt and t_end to match)"
        )
    if built.n_steps % D:
        raise ConfigError(
            f"t_end must be a multiple of the model's latent step {model.latent_dt:g} ({D} steps of dt={dt:g}); "
            f"the case runs {built.n_steps} steps"
        )
    return D, built.n_steps // D


def outside_training_range(model: LatentModel, config: Mapping) -> list[str]:
    """A message per conditioning parameter of ``config`` (a case config dict) that lies outside
    the range of the model's training runs (``meta["run_configs"]``); empty inside it."""
    runs = model.meta.get("run_configs") or []
    out = []
    for key in model.norm.cond_keys:
        seen = [condition_value(c, key) for c in runs]
        value = condition_value(config, key)
        if seen and not min(seen) <= value <= max(seen):
            out.append(
                f"{key} = {value:g} lies outside the range the latent model was trained on "
                f"[{min(seen):g}, {max(seen):g}] ({len(seen)} runs): the rollout extrapolates"
            )
    return out


DRIFT_KEYS = ("mass", "momentum_x", "momentum_y", "momentum_z", "total_energy")


def conservation_drift(first: Mapping, last: Mapping) -> dict[str, float]:
    """Relative change of mass, momentum and total energy between two diagnostics rows (dicts of
    :func:`~faiser.run.outputs.diagnostics_row`): relative to the first value; momentum relative
    to ``sqrt(2 M K)`` (mass times the rms speed), since a component that starts at 0 has no scale
    of its own."""

    def drift(key):
        a, b = float(first[key]), float(last[key])
        scale = math.sqrt(2.0 * abs(first["mass"] * first["kinetic_energy"])) if key.startswith("momentum") else abs(a)
        return (b - a) / scale if scale > 0 else b - a

    return {k: drift(k) for k in DRIFT_KEYS}


def rollout(
    model: str | Path | LatentModel,
    case: str,
    overrides: Mapping[str, object] | None = None,
    out_dir: str | Path | None = None,
    config_file: str | Path | None = None,
    progress: bool = True,
    save_every: int | None = None,
    vlsv_every: int | None = None,
    mass: str = "auto",
    propagator: str = "trained",
) -> RolloutResult:
    """Roll case ``case`` out in latent space with ``model`` (a directory or a :class:`LatentModel`).

    ``save_every`` / ``vlsv_every`` count reference steps, as in :func:`faiser.run.simulate.simulate`,
    and must be multiples of the model's latent step ``D``; diagnostics rows are written every
    ``diag_every`` reference steps when that is a multiple of ``D``, else after every latent step.
    ``mass``: ``auto`` (``conserve`` for closed periodic cases, else ``decoded``), ``conserve`` or
    ``decoded``. ``propagator="persistence"`` keeps the latent state constant (a baseline).

    Raises:
      ConfigError: the case does not fit the model (case, grid, species, dt, t_end), bad options.
      CheckpointError: the model directory is missing or corrupt.
    """
    lm = model if isinstance(model, LatentModel) else load_latent_model(model)
    if propagator not in ("trained", "persistence"):
        raise ConfigError(f"propagator must be 'trained' or 'persistence', got {propagator!r}")
    if propagator == "persistence":
        from faiser.latent.baselines import persistence

        lm = LatentModel(lm.vqvae, persistence(lm.propagator.config), lm.norm, lm.meta)
    if mass not in MASS_MODES:
        raise ConfigError(f"mass must be one of {MASS_MODES}, got {mass!r}")
    cfg = resolve_config(case, overrides, config_file)
    check_fits_in_memory(case, cfg)
    built = build_case(case, cfg)
    D, n_latent = _check_compatible(lm, case, built)
    for message in outside_training_range(lm, to_json(cfg)):
        warnings.warn(message, ExtrapolationWarning, stacklevel=2)
    from faiser.latent.train import PERIODIC_CASES

    mode = ("conserve" if case in PERIODIC_CASES else "decoded") if mass == "auto" else mass
    n_steps = built.n_steps
    for name, n in (("save_every", save_every), ("vlsv_every", vlsv_every)):
        if n is not None and (n < 1 or n % D):
            raise ConfigError(f"{name} must be a positive multiple of the model's latent step D={D} reference steps")
    out = Path(out_dir) if out_dir is not None else None
    if (save_every or vlsv_every) and out is None:
        raise ConfigError("save_every / vlsv_every need an output directory")
    if save_every and (out / "snapshots" / "zarr.json").exists():
        raise DatasetError(f"{out / 'snapshots'} already holds a dataset; choose another output directory")
    plan = output_plan(n_steps, cfg.diag_every, save_every, vlsv_every)
    diag = set(plan["diag"]) if cfg.diag_every % D == 0 else set(range(0, n_steps + 1, D))
    stops = sorted({s for s in diag | set(plan["save"]) | set(plan["vlsv"]) if s % D == 0} | {0, n_steps})
    meta = run_metadata(built)  # the reference run's config.json, plus how the latent solver ran
    meta["solver"] = {
        "kind": "latent",
        "model": str(model) if not isinstance(model, LatentModel) else None,
        "steps_per_latent": D,
        "latent_dt": lm.latent_dt,
        "latent_steps": n_latent,
        "mass": mode,
        "propagator": propagator,
        "trained_on": lm.meta.get("runs"),
    }
    if out is not None:
        prepare_run_dir(out)
        atomic_write_text(out / "config.json", json.dumps(meta, indent=2))

    state0 = built.state
    sp = 0
    cond = lm.condition(to_json(cfg))
    f0 = np.asarray(state0.f[sp])
    mass0 = float(np.sum(f0, dtype=np.float64))
    dtype = state0.f[sp].dtype

    from faiser.vlasov.fields import ElectrostaticFields

    poisson = isinstance(built.stepper.fields, ElectrostaticFields)

    def decoded_state(z, step: int) -> State:
        f, E, B = lm.decode(z)
        f = f[0].astype(dtype)
        if mode == "conserve":
            f64 = np.asarray(f, np.float64)
            f = jnp.asarray(f64 * (mass0 / max(float(f64.sum()), 1e-300)), dtype)
        aux = {k: B[0].astype(v.dtype) if v.shape == B[0].shape else v for k, v in state0.aux.items()}
        st = State(
            f=(f,), E=E[0].astype(dtype), B=B[0].astype(dtype), time=jnp.asarray(step * built.stepper.dt, dtype),
            step=jnp.asarray(step, jnp.int32), mass_lost=jnp.zeros_like(state0.mass_lost), aux=aux,
        )  # fmt: skip
        if poisson:  # E follows from the decoded f exactly as in the reference (Gauss's law)
            st = built.stepper.fields.finalize(st, built.grid, built.stepper.species)
        return st

    # compile everything first (the contract's wall_s excludes compilation)
    t0 = time.perf_counter()
    z0 = lm.encode(f0, np.asarray(state0.E), np.asarray(state0.B))
    lengths = sorted({(b - a) // D for a, b in zip(stops, stops[1:])})
    for n in lengths:
        jax.block_until_ready(lm.advance(z0, cond, n))
    jax.block_until_ready(decoded_state(z0, 0).f)
    diag_fn = jax.jit(built.stepper.diagnostics)
    diagnostics_row(diag_fn(state0))
    compile_s = time.perf_counter() - t0

    writer = (
        dataset_writer(built, meta, out / "snapshots", len(plan["save"]), jax.device_get(state0.aux))
        if save_every
        else None
    )
    vlsv_dir = None
    if vlsv_every:
        vlsv_dir = out / "vlsv"
        vlsv_dir.mkdir(exist_ok=True)
    snap_fn = jax.jit(lambda st: cell_moments(built.stepper.species, built.grid, st)) if writer else None
    records, states, steps = [], [], []
    t_enc = t_prop = t_dec = 0.0
    n_vlsv = 0
    bar = tqdm(total=n_latent, desc=f"rollout {case}", unit="latent step", disable=not progress)
    try:
        t1 = time.perf_counter()
        z = jax.block_until_ready(lm.encode(f0, np.asarray(state0.E), np.asarray(state0.B)))
        t_enc = time.perf_counter() - t1
        prev = 0
        for s in stops:
            if s > prev:
                t1 = time.perf_counter()
                z = jax.block_until_ready(lm.advance(z, cond, (s - prev) // D))
                t_prop += time.perf_counter() - t1
                bar.update((s - prev) // D)
            t1 = time.perf_counter()
            st = state0 if s == 0 else decoded_state(z, s)  # t = 0: the initial condition itself
            jax.block_until_ready(st.f)
            t_dec += time.perf_counter() - t1
            prev = s
            states.append(st)
            steps.append(s)
            if s in diag or s == n_steps:
                records.append(diagnostics_row(diag_fn(st)))
            if writer is not None and s in plan["save"]:
                host = jax.device_get((st.f, st.E, st.B, snap_fn(st), st.aux))
                writer.append(float(st.time), s, *host)
            if vlsv_dir is not None and s in plan["vlsv"]:
                write_vlsv(vlsv_dir / f"bulk.{n_vlsv:07d}.vlsv", built, st, meta)
                n_vlsv += 1
    except BaseException:
        if writer is not None:
            writer.close(complete=False)
        raise
    finally:
        bar.close()
    if writer is not None:
        writer.close(complete=True)
    wall = t_enc + t_prop + t_dec
    timing = {
        "wall_s": wall,
        "compile_s": compile_s,
        "steps": n_steps,
        "simulated_time": n_steps * float(built.stepper.dt),
        "device": str(jax.devices()[0].device_kind),
        "solver": "latent",
        "latent_steps": n_latent,
        "steps_per_latent": D,
        "encode_s": t_enc,
        "propagate_s": t_prop,
        "decode_s": t_dec,
        "decoded_outputs": len(states),
        "snapshots": len(plan["save"]) if writer else 0,
        "vlsv_files": n_vlsv,
        "mass": mode,
        "drift": conservation_drift(records[0], records[-1]),
    }
    ds = timeseries_to_xarray(records)
    if out is not None:
        write_cell_diagnostics(built, state0, states[-1], out / "moments.nc")
        write_csv(records, out / "diagnostics.csv", CSV_COLUMNS)
        atomic_write_text(out / "timing.json", json.dumps(timing, indent=2))
        plot_diagnostics(ds, built, out / "diagnostics.png")
    return RolloutResult(built, steps, states, ds, timing, out)
