"""Learned models (Flax NNX and pure JAX): 3D VQ-VAE, EMA vector quantizer, Fourier-feature MLP
(fitted by :mod:`faiser.train.fourier_mlp`).

Imports flax; the numerical core (:mod:`faiser.vlasov`) never imports this package.
"""

from faiser.models.fourier_mlp import FourierMLPConfig, eval_mlp, export_weights, grid_coords, import_weights
from faiser.models.quantizer import CodebookStat, QuantizerOutput, VectorQuantizer
from faiser.models.vqvae3d import VQVAE3D, VQVAE3DConfig, VQVAE3DOutput, inference_fns

__all__ = [
    "VQVAE3D",
    "CodebookStat",
    "FourierMLPConfig",
    "QuantizerOutput",
    "VQVAE3DConfig",
    "VQVAE3DOutput",
    "VectorQuantizer",
    "eval_mlp",
    "export_weights",
    "grid_coords",
    "import_weights",
    "inference_fns",
]
