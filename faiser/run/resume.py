"""Simulation checkpoints and resume: a run's full state, diagnostics and output counters.

A simulation checkpoint is a :class:`~faiser.run.checkpoint.CheckpointStore` step whose tree is
``{"state": {"f": [f per species], "E", "B", "time", "step", "mass_lost", "aux": {..}},
"records": (rows, columns) float64 diagnostics so far, "probe": {"<i>": {name: array}}}`` and
whose metadata holds the case, resolved config, output options, n_steps, dt, the record columns
and probe times, the output counters (dataset snapshots, VLSV files) and the stepping wall time
so far. orbax is imported only when checkpoints are used.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from faiser.config import to_json
from faiser.errors import CheckpointError
from faiser.run.checkpoint import CheckpointStore
from faiser.vlasov.state import State

# -- checkpoints and resume ------------------------------------------------------------------
# A simulation checkpoint is a faiser.run.checkpoint step whose tree is
#   {"state": {"f": [f per species], "E", "B", "time", "step", "mass_lost", "aux": {..}},
#    "records": (rows, columns) float64 diagnostics so far, "probe": {"<i>": {name: array}}}
# and whose metadata holds the case, resolved config, output options, n_steps, dt, the record
# columns and probe times, the output counters (n_saved dataset snapshots, n_vlsv files) and the
# stepping wall time so far. orbax is imported only when checkpoints are used.

CHECKPOINT_KIND = "faiser-simulation"


@dataclasses.dataclass
class Resumed:
    """A run restored from its newest checkpoint: step, host state, diagnostics rows, probe arrays, metadata."""

    step: int
    state: object
    records: list
    probe: list
    meta: dict


def checkpoint_store(path: Path, create: bool = True):
    return CheckpointStore(path, keep=3, async_=True, create=create)


def has_checkpoints(path: Path) -> bool:
    return path.is_dir() and any(p.name.isdigit() for p in path.iterdir())


def save_checkpoint(store, step: int, state, records: list, probe: list, meta: dict) -> None:
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


def resume_from(path: Path, case: str, cfg, outputs: dict, like) -> tuple[object, Resumed]:
    """Open the checkpoints under ``path``, restore the newest valid one and check that it belongs
    to this run (case, config, output options) and that its state has the structure, shapes and
    dtypes of ``like``. Returns the open store and the :class:`Resumed` run (state in host memory)."""
    if not has_checkpoints(path):
        raise CheckpointError(f"no checkpoint in {path}; run without --resume")
    store = checkpoint_store(path, create=False)
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
    return store, Resumed(int(meta["step"]), state, records, probe, meta)


def reopen_dataset(path: Path, keep: int, capacity: int):
    from faiser.data.dataset import DatasetWriter

    writer = DatasetWriter.reopen(path, keep)
    if writer.capacity != capacity:
        writer.close(complete=False)
        raise CheckpointError(f"{path} was allocated for {writer.capacity} snapshots, this run needs {capacity}")
    return writer
