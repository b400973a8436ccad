"""Parameter sweeps: one JSON file describes a family of runs; one call generates all datasets.

A sweep file::

    {
      "name": "landau_k_alpha",
      "case": "landau",
      "base": {"t_end": 20, "nx": 32},               # --set keys shared by every run
      "product": {"k": [0.3, 0.4, 0.5], "alpha": [0.01, 0.05]},   # Cartesian product
      "zip": {"...": [...]},                          # optional: lists varied together
      "save_every": 5,                                # dataset snapshots (required)
      "vlsv_every": null                              # optional VLSV output
    }

Every run gets a deterministic name from the case and its varied keys, sorted
(``landau-alpha=0.01-k=0.3``), and writes ``ROOT/<name>/`` exactly as ``faiser simulate --out``
would. Runs whose dataset is complete are skipped; a run left incomplete by a crash is redone
from scratch. ``ROOT/sweep.json`` records the resolved sweep and ``ROOT/index.json`` the status
of every run.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import shutil
import sys
from pathlib import Path

from faiser.atomic import atomic_write_text
from faiser.config import load_json
from faiser.errors import ConfigError, DatasetError
from faiser.run.outputs import prepare_run_dir, run_dir_lock

__all__ = ["SweepRun", "load_sweep", "run_name", "run_sweep", "sweep_runs"]

_KEYS = {"name", "case", "base", "product", "zip", "save_every", "vlsv_every", "description"}


@dataclasses.dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its directory name and the ``--set`` overrides it uses."""

    name: str
    case: str
    overrides: dict

    def to_json(self) -> dict:
        return {"name": self.name, "case": self.case, "overrides": self.overrides}


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(_fmt(v) for v in value)
    return str(value)


def run_name(case: str, varied: dict) -> str:
    """Deterministic run name: ``case-key=value-...`` over the varied keys in sorted order."""
    parts = [case] + [f"{k}={_fmt(varied[k])}" for k in sorted(varied)]
    name = "-".join(parts)
    if any(c in name for c in "/\\\0") or name.startswith("."):
        raise ConfigError(f"run name {name!r} is not a safe directory name")
    return name


def load_sweep(path: str | Path) -> dict:
    """Read and check a sweep file (unknown top-level keys, missing case or save_every raise)."""
    spec = load_json(path)
    unknown = set(spec) - _KEYS
    if unknown:
        raise ConfigError(f"unknown sweep key(s) {sorted(unknown)} in {path}; allowed: {sorted(_KEYS)}")
    for key in ("case", "save_every"):
        if key not in spec:
            raise ConfigError(f"sweep file {path} needs {key!r}")
    spec.setdefault("name", Path(path).stem)
    return spec


def sweep_runs(spec: dict) -> list[SweepRun]:
    """Expand a sweep spec into its runs (product of ``product`` x rows of ``zip``), validating
    every run's config up front so a bad key fails before anything runs."""
    from faiser.run.simulate import resolve_config

    case, base = spec["case"], dict(spec.get("base", {}))
    product = {k: list(v) for k, v in spec.get("product", {}).items()}
    zipped = {k: list(v) for k, v in spec.get("zip", {}).items()}
    lengths = {len(v) for v in zipped.values()}
    if len(lengths) > 1:
        raise ConfigError(f"the lists under 'zip' must have equal lengths, got {sorted(lengths)}")
    overlap = (set(product) & set(zipped)) | ((set(product) | set(zipped)) & set(base))
    if overlap:
        raise ConfigError(f"sweep keys {sorted(overlap)} appear in more than one of base/product/zip")
    zip_rows = [dict(zip(zipped, row)) for row in zip(*zipped.values())] if zipped else [{}]
    runs = []
    for values in itertools.product(*product.values()):
        for zrow in zip_rows:
            varied = dict(zip(product, values)) | zrow
            overrides = base | varied
            resolve_config(case, overrides)  # raises ConfigError on unknown keys or bad values
            runs.append(SweepRun(run_name(case, varied), case, overrides))
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ConfigError("two runs of the sweep get the same name; vary at least one key")
    return runs


def _is_done(run_dir: Path) -> bool:
    from faiser.data.dataset import open_dataset

    try:
        return open_dataset(run_dir).complete
    except DatasetError:
        return False


def run_sweep(path: str | Path, out_root: str | Path, progress: bool = True, dry_run: bool = False) -> list[dict]:
    """Generate every dataset of the sweep in ``path`` under ``out_root``; returns the index
    (one dict per run: name, overrides, status ``done``/``skipped``/``planned``). The root is checked
    and created first (:func:`faiser.run.outputs.prepare_run_dir`) and locked for the whole sweep."""

    spec = load_sweep(path)
    runs = sweep_runs(spec)
    if dry_run:
        return _sweep(spec, runs, Path(out_root), progress, dry_run)
    root = prepare_run_dir(out_root, "sweep root directory")
    with run_dir_lock(root):  # a second sweep into the same root is refused
        return _sweep(spec, runs, root, progress, dry_run)


def _sweep(spec: dict, runs: list[SweepRun], root: Path, progress: bool, dry_run: bool) -> list[dict]:
    from faiser.run.simulate import simulate

    index = []
    if not dry_run:
        resolved = {**spec, "runs": [r.to_json() for r in runs]}
        atomic_write_text(root / "sweep.json", json.dumps(resolved, indent=2))
    for i, run in enumerate(runs):
        run_dir = root / run.name
        entry = run.to_json() | {"path": str(run_dir)}
        if _is_done(run_dir):
            entry["status"] = "skipped"
        elif dry_run:
            entry["status"] = "planned"
        else:
            if run_dir.exists():
                print(f"faiser sweep: redoing incomplete run {run.name}", file=sys.stderr)
                shutil.rmtree(run_dir)
            if progress:
                print(f"[{i + 1}/{len(runs)}] {run.name}", file=sys.stderr)
            simulate(
                run.case, run.overrides, run_dir, progress=progress,
                save_every=spec["save_every"], vlsv_every=spec.get("vlsv_every"),
            )  # fmt: skip
            entry["status"] = "done"
        index.append(entry)
        if not dry_run:
            atomic_write_text(root / "index.json", json.dumps(index, indent=2))
    return index
