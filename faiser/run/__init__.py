"""The application layer: the simulate driver, outputs and writers, simulation checkpoints, sweeps."""
