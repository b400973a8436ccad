"""Training: the training toolkit shared by the codec and latent-model trainers."""
