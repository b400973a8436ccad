"""The reference Vlasov stepper (numerical core: jax/numpy/scipy only, never flax/optax/orbax)."""
