"""Training of the latent solver: the 6D VQ-VAE (stage 1), then the latent propagator (stage 2).

Stage 1 fits :class:`~faiser.models.vqvae6d.PhaseSpaceVQVAE` on every snapshot of the training
trajectories: loss = MSE of the normalized VDF values + ``field_weight`` x MSE of the normalized
fields + ``moment_weight`` x relative error of the per-cell moments (n, n V, n v^2) + commitment;
the codebook follows the encoder outputs by EMA (dead codes restarted).

Stage 2 freezes the VQ-VAE, encodes every snapshot once and trains
:class:`~faiser.models.propagator.LatentPropagator` on trajectory windows: from the latent state at
snapshot ``t0`` it unrolls ``unroll`` latent steps of ``stride`` snapshots each and, at every step,
compares with the encoded target (latent MSE), the decoded f with the true f and the decoded
moments with the true ones (gradients flow through the frozen decoder into the propagator).
Ingredients, each switchable for the baselines of ``faiser bench latent``:

- ``unroll = 1``: the plain one-step propagator; ``unroll > 1``: back-propagation through the unroll;
- ``pushforward``: the gradient is stopped between unrolled steps (the model is trained on its own
  predicted inputs without back-propagating through them; Brandstetter et al. 2022);
- ``noise_std``: Gaussian noise (in units of the latent standard deviation) on the initial state;
- ``requantize``: snap every predicted state to the codebook (straight-through);
- ``remat``: each unrolled step is a ``jax.checkpoint`` inside ``lax.scan``, so the activation
  memory of a train step does not grow with the unroll length (only the latent carries do).

Both stages run data-parallel: the batch is sharded over the ``data`` axis of a mesh of ``devices``
devices, parameters and optimizer state replicated, one ``jax.jit`` step with explicit shardings.
Batches and noise of step ``s`` depend only on ``(seed, s)``: the same seed gives the same model.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from faiser.config import JsonConfig
from faiser.errors import CheckpointError, ConfigError, TrainingError
from faiser.latent.data import Normalization, Trajectories, load_trajectories
from faiser.latent.model import LatentModel, save_latent_model
from faiser.models.propagator import LatentPropagator, PropagatorConfig
from faiser.models.vqvae6d import PhaseSpaceVQVAE, PhaseSpaceVQVAEConfig
from faiser.parallel.mesh import DATA, make_mesh
from faiser.train.vqvae import _global_norm, _pure

__all__ = ["LatentTrainConfig", "train_latent", "train_latent_files", "moment_loss", "PERIODIC_CASES"]

# cases whose every boundary is periodic and without inflow: circular padding, closed mass budget
PERIODIC_CASES = frozenset({"landau", "two_stream", "bump_on_tail", "free_streaming", "alfven", "larmor", "exb"})


@dataclasses.dataclass(frozen=True)
class LatentTrainConfig(JsonConfig):
    """Everything ``faiser train-latent --set`` can change (frozen, JSON-serialisable).

    Architecture (see :class:`PhaseSpaceVQVAEConfig`, :class:`PropagatorConfig`):
      velocity_stages, spatial_stages: stride-2 stages (-1: as many as fit, at most 2 / 1);
      velocity_channels, cell_dim, hidden, n_res, code_dim, codebook_size, code_groups; prop_hidden, prop_blocks;
      padding: ``auto`` (circular for periodic cases), ``zeros`` or ``circular``.
    Stage 1: ae_steps, ae_batch, ae_lr, vq_warmup_steps, field_weight, moment_weight, f_space_weight
      (see :func:`recon_loss`).
    Stage 2: prop_steps, prop_batch, prop_lr, stride (snapshots per latent step), unroll, pushforward,
      noise_std, latent_weight, f_weight (decoded-f loss; moment_weight also applies), requantize, remat.
    conditions: ``auto`` (config entries that vary across the runs), ``none``, or comma-separated keys.
    species: which species (default: the datasets' only one). devices: data-parallel devices.
    checkpoint_every: checkpoint each stage every this many steps (and at its end) when a checkpoint
      directory is given (``faiser train-latent`` uses ``MODEL_DIR/checkpoints``; ``--resume``).
    seed: parameters, batches and noise.
    """

    velocity_stages: int = -1
    spatial_stages: int = -1
    velocity_channels: int = 16
    cell_dim: int = 32
    hidden: int = 64
    n_res: int = 2
    code_dim: int = 32
    codebook_size: int = 256
    code_groups: int = 8
    prop_hidden: int = 64
    prop_blocks: int = 3
    padding: str = "auto"
    ae_steps: int = 600
    ae_batch: int = 8
    ae_lr: float = 5e-3
    vq_warmup_steps: int = 100
    field_weight: float = 1.0
    moment_weight: float = 1.0
    f_space_weight: float = 1.0
    prop_steps: int = 600
    prop_batch: int = 8
    prop_lr: float = 1e-3
    stride: int = 1
    unroll: int = 4
    pushforward: bool = False
    noise_std: float = 0.0
    latent_weight: float = 1.0
    f_weight: float = 1.0
    requantize: bool = False
    remat: bool = True
    conditions: str = "auto"
    species: str = ""
    devices: int = 1
    checkpoint_every: int = 0
    seed: int = 0

    def __post_init__(self):
        if min(self.ae_steps, self.prop_steps, self.vq_warmup_steps) < 0:
            raise ConfigError("ae_steps, prop_steps and vq_warmup_steps must be >= 0")
        if min(self.ae_batch, self.prop_batch, self.stride, self.unroll, self.devices) < 1:
            raise ConfigError("ae_batch, prop_batch, stride, unroll and devices must be >= 1")
        if min(self.ae_lr, self.prop_lr) <= 0 or min(self.noise_std, self.field_weight, self.moment_weight,
                                                    self.latent_weight, self.f_weight) < 0:  # fmt: skip
            raise ConfigError("learning rates must be > 0 and loss weights and noise_std >= 0")
        if self.padding not in ("auto", "zeros", "circular"):
            raise ConfigError(f"padding must be auto, zeros or circular, got {self.padding!r}")


def _auto_stages(shape: Sequence[int], most: int, keep: int) -> int:
    """Largest s <= most such that every axis longer than 1 divides by 2**s and keeps >= keep cells."""
    for s in range(most, -1, -1):
        if all(n == 1 or (n % 2**s == 0 and n // 2**s >= keep) for n in shape):
            return s
    return 0


def model_configs(
    data: Trajectories, cfg: LatentTrainConfig, n_cond: int
) -> tuple[PhaseSpaceVQVAEConfig, PropagatorConfig]:
    """The architectures for ``data``'s grid (stages and padding resolved)."""
    return model_configs_for(tuple(data.f.shape[2:5]), tuple(data.f.shape[5:8]), data.case, cfg, n_cond)


def model_configs_for(
    spatial: tuple[int, ...], velocity: tuple[int, ...], case: str, cfg: LatentTrainConfig, n_cond: int
) -> tuple[PhaseSpaceVQVAEConfig, PropagatorConfig]:
    """The architectures for a grid of ``spatial`` cells and ``velocity`` meshes of case ``case``."""
    vs = cfg.velocity_stages if cfg.velocity_stages >= 0 else _auto_stages(velocity, 2, 4)
    ss = cfg.spatial_stages if cfg.spatial_stages >= 0 else _auto_stages(spatial, 1, 4)
    pad = cfg.padding if cfg.padding != "auto" else ("circular" if case in PERIODIC_CASES else "zeros")
    vq = PhaseSpaceVQVAEConfig(
        spatial_shape=spatial, velocity_shape=velocity, n_fields=6, velocity_stages=vs,
        velocity_channels=cfg.velocity_channels, cell_dim=cfg.cell_dim, spatial_stages=ss, hidden=cfg.hidden,
        n_res=cfg.n_res, code_dim=cfg.code_dim, codebook_size=cfg.codebook_size, code_groups=cfg.code_groups,
        padding=pad,
    )  # fmt: skip
    prop = PropagatorConfig(
        latent_shape=vq.latent_shape, code_dim=cfg.code_dim, n_cond=n_cond, hidden=cfg.prop_hidden,
        n_blocks=cfg.prop_blocks, padding=pad,
    )  # fmt: skip
    return vq, prop


def velocity_coordinates(shape: Sequence[int]) -> list[jax.Array]:
    """Cell-centre coordinates in [-1, 1] of each velocity axis (broadcastable to the mesh)."""
    out = []
    for i, n in enumerate(shape):
        u = (np.arange(n) + 0.5) / n * 2.0 - 1.0 if n > 1 else np.zeros(1)
        s = [1, 1, 1]
        s[i] = n
        out.append(jnp.asarray(u.reshape(s), jnp.float32))
    return out


def moment_loss(x_rec: jax.Array, x_true: jax.Array) -> jax.Array:
    """Relative squared error of the per-cell moments ``n``, ``n u`` (3) and ``n u^2`` of ``f = x^2``.

    ``x``: ``(..., nvx, nvy, nvz)`` model values (``sqrt(f / f_ref)``); velocities in [-1, 1] per axis.
    Each moment's error is divided by the mean square of the true density (scale-free).
    """
    us = velocity_coordinates(x_true.shape[-3:])
    axes = (-3, -2, -1)

    def mom(x):
        f = jnp.maximum(x, 0.0) ** 2
        n = jnp.sum(f, axis=axes)
        m = [jnp.sum(f * u, axis=axes) for u in us]
        e = jnp.sum(f * (us[0] ** 2 + us[1] ** 2 + us[2] ** 2), axis=axes)
        return jnp.stack([n, *m, e], axis=-1)

    a, b = mom(x_rec), mom(x_true)
    return jnp.mean((a - b) ** 2) / jnp.maximum(jnp.mean(b[..., 0] ** 2), 1e-12)


def recon_loss(x_rec: jax.Array, x_true: jax.Array, x2: float, x4: float, f_space_weight: float) -> jax.Array:
    """Reconstruction loss of model values ``x = sqrt(f / f_ref)``: the MSE of ``x`` over ``mean(x^2)``
    plus ``f_space_weight`` x the MSE of ``f / f_ref = max(x, 0)^2`` over ``mean(x^4)`` (the first weighs
    the tails, the second the peaks that dominate the relative L2 error of f)."""
    loss = jnp.mean((x_rec - x_true) ** 2) / x2
    if f_space_weight:
        loss = loss + f_space_weight * jnp.mean((jnp.maximum(x_rec, 0.0) ** 2 - x_true**2) ** 2) / x4
    return loss


def _optimizer(lr: float, steps: int) -> optax.GradientTransformation:
    warm = min(50, max(steps // 10, 1))
    sched = optax.warmup_cosine_decay_schedule(0.0, lr, warm, max(steps, warm + 1), lr * 0.05)
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(sched))


class _Placer:
    """Mesh, replicated and batch shardings of a data-parallel run."""

    def __init__(self, devices: int, batch: int):
        self.mesh = make_mesh(devices)
        if batch % devices:
            raise ConfigError(f"batch {batch} does not divide over {devices} devices")
        self.rep = NamedSharding(self.mesh, PartitionSpec())
        self.batch = NamedSharding(self.mesh, PartitionSpec(DATA))

    def replicate(self, tree):
        # host copies first: leaves that share a buffer (e.g. codebook and EMA sum) cannot both be donated
        return jax.tree.map(lambda a: jax.device_put(np.array(a), self.rep), tree)

    def shard(self, *arrays):
        return tuple(jax.device_put(np.asarray(a), self.batch) for a in arrays)


class _Stage:
    """Checkpoints of one training stage in ``directory`` (a :class:`CheckpointStore`): the state pytree
    flattened to ``leaf_NNNNN`` arrays, the history so far and the train config as JSON."""

    def __init__(self, directory: Path | None, name: str, cfg: LatentTrainConfig, template, resume: bool):
        self.name, self.cfg, self.store = name, cfg, None
        self.treedef = jax.tree.structure(template)
        self.template = {f"leaf_{i:05d}": np.asarray(a) for i, a in enumerate(jax.tree.leaves(template))}
        self.start, self.state, self.hist = 0, None, {}
        if directory is None:
            return
        from faiser.run.checkpoint import CheckpointStore

        self.store = CheckpointStore(directory, keep=2)
        if resume and self.store.steps():
            tree, meta = self.store.restore(target=self.template)
            if meta.get("kind") != f"faiser-latent-{name}" or meta.get("train_config") != cfg.to_json():
                raise CheckpointError(f"{directory} holds checkpoints of another training run or config")
            self.start = int(meta["step"])
            self.hist = {k: list(v) for k, v in meta.get("history", {}).items()}
            self.state = jax.tree.unflatten(self.treedef, [tree[k] for k in sorted(tree)])

    def save(self, step: int, state, hist: dict) -> None:
        if self.store is None:
            return
        leaves = jax.tree.leaves(jax.device_get(state))
        meta = {"kind": f"faiser-latent-{self.name}", "train_config": self.cfg.to_json(), "history": hist}
        self.store.save(step, {f"leaf_{i:05d}": np.asarray(a) for i, a in enumerate(leaves)}, meta)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def _loop(
    name: str, steps: int, step_fn: Callable, batch_fn: Callable, state, progress: bool, stage: _Stage | None = None,
    every: int = 0,
):  # fmt: skip
    """Run steps ``stage.start .. steps - 1``; checkpoint every ``every`` steps and at the end (``stage``).

    Returns ``(state, history)``; raises :class:`TrainingError` on a non-finite loss."""
    from tqdm.auto import tqdm

    start = stage.start if stage is not None else 0
    hist: dict[str, list] = {k: list(v) for k, v in (stage.hist if stage is not None else {}).items()}
    pending = None
    bar = tqdm(total=steps, initial=start, desc=name, unit="step", disable=not progress, dynamic_ncols=True)

    def record(s, metrics):
        vals = {k: float(v) for k, v in jax.device_get(metrics).items()}
        if not math.isfinite(vals["loss"]):
            raise TrainingError(f"{name}: non-finite loss at step {s}")
        for k, v in vals.items():
            hist.setdefault(k, []).append(v)
        if s % 10 == 0 or s == steps - 1:
            bar.set_postfix(loss=f"{vals['loss']:.4g}")

    try:
        for s in range(start, steps):
            state, metrics = step_fn(state, *batch_fn(s))
            if pending is not None:
                record(*pending)
            pending = (s, metrics)
            bar.update(1)
            if stage is not None and every and (s + 1) % every == 0 and s + 1 < steps:
                record(*pending)
                pending = None
                stage.save(s + 1, state, hist)
        if pending is not None:
            record(*pending)
        if stage is not None and steps > start:
            stage.save(steps, state, hist)
    finally:
        bar.close()
        if stage is not None:
            stage.close()
    return state, {k: np.asarray(v) for k, v in hist.items()}


def train_vqvae6d(
    x: np.ndarray, fields: np.ndarray, vq_cfg: PhaseSpaceVQVAEConfig, cfg: LatentTrainConfig, progress: bool = True,
    checkpoint_dir: Path | None = None, resume: bool = False,
) -> tuple[PhaseSpaceVQVAE, dict]:  # fmt: skip
    """Stage 1: fit the 6D VQ-VAE on snapshots ``x`` ``(N, nx, ny, nz, nv...)`` and fields ``(N, nx, ny, nz, 6)``."""
    place = _Placer(cfg.devices, cfg.ae_batch)
    model = PhaseSpaceVQVAE(vq_cfg, rngs=nnx.Rngs(cfg.seed))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = _optimizer(cfg.ae_lr, cfg.ae_steps)
    p0 = _pure(params)
    init = {
        "params": p0, "codebook": _pure(rest), "opt": tx.init(p0), "step": jnp.zeros((), jnp.int32),
        "key": jax.random.key_data(jax.random.key(cfg.seed)),
    }  # fmt: skip
    stage = _Stage(checkpoint_dir, "vqvae", cfg, init, resume)
    state = place.replicate(stage.state if stage.state is not None else init)
    x2 = float(np.mean(x.astype(np.float64) ** 2)) or 1.0
    x4 = float(np.mean(x.astype(np.float64) ** 4)) or 1.0

    def step(st, xb, fb):
        s = st["step"]
        key = jax.random.fold_in(jax.random.wrap_key_data(st["key"]), s)

        def loss_fn(p):
            m = nnx.merge(graphdef, nnx.State(p), nnx.State(st["codebook"]))
            z = m.encode_continuous(xb, fb)
            q = m.vq(z)
            warm = s < cfg.vq_warmup_steps
            xr, fr = m.decode_latent(jnp.where(warm, z, q.quantized))
            rec = recon_loss(xr, xb, x2, x4, cfg.f_space_weight)
            lf = jnp.mean((fr - fb) ** 2)
            lm = moment_loss(xr, xb)
            loss = rec + cfg.field_weight * lf + cfg.moment_weight * lm + jnp.where(warm, 0.0, q.commitment_loss)
            return loss, (rec, lf, lm, q)

        (loss, (rec, lf, lm, q)), g = jax.value_and_grad(loss_fn, has_aux=True)(st["params"])
        upd, opt = tx.update(g, st["opt"], st["params"])
        params = optax.apply_updates(st["params"], upd)
        m = nnx.merge(graphdef, nnx.State(params), nnx.State(st["codebook"]))
        m.quantizer.update_codebook(q.encodings, q.indices, key=key, restart_unused=s == cfg.vq_warmup_steps)
        _, _, r = nnx.split(m, nnx.Param, ...)
        new = {"params": params, "codebook": _pure(r), "opt": opt, "step": s + 1, "key": st["key"]}
        return new, {"loss": loss, "recon": rec, "fields": lf, "moments": lm, "perplexity": q.perplexity,
                     "grad_norm": _global_norm(g)}  # fmt: skip

    jstep = jax.jit(step, in_shardings=(place.rep, place.batch, place.batch), out_shardings=(place.rep, place.rep),
                    donate_argnums=(0,))  # fmt: skip
    n = x.shape[0]

    def batch(s):
        ids = np.sort(np.random.default_rng([cfg.seed, 1, s]).choice(n, cfg.ae_batch, replace=n < cfg.ae_batch))
        return place.shard(x[ids], fields[ids])

    state, hist = _loop("latent: 6D VQ-VAE", cfg.ae_steps, jstep, batch, state, progress, stage, cfg.checkpoint_every)
    host = jax.device_get(state)
    model = nnx.merge(graphdef, nnx.State(jax.tree.map(jnp.asarray, host["params"])),
                      nnx.State(jax.tree.map(jnp.asarray, host["codebook"])))  # fmt: skip
    return model, hist


def encode_all(model: PhaseSpaceVQVAE, x: np.ndarray, fields: np.ndarray, batch: int = 8) -> np.ndarray:
    """Quantized latent vectors ``(N, Lx, Ly, Lz, code_dim)`` of ``N`` snapshots."""
    gd, st = nnx.split(model)

    @jax.jit
    def enc(st, xb, fb):
        m = nnx.merge(gd, st)
        return m.lookup(m.encode(xb, fb))

    out = [
        np.asarray(enc(st, jnp.asarray(x[i : i + batch]), jnp.asarray(fields[i : i + batch])))
        for i in range(0, len(x), batch)
    ]
    return np.concatenate(out)


def windows(n_runs: int, n_times: int, stride: int, unroll: int) -> np.ndarray:
    """All ``(run, t0)`` starts whose unroll of ``unroll`` steps of ``stride`` snapshots fits in a run."""
    last = n_times - 1 - stride * unroll
    if last < 0:
        raise ConfigError(f"trajectories of {n_times} snapshots are too short for unroll {unroll} x stride {stride}")
    return np.asarray([(r, t) for r in range(n_runs) for t in range(last + 1)], np.int64)


def make_unroll_loss(
    vq: PhaseSpaceVQVAE, prop_graphdef, cfg: LatentTrainConfig, z_var: float, x2: float, x4: float = 1.0
):
    """``loss(prop_params, z0, zt, xt, ft, cond) -> (loss, parts)``: the unrolled stage-2 loss.

    ``z0`` ``(B, L..., D)``; ``zt`` ``(K, B, L..., D)`` encoded targets; ``xt`` ``(K, B, nx.., nv..)``
    normalized VDF targets; ``ft`` ``(K, B, nx.., 6)``; ``cond`` ``(B, n_cond)``.
    """
    vq_gd, vq_state = nnx.split(vq)
    decode = cfg.f_weight > 0 or cfg.moment_weight > 0

    def loss(pp, z0, zt, xt, ft, cond, vq_state=vq_state):
        p = nnx.merge(prop_graphdef, nnx.State(pp))
        model = nnx.merge(vq_gd, vq_state)

        def one(z, tgt):
            zk, xk, fk = tgt
            zn = p(z, cond)
            if cfg.requantize:
                zn = model.quantize(zn)
            parts = [jnp.mean((zn - zk) ** 2) / z_var]
            if decode:
                xr, fr = model.decode_latent(zn)
                parts += [
                    recon_loss(xr, xk, x2, x4, cfg.f_space_weight) + cfg.field_weight * jnp.mean((fr - fk) ** 2),
                    moment_loss(xr, xk),
                ]
            else:
                parts += [jnp.zeros(()), jnp.zeros(())]
            carry = jax.lax.stop_gradient(zn) if cfg.pushforward else zn
            return carry, jnp.stack(parts)

        body = jax.checkpoint(one) if cfg.remat else one
        _, parts = jax.lax.scan(body, z0, (zt, xt, ft))
        m = jnp.mean(parts, axis=0)
        total = cfg.latent_weight * m[0] + cfg.f_weight * m[1] + cfg.moment_weight * m[2]
        return total, m

    return loss


def train_propagator(
    vq: PhaseSpaceVQVAE, Z: np.ndarray, X: np.ndarray, F: np.ndarray, C: np.ndarray, prop_cfg: PropagatorConfig,
    cfg: LatentTrainConfig, progress: bool = True, checkpoint_dir: Path | None = None, resume: bool = False,
) -> tuple[LatentPropagator, dict]:  # fmt: skip
    """Stage 2: train the propagator on latents ``Z`` ``(R, T, L..., D)`` with targets ``X`` ``(R, T, nx.., nv..)``,
    ``F`` ``(R, T, nx.., 6)`` and conditioning ``C`` ``(R, n_cond)``."""
    place = _Placer(cfg.devices, cfg.prop_batch)
    prop = LatentPropagator(prop_cfg, rngs=nnx.Rngs(cfg.seed + 1))
    gd, params = nnx.split(prop, nnx.Param)
    tx = _optimizer(cfg.prop_lr, cfg.prop_steps)
    p0 = _pure(params)
    init = {"params": p0, "opt": tx.init(p0)}
    stage = _Stage(checkpoint_dir, "propagator", cfg, init, resume)
    state = place.replicate(stage.state if stage.state is not None else init)
    z_std = float(np.std(Z)) or 1.0
    x2 = float(np.mean(X.astype(np.float64) ** 2)) or 1.0
    x4 = float(np.mean(X.astype(np.float64) ** 4)) or 1.0
    loss_fn = make_unroll_loss(vq, gd, cfg, z_std**2, x2, x4)

    def step(st, z0, zt, xt, ft, cond):
        (loss, parts), g = jax.value_and_grad(loss_fn, has_aux=True)(st["params"], z0, zt, xt, ft, cond)
        upd, opt = tx.update(g, st["opt"], st["params"])
        return {"params": optax.apply_updates(st["params"], upd), "opt": opt}, {
            "loss": loss,
            "latent": parts[0],
            "f": parts[1],
            "moments": parts[2],
            "grad_norm": _global_norm(g),
        }

    seq = NamedSharding(place.mesh, PartitionSpec(None, DATA))
    jstep = jax.jit(step, in_shardings=(place.rep, place.batch, seq, seq, seq, place.batch),
                    out_shardings=(place.rep, place.rep), donate_argnums=(0,))  # fmt: skip
    starts = windows(Z.shape[0], Z.shape[1], cfg.stride, cfg.unroll)
    ks = cfg.stride * np.arange(1, cfg.unroll + 1)

    def batch(s):
        rng = np.random.default_rng([cfg.seed, 2, s])
        pick = starts[rng.choice(len(starts), cfg.prop_batch, replace=len(starts) < cfg.prop_batch)]
        r, t0 = pick[:, 0], pick[:, 1]
        z0 = Z[r, t0]
        if cfg.noise_std > 0:
            z0 = z0 + (cfg.noise_std * z_std) * rng.standard_normal(z0.shape).astype(np.float32)
        tt = t0[None, :] + ks[:, None]
        rr = np.broadcast_to(r[None, :], tt.shape)
        return (jax.device_put(z0, place.batch), jax.device_put(Z[rr, tt], seq), jax.device_put(X[rr, tt], seq),
                jax.device_put(F[rr, tt], seq), jax.device_put(C[r], place.batch))  # fmt: skip

    state, hist = _loop(
        "latent: propagator", cfg.prop_steps, jstep, batch, state, progress, stage, cfg.checkpoint_every
    )
    prop = nnx.merge(gd, nnx.State(jax.tree.map(jnp.asarray, jax.device_get(state["params"]))))
    return prop, hist


def prepare(data: Trajectories, cfg: LatentTrainConfig) -> tuple[Normalization, np.ndarray, np.ndarray, np.ndarray]:
    """``(norm, X, F, C)``: normalization, model values ``(R, T, ...)``, fields ``(R, T, ..., 6)`` and conditioning."""
    keys = None if cfg.conditions == "auto" else () if cfg.conditions in ("none", "") else tuple(
        k.strip() for k in cfg.conditions.split(",") if k.strip())  # fmt: skip
    norm = data.normalization(keys)
    X = norm.to_x(data.f)
    F = norm.to_fields(data.E, data.B)
    C = np.stack([norm.condition(c) for c in data.configs]).astype(np.float32).reshape(data.n_runs, -1)
    return norm, X, F, C


def train_latent(
    data: Trajectories, cfg: LatentTrainConfig, progress: bool = True, vqvae: PhaseSpaceVQVAE | None = None,
    checkpoint_dir: str | Path | None = None, resume: bool = False,
) -> LatentModel:  # fmt: skip
    """Train both stages on ``data``; returns the :class:`LatentModel` (stage 1 skipped if ``vqvae`` is given).

    ``checkpoint_dir``: checkpoints of stage 1 (``vqvae/``) and stage 2 (``propagator/``) every
    ``cfg.checkpoint_every`` steps and at the end of each stage; ``resume`` continues from the newest
    valid ones (batches and noise depend on ``(seed, step)`` only, so the result is the same model)."""
    ck = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if data.f.shape[1] < 2:
        raise ConfigError("training needs trajectories of at least 2 snapshots")
    t0 = time.perf_counter()
    norm, X, F, C = prepare(data, cfg)
    vq_cfg, prop_cfg = model_configs(data, cfg, C.shape[1])
    R, T = X.shape[:2]
    hist1 = {}
    if vqvae is None:
        vqvae, hist1 = train_vqvae6d(
            X.reshape(R * T, *X.shape[2:]), F.reshape(R * T, *F.shape[2:]), vq_cfg, cfg, progress,
            ck / "vqvae" if ck else None, resume,
        )  # fmt: skip
    elif vqvae.config != vq_cfg:
        raise ConfigError("the given VQ-VAE was built for another grid or architecture")
    t1 = time.perf_counter()
    Z = encode_all(vqvae, X.reshape(R * T, *X.shape[2:]), F.reshape(R * T, *F.shape[2:])).reshape(
        R, T, *vq_cfg.latent_shape, -1
    )
    prop, hist2 = train_propagator(
        vqvae, Z, X, F, C, prop_cfg, cfg, progress, ck / "propagator" if ck else None, resume
    )
    t2 = time.perf_counter()
    D = cfg.stride * data.snapshot_steps

    def summary(h):
        return {k: [float(v[0]), float(v[-1])] for k, v in h.items()} if h else {}

    meta = {
        "case": data.case,
        "species": data.species,
        "grid": data.grid,
        "dt": data.dt,
        "steps_per_latent": int(D),
        "latent_dt": float(D * data.dt),
        "train_config": cfg.to_json(),
        "runs": data.names,
        "run_configs": data.configs,
        "history": {"vqvae": summary(hist1), "propagator": summary(hist2)},
        "seconds": {"vqvae": t1 - t0, "propagator": t2 - t1},
        "latent_std": float(np.std(Z)),
    }
    return LatentModel(vqvae, prop, norm, meta)


def train_latent_files(
    paths: Sequence[str | Path], out: str | Path, cfg: LatentTrainConfig, progress: bool = True, resume: bool = False
) -> LatentModel:
    """``faiser train-latent``: load the datasets, train (checkpoints in ``out/checkpoints``), write
    ``out/model.json`` + ``out/model.npz``. ``resume`` continues a killed run from its checkpoints.

    Raises:
      CheckpointError: a fresh run into a directory that holds checkpoints, or ``resume`` without any.
    """
    ck = Path(out) / "checkpoints"
    has = ck.is_dir() and any(p.is_dir() and any(q.name.isdigit() for q in p.iterdir()) for p in ck.iterdir())
    if has and not resume:
        raise CheckpointError(f"{ck} already holds checkpoints; continue with --resume or choose another directory")
    if resume and not has:
        raise CheckpointError(f"nothing to resume: {ck} holds no checkpoints")
    data = load_trajectories(paths, species=cfg.species or None)
    model = train_latent(data, cfg, progress, checkpoint_dir=ck, resume=resume)
    save_latent_model(out, model)
    return model
