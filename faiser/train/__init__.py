"""Training: the one training toolkit (:mod:`faiser.train.loop`: sharded jitted step, optimizer,
checkpoint stage, history, progress) and the trainers built on it: :mod:`faiser.train.vqvae` (3D
VQ-VAE codec) and :mod:`faiser.train.fourier_mlp` (per-VDF Fourier MLP fits). The latent solver's
two-stage training is :mod:`faiser.latent.train`."""
