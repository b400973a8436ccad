"""faiser: reference Vlasov stepper, physically sensible VDF compression and latent solvers in JAX."""

from faiser.errors import ConfigError, FaiserError, InitialConditionError, NumericalError, TimeStepError
from faiser.grid import PhaseSpaceGrid

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "FaiserError",
    "InitialConditionError",
    "NumericalError",
    "PhaseSpaceGrid",
    "TimeStepError",
    "__version__",
]
