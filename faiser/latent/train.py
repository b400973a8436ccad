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

Both stages run data-parallel with the training toolkit :mod:`faiser.train.loop`: the batch is sharded
over the ``data`` axis of a mesh of ``devices`` devices, parameters and optimizer state replicated, one
``jax.jit`` step with explicit shardings. Batches and noise of step ``s`` depend only on ``(seed, s)``:
the same seed gives the same model.

The settings are one nested :class:`LatentTrainConfig` (defined in :mod:`faiser.latent.config`)::

    LatentTrainConfig(
        architecture=LatentArchitecture(...),   # the networks (hidden, code_dim, prop_hidden, padding, ...)
        autoencoder=AutoencoderStage(...),      # stage 1: steps, batch, lr, ..., vq_warmup_steps
        propagator=PropagatorStage(...),        # stage 2: steps, batch, lr, ..., stride, unroll, pushforward, ...
        loss=LossWeights(...),                  # reconstruction terms of both stages
        conditions="auto", species="", devices=1, checkpoint_every=0, seed=0,
    )

``faiser train-latent --set KEY=VALUE`` (and :meth:`LatentTrainConfig.of` / ``.replace``) take dotted
keys (``autoencoder.lr=1e-3``), bare leaf names that only one key ends in (``unroll=2``,
``vq_warmup_steps=50``) and the former flat names ``ae_steps``, ``ae_batch``, ``ae_lr``, ``prop_steps``,
``prop_batch``, ``prop_lr``; an ambiguous bare name (``lr``) is a :class:`~faiser.errors.ConfigError`
naming the choices.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from faiser.errors import CheckpointError, ConfigError
from faiser.latent.config import (
    AutoencoderStage,
    LatentArchitecture,
    LatentTrainConfig,
    LossWeights,
    PropagatorStage,
    StageConfig,
)
from faiser.latent.data import Normalization, Trajectories, load_trajectories
from faiser.latent.model import LatentModel, save_latent_model
from faiser.models.propagator import LatentPropagator, PropagatorConfig
from faiser.models.vqvae6d import PhaseSpaceVQVAE, PhaseSpaceVQVAEConfig
from faiser.parallel.mesh import make_mesh
from faiser.train.loop import CheckpointStage, DataParallel, History, global_norm, pure, run_loop

__all__ = [
    "PERIODIC_CASES",
    "AutoencoderStage",
    "LatentArchitecture",
    "LatentTrainConfig",
    "LossWeights",
    "PropagatorStage",
    "StageConfig",
    "moment_loss",
    "train_latent",
    "train_latent_files",
]

# cases whose every boundary is periodic and without inflow: circular padding, closed mass budget
PERIODIC_CASES = frozenset({"landau", "two_stream", "bump_on_tail", "free_streaming", "alfven", "larmor", "exb"})


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
    a = cfg.architecture
    vs = a.velocity_stages if a.velocity_stages >= 0 else _auto_stages(velocity, 2, 4)
    ss = a.spatial_stages if a.spatial_stages >= 0 else _auto_stages(spatial, 1, 4)
    pad = a.padding if a.padding != "auto" else ("circular" if case in PERIODIC_CASES else "zeros")
    vq = PhaseSpaceVQVAEConfig(
        spatial_shape=spatial, velocity_shape=velocity, n_fields=6, velocity_stages=vs,
        velocity_channels=a.velocity_channels, cell_dim=a.cell_dim, spatial_stages=ss, hidden=a.hidden,
        n_res=a.n_res, code_dim=a.code_dim, codebook_size=a.codebook_size, code_groups=a.code_groups,
        padding=pad,
    )  # fmt: skip
    prop = PropagatorConfig(
        latent_shape=vq.latent_shape, code_dim=a.code_dim, n_cond=n_cond, hidden=a.prop_hidden,
        n_blocks=a.prop_blocks, padding=pad,
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


def _data_parallel(cfg: LatentTrainConfig, batch: int) -> DataParallel:
    if batch % cfg.devices:
        raise ConfigError(f"batch {batch} does not divide over {cfg.devices} devices")
    return DataParallel(make_mesh(cfg.devices), batch)


def _checkpoints(
    directory: Path | None, name: str, label: str, cfg: LatentTrainConfig, init, resume: bool
) -> tuple[CheckpointStage | None, int, Any, History]:
    """``(stage, start, state, history)`` of a stage: its checkpoints (``directory``: a
    :class:`~faiser.run.checkpoint.CheckpointStore`; the state flattened to ``leaf_NNNNN`` arrays, the
    history so far and the train config as JSON) and, with ``resume``, where the newest one left off."""
    hist = History(label)
    if directory is None:
        return None, 0, init, hist
    stage = CheckpointStage(
        directory, f"faiser-latent-{name}", init, meta={"train_config": cfg.to_json()}, keep=2, with_history=True
    )
    if not (resume and stage.steps()):
        return stage, 0, init, hist
    try:
        state, meta = stage.restore()
    except CheckpointError as e:
        stage.close()
        raise CheckpointError(f"{directory} holds checkpoints of another training run or config ({e})") from None
    if meta.get("train_config") != cfg.to_json():
        stage.close()
        raise CheckpointError(f"{directory} holds checkpoints of another training run or config")
    return stage, int(meta["step"]), state, History(label, meta.get("history", {}))


def train_vqvae6d(
    x: np.ndarray, fields: np.ndarray, vq_cfg: PhaseSpaceVQVAEConfig, cfg: LatentTrainConfig, progress: bool = True,
    checkpoint_dir: Path | None = None, resume: bool = False,
) -> tuple[PhaseSpaceVQVAE, dict]:  # fmt: skip
    """Stage 1: fit the 6D VQ-VAE on snapshots ``x`` ``(N, nx, ny, nz, nv...)`` and fields ``(N, nx, ny, nz, 6)``."""
    ae, w = cfg.autoencoder, cfg.loss
    dp = _data_parallel(cfg, ae.batch)
    model = PhaseSpaceVQVAE(vq_cfg, rngs=nnx.Rngs(cfg.seed))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = ae.optimizer()
    p0 = pure(params)
    init = {
        "params": p0, "codebook": pure(rest), "opt": tx.init(p0), "step": jnp.zeros((), jnp.int32),
        "key": jax.random.key_data(jax.random.key(cfg.seed)),
    }  # fmt: skip
    label = "latent: 6D VQ-VAE"
    stage, start, state, hist = _checkpoints(checkpoint_dir, "vqvae", label, cfg, init, resume)
    state = dp.replicate(state)
    x2 = float(np.mean(x.astype(np.float64) ** 2)) or 1.0
    x4 = float(np.mean(x.astype(np.float64) ** 4)) or 1.0

    def step(st, xb, fb):
        s = st["step"]
        key = jax.random.fold_in(jax.random.wrap_key_data(st["key"]), s)

        def loss_fn(p):
            m = nnx.merge(graphdef, nnx.State(p), nnx.State(st["codebook"]))
            z = m.encode_continuous(xb, fb)
            q = m.vq(z)
            warm = s < ae.vq_warmup_steps
            xr, fr = m.decode_latent(jnp.where(warm, z, q.quantized))
            rec = recon_loss(xr, xb, x2, x4, w.f_space_weight)
            lf = jnp.mean((fr - fb) ** 2)
            lm = moment_loss(xr, xb)
            loss = rec + w.field_weight * lf + w.moment_weight * lm + jnp.where(warm, 0.0, q.commitment_loss)
            return loss, (rec, lf, lm, q)

        (loss, (rec, lf, lm, q)), g = jax.value_and_grad(loss_fn, has_aux=True)(st["params"])
        upd, opt = tx.update(g, st["opt"], st["params"])
        params = optax.apply_updates(st["params"], upd)
        m = nnx.merge(graphdef, nnx.State(params), nnx.State(st["codebook"]))
        m.quantizer.update_codebook(q.encodings, q.indices, key=key, restart_unused=s == ae.vq_warmup_steps)
        _, _, r = nnx.split(m, nnx.Param, ...)
        new = {"params": params, "codebook": pure(r), "opt": opt, "step": s + 1, "key": st["key"]}
        return new, {"loss": loss, "recon": rec, "fields": lf, "moments": lm, "perplexity": q.perplexity,
                     "grad_norm": global_norm(g)}  # fmt: skip

    jstep = dp.jit_step(step, dp.batch, dp.batch)
    n = x.shape[0]

    def batch(s):
        ids = np.sort(np.random.default_rng([cfg.seed, 1, s]).choice(n, ae.batch, replace=n < ae.batch))
        return dp.shard(x[ids]), dp.shard(fields[ids])

    state, hist = run_loop(
        jstep, (batch(s) for s in range(start, ae.steps)), state, steps=ae.steps, start=start, name=label,
        progress=progress, history=hist, checkpoint=stage, every=cfg.checkpoint_every,
    )  # fmt: skip
    host = jax.device_get(state)
    model = nnx.merge(graphdef, nnx.State(jax.tree.map(jnp.asarray, host["params"])),
                      nnx.State(jax.tree.map(jnp.asarray, host["codebook"])))  # fmt: skip
    return model, hist.arrays()


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
    pc, w = cfg.propagator, cfg.loss
    decode = pc.f_weight > 0 or w.moment_weight > 0

    def loss(pp, z0, zt, xt, ft, cond, vq_state=vq_state):
        p = nnx.merge(prop_graphdef, nnx.State(pp))
        model = nnx.merge(vq_gd, vq_state)

        def one(z, tgt):
            zk, xk, fk = tgt
            zn = p(z, cond)
            if pc.requantize:
                zn = model.quantize(zn)
            parts = [jnp.mean((zn - zk) ** 2) / z_var]
            if decode:
                xr, fr = model.decode_latent(zn)
                parts += [
                    recon_loss(xr, xk, x2, x4, w.f_space_weight) + w.field_weight * jnp.mean((fr - fk) ** 2),
                    moment_loss(xr, xk),
                ]
            else:
                parts += [jnp.zeros(()), jnp.zeros(())]
            carry = jax.lax.stop_gradient(zn) if pc.pushforward else zn
            return carry, jnp.stack(parts)

        body = jax.checkpoint(one) if pc.remat else one
        _, parts = jax.lax.scan(body, z0, (zt, xt, ft))
        m = jnp.mean(parts, axis=0)
        total = pc.latent_weight * m[0] + pc.f_weight * m[1] + w.moment_weight * m[2]
        return total, m

    return loss


def train_propagator(
    vq: PhaseSpaceVQVAE, Z: np.ndarray, X: np.ndarray, F: np.ndarray, C: np.ndarray, prop_cfg: PropagatorConfig,
    cfg: LatentTrainConfig, progress: bool = True, checkpoint_dir: Path | None = None, resume: bool = False,
) -> tuple[LatentPropagator, dict]:  # fmt: skip
    """Stage 2: train the propagator on latents ``Z`` ``(R, T, L..., D)`` with targets ``X`` ``(R, T, nx.., nv..)``,
    ``F`` ``(R, T, nx.., 6)`` and conditioning ``C`` ``(R, n_cond)``."""
    pc = cfg.propagator
    dp = _data_parallel(cfg, pc.batch)
    prop = LatentPropagator(prop_cfg, rngs=nnx.Rngs(cfg.seed + 1))
    gd, params = nnx.split(prop, nnx.Param)
    tx = pc.optimizer()
    p0 = pure(params)
    init = {"params": p0, "opt": tx.init(p0)}
    label = "latent: propagator"
    stage, start, state, hist = _checkpoints(checkpoint_dir, "propagator", label, cfg, init, resume)
    state = dp.replicate(state)
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
            "grad_norm": global_norm(g),
        }

    seq = dp.batch_sharding(1)  # (unroll, batch, ...) targets
    jstep = dp.jit_step(step, dp.batch, seq, seq, seq, dp.batch)
    starts = windows(Z.shape[0], Z.shape[1], pc.stride, pc.unroll)
    ks = pc.stride * np.arange(1, pc.unroll + 1)

    def batch(s):
        rng = np.random.default_rng([cfg.seed, 2, s])
        pick = starts[rng.choice(len(starts), pc.batch, replace=len(starts) < pc.batch)]
        r, t0 = pick[:, 0], pick[:, 1]
        z0 = Z[r, t0]
        if pc.noise_std > 0:
            z0 = z0 + (pc.noise_std * z_std) * rng.standard_normal(z0.shape).astype(np.float32)
        tt = t0[None, :] + ks[:, None]
        rr = np.broadcast_to(r[None, :], tt.shape)
        return (dp.shard(z0), dp.shard(Z[rr, tt], seq), dp.shard(X[rr, tt], seq), dp.shard(F[rr, tt], seq),
                dp.shard(C[r]))  # fmt: skip

    state, hist = run_loop(
        jstep, (batch(s) for s in range(start, pc.steps)), state, steps=pc.steps, start=start, name=label,
        progress=progress, history=hist, checkpoint=stage, every=cfg.checkpoint_every,
    )  # fmt: skip
    prop = nnx.merge(gd, nnx.State(jax.tree.map(jnp.asarray, jax.device_get(state["params"]))))
    return prop, hist.arrays()


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
    D = cfg.propagator.stride * data.snapshot_steps

    def summary(h):
        return {k: [float(v[0]), float(v[-1])] for k, v in h.items()} if h else {}

    meta = {
        "case": data.case,
        "species": data.species,
        "grid": data.grid,
        "grid_varies": data.grid_varies,  # trained on runs whose grids differ in extent (same cells)
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
