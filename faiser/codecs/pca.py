"""PCA codec: principal components of VDFs in thermal windows, exact or incremental.

Each VDF is cut to a window of ``n^3`` cells around its bulk velocity (``window_mode=crop``: mesh
cells, exact; ``thermal``: ``+- width`` thermal speeds, resampled; :mod:`faiser.codecs.windows`), made dimensionless
(``f s_x s_y s_z / n``, so Maxwellians of any density and temperature look alike), and projected on
``k`` principal components learned from training VDFs. Stored per VDF: ``k`` coefficients
(float16 or float32, ``payload``) and the moments (``side``, which place the window and drive the
restoration). The model (mean and components, float32) is counted separately.

``incremental=true`` fits batch by batch (Ross et al. 2008, as scikit-learn's IncrementalPCA), so
datasets larger than memory can be used; the exact fit is one SVD.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from faiser.codecs.base import Codec, LossySettings
from faiser.codecs.container import Stream
from faiser.codecs.windows import window_features, window_to_mesh
from faiser.errors import CodecError, CompressedFileError
from faiser.reduce.factors import PcaFactors, local_factors, merge
from faiser.reduce.strategies import STRATEGIES

MERGES = tuple(STRATEGIES)
"""The distributed-fit strategies (:data:`faiser.reduce.strategies.STRATEGIES`)."""


@dataclasses.dataclass(frozen=True)
class PcaSettings(LossySettings):
    """``window``: cells per axis; ``window_mode``: ``crop`` (mesh cells around V, exact) or ``thermal``
    (``+- width`` thermal speeds, resampled); ``components``: k; ``coef_dtype``: float16 | float32;
    ``incremental``/``batch``: batch-wise fit; ``merge``: how ``train-codec --distributed mpi`` combines the
    ranks' data (:mod:`faiser.reduce.strategies`)."""

    fallback: bool = True
    window: int = 16
    window_mode: str = "crop"
    width: float = 4.0
    components: int = 16
    coef_dtype: str = "float16"
    incremental: bool = False
    batch: int = 512
    merge: str = "tree"

    def __post_init__(self):
        super().__post_init__()
        if self.window < 2 or self.components < 1 or self.width <= 0 or self.batch < 1:
            raise ValueError("window >= 2, components >= 1, width > 0 and batch >= 1 are required")
        if self.coef_dtype not in ("float16", "float32"):
            raise ValueError("coef_dtype must be float16 or float32")
        if self.window_mode not in ("crop", "thermal"):
            raise ValueError("window_mode must be crop or thermal")
        if self.merge not in MERGES:
            raise ValueError(f"merge must be one of {', '.join(MERGES)}")


class PcaCodec(Codec):
    """Principal components of thermal-window VDFs (see the module docstring)."""

    name = "pca"
    trainable = True
    needs_moments = True
    Settings = PcaSettings

    def __init__(self, settings=None, **overrides):
        super().__init__(settings, **overrides)
        self.mean: np.ndarray | None = None
        self.components: np.ndarray | None = None
        self.singular_values: np.ndarray | None = None
        self.n_seen = 0

    def _features(self, f, mesh, m):
        st = self.settings
        return window_features(f, mesh, m, st.window, st.width, st.window_mode).reshape(f.shape[0], -1)

    def _fit(self, f, mesh, m, progress):
        st = self.settings
        if st.incremental:
            for lo in range(0, f.shape[0], st.batch):
                self.partial_fit(f[lo : lo + st.batch], mesh, m[lo : lo + st.batch])
            return
        X = self._features(f, mesh, m)
        self.mean = X.mean(axis=0)
        _, S, Vt = np.linalg.svd(X - self.mean, full_matrices=False)
        k = min(st.components, Vt.shape[0])
        self.components, self.singular_values, self.n_seen = Vt[:k], S[:k], X.shape[0]

    def partial_fit(self, f, mesh, m=None):
        """One batch of an incremental fit (mean and components updated as by IncrementalPCA): the
        batch's factors merged into the running ones (:func:`faiser.reduce.factors.merge`, the same
        mergeable state the distributed fit sends between ranks)."""
        from faiser.codecs.moments import moments

        m = moments(f, mesh) if m is None else m
        X = self._features(np.asarray(f), mesh, m)
        batch = local_factors(X, min(X.shape))  # untruncated: the batch's scatter exactly
        if self.mean is not None:
            seen = PcaFactors(self.mean, self.singular_values, self.components, self.n_seen)
            batch = merge(seen, batch, self.settings.components)
        state = batch.truncated(self.settings.components)
        self.mean, self.components, self.singular_values, self.n_seen = (
            state.mean,
            state.components,
            state.singular_values,
            state.n,
        )
        self.fitted = True
        return self

    def _encode(self, f, mesh, m):
        X = self._features(f, mesh, m)
        coef = (X - self.mean) @ self.components.T
        return {"coef": Stream(coef.astype(self.settings.coef_dtype), "payload")}, {}

    def _decode(self, enc, m):
        if m is None:
            raise CompressedFileError("pca data lacks its moments stream")
        coef = enc.streams["coef"].data.astype(np.float64) if "coef" in enc.streams else None
        if coef is None or coef.shape != (enc.n_vdfs, self.components.shape[0]):
            raise CompressedFileError(f"pca coefficients have the wrong shape ({None if coef is None else coef.shape})")
        n = self.settings.window
        w = (self.mean + coef @ self.components).reshape(-1, n, n, n)
        return window_to_mesh(w, enc.mesh, m, self.settings.width, self.settings.window_mode)

    def model_arrays(self):
        if self.components is None:
            return {}
        return {"mean": self.mean.astype(np.float32), "components": self.components.astype(np.float32)}

    def _load_arrays(self, arrays, meta):
        try:
            self.mean = arrays["mean"].astype(np.float64)
            self.components = arrays["components"].astype(np.float64)
        except KeyError as e:
            raise CodecError(f"pca model lacks {e}") from None
        self.mean = self.mean.astype(np.float32).astype(np.float64)
        self.n_seen = int(meta.get("n_seen", 0))

    def model_meta(self):
        return {"n_seen": int(self.n_seen)}
