"""A trained latent solver: the 6D VQ-VAE, the propagator, the normalization and what they were
trained on, saved as ``MODEL_DIR/model.json`` + ``MODEL_DIR/model.npz`` (no pickles).

``LatentModel`` is what ``faiser rollout`` and ``faiser bench latent`` use::

    m = load_latent_model("models/shock")
    z = m.encode(f, E, B)                 # (1, Lx, Ly, Lz, code_dim) latent state of one snapshot
    zs = m.propagate(z, cond, n=100)      # (101, 1, Lx, Ly, Lz, code_dim): lax.scan over latent steps
    f, E, B = m.decode(zs[-1])            # physical f (case units, >= 0) and fields
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile
from collections.abc import Mapping
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from faiser.atomic import atomic_path, atomic_write_text
from faiser.errors import CheckpointError, ConfigError
from faiser.latent.config import LatentTrainConfig
from faiser.latent.data import Normalization
from faiser.models.propagator import LatentPropagator, PropagatorConfig
from faiser.models.vqvae6d import PhaseSpaceVQVAE, PhaseSpaceVQVAEConfig
from faiser.train.loop import pure

__all__ = ["LatentModel", "load_latent_model", "save_latent_model", "flat_state", "load_flat_state"]

KIND = "faiser-latent-solver"


def flat_state(module: nnx.Module, prefix: str) -> dict[str, np.ndarray]:
    """Every array of ``module``'s state as ``{"prefix/path/to/leaf": array}``."""
    leaves = jax.tree_util.tree_flatten_with_path(pure(nnx.state(module)))[0]
    return {
        prefix + "/" + "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path): np.asarray(v)
        for path, v in leaves
    }


def load_flat_state(module: nnx.Module, prefix: str, arrays: Mapping[str, np.ndarray]) -> None:
    """Replace ``module``'s state by the arrays of :func:`flat_state` (shapes and names checked)."""
    paths, treedef = jax.tree_util.tree_flatten_with_path(pure(nnx.state(module)))
    new = []
    for path, v in paths:
        name = prefix + "/" + "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
        if name not in arrays:
            raise CheckpointError(f"model file has no array {name!r}")
        a = np.asarray(arrays[name])
        if a.shape != np.shape(v):
            raise CheckpointError(f"array {name!r} has shape {a.shape}, the model expects {np.shape(v)}")
        new.append(jnp.asarray(a))
    state = nnx.state(module)
    if hasattr(nnx, "replace_by_pure_dict"):
        nnx.replace_by_pure_dict(state, jax.tree_util.tree_unflatten(treedef, new))
    else:  # pragma: no cover - older flax
        state.replace_by_pure_dict(jax.tree_util.tree_unflatten(treedef, new))
    nnx.update(module, state)


@dataclasses.dataclass
class LatentModel:
    """A trained latent solver (see the module docstring).

    Attributes:
      vqvae, propagator: the networks. norm: the value transform and conditioning.
      meta: what it was trained on: ``case``, ``species``, ``grid`` (JSON), ``dt`` (reference step),
        ``steps_per_latent`` (D, reference steps per latent step), ``latent_dt`` (simulated time per
        latent step), ``train_config`` (a :class:`~faiser.latent.config.LatentTrainConfig` as JSON),
        ``runs``, ``history``.
    """

    vqvae: PhaseSpaceVQVAE
    propagator: LatentPropagator
    norm: Normalization
    meta: dict

    def __post_init__(self):
        self._vq_def, self._vq_state = nnx.split(self.vqvae)
        self._p_def, self._p_state = nnx.split(self.propagator)

    @property
    def steps_per_latent(self) -> int:
        return int(self.meta["steps_per_latent"])

    @property
    def latent_dt(self) -> float:
        return float(self.meta["latent_dt"])

    @property
    def requantize(self) -> bool:
        """Whether every propagated state is snapped to the codebook (as in training)."""
        return bool(self.meta.get("train_config", {}).get("propagator", {}).get("requantize", False))

    # -- public -------------------------------------------------------------------------------
    def encode(self, f, E, B) -> jax.Array:
        """Latent state ``(batch, Lx, Ly, Lz, code_dim)`` of ``f`` ``(batch, nx, ny, nz, nv...)`` (case units)
        and fields ``(batch, nx, ny, nz, 3)``; a single snapshot without the batch axis is accepted."""
        f = np.asarray(f)
        if f.ndim == 6:
            f, E, B = f[None], np.asarray(E)[None], np.asarray(B)[None]
        x, fields = jnp.asarray(self.norm.to_x(f)), jnp.asarray(self.norm.to_fields(E, B))
        return _encode(self._vq_def, self._vq_state, x, fields)

    def decode(self, z) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(f, E, B)`` in case units of latent states ``z`` ``(batch, Lx, Ly, Lz, code_dim)``; ``f >= 0``."""
        x, h = _decode(self._vq_def, self._vq_state, z)
        E, B = self.norm.from_fields(h)
        return self.norm.from_x(x), E, B

    def condition(self, config: Mapping) -> jax.Array:
        """Conditioning ``(1, n_cond)`` of a case config (dict)."""
        return jnp.asarray(self.norm.condition(config))[None]

    def propagate(self, z, cond, n: int) -> jax.Array:
        """``(n + 1, *z.shape)``: ``z`` and ``n`` latent steps (``lax.scan``)."""
        rq = self.requantize
        return _propagate(self._p_def, self._vq_def, self._p_state, self._vq_state, z, int(n), rq, cond, False)

    def advance(self, z, cond, n: int) -> jax.Array:
        """The latent state after ``n`` latent steps (one compiled ``lax.scan``; intermediate states not kept)."""
        rq = self.requantize
        return _propagate(self._p_def, self._vq_def, self._p_state, self._vq_state, z, int(n), rq, cond, True)

    def step(self, z, cond) -> jax.Array:
        """One latent step."""
        return self.advance(z, cond, 1)


# Module-level jitted pieces keyed on the (hashable) graph definitions, so models of one architecture
# share their compiled code (a reloaded model or a baseline over the same VQ-VAE does not recompile).
@partial(jax.jit, static_argnums=0)
def _encode(vq_def, vq_state, x, fields):
    m = nnx.merge(vq_def, vq_state)
    return m.lookup(m.encode(x, fields))


@partial(jax.jit, static_argnums=0)
def _decode(vq_def, vq_state, z):
    return nnx.merge(vq_def, vq_state).decode_latent(z)


@partial(jax.jit, static_argnums=(0, 1, 5, 6, 8))
def _propagate(p_def, vq_def, p_state, vq_state, z, n, requantize, cond, last_only):
    p, vq = nnx.merge(p_def, p_state), nnx.merge(vq_def, vq_state)

    def body(zc, _):
        zn = p(zc, cond)
        if requantize:
            zn = vq.quantize(zn)
        return zn, None if last_only else zn

    zl, zs = jax.lax.scan(body, z, None, length=n)
    return zl if last_only else jnp.concatenate([z[None], zs], axis=0)


def _digest(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        h.update(k.encode())
        h.update(np.ascontiguousarray(arrays[k]).tobytes())
    return h.hexdigest()


def save_latent_model(path: str | Path, model: LatentModel) -> None:
    """Write ``path/model.json`` and ``path/model.npz`` atomically (the JSON holds the arrays' SHA-256)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    arrays = {**flat_state(model.vqvae, "vqvae"), **flat_state(model.propagator, "propagator")}
    with atomic_path(path / "model.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    doc = {
        "kind": KIND,
        "vqvae": model.vqvae.config.to_json(),
        "propagator": model.propagator.config.to_json(),
        "normalization": model.norm.to_json(),
        "sha256": _digest(arrays),
        **model.meta,
    }
    atomic_write_text(path / "model.json", json.dumps(doc, indent=1))


def load_latent_model(path: str | Path) -> LatentModel:
    """Load a model written by :func:`save_latent_model` / ``faiser train-latent``.

    Raises:
      CheckpointError: missing, corrupt or tampered files (the arrays' SHA-256 is checked), or a model
        whose train config is not a :class:`~faiser.latent.config.LatentTrainConfig` of this version
        (e.g. the flat layout of older files).
    """
    path = Path(path)
    try:
        doc = json.loads((path / "model.json").read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} holds no latent model (model.json missing)") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path / 'model.json'} is unreadable: {e}") from None
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise CheckpointError(f"{path} is not a faiser latent-solver model")
    try:
        with np.load(path / "model.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path / 'model.npz'} is unreadable or corrupt: {e}") from None
    if _digest(arrays) != doc.get("sha256"):
        raise CheckpointError(f"{path / 'model.npz'} does not match model.json (modified or truncated)")
    if "train_config" in doc:
        try:
            LatentTrainConfig.from_json(doc["train_config"])
        except (ConfigError, TypeError) as e:
            raise CheckpointError(
                f"{path / 'model.json'}: its train_config is not a LatentTrainConfig of this faiser version "
                f"(older models stored a flat one; retrain with faiser train-latent): {e}"
            ) from None
    try:
        vq = PhaseSpaceVQVAE(PhaseSpaceVQVAEConfig.from_json(doc["vqvae"]), rngs=nnx.Rngs(0))
        prop = LatentPropagator(PropagatorConfig.from_json(doc["propagator"]), rngs=nnx.Rngs(0))
    except (ConfigError, TypeError, KeyError) as e:
        raise CheckpointError(f"{path / 'model.json'} holds an invalid model architecture: {e}") from None
    load_flat_state(vq, "vqvae", arrays)
    load_flat_state(prop, "propagator", arrays)
    meta = {k: v for k, v in doc.items() if k not in ("kind", "vqvae", "propagator", "normalization", "sha256")}
    return LatentModel(vq, prop, Normalization.from_json(doc["normalization"]), meta)
