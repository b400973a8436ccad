"""3D VQ-VAE codec: each VDF window becomes a small grid of codebook indices, entropy-coded.

A VDF is cut to a window of ``window^3`` cells around its bulk velocity (mesh cells with
``window_mode=crop``; ``thermal`` resamples ``+- width`` thermal speeds), made dimensionless
(``f s_x s_y s_z / n``), then either scaled so a Maxwellian peaks at 1 (``scale=linear``, the
default: the training loss is then the L2 error the codec is judged by), square-rooted
(``sqrt``) or log-scaled to [0, 1]
with a floor (``scale=log``: ``x = 1 - log10(max(w, floor)) / log10(floor)``, which spends the
model on the tails). The VQ-VAE (:mod:`faiser.models.vqvae3d`; strided convolutions, 16^3 or 32^3 ->
``latent^3``) is trained data-parallel (:mod:`faiser.train.vqvae`) on the training VDFs.

Stored per VDF: ``latent^3`` indices (uint16, LZMA-coded as one stream, so the entropy of the
index distribution is what is paid) as ``payload`` and the 10 moments as ``side`` (they place the
window and drive the restoration). The model bytes reported are what a decoder needs: decoder
weights and codebook (float32); the encoder is saved with the model (to encode new data) but not
counted, as it never travels with compressed files.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from faiser.codecs.base import Codec, LossySettings
from faiser.codecs.container import Stream
from faiser.codecs.windows import SCALES, from_scale, pad_batch, to_scale, window_features, window_to_mesh
from faiser.errors import CodecError, CompressedFileError


@dataclasses.dataclass(frozen=True)
class VqvaeSettings(LossySettings):
    """Window (``window`` 16 or 32 cells, ``window_mode``, ``width``), log ``floor``, the model
    (``latent``, ``codebook_size``, ``code_dim``, ``base_channels``, ``max_channels``, ``n_res``)
    and its training (``steps``, ``batch_size``, ``lr``, ``signal_weight``, ``seed``, ``devices``:
    0 uses every device of the ``data`` mesh)."""

    fallback: bool = True
    window: int = 16
    window_mode: str = "crop"
    width: float = 4.0
    scale: str = "linear"
    floor: float = 1e-6
    latent: int = 4
    codebook_size: int = 256
    code_dim: int = 16
    base_channels: int = 16
    max_channels: int = 64
    n_res: int = 1
    steps: int = 1000
    batch_size: int = 32
    lr: float = 2e-3
    signal_weight: float = 1.0
    seed: int = 0
    devices: int = 0

    def __post_init__(self):
        super().__post_init__()
        if self.window_mode not in ("crop", "thermal"):
            raise ValueError("window_mode must be crop or thermal")
        if self.scale not in SCALES:
            raise ValueError("scale must be linear, sqrt or log")
        if not 0 < self.floor < 1 or self.codebook_size > 65536 or self.devices < 0:
            raise ValueError("0 < floor < 1, codebook_size <= 65536 and devices >= 0 are required")


class VqvaeCodec(Codec):
    """VQ-VAE indices of VDF windows (see the module docstring)."""

    name = "vqvae"
    trainable = True
    needs_moments = True
    Settings = VqvaeSettings

    def __init__(self, settings=None, **overrides):
        super().__init__(settings, **overrides)
        self._arrays: dict[str, np.ndarray] = {}
        self._fns = None
        self.history: dict[str, list] = {}
        # training checkpoints (not part of the model's identity): set by `faiser train-codec`
        self.checkpoint_dir = None
        self.checkpoint_every = 0
        self.resume = False
        self.resumed_from = None
        self.model_config()  # validate early

    def model_config(self):
        from faiser.models.vqvae3d import VQVAE3DConfig

        s = self.settings
        try:
            return VQVAE3DConfig(window=s.window, latent=s.latent, codebook_size=s.codebook_size, code_dim=s.code_dim,
                                 base_channels=s.base_channels, max_channels=s.max_channels, n_res=s.n_res)
        except Exception as e:  # ConfigError of the model
            raise CodecError(f"bad vqvae settings: {e}") from None

    # ---- data <-> model inputs ---------------------------------------------------------------------
    def _inputs(self, f, mesh, m) -> np.ndarray:
        s = self.settings
        w = window_features(f, mesh, m, s.window, s.width, s.window_mode)
        return to_scale(w, s.scale, s.floor).astype(np.float32)

    def _outputs(self, x, mesh, m) -> np.ndarray:
        s = self.settings
        x = np.asarray(x, np.float64).reshape(-1, s.window, s.window, s.window)
        return window_to_mesh(from_scale(x, s.scale, s.floor), mesh, m, s.width, s.window_mode)

    # ---- training ---------------------------------------------------------------------------------
    def _fit(self, f, mesh, m, progress):
        from faiser.parallel.mesh import make_mesh
        from faiser.train.vqvae import VQVAETrainConfig, train_vqvae

        s = self.settings
        x = self._inputs(f, mesh, m)
        dev = make_mesh(s.devices or None)
        nd = dev.shape["data"]
        bs = min(s.batch_size, len(x) // nd * nd)  # small training sets: a smaller batch, still divisible
        if bs < 1:
            raise CodecError(f"vqvae needs at least {nd} training VDFs (one per device), got {len(x)}")
        cfg = VQVAETrainConfig(steps=s.steps, batch_size=bs, lr=s.lr, signal_weight=s.signal_weight, seed=s.seed)
        res = train_vqvae(x, self.model_config(), cfg, mesh=dev, progress=progress, checkpoint_dir=self.checkpoint_dir,
                          checkpoint_every=self.checkpoint_every, resume=self.resume)
        self.resumed_from = res.resumed_from
        self.history = {k: np.asarray(v).tolist() for k, v in res.history.items() if k in ("loss", "recon", "usage")}
        self._arrays = _flatten({"params": res.state["params"], "codebook": res.state["codebook"]})
        self._fns = None

    # ---- inference -------------------------------------------------------------------------------
    def _inference(self):
        if self._fns is None:
            from faiser.models.vqvae3d import inference_fns

            self._fns = inference_fns(self._build_model())
        return self._fns

    def _build_model(self):
        import jax
        import jax.numpy as jnp
        from flax import nnx

        from faiser.models.vqvae3d import VQVAE3D

        model = VQVAE3D(self.model_config(), rngs=nnx.Rngs(0))
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        trees = {}
        for name, st in (("params", params), ("codebook", rest)):
            pure = nnx.to_pure_dict(st) if hasattr(nnx, "to_pure_dict") else st.to_pure_dict()
            leaves, treedef = jax.tree_util.tree_flatten_with_path(pure)
            vals = []
            for path, leaf in leaves:
                key = f"{name}{jax.tree_util.keystr(path)}"
                if key not in self._arrays or self._arrays[key].shape != np.shape(leaf):
                    raise CodecError(f"vqvae model lacks {key} of shape {np.shape(leaf)} (wrong or corrupt model)")
                vals.append(jnp.asarray(self._arrays[key]))
            trees[name] = nnx.State(jax.tree_util.tree_unflatten(treedef, vals))
        return nnx.merge(graphdef, trees["params"], trees["codebook"])

    def _encode(self, f, mesh, m):
        enc, _ = self._inference()
        x = self._inputs(f, mesh, m)
        L = self.settings.latent
        idx = _batched(enc, x, (L, L, L))
        return {"indices": Stream(idx.astype(np.uint16), "payload", "lzma")}, {}

    def _decode(self, enc, m):
        _, dec = self._inference()
        L = self.settings.latent
        if m is None or "indices" not in enc.streams:
            raise CompressedFileError("vqvae data lacks its indices or moments stream")
        idx = enc.streams["indices"].data
        if idx.shape != (enc.n_vdfs, L, L, L) or (idx.size and int(idx.max()) >= self.settings.codebook_size):
            raise CompressedFileError(f"vqvae indices have shape {idx.shape} or values outside the codebook")
        x = _batched(dec, idx.astype(np.int32), (self.settings.window,) * 3)
        return self._outputs(x, enc.mesh, m)

    # ---- model storage ---------------------------------------------------------------------------
    def model_arrays(self):
        return dict(self._arrays)

    def model_bytes(self) -> int:
        """Decoder weights and codebook, float32 (what a decompressor needs)."""
        return int(sum(a.nbytes for k, a in self._arrays.items() if "decoder" in k or "'codebook']" in k))

    def _load_arrays(self, arrays, meta):
        self._arrays = {k: np.asarray(v, np.float32) for k, v in arrays.items()}
        self._fns = None
        self._build_model()
        self.history = dict(meta.get("history", {}))

    def model_meta(self):
        enc_bytes = int(sum(a.nbytes for k, a in self._arrays.items() if "encoder" in k))
        return {"encoder_bytes": enc_bytes, "history": self.history}


def _batched(fn, x: np.ndarray, out_shape: tuple[int, ...], size: int = 256) -> np.ndarray:
    """``fn`` over ``x`` in batches of at most ``size`` rows, padded to few compiled shapes."""
    chunks = [x[lo : lo + size] for lo in range(0, len(x), size)]
    out = [np.asarray(fn(pad_batch(c, size)))[: len(c)] for c in chunks]
    return np.concatenate(out) if out else np.zeros((0, *out_shape), np.float32)


def _flatten(tree) -> dict[str, np.ndarray]:
    import jax

    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    out = {}
    for path, leaf in leaves:
        k = jax.tree_util.keystr(path)  # "['params']['encoder']..."
        top = path[0].key if hasattr(path[0], "key") else str(path[0])
        out[f"{top}{k[len(f'[{top!r}]'):]}"] = np.asarray(jax.device_get(leaf), np.float32)
    return out
