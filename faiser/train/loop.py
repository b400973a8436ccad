"""The training toolkit every trainer shares: sharded jitted step, optimizer, checkpoints, history, progress.

Every faiser trainer (the 3D VQ-VAE codec in :mod:`faiser.train.vqvae`, the two stages of the latent
solver in :mod:`faiser.latent.train`; the per-VDF Fourier MLP of :mod:`faiser.models.fourier_mlp` takes
its optimizer from here) is built from these pieces:

- :class:`DataParallel`: a mesh (:func:`faiser.parallel.mesh.make_mesh`) whose ``data`` axis shards the
  batch while parameters, optimizer state and everything else in the train state are replicated;
  :meth:`DataParallel.jit_step` compiles ``step(state, *batch) -> (state, metrics)`` with these explicit
  shardings (``jax.jit`` with shardings, i.e. pjit) and donates the state. Placement works on several
  JAX processes (``jax.make_array_from_callback`` from each process's rows).
- :func:`lr_schedule` and :func:`make_optimizer`: linear warmup + cosine decay, gradient clipping,
  Adam / AdamW (optax).
- :class:`CheckpointStage`: the train state pytree (a dict of arrays: params, optimizer state, step,
  RNG key data) flattened to ``leaf_NNNNN`` arrays in a :class:`~faiser.run.checkpoint.CheckpointStore`,
  with JSON metadata: a ``kind`` tag, the caller's configs, optionally the history so far and any
  per-save extras (e.g. a data loader's position).
- :class:`History`: per-step metrics as host scalars; a non-finite loss raises
  :class:`~faiser.errors.TrainingError` naming the step.
- :func:`run_loop`: the loop itself: steps ``start .. steps - 1`` over an iterable of batches, one step
  in flight (the metrics of step ``s`` are read after step ``s + 1`` is dispatched), a tqdm progress bar,
  checkpoints every ``every`` steps and at the end.

Batches and random draws of step ``s`` must depend only on ``(seed, s)`` (or on a checkpointed loader
position): a run resumed from a checkpoint then continues exactly as if never stopped.

Typical use::

    dp = DataParallel(make_mesh(4), batch_size=32)
    tx = make_optimizer(lr_schedule(1e-3, steps, warmup_steps=50), grad_clip=1.0)
    step = dp.jit_step(my_step, dp.batch, dp.batch)        # my_step(state, x, y) -> (state, metrics)
    stage = CheckpointStage("ckpt", "my-model", template, meta={"config": cfg.to_json()})
    state, hist = run_loop(step, ((dp.shard(x[i]), dp.shard(y[i])) for i in ids), dp.replicate(template),
                           steps=steps, checkpoint=stage, every=100)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from faiser.errors import CheckpointError, DistributedError, TrainingError
from faiser.parallel.mesh import DATA, make_mesh

__all__ = [
    "CheckpointStage",
    "DataParallel",
    "History",
    "global_norm",
    "host",
    "lr_schedule",
    "make_optimizer",
    "pure",
    "run_loop",
    "state_to_tree",
    "tree_to_state",
]


# ---- small helpers ------------------------------------------------------------------------------------
def pure(state: nnx.State) -> dict:
    """An NNX state as a pure dict of arrays (what train states and checkpoints hold)."""
    return nnx.to_pure_dict(state) if hasattr(nnx, "to_pure_dict") else state.to_pure_dict()


def global_norm(tree) -> jax.Array:
    """The global L2 norm of a pytree of arrays (e.g. the gradients)."""
    tree_mod = getattr(optax, "tree", None)
    if tree_mod is not None and hasattr(tree_mod, "norm"):
        return tree_mod.norm(tree)
    return optax.global_norm(tree)  # pragma: no cover - older optax


def host(x) -> np.ndarray:
    """A host copy of a (replicated, possibly multi-process) array."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(x.addressable_data(0))
    return np.asarray(x)


# ---- optimizer ----------------------------------------------------------------------------------------
def lr_schedule(lr: float, steps: int, warmup_steps: int = 0, end_lr: float = 0.0) -> optax.Schedule:
    """Linear warmup from 0 to ``lr`` over ``warmup_steps`` (none if 0), then cosine decay to ``end_lr``
    (an absolute learning rate) at step ``steps``."""
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0 if warmup_steps else lr, peak_value=lr, warmup_steps=warmup_steps,
        decay_steps=max(steps, warmup_steps + 1), end_value=end_lr,
    )  # fmt: skip


def make_optimizer(
    schedule: optax.Schedule | float,
    *,
    grad_clip: float | None = None,
    weight_decay: float | None = None,
    b1: float = 0.9,
    b2: float = 0.999,
) -> optax.GradientTransformation:
    """``clip_by_global_norm(grad_clip)`` (if set and > 0) then Adam, or AdamW when ``weight_decay`` is
    given (decoupled weight decay; ``0.0`` is AdamW without decay)."""
    parts = []
    if grad_clip:
        parts.append(optax.clip_by_global_norm(grad_clip))
    if weight_decay is None:
        parts.append(optax.adam(schedule, b1=b1, b2=b2))
    else:
        parts.append(optax.adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay))
    return optax.chain(*parts)


# ---- data parallelism ---------------------------------------------------------------------------------
class DataParallel:
    """Shardings of a data-parallel run: the batch over the ``axis`` of ``mesh``, the rest replicated.

    Args:
      mesh: a mesh with an ``axis`` axis (default ``make_mesh()``: every device on one ``data`` axis).
      batch_size: the global batch; checked to divide over the axis (None: not checked).
      axis: the mesh axis the batch is sharded over.

    Raises:
      DistributedError: the mesh has no such axis, or the batch does not divide over it.
    """

    def __init__(self, mesh: Mesh | None = None, batch_size: int | None = None, axis: str = DATA):
        self.mesh = make_mesh() if mesh is None else mesh
        self.axis = axis
        if axis not in self.mesh.axis_names:
            raise DistributedError(f"mesh axes {self.mesh.axis_names} have no data axis {axis!r}")
        self.n_data = int(self.mesh.shape[axis])
        if batch_size is not None and batch_size % self.n_data:
            raise DistributedError(
                f"batch_size {batch_size} does not divide over {self.n_data} devices of axis {axis!r}"
            )
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.batch = self.batch_sharding(0)

    def batch_sharding(self, dim: int = 0) -> NamedSharding:
        """Arrays whose dimension ``dim`` is the batch (e.g. 1 for ``(time, batch, ...)`` sequences)."""
        return NamedSharding(self.mesh, PartitionSpec(*([None] * dim), self.axis))

    def replicate(self, tree):
        """Place a pytree of host or device arrays replicated over the mesh (every leaf gets its own
        buffers, so a state whose leaves shared one can be donated; works on several processes)."""

        def put(a):
            a = np.array(host(a))
            return jax.make_array_from_callback(a.shape, self.replicated, lambda idx: a[idx])

        return jax.tree.map(put, tree)

    def shard(self, a, sharding: NamedSharding | None = None) -> jax.Array:
        """Place a global batch (``sharding`` default: :attr:`batch`): a ``jax.Array`` is resharded if
        needed, a numpy array holds the whole global batch (each process's devices take their rows)."""
        sharding = self.batch if sharding is None else sharding
        if isinstance(a, jax.Array):
            return a if a.sharding == sharding else jax.device_put(a, sharding)
        a = np.asarray(a)
        return jax.make_array_from_callback(a.shape, sharding, lambda idx: a[idx])

    def jit_step(self, step: Callable, *batch_shardings: NamedSharding, donate: bool = True) -> Callable:
        """``jax.jit(step)`` for ``step(state, *batch) -> (state, metrics)``: state and metrics
        replicated, the batch arguments with ``batch_shardings``; the state argument is donated."""
        return jax.jit(
            step,
            in_shardings=(self.replicated, *batch_shardings),
            out_shardings=(self.replicated, self.replicated),
            donate_argnums=(0,) if donate else (),
        )


# ---- history ------------------------------------------------------------------------------------------
class History:
    """Per-step metrics of a training run as host scalars, keyed by name.

    Args:
      name: used in error messages.
      initial: metrics of earlier steps (e.g. restored from a checkpoint) to continue.
      with_step: also record the step number under ``"step"``.
    """

    def __init__(self, name: str = "train", initial: Mapping[str, Sequence] | None = None, with_step: bool = False):
        self.name = name
        self.with_step = with_step
        self.values: dict[str, list] = {k: list(v) for k, v in (initial or {}).items()}

    def record(self, step: int, metrics: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Append one step's metrics (device arrays are copied to the host); returns the host values.

        Raises:
          TrainingError: the ``loss`` is not finite.
        """
        vals = {k: host(v) for k, v in metrics.items()}
        loss = float(vals["loss"])
        if not math.isfinite(loss):
            lr = f" (lr {float(vals['lr']):.3g})" if "lr" in vals else ""
            raise TrainingError(f"{self.name}: non-finite loss {loss} at step {step}{lr}")
        if self.with_step:
            self.values.setdefault("step", []).append(step)
        for k, v in vals.items():
            self.values.setdefault(k, []).append(v)
        return vals

    def arrays(self) -> dict[str, np.ndarray]:
        """Every metric as a numpy array over the recorded steps."""
        return {k: np.asarray(v) for k, v in self.values.items()}

    def to_json(self) -> dict[str, list]:
        """JSON-ready lists (what checkpoints store)."""
        return {k: np.asarray(v).tolist() for k, v in self.values.items()}


# ---- checkpoints --------------------------------------------------------------------------------------
def state_to_tree(state) -> dict[str, Any]:
    """A train state as a flat ``{"leaf_00000": array, ...}`` dict (what checkpoints store)."""
    return {f"leaf_{i:05d}": a for i, a in enumerate(jax.tree.leaves(state))}


def tree_to_state(tree: Mapping[str, Any], template):
    """Inverse of :func:`state_to_tree`, given a ``template`` of the state's structure."""
    treedef = jax.tree.structure(template)
    return jax.tree.unflatten(treedef, [tree[f"leaf_{i:05d}"] for i in range(treedef.num_leaves)])


class CheckpointStage:
    """Checkpoints of one training stage (see the module docstring).

    Args:
      store: a :class:`~faiser.run.checkpoint.CheckpointStore` (not closed by :meth:`close`), or the
        directory of one (opened with ``keep``), or None (nothing saved).
      kind: tag written into every checkpoint and required on restore.
      template: a pytree of arrays or ``jax.ShapeDtypeStruct`` (shardings honoured) of the train state.
      meta: fixed JSON metadata of every save (e.g. the configs).
      keep: checkpoints kept when ``store`` is a directory.
      with_history: :func:`run_loop` saves the history so far under ``"history"``.
    """

    def __init__(
        self, store, kind: str, template, *, meta: Mapping[str, Any] | None = None, keep: int | None = 3,
        with_history: bool = False,
    ):  # fmt: skip
        self.kind = kind
        self.template = template
        self.meta = dict(meta or {})
        self.with_history = with_history
        self._owns = False
        if store is None or hasattr(store, "save"):
            self.store = store
        else:
            from faiser.run.checkpoint import CheckpointStore

            self.store = CheckpointStore(Path(store), keep=keep)
            self._owns = True

    def steps(self) -> list[int]:
        """Steps on disk (empty without a store)."""
        return self.store.steps() if self.store is not None else []

    def save(self, step: int, state, history: History | None = None, extra: Mapping[str, Any] | None = None) -> None:
        """Save ``state`` as ``step`` with the fixed metadata, ``extra`` and (``with_history``) ``history``."""
        if self.store is None:
            return
        meta = {"kind": self.kind, **self.meta, **(dict(extra) if extra else {})}
        if self.with_history and history is not None:
            meta["history"] = history.to_json()
        self.store.save(int(step), state_to_tree(state), meta)

    def restore(self, step: int | None = None) -> tuple[Any, dict]:
        """``(state, meta)`` of ``step`` (default: the newest valid one); ``meta["step"]`` is its step.

        Raises:
          CheckpointError: no store or checkpoint, a mismatching state, or one of another ``kind``.
        """
        if self.store is None:
            raise CheckpointError("no checkpoint store to restore from")
        tree, meta = self.store.restore(step=step, target=state_to_tree(self.template))
        if meta.get("kind") != self.kind:
            raise CheckpointError(
                f"checkpoint step {meta.get('step')} in {self.store.directory} is a {meta.get('kind')!r} "
                f"checkpoint, not {self.kind!r}"
            )
        return tree_to_state(tree, self.template), meta

    def close(self) -> None:
        """Wait for a pending save; close the store if this stage opened it."""
        if self.store is None:
            return
        if self._owns:
            self.store.close()
        else:
            self.store.wait()


# ---- the loop -----------------------------------------------------------------------------------------
def run_loop(
    step_fn: Callable,
    batches: Iterable[Sequence[Any]],
    state,
    *,
    steps: int,
    start: int = 0,
    name: str = "train",
    progress: bool = True,
    history: History | None = None,
    checkpoint: CheckpointStage | None = None,
    every: int = 0,
    extra_meta: Callable[[], Mapping[str, Any]] | None = None,
    show: Sequence[str] = ("loss",),
) -> tuple[Any, History]:
    """Run ``state, metrics = step_fn(state, *batch)`` for steps ``start .. steps - 1``.

    Args:
      step_fn: the (compiled) step; ``metrics`` must hold a scalar ``loss``.
      batches: one tuple of step arguments per step, ``steps - start`` of them.
      state: the train state at step ``start`` (donated to the first step).
      steps, start: the final step count and the step ``state`` is at.
      name: progress-bar label and error-message prefix.
      progress: show a tqdm progress bar.
      history: continue this history (default: a new one).
      checkpoint: save every ``every`` steps (not at the end: that is always saved once when at
        least one step ran) with ``extra_meta()`` merged into the metadata; closed on exit.
      show: metrics shown on the progress bar.

    Returns ``(state, history)``.

    Raises:
      TrainingError: a non-finite loss (the step is named), or ``batches`` ran out early.
    """
    from tqdm.auto import tqdm

    hist = History(name) if history is None else history
    pending: tuple[int, Any] | None = None
    bar = tqdm(total=steps, initial=start, desc=name, unit="step", disable=not progress, dynamic_ncols=True)

    def flush() -> None:
        nonlocal pending
        if pending is not None:
            vals = hist.record(*pending)
            pending = None
            bar.set_postfix({k: f"{float(vals[k]):.4g}" for k in show if k in vals}, refresh=False)

    def save(s: int) -> None:
        checkpoint.save(s, state, hist, extra_meta() if extra_meta is not None else None)

    try:
        s = start
        for batch in batches:
            state, metrics = step_fn(state, *batch)
            flush()  # the previous step's metrics: keeps one step in flight
            pending = (s, metrics)
            s += 1
            bar.update(1)
            if checkpoint is not None and every and s % every == 0 and s < steps:
                flush()
                save(s)
        flush()
        if s < steps:
            raise TrainingError(f"{name}: data ran out after step {s} of {steps}")
        if checkpoint is not None and s > start:
            save(s)
    finally:
        bar.close()
        if checkpoint is not None:
            checkpoint.close()
    return state, hist
