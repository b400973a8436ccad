"""Data-parallel training of the 3D VQ-VAE (:class:`~faiser.models.vqvae3d.VQVAE3D`) with optax.

One ``jax.jit`` train step with explicit shardings, built from the training toolkit
:mod:`faiser.train.loop` (:class:`~faiser.train.loop.DataParallel`, :func:`~faiser.train.loop.run_loop`,
:class:`~faiser.train.loop.CheckpointStage`): the batch is sharded over the ``data`` axis of a mesh
from :func:`faiser.parallel.mesh.make_mesh`, the parameters, optimizer state and codebook are
replicated. The same code runs on one device, on N local devices and on several JAX processes
(batches are assembled with ``jax.make_array_from_callback`` from each process's rows). Every loss
and codebook statistic is a *global-batch* mean or sum, so a run on N devices matches a run on one
to float rounding.

The step::

    loss = sum_cells w (x_rec - x)^2 / sum_cells w  +  beta * commitment     (global-batch means)
    params <- AdamW(clip(grad loss))                                            (optax, schedule)
    codebook <- EMA of the batch's encoder outputs, dead codes restarted       (not the optimizer)

with ``w = mask * (1 + signal_weight * [x > min(x) of its window])`` (``signal_weight`` > 0 favours
cells above the normalization floor). During the first ``vq_warmup_steps`` steps the decoder gets the
encoder output unquantized (autoencoder warmup; the codebook EMA already tracks the encodings). On
the first quantized step, codes that no vector of the batch uses are re-initialised from the batch's
encoder outputs (a data-dependent codebook initialisation).

The train state is a pytree of arrays (a dict)::

    {"params": pure dict of the nnx.Param arrays, "codebook": pure dict of the quantizer's EMA state,
     "opt_state": optax state, "step": int32 (), "key": uint32 key data}

so it is checkpointed as is with :class:`faiser.run.checkpoint.CheckpointStore`. Batches of
step ``s`` depend only on ``(seed, s)`` (array data) or on the loader's state (a
:class:`~faiser.data.loaders.Loader`), and every random draw of the step is ``fold_in(key, s)``:
a run resumed from a checkpoint continues exactly as if never stopped.

Typical use::

    result = train_vqvae(windows, VQVAE3DConfig(window=32), VQVAETrainConfig(steps=2000), mesh=make_mesh())
    encode, decode = inference_fns(result.model)
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from faiser.config import JsonConfig
from faiser.errors import CheckpointError, ConfigError
from faiser.models.vqvae3d import VQVAE3D, VQVAE3DConfig
from faiser.parallel.mesh import DATA
from faiser.train.loop import (
    CheckpointStage,
    DataParallel,
    History,
    global_norm,
    host,
    lr_schedule,
    make_optimizer,
    pure,
    run_loop,
    state_to_tree,
    tree_to_state,
)

__all__ = ["TrainResult", "VQVAETrainConfig", "VQVAETrainer", "train_vqvae"]


@dataclasses.dataclass(frozen=True)
class VQVAETrainConfig(JsonConfig):
    """Optimisation settings of :func:`train_vqvae` (frozen, JSON-serialisable).

    Attributes:
      steps: optimizer steps in total (a resumed run stops at the same step).
      batch_size: global batch (windows per step, summed over devices and processes); a multiple
        of the mesh's ``data`` axis size.
      lr: peak learning rate; warmup_steps: linear warmup from 0; lr_final: final learning rate as
        a fraction of ``lr`` (cosine decay).
      weight_decay: AdamW decoupled weight decay (0: Adam).
      b1, b2: Adam moments.
      grad_clip: global-norm clip of the gradients (None or 0: none).
      signal_weight: extra reconstruction weight of cells above their window's minimum.
      restart_every: dead-code restart check every this many steps (0: never restart).
      data_init: on the first quantized step, restart every code no vector of the batch uses (a
        data-dependent codebook initialisation).
      vq_warmup_steps: steps during which the decoder gets the encoder output itself (a plain
        autoencoder, no commitment loss; the codebook EMA still follows the encodings); quantization
        starts at this step. Avoids the slow start of a VQ bottleneck on an untrained encoder.
      seed: seed of the parameters, of the data order (array data) and of the restarts.
      data_axis: name of the mesh axis the batch is sharded over.
    """

    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 50
    lr_final: float = 0.1
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    grad_clip: float | None = 1.0
    signal_weight: float = 0.0
    restart_every: int = 1
    data_init: bool = True
    vq_warmup_steps: int = 0
    seed: int = 0
    data_axis: str = DATA

    def __post_init__(self):
        if min(self.steps, self.warmup_steps, self.restart_every, self.vq_warmup_steps) < 0 or self.batch_size < 1:
            raise ConfigError("steps, warmup_steps, restart_every >= 0 and batch_size >= 1 are required")
        if not (self.lr > 0 and 0 <= self.lr_final <= 1 and self.weight_decay >= 0 and self.signal_weight >= 0):
            raise ConfigError("lr > 0, 0 <= lr_final <= 1, weight_decay >= 0 and signal_weight >= 0 are required")


class TrainResult(NamedTuple):
    """What :func:`train_vqvae` returns.

    Attributes:
      model: the trained :class:`VQVAE3D` (host-independent copy of the final state).
      state: the final train state (pytree of arrays; see the module docstring).
      history: per-step metrics of the steps run in this call, numpy arrays keyed by name
        (``step``, ``loss``, ``recon``, ``commit``, ``perplexity``, ``usage``, ``restarted``,
        ``grad_norm``, ``lr``).
      seconds: wall time of the training loop (compilation included).
      resumed_from: the checkpoint step this call started from (None: a fresh run).
    """

    model: VQVAE3D
    state: dict[str, Any]
    history: dict[str, np.ndarray]
    seconds: float
    resumed_from: int | None


KIND = "faiser-vqvae3d-train"


class VQVAETrainer:
    """The compiled, sharded train step of a :class:`VQVAE3D` and its state (see the module docstring).

    Args:
      model_config: the architecture.
      train_config: the optimisation settings.
      mesh: a mesh with a ``train_config.data_axis`` axis (default: ``make_mesh()`` over all devices).

    Raises:
      DistributedError: the mesh has no data axis, or the batch does not divide over it.
    """

    def __init__(self, model_config: VQVAE3DConfig, train_config: VQVAETrainConfig, mesh: Mesh | None = None):
        self.model_config = model_config
        self.config = train_config
        self.dp = DataParallel(mesh, train_config.batch_size, train_config.data_axis)
        self.mesh = self.dp.mesh
        self.replicated = self.dp.replicated
        self.batch_sharding = self.dp.batch
        model = VQVAE3D(model_config, rngs=nnx.Rngs(train_config.seed))
        self.graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        self._param_template = params
        self._rest_template = rest
        self.n_params = int(sum(np.size(a) for a in jax.tree.leaves(params)))
        self.tx = self._optimizer()
        self._step = self.dp.jit_step(self._train_step, self.batch_sharding, self.batch_sharding)

    # -- construction -----------------------------------------------------------------------------
    def _schedule(self) -> optax.Schedule:
        c = self.config
        return lr_schedule(c.lr, c.steps, min(c.warmup_steps, max(c.steps - 1, 0)), c.lr * c.lr_final)

    def _optimizer(self) -> optax.GradientTransformation:
        c = self.config
        return make_optimizer(self._schedule(), grad_clip=c.grad_clip, weight_decay=c.weight_decay, b1=c.b1, b2=c.b2)

    def _host_state(self) -> dict[str, Any]:
        params = pure(self._param_template)
        return {
            "params": params,
            "codebook": pure(self._rest_template),
            "opt_state": self.tx.init(params),
            "step": np.zeros((), np.int32),
            "key": np.asarray(jax.random.key_data(jax.random.key(self.config.seed))),
        }

    def init_state(self) -> dict[str, Any]:
        """The step-0 train state (deterministic given ``seed``), replicated over the mesh."""
        return self.replicate(self._host_state())

    def replicate(self, tree):
        """Place a pytree of host or device arrays replicated over the mesh (works on several processes)."""
        return self.dp.replicate(tree)

    def abstract_state(self) -> dict[str, Any]:
        """``jax.ShapeDtypeStruct`` pytree of the train state, replicated (a checkpoint restore target)."""
        return jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype, sharding=self.replicated),
            self._host_state(),
        )

    def model(self, state: Mapping[str, Any]) -> VQVAE3D:
        """A :class:`VQVAE3D` holding ``state``'s parameters and codebook (host copies)."""
        params = jax.tree.map(lambda a: jnp.asarray(host(a)), state["params"])
        rest = jax.tree.map(lambda a: jnp.asarray(host(a)), state["codebook"])
        return nnx.merge(self.graphdef, nnx.State(params), nnx.State(rest))

    # -- the step ---------------------------------------------------------------------------------
    def _train_step(self, state: dict, x: jax.Array, mask: jax.Array) -> tuple[dict, dict]:
        c = self.config
        step = state["step"]
        key = jax.random.fold_in(jax.random.wrap_key_data(state["key"]), step)
        x = x.astype(jnp.float32)
        if x.ndim == 4:
            x = x[..., None]
        m = mask.astype(jnp.float32)
        lo = jnp.min(x, axis=(1, 2, 3, 4), keepdims=True)
        w = m[:, None, None, None, None] * (1.0 + c.signal_weight * (x > lo + 1e-6).astype(jnp.float32))
        w = jnp.broadcast_to(w, x.shape)
        wsum = jnp.maximum(jnp.sum(w), 1e-12)

        def loss_fn(params):
            model = nnx.merge(self.graphdef, nnx.State(params), nnx.State(state["codebook"]))
            z = model.encode_continuous(x)
            q = model.quantizer(z, weights=jnp.broadcast_to(m[:, None, None, None], z.shape[:-1]))
            warm = step < c.vq_warmup_steps  # autoencoder warmup: the decoder sees z itself
            rec = model.decoder(jnp.where(warm, z, q.quantized))
            recon = jnp.sum(w * (rec - x) ** 2) / wsum
            return recon + jnp.where(warm, 0.0, q.commitment_loss), (recon, q)

        (loss, (recon, q)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = self.tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        model = nnx.merge(self.graphdef, nnx.State(params), nnx.State(state["codebook"]))
        vq_w = jnp.broadcast_to(m[:, None, None, None], q.indices.shape)
        do_restart = (c.restart_every > 0) & (step % max(c.restart_every, 1) == 0)
        info = model.quantizer.update_codebook(
            q.encodings,
            q.indices,
            key=key,
            weights=vq_w,
            restart_unused=(step == c.vq_warmup_steps) & c.data_init,
            restart=do_restart,
        )
        _, _, rest = nnx.split(model, nnx.Param, ...)
        codebook = pure(rest)
        new_state = {
            "params": params,
            "codebook": codebook,
            "opt_state": opt_state,
            "step": step + 1,
            "key": state["key"],
        }
        metrics = {
            "loss": loss,
            "recon": recon,
            "commit": q.commitment_loss,
            "perplexity": q.perplexity,
            "usage": q.usage,
            "restarted": info["restarted"],
            "grad_norm": global_norm(grads),
            "lr": self._schedule()(step),
        }
        return new_state, metrics

    def place_batch(self, x, mask=None) -> tuple[jax.Array, jax.Array]:
        """Shard a global batch over the mesh's data axis.

        ``x``: ``(batch, n, n, n[, 1])``; a ``jax.Array`` (e.g. a loader's sharded batch) is resharded
        if needed, a numpy array must hold the whole global batch (each process's devices take their
        rows). ``mask``: ``(batch,)`` bool, default all True.
        """
        b = self.config.batch_size
        if x.shape[0] != b:
            raise ConfigError(f"batch of {x.shape[0]} windows, train_config.batch_size is {b}")
        if mask is None:
            mask = np.ones((b,), bool)
        return self.dp.shard(x), self.dp.shard(mask)

    def step(self, state: dict[str, Any], x, mask=None) -> tuple[dict[str, Any], dict[str, jax.Array]]:
        """One train step: ``(state, metrics)``; ``state`` is donated (do not reuse the argument)."""
        xs, ms = self.place_batch(x, mask)
        return self._step(state, xs, ms)

    # -- checkpoints ------------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {"model_config": self.model_config.to_json(), "train_config": self.config.to_json()}

    def checkpoint_stage(self, store, keep: int | None = 3) -> CheckpointStage:
        """The :class:`~faiser.train.loop.CheckpointStage` of this trainer's state in ``store`` (a
        :class:`~faiser.run.checkpoint.CheckpointStore` or its directory)."""
        return CheckpointStage(store, KIND, self.abstract_state(), meta=self._meta(), keep=keep)

    def state_to_tree(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """The train state as a flat ``{"leaf_00000": array, ...}`` dict (what checkpoints store)."""
        return state_to_tree(state)

    def tree_to_state(self, tree: Mapping[str, Any]) -> dict[str, Any]:
        """Inverse of :meth:`state_to_tree` (arrays placed replicated over the mesh)."""
        return self.replicate(tree_to_state(tree, self.abstract_state()))

    def save(self, store, state: Mapping[str, Any], extra_meta: Mapping[str, Any] | None = None) -> int:
        """Save ``state`` to a :class:`~faiser.run.checkpoint.CheckpointStore` as its step; returns the step."""
        step = int(host(state["step"]))
        self.checkpoint_stage(store).save(step, state, extra=extra_meta)
        return step

    def restore(self, store, step: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(state, meta)`` from a checkpoint store (newest valid step by default).

        Raises:
          CheckpointError: no checkpoint, or one written for another model or train config.
        """
        state, meta = self.checkpoint_stage(store).restore(step)
        if VQVAE3DConfig.from_json(meta["model_config"]) != self.model_config:
            raise CheckpointError("checkpoint was written for a different VQVAE3DConfig")
        saved = VQVAETrainConfig.from_json(meta["train_config"])
        if dataclasses.replace(saved, steps=self.config.steps) != self.config:
            raise CheckpointError("checkpoint was written with different training settings (other than steps)")
        return self.replicate(state), meta


# ---- data ---------------------------------------------------------------------------------------------
class _ArrayBatches:
    """Global batches of an in-memory array: step ``s`` is a pure function of ``(seed, s)``."""

    def __init__(self, data: np.ndarray, batch_size: int, seed: int):
        self.data = data
        self.batch_size = batch_size
        self.seed = seed
        self.n = data.shape[0]
        if self.n < batch_size:
            raise ConfigError(f"{self.n} windows are fewer than batch_size {batch_size}")
        self.per_epoch = self.n // batch_size
        self._orders: dict[int, np.ndarray] = {}

    def ids(self, step: int) -> np.ndarray:
        epoch, pos = divmod(step, self.per_epoch)
        if epoch not in self._orders:
            self._orders = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
        return np.sort(self._orders[epoch][pos * self.batch_size : (pos + 1) * self.batch_size])

    def __call__(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        return self.data[self.ids(step)], np.ones((self.batch_size,), bool)


def _is_loader(data) -> bool:
    return all(hasattr(data, a) for a in ("stream", "state_dict", "load_state_dict"))


def _batches(data, start: int, n_steps: int, batch_size: int, seed: int) -> Iterator[tuple[Any, Any]]:
    if isinstance(data, np.ndarray | jax.Array):
        arr = _ArrayBatches(np.asarray(data), batch_size, seed)
        for s in range(start, start + n_steps):
            yield arr(s)
        return
    if _is_loader(data):
        with data.stream(n_steps) as it:
            for b in it:
                yield b["f"], b.get("mask")
        return
    count = 0
    for b in data:
        if count >= n_steps:
            return
        yield (b["f"], b.get("mask")) if isinstance(b, Mapping) else (b, None)
        count += 1


# ---- the loop -----------------------------------------------------------------------------------------
def train_vqvae(
    data: np.ndarray | jax.Array | Iterable,
    model_config: VQVAE3DConfig,
    train_config: VQVAETrainConfig,
    *,
    mesh: Mesh | None = None,
    progress: bool = True,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 0,
    keep: int = 3,
    resume: bool = True,
    trainer: VQVAETrainer | None = None,
) -> TrainResult:
    """Train a :class:`VQVAE3D` data-parallel on ``mesh``; returns a :class:`TrainResult`.

    Args:
      data: normalized windows ``(N, n, n, n[, 1])`` (numpy: every process passes the same array;
        batch ``s`` is drawn from an epoch permutation of ``default_rng([seed, epoch])``), or a
        :class:`~faiser.data.loaders.Loader` (batches ``{"f", "mask"}``; its position is
        checkpointed), or any iterable of such dicts or of arrays (not resumable mid-stream).
      model_config, train_config: the model and the optimisation.
      mesh: mesh with a data axis (default: every device).
      progress: show a tqdm progress bar.
      checkpoint_dir: save to / resume from a :class:`~faiser.run.checkpoint.CheckpointStore` here.
      checkpoint_every: save every this many steps (0: only at the end); keep: checkpoints kept.
      resume: continue from the newest valid checkpoint in ``checkpoint_dir`` if there is one.
      trainer: reuse an existing :class:`VQVAETrainer` (its compiled step) with the same configs.

    Raises:
      TrainingError: a non-finite loss (the step is named).
      CheckpointError: a checkpoint of another model / config in ``checkpoint_dir``.
    """
    tr = trainer or VQVAETrainer(model_config, train_config, mesh)
    if tr.model_config != model_config or tr.config != train_config:
        raise ConfigError("trainer was built for other configs")
    c = train_config
    stage = None
    resumed_from = None
    state = None
    if checkpoint_dir is not None:
        stage = tr.checkpoint_stage(checkpoint_dir, keep=keep)
        try:
            if resume and stage.steps():
                state, meta = tr.restore(stage.store)
                resumed_from = int(meta["step"])
                if _is_loader(data):
                    if "loader" not in meta:
                        raise CheckpointError("checkpoint holds no loader position to resume the loader from")
                    data.load_state_dict(meta["loader"])
                elif not isinstance(data, np.ndarray | jax.Array):
                    warnings.warn("resuming with a plain iterable: its position is not restored", stacklevel=2)
        except BaseException:
            stage.close()
            raise
    if state is None:
        state = tr.init_state()
    start = int(host(state["step"]))

    def meta_extra() -> dict:
        return {"loader": data.state_dict()} if _is_loader(data) else {}

    t0 = time.perf_counter()
    state, hist = run_loop(
        tr.step, _batches(data, start, max(c.steps - start, 0), c.batch_size, c.seed), state, steps=c.steps,
        start=start, name="vqvae", progress=progress, history=History("vqvae", with_step=True), checkpoint=stage,
        every=checkpoint_every, extra_meta=meta_extra, show=("loss", "perplexity"),
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    return TrainResult(tr.model(state), state, hist.arrays(), seconds, resumed_from)
