"""Device meshes, spatial domain decomposition of the stepper, and the MPI backend."""
