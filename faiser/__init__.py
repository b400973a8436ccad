"""faiser: reference Vlasov stepper, physically sensible VDF compression and latent solvers in JAX."""

from faiser._version import __version__
from faiser.errors import ConfigError, FaiserError, InitialConditionError, NumericalError, TimeStepError
from faiser.grid import PhaseSpaceGrid


def __getattr__(name):  # lazy: keep `import faiser` light
    if name == "simulate":
        from faiser.run.simulate import simulate

        return simulate
    raise AttributeError(f"module 'faiser' has no attribute {name!r}")


__all__ = [
    "ConfigError",
    "FaiserError",
    "InitialConditionError",
    "NumericalError",
    "PhaseSpaceGrid",
    "TimeStepError",
    "__version__",
    "simulate",
]
