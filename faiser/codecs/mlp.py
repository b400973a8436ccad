"""Fourier-feature MLP codec (the ASTERIX method): the weights of a small MLP per VDF.

Each VDF is cut to a window of ``window^3`` cells around its bulk velocity (mesh cells with
``window_mode=crop``, or ``+- width`` thermal speeds with ``thermal``; coordinates in [-1, 1]), made dimensionless
(``f s_x s_y s_z / n``), scaled (``scale=sqrt`` by default: sqrt(f) keeps the core accurate in L2
while compressing the dynamic range; ``linear``; or ASTERIX's log with a floor, which spends
the fit on the tails and is 5-10x worse in L2 at equal size here), and fitted by an MLP on
Fourier features [sin, cos](2 pi B v) (:mod:`faiser.models.fourier_mlp`: all VDFs of a batch at
once under one compiled ``vmap``; each step sees a random subsample of the cells). Stored per VDF:
the weights (float16 by default, ``payload``) and the moments (``side``: they place the window
and drive the restoration). ``B`` is regenerated from its seed, so the codec has no model bytes.
With ``scale=log``, values at the floor decode to 0 (:func:`faiser.codecs.windows.to_scale`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from faiser.codecs.base import Codec, LossySettings
from faiser.codecs.container import Stream
from faiser.codecs.windows import SCALES, from_scale, pad_batch, to_scale, window_features, window_to_mesh
from faiser.errors import CodecError, CompressedFileError


@dataclasses.dataclass(frozen=True)
class MlpSettings(LossySettings):
    """Window (``window`` cells per axis, ``width`` thermal speeds), log floor (dimensionless f),
    weight dtype, batch of VDFs fitted together, and the MLP: ``n_freq``, ``sigma``, ``hidden``,
    ``depth``, ``steps``, ``lr``, ``n_samples``, ``seed``; ``devices``: fit the VDFs of a batch
    data-parallel over this many devices (0: all; the batch is sharded over the ``data`` axis)."""

    fallback: bool = True
    window: int = 24
    window_mode: str = "crop"
    width: float = 4.0
    scale: str = "sqrt"
    floor: float = 1e-6
    weight_dtype: str = "float16"
    batch: int = 256
    n_freq: int = 12
    sigma: float = 1.0
    hidden: int = 16
    depth: int = 2
    steps: int = 600
    lr: float = 3e-2
    n_samples: int = 4096
    level_weight: float = 0.0
    seed: int = 0
    devices: int = 1

    def __post_init__(self):
        super().__post_init__()
        if self.window < 4 or self.width <= 0 or not 0 < self.floor < 1 or self.batch < 1:
            raise ValueError("window >= 4, width > 0, 0 < floor < 1 and batch >= 1 are required")
        if self.weight_dtype not in ("float16", "float32"):
            raise ValueError("weight_dtype must be float16 or float32")
        if self.window_mode not in ("crop", "thermal"):
            raise ValueError("window_mode must be crop or thermal")
        if self.scale not in SCALES:
            raise ValueError("scale must be sqrt, linear or log")
        if self.devices < 0:
            raise ValueError("devices must be >= 0 (0: all)")


class MlpCodec(Codec):
    """Per-VDF Fourier-feature MLP weights (see the module docstring)."""

    name = "mlp"
    needs_moments = True
    Settings = MlpSettings

    def mlp_config(self):
        from faiser.models.fourier_mlp import FourierMLPConfig

        s = self.settings
        try:
            return FourierMLPConfig(n_freq=s.n_freq, sigma=s.sigma, hidden=s.hidden, depth=s.depth, steps=s.steps,
                                    lr=s.lr, n_samples=s.n_samples, level_weight=s.level_weight, b_seed=s.seed)
        except Exception as e:  # ConfigError from the model
            raise CodecError(f"bad mlp settings: {e}") from None

    def _place(self, y: np.ndarray):
        """``y`` as is on one device, else padded to a multiple of the devices and sharded over ``data``
        (each VDF's fit is independent: the vmapped fit partitions along the batch)."""
        if self.settings.devices == 1:
            return y
        import jax
        from jax.sharding import NamedSharding, PartitionSpec

        from faiser.parallel.mesh import DATA, make_mesh

        mesh = make_mesh(self.settings.devices or None, (DATA,))
        nd = mesh.shape[DATA]
        if len(y) % nd:
            y = np.concatenate([y, np.repeat(y[-1:], nd - len(y) % nd, axis=0)])
        return jax.device_put(y, NamedSharding(mesh, PartitionSpec(DATA)))

    def _coords(self):
        from faiser.models.fourier_mlp import grid_coords

        return grid_coords(self.settings.window)

    def _encode(self, f, mesh, m):
        from faiser.models.fourier_mlp import export_weights
        from faiser.train.fourier_mlp import fit_mlp

        s = self.settings
        cfg = self.mlp_config()
        coords = self._coords()
        out = []
        for lo in range(0, f.shape[0], s.batch):
            w = window_features(f[lo : lo + s.batch], mesh, m[lo : lo + s.batch], s.window, s.width, s.window_mode)
            y = self._place(pad_batch(to_scale(w, s.scale, s.floor).astype(np.float32), s.batch))
            out.append(np.asarray(fit_mlp(y, coords, cfg, seed=s.seed))[: len(w)])
        weights = np.concatenate(out) if out else np.zeros((0, cfg.n_params), np.float32)
        try:
            stored = export_weights(weights, s.weight_dtype)
        except Exception as e:
            raise CodecError(f"mlp weights: {e}") from None
        return {"weights": Stream(stored, "payload")}, {}

    def _decode(self, enc, m):
        from faiser.models.fourier_mlp import eval_mlp, import_weights

        s = self.settings
        cfg = self.mlp_config()
        if m is None or "weights" not in enc.streams:
            raise CompressedFileError("mlp data lacks its weights or moments stream")
        w = enc.streams["weights"].data
        if w.shape != (enc.n_vdfs, cfg.n_params):
            raise CompressedFileError(f"mlp weights have shape {w.shape}, expected ({enc.n_vdfs}, {cfg.n_params})")
        n = s.window
        coords = self._coords()
        out = np.empty(enc.shape, dtype=np.float64)
        for lo in range(0, enc.n_vdfs, s.batch):
            wb = import_weights(w[lo : lo + s.batch])
            y = np.asarray(eval_mlp(pad_batch(wb, s.batch), coords, cfg), dtype=np.float64)[: len(wb)]
            win = from_scale(y, s.scale, s.floor).reshape(-1, n, n, n)
            out[lo : lo + s.batch] = window_to_mesh(win, enc.mesh, m[lo : lo + s.batch], s.width, s.window_mode)
        return out
