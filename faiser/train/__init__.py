"""Training: codec and latent-model training loops, and checkpoints (:mod:`faiser.train.checkpoint`)."""
