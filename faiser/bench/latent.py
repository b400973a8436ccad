"""``faiser bench latent``: the latent solver against the reference stepper on held-out initial conditions.

Per family (shock, Landau, KHI; see :data:`FAMILIES`): the reference stepper generates training
trajectories over a range of one case parameter and held-out runs at parameters between them; the
latent solver is trained on the former and rolled out from the held-out initial conditions. Both
write the same files (``simulate`` and ``rollout`` with ``--save-every D``), and the comparison is
file to file: relative L2 of f, errors of n, V and T per output time, the Pearson correlation of f
and the correlation time (first time it drops below 0.8), and the conservation drifts of mass,
momentum and energy beside the reference's own drift over the same time (``reference_drift``,
``drift_minus_reference``).

Variants in the same run, so the value of each training ingredient is visible:

- ``latent``: the propagator trained with the unrolled multi-step loss (and noise/pushforward as set);
- ``one_step``: the same VQ-VAE, the propagator trained on one-step pairs only;
- ``linear``: a DMD-like linear propagator fitted by least squares (:mod:`faiser.latent.baselines`);
- ``persistence``: ``z`` stays constant.

and the baselines that work on f itself (:mod:`faiser.latent.reference_baselines`), in the same tables:

- ``interpolation``: the two training runs that bracket the held-out parameter, blended linearly
  at each output time (no model at all);
- ``pod8``, ``pod32``: the reference projected onto the mean and 8 / 32 POD modes of every
  training snapshot (the floor of a linear reduced basis of that size);
- ``autoencoder``: each reference snapshot encoded and decoded by the trained model (the floor the
  latent solver starts from before its propagator acts).

Speed: the reference's and the latent rollout's ``wall_s`` for the same simulated time on the same
device, both without compilation: once with only the final state decoded (encode once, propagate,
decode once) and once decoding every latent step. Every wall time is the median of ``repeats``
(>= 5) runs, reported with min and max (``timing["wall_s"]``); training is timed once.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import statistics
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

import numpy as np

from faiser.bench.common import BenchSettings, document, resolve, summarize, write_json
from faiser.bench.env import environment, finish
from faiser.errors import ConfigError

__all__ = ["BenchLatentSettings", "FAMILIES", "bench_latent", "compare_runs"]

# case, base overrides, the varied key and its values (training / held-out), snapshot interval
FAMILIES: dict[str, dict] = {
    "shock": {
        "case": "shock",
        "base": {"nx": 32, "nv": 16, "downstream": "rankine_hugoniot", "dt": 0.05},
        "key": "V_left_kms",
        "train": [(80.0, 50.0, 0.0), (90.0, 50.0, 0.0), (110.0, 50.0, 0.0), (120.0, 50.0, 0.0)],
        "test": [(85.0, 50.0, 0.0), (105.0, 50.0, 0.0)],
        "save_every": 10,
        "t_end": 50.0,  # 1 / Omega_i: about 1.7 crossings of the box by the upstream flow
    },
    "landau": {
        "case": "landau",
        "base": {"nx": 32, "nv": 64, "vmax": 6.0, "dt": 0.1, "k": 0.5},
        "key": "alpha",
        "train": [0.02, 0.05, 0.1, 0.2],
        "test": [0.075, 0.15],
        "save_every": 5,
        "t_end": 50.0,  # 1 / omega_p (100 latent steps of D = 5)
    },
    "khi": {
        "case": "khi",
        "base": {"nx": 16, "ny": 16, "nv": 16, "nv_z": 1, "dt": 0.25},
        "key": "V0_kms",
        "train": [150.0, 200.0, 250.0, 300.0],
        "test": [175.0, 275.0],
        "save_every": 4,
        "t_end": 100.0,  # 1 / Omega_i (100 latent steps of D = 4)
    },
}


@dataclasses.dataclass(frozen=True)
class BenchLatentSettings(BenchSettings):
    """``--set`` keys of ``faiser bench latent`` (and ``repeats``, ``tiny`` of :class:`BenchSettings`).

    families: comma-separated names of :data:`FAMILIES`. horizon: latent steps rolled out; 0 (the
    default) rolls out to each family's physical horizon ``t_end`` (in :data:`FAMILIES`; the shock's
    targets are stated at t = 50 / Omega_i, 100 latent steps of D = 10). ae_steps, prop_steps,
    unroll, noise_std, pushforward: training of the ``latent`` variant (``one_step`` uses the same
    steps with unroll 1). tiny: shrink grids and runs for smoke tests. work: directory of the runs
    (default: ``<out stem>_work`` beside the JSON).
    speed: also time the shock case at larger grids (``speed_sizes``: ``NXxNV`` items) with an
    untrained model of the default architecture (the cost of a latent step does not depend on the
    weights) over ``speed_latent_steps`` latent steps against the reference for the same time.
    repeats: runs per wall time (median, min, max). baselines_only: only the reference runs and
    the f-space baselines (interpolation, POD), no model trained and nothing timed.
    """

    families: str = "shock,landau,khi"
    horizon: int = 0
    ae_steps: int = 1500
    prop_steps: int = 1500
    unroll: int = 4
    noise_std: float = 0.0
    pushforward: bool = False
    batch: int = 8
    speed: bool = True
    baselines_only: bool = False
    speed_sizes: str = "32x16,128x16,128x32,512x32"
    speed_latent_steps: int = 20
    work: str = ""
    seed: int = 0
    progress: bool = True

    def __post_init__(self):
        super().__post_init__()
        unknown = [f for f in self.family_names if f not in FAMILIES]
        if unknown:
            raise ConfigError(f"unknown families {unknown}; known: {sorted(FAMILIES)}")
        if self.horizon < 0:
            raise ConfigError("horizon must be >= 1 latent steps, or 0 for each family's physical horizon")

    @property
    def family_names(self) -> list[str]:
        return [f.strip() for f in self.families.split(",") if f.strip()]


def _family(name: str, s: BenchLatentSettings) -> dict:
    fam = json.loads(json.dumps(FAMILIES[name]))
    if s.tiny:
        fam["base"].update(
            {"shock": {"nx": 16, "nv": 8}, "landau": {"nx": 8, "nv": 16}, "khi": {"nx": 8, "ny": 8, "nv": 8}}[name]
        )
        fam["train"], fam["test"] = fam["train"][::3], fam["test"][:1]
    return fam


def _overrides(fam: dict, value, t_end: float) -> dict:
    return {**fam["base"], fam["key"]: tuple(value) if isinstance(value, list | tuple) else value, "t_end": t_end}


def _name(value) -> str:
    v = value if isinstance(value, list | tuple) else [value]
    return "-".join(f"{x:g}" for x in v)


def compare_runs(ref_dir: str | Path, run_dir: str | Path) -> dict:
    """Errors of the snapshots of ``run_dir`` against those of ``ref_dir`` at the steps both hold.

    Returns lists over time: ``time``, ``l2_f`` (relative L2 of f), ``density`` (relative L2 of the
    per-cell density), ``velocity`` (RMS error of the bulk velocity over the RMS of the reference's
    bulk and thermal speeds), ``temperature`` (relative L2), ``correlation`` (Pearson of f), and the
    ``correlation_time`` (first time below 0.8; None if never within the run).
    """
    from faiser.data.dataset import open_dataset

    ref, run = open_dataset(ref_dir), open_dataset(run_dir)
    sp = run.species_names[0]
    ref_steps = {int(s): i for i, s in enumerate(ref.steps)}
    pairs = [(ref_steps[int(s)], j) for j, s in enumerate(run.steps) if int(s) in ref_steps]
    names = ("density", "bulk_velocity", "temperature")
    return _compare(ref, ((i, run.f(sp, time=j), {k: run.moments(sp, k, time=j) for k in names}) for i, j in pairs))


def compare_frames(ref_dir: str | Path, frames: Mapping[int, np.ndarray]) -> dict:
    """:func:`compare_runs` for states held in memory: ``frames`` maps the index of a snapshot of
    ``ref_dir`` to the f (6D, first species) compared with it; its moments are computed here."""
    from faiser.data.dataset import open_dataset
    from faiser.vlasov.diagnostics import moments

    ref = open_dataset(ref_dir)
    mass = float(ref.species[0].mass)

    def items():
        for i, f in frames.items():
            m = moments(np.asarray(f, np.float64), ref.grid, mass)
            yield i, f, {k: np.asarray(m[k]) for k in ("density", "bulk_velocity", "temperature")}

    return _compare(ref, items())


def _compare(ref, items) -> dict:
    """The error series of :func:`compare_runs` over ``items``: (reference snapshot index, f, moments)."""
    sp = ref.species_names[0]
    out = {k: [] for k in ("time", "l2_f", "density", "velocity", "temperature", "correlation")}
    mass = float(ref.species[0].mass)
    for i, fb, mb in items:
        a, b = ref.f(sp, time=i).astype(np.float64), np.asarray(fb, np.float64)
        out["time"].append(float(ref.times[i]))
        out["l2_f"].append(float(np.linalg.norm(b - a) / np.linalg.norm(a)))
        na, nb = ref.moments(sp, "density", time=i), mb["density"]
        out["density"].append(float(np.linalg.norm(nb - na) / np.linalg.norm(na)))
        Va, Vb = ref.moments(sp, "bulk_velocity", time=i), mb["bulk_velocity"]
        Ta, Tb = ref.moments(sp, "temperature", time=i), mb["temperature"]
        scale = math.sqrt(float(np.mean(np.sum(Va**2, axis=-1))) + float(np.mean(np.abs(Ta))) / mass)
        out["velocity"].append(float(math.sqrt(float(np.mean(np.sum((Vb - Va) ** 2, axis=-1)))) / scale))
        out["temperature"].append(float(np.linalg.norm(Tb - Ta) / np.linalg.norm(Ta)))
        ca, cb = a.ravel() - a.mean(), b.ravel() - b.mean()
        out["correlation"].append(float(ca @ cb / max(np.linalg.norm(ca) * np.linalg.norm(cb), 1e-300)))
    below = [t for t, c in zip(out["time"], out["correlation"]) if c < 0.8]
    out["correlation_time"] = below[0] if below else None
    return out


def reference_baselines(ref_dir: Path, train_dirs: list[Path], train_values: list, value, model, ranks=(8, 32)) -> dict:
    """Error series (:func:`compare_frames`) of the f-space baselines of the held-out run in
    ``ref_dir`` (see :mod:`faiser.latent.reference_baselines`): ``interpolation`` of the training
    runs ``train_dirs`` (parameters ``train_values``) at ``value``, ``pod<r>`` (the projection onto
    ``r`` modes of every training snapshot) and ``autoencoder`` (encode-decode by ``model``, if
    not None)."""
    from faiser.data.dataset import open_dataset
    from faiser.latent.reference_baselines import PodBasis, interpolation_weights

    ref = open_dataset(ref_dir)
    sp = ref.species_names[0]
    runs = [open_dataset(d) for d in train_dirs]
    run_steps = [{int(s): j for j, s in enumerate(r.steps)} for r in runs]
    weights = interpolation_weights(train_values, value)
    idx = [i for i, s in enumerate(ref.steps) if all(int(s) in run_steps[k] for k, _ in weights)]
    blend = {i: sum(w * runs[k].f(sp, time=run_steps[k][int(ref.steps[i])]).astype(np.float64) for k, w in weights)
             for i in idx}  # fmt: skip
    out = {"interpolation": {**compare_frames(ref_dir, blend), "weights": [[k, w] for k, w in weights]}}
    snapshots = np.concatenate([np.asarray(r.f(sp)) for r in runs])
    for r in ranks:
        pod = PodBasis.fit(snapshots, r)
        frames = {i: pod.project(ref.f(sp, time=i)) for i in range(len(ref.steps))}
        out[f"pod{r}"] = {**compare_frames(ref_dir, frames), "rank": pod.rank}
    if model is not None:
        frames = {}
        for i in range(len(ref.steps)):
            E, B = ref.fields(i)
            frames[i] = np.asarray(model.decode(model.encode(ref.f(sp, time=i), E, B))[0][0])
        out["autoencoder"] = compare_frames(ref_dir, frames)
    return out


def _walls(run: Callable[[], object], repeats: int, parts: tuple[str, ...] = (), first=None) -> tuple[dict, dict]:
    """``repeats`` calls of ``run`` (a simulate or rollout; after ``first``, a result already run):
    the summary of their ``timing["wall_s"]`` (median, min, max) and the median of each ``timing[part]``."""
    timings = ([first.timing] if first is not None else []) + [run().timing for _ in range(repeats)]
    return summarize([t["wall_s"] for t in timings]), {k: statistics.median(t[k] for t in timings) for k in parts}


def _rerun_into(directory: Path, run: Callable[[Path], object]):
    """``run(directory)`` after removing what an earlier run left there."""
    shutil.rmtree(directory, ignore_errors=True)
    return run(directory)


def _variants(data, model, cfg, progress):
    """The four propagators over one trained VQ-VAE: latent, one_step, linear, persistence."""
    from faiser.latent.baselines import fit_linear_propagator, persistence
    from faiser.latent.model import LatentModel
    from faiser.latent.train import encode_all, prepare, train_latent

    one = train_latent(data, cfg.replace(unroll=1, noise_std=0.0, pushforward=False), progress, vqvae=model.vqvae)
    norm, X, F, C = prepare(data, cfg)
    R, T = X.shape[:2]
    Z = encode_all(model.vqvae, X.reshape(R * T, *X.shape[2:]), F.reshape(R * T, *F.shape[2:]))
    Z = Z.reshape(R, T, *Z.shape[1:])
    lin = LatentModel(model.vqvae, fit_linear_propagator(Z, C, cfg.propagator.stride), norm, model.meta)
    pers = LatentModel(model.vqvae, persistence(model.propagator.config), norm, model.meta)
    return {"latent": model, "one_step": one, "linear": lin, "persistence": pers}


def _simulate_family(name: str, s: BenchLatentSettings, work: Path) -> dict:
    """The reference runs a family trains on (``train_dirs``), with the family's timing constants."""
    from faiser.run.simulate import resolve_config, simulate

    fam = _family(name, s)
    case, every = fam["case"], fam["save_every"]
    dt = float(resolve_config(case, fam["base"]).dt)
    horizon = s.horizon or max(1, round(fam["t_end"] / (every * dt)))
    t_end = horizon * every * dt  # stride 1: one latent step (D = every) per snapshot interval
    runs = work / name / "runs"
    if runs.exists():
        shutil.rmtree(runs)
    t0 = time.perf_counter()
    train_dirs = []
    for v in fam["train"]:
        d = runs / f"train-{_name(v)}"
        simulate(case, _overrides(fam, v, t_end), d, progress=False, save_every=every)
        train_dirs.append(d)
    return {"fam": fam, "case": case, "D": every, "dt": dt, "t_end": t_end, "horizon": horizon, "runs": runs,
            "train_dirs": train_dirs, "simulate_s": time.perf_counter() - t0}  # fmt: skip


def _baselines_family(name: str, s: BenchLatentSettings, work: Path) -> dict:
    """``baselines_only``: the f-space baselines of every held-out run, no model trained."""
    from faiser.run.simulate import simulate

    r = _simulate_family(name, s, work)
    fam, held = r["fam"], []
    for v in fam["test"]:
        ref_dir = r["runs"] / f"test-{_name(v)}"
        simulate(r["case"], _overrides(fam, v, r["t_end"]), ref_dir, progress=False, save_every=r["D"])
        variants = reference_baselines(ref_dir, r["train_dirs"], fam["train"], v, None)
        held.append({"value": v, "variants": variants, "ref_dir": str(ref_dir)})
    return {
        "family": name, "case": r["case"], "key": fam["key"], "train_values": fam["train"], "base": fam["base"],
        "steps_per_latent": r["D"], "latent_dt": r["D"] * r["dt"], "horizon": r["horizon"], "t_end": r["t_end"],
        "simulate_s": r["simulate_s"], "held_out": held,
    }  # fmt: skip


def _bench_family(name: str, s: BenchLatentSettings, work: Path) -> dict:
    from faiser.latent.data import load_trajectories
    from faiser.latent.rollout import DRIFT_KEYS, conservation_drift, rollout
    from faiser.latent.train import LatentTrainConfig, train_latent
    from faiser.run.simulate import simulate

    r = _simulate_family(name, s, work)
    fam, case, D, dt, t_end, runs = r["fam"], r["case"], r["D"], r["dt"], r["t_end"], r["runs"]
    train_dirs, sim_s = r["train_dirs"], r["simulate_s"]
    data = load_trajectories(train_dirs)
    steps = (10, 10) if s.tiny else (s.ae_steps, s.prop_steps)
    cfg = LatentTrainConfig.of(
        ae_steps=steps[0], prop_steps=steps[1], unroll=min(s.unroll, r["horizon"]), noise_std=s.noise_std,
        pushforward=s.pushforward, ae_batch=s.batch, prop_batch=s.batch, seed=s.seed,
        **({"hidden": 8, "cell_dim": 8, "code_dim": 8, "prop_hidden": 8, "velocity_channels": 4} if s.tiny else {}),
    )  # fmt: skip
    t0 = time.perf_counter()
    model = train_latent(data, cfg, s.progress)
    variants = _variants(data, model, cfg, s.progress)
    train_s = time.perf_counter() - t0
    held = []
    for v in fam["test"]:
        over = _overrides(fam, v, t_end)
        ref_dir = runs / f"test-{_name(v)}"
        ref = simulate(case, over, ref_dir, progress=False, save_every=D)
        diag = ref.diagnostics
        ref_drift = conservation_drift(*({k: float(diag[k].values[i]) for k in (*DRIFT_KEYS, "kinetic_energy")}
                                         for i in (0, -1)))  # fmt: skip
        entry = {"value": v, "variants": {}, "reference_drift": ref_drift}
        for vname, vm in variants.items():
            out = runs / f"{vname}-{_name(v)}"
            res = rollout(vm, case, over, out, progress=False, save_every=D)
            drift = res.timing["drift"]
            entry["variants"][vname] = {
                **compare_runs(ref_dir, out), "drift": drift,
                "drift_minus_reference": {k: drift[k] - ref_drift[k] for k in DRIFT_KEYS},
            }  # fmt: skip
        entry["variants"].update(reference_baselines(ref_dir, train_dirs, fam["train"], v, model))
        # speed: same simulated time, same device, compilation excluded; final state only vs every step;
        # each wall time the median of `repeats` runs (the reference with outputs: the run above and
        # repeats - 1 more into a scratch directory)
        quiet = {**over, "diag_every": int(round(t_end / dt))}
        scratch = runs / "timing-scratch"
        parts = ("encode_s", "propagate_s", "decode_s")
        rerun = partial(_rerun_into, scratch, partial(simulate, case, over, progress=False, save_every=D))
        walls = {
            "reference": _walls(partial(simulate, case, quiet, None, progress=False), s.repeats)[0],
            "reference_with_outputs": _walls(rerun, s.repeats - 1, first=ref)[0],
        }
        walls["latent"], breakdown = _walls(
            partial(rollout, model, case, quiet, None, progress=False), s.repeats, parts
        )
        walls["latent_decode_every_step"] = _walls(
            partial(rollout, model, case, over, None, progress=False), s.repeats
        )[0]
        shutil.rmtree(scratch, ignore_errors=True)
        med = {k: w["median_s"] for k, w in walls.items()}
        entry["timing"] = {
            "reference_wall_s": med["reference"],
            "reference_wall_s_with_outputs": med["reference_with_outputs"],
            "latent_wall_s": med["latent"],
            "latent_wall_s_decode_every_step": med["latent_decode_every_step"],
            "latent_breakdown": breakdown,
            "speedup": med["reference"] / med["latent"],
            "speedup_decode_every_step": med["reference_with_outputs"] / med["latent_decode_every_step"],
            "wall_s": walls,
            # rollouts of this kind that pay back generating the training runs and training
            "break_even_rollouts": _break_even(sim_s + train_s, med["reference"] - med["latent"]),
        }
        entry["ref_dir"], entry["latent_dir"] = str(ref_dir), str(runs / f"latent-{_name(v)}")
        held.append(entry)
    return {
        "family": name, "case": case, "key": fam["key"], "train_values": fam["train"], "base": fam["base"],
        "steps_per_latent": D, "latent_dt": D * dt, "horizon": r["horizon"], "t_end": t_end,
        "train_config": cfg.to_json(), "simulate_s": sim_s, "train_s": train_s,
        "model_history": model.meta["history"], "held_out": held,
    }  # fmt: skip


def _break_even(cost_s: float, saving_s: float) -> float | None:
    """Rollouts after which ``cost_s`` (data generation + training) is paid back by ``saving_s`` per
    rollout; None if a rollout saves nothing."""
    return cost_s / saving_s if saving_s > 0 else None


def _summary(fam: dict) -> list[dict]:
    rows = []
    for h in fam["held_out"]:
        for vname, r in h["variants"].items():
            rows.append({
                "family": fam["family"], "value": h["value"], "variant": vname, "horizon": fam["horizon"],
                "l2_f_final": r["l2_f"][-1], "density_final": r["density"][-1],
                "temperature_final": r["temperature"][-1],
                "velocity_final": r["velocity"][-1], "correlation_final": r["correlation"][-1],
                "correlation_time": r["correlation_time"], "l2_f_mean": float(np.mean(r["l2_f"][1:])),
                "speedup": h["timing"]["speedup"] if vname == "latent" else None,
                "break_even_rollouts": h["timing"]["break_even_rollouts"] if vname == "latent" else None,
            })  # fmt: skip
    return rows


def plot_comparison(
    variants: dict[str, dict], ref_dir, latent_dir, latent_dt: float, title: str, stem: str
) -> list[str]:
    """``<stem>_errors.png``: errors of each variant (:func:`compare_runs` dicts) vs latent steps;
    ``<stem>_density.png``: reference vs latent density (x-t maps for 1D grids, final maps for 2D).
    Returns the two paths."""
    from matplotlib.figure import Figure

    from faiser.data.dataset import open_dataset

    fig = Figure(figsize=(12, 6.5), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    titles = {"l2_f": "relative L2 of f", "density": "relative L2 of n", "correlation": "correlation of f",
              "temperature": "relative L2 of T"}  # fmt: skip
    for ax, key in zip(axes, titles):
        for vname, r in variants.items():
            t = np.asarray(r["time"][1:]) / latent_dt
            y = np.asarray(r[key][1:])
            if key == "correlation":
                ax.plot(t, y, label=vname)
            else:
                ax.semilogy(t, np.maximum(y, 1e-12), label=vname)
        ax.set_xlabel("latent steps")
        ax.set_title(titles[key])
        if key == "correlation":
            ax.axhline(0.8, color="k", lw=0.6, ls="--")
    axes[0].legend()
    fig.suptitle(title)
    p1 = f"{stem}_errors.png"
    fig.savefig(p1, dpi=100)

    ref, lat = open_dataset(ref_dir), open_dataset(latent_dir)
    sp = lat.species_names[0]
    steps = {int(s): i for i, s in enumerate(ref.steps)}
    pairs = [(steps[int(s)], j) for j, s in enumerate(lat.steps) if int(s) in steps]
    nr = ref.moments(sp, "density")[[i for i, _ in pairs]]
    nl = lat.moments(sp, "density")[[j for _, j in pairs]]
    fig = Figure(figsize=(13, 4), layout="constrained")
    axes = fig.subplots(1, 3)
    if nr.shape[2] == 1 and nr.shape[3] == 1:  # 1D: x-t maps
        maps = [nr[:, :, 0, 0], nl[:, :, 0, 0], nl[:, :, 0, 0] - nr[:, :, 0, 0]]
        ext = [0, nr.shape[1], float(lat.times[pairs[-1][1]]), 0.0]
        labels = ("x (cells)", "time")
    else:  # 2D: final state
        maps = [nr[-1, :, :, 0].T, nl[-1, :, :, 0].T, (nl[-1] - nr[-1])[:, :, 0].T]
        ext = None
        labels = ("x (cells)", "y (cells)")
    vmin, vmax = float(min(maps[0].min(), maps[1].min())), float(max(maps[0].max(), maps[1].max()))
    for k, (ax, m, name) in enumerate(
        zip(axes, maps, ("reference density", "latent rollout density", "latent - reference"))
    ):
        kw = {"vmin": vmin, "vmax": vmax} if k < 2 else {"cmap": "RdBu_r"}
        im = ax.imshow(m, aspect="auto", origin="upper" if ext else "lower", extent=ext, **kw)
        fig.colorbar(im, ax=ax)
        ax.set_title(name)
        ax.set_xlabel(labels[0])
        ax.set_ylabel(labels[1])
    p2 = f"{stem}_density.png"
    fig.savefig(p2, dpi=100)
    return [p1, p2]


def plot_family(fam: dict, path_stem: Path) -> list[str]:
    """:func:`plot_comparison` of a family's first held-out case (``<stem>_<family>_errors/density.png``)."""
    h = fam["held_out"][0]
    title = f"{fam['family']}: held-out {fam['key']} = {h['value']}, D = {fam['steps_per_latent']} reference steps"
    return plot_comparison(h["variants"], h["ref_dir"], h["latent_dir"], fam["latent_dt"], title,
                           f"{path_stem}_{fam['family']}")  # fmt: skip


def speed_scan(s: BenchLatentSettings) -> list[dict]:
    """Wall time of the reference and of an (untrained) latent rollout of the shock at several grid sizes."""
    from flax import nnx

    from faiser.cases import build_case
    from faiser.latent.data import Normalization
    from faiser.latent.model import LatentModel
    from faiser.latent.rollout import rollout
    from faiser.latent.train import LatentTrainConfig, model_configs_for
    from faiser.models.propagator import LatentPropagator
    from faiser.models.vqvae6d import PhaseSpaceVQVAE
    from faiser.run.simulate import resolve_config, simulate

    fam = FAMILIES["shock"]
    D = fam["save_every"]
    rows = []
    for item in [x for x in s.speed_sizes.split(",") if x.strip()]:
        nx, nv = (int(v) for v in item.lower().split("x"))
        dt = float(resolve_config("shock", fam["base"]).dt)
        n_steps = s.speed_latent_steps * D
        over = {**fam["base"], "nx": nx, "nv": nv, "V_left_kms": tuple(fam["test"][0]), "t_end": n_steps * dt,
                "diag_every": n_steps}  # fmt: skip
        built = build_case("shock", resolve_config("shock", over))
        grid = built.grid
        vq_cfg, p_cfg = model_configs_for(tuple(grid.nx), tuple(grid.nv), "shock", LatentTrainConfig(), 1)
        norm = Normalization(cond_keys=("V_left_kms[0]",), cond_mean=(100.0,), cond_std=(15.0,))
        dt_run = float(built.stepper.dt)
        meta = {"case": "shock", "species": built.stepper.species[0].name, "grid": grid.to_json(), "dt": dt_run,
                "steps_per_latent": D, "latent_dt": D * dt_run}  # fmt: skip
        lm = LatentModel(
            PhaseSpaceVQVAE(vq_cfg, rngs=nnx.Rngs(0)), LatentPropagator(p_cfg, rngs=nnx.Rngs(1)), norm, meta
        )
        t_ref, _ = _walls(partial(simulate, "shock", over, None, progress=False), s.repeats)
        parts = ("encode_s", "propagate_s", "decode_s")
        t_lat, breakdown = _walls(partial(rollout, lm, "shock", over, None, progress=False), s.repeats, parts)
        rows.append({
            "nx": nx, "nv": nv, "phase_space_cells": grid.num_cells, "reference_steps": n_steps,
            "latent_steps": s.speed_latent_steps, "latent_grid": list(vq_cfg.latent_shape),
            "reference_wall_s": t_ref["median_s"], "latent_wall_s": t_lat["median_s"],
            "latent_breakdown": breakdown, "speedup": t_ref["median_s"] / t_lat["median_s"],
            "wall_s": {"reference": t_ref, "latent": t_lat},
        })  # fmt: skip
    return rows


def bench_latent(out: str | Path, overrides: Mapping[str, object] | BenchLatentSettings | None = None) -> dict:
    """Run the benchmark (see the module docstring); writes ``out`` (JSON) and the plots beside it.

    ``overrides``: ``--set`` keys of :class:`BenchLatentSettings` (or the settings themselves). The
    JSON: ``settings``, ``environment`` (machine, load average at start and end), ``targets``,
    ``results`` (a row per family, held-out value and variant: final errors, correlation time,
    speed-up), ``families`` (everything per family, timings with ``wall_s`` median/min/max),
    ``speed`` (the grid-size scan) and ``plots``.
    """
    import jax

    s = resolve(BenchLatentSettings, overrides)
    env = environment()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(s.work) if s.work else out.with_name(out.stem + "_work")
    families, results, plots = [], [], []
    speed = speed_scan(s) if s.speed and not s.tiny and not s.baselines_only else []
    for name in s.family_names:
        fam = (_baselines_family if s.baselines_only else _bench_family)(name, s, work)
        families.append(fam)
        results.extend(_summary(fam))
        if not s.baselines_only:
            plots.extend(plot_family(fam, out.with_suffix("")))
    doc = document(
        "latent",
        s,
        finish(env),
        bench="latent",
        device=str(jax.devices()[0].device_kind),
        platform=jax.devices()[0].platform,
        targets={"speedup": 1000, "l2_f": 0.05, "density": 0.01, "after_latent_steps": 100, "family": "shock"},
        results=results,
        families=families,
        speed=speed,
        plots=plots,
    )
    write_json(out, doc, indent=1)
    return doc
