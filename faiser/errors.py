"""Named exceptions of the public API. The CLI maps them to exit status 2 and one line."""


class FaiserError(Exception):
    """Base class of every error faiser raises on purpose."""


class ConfigError(FaiserError, ValueError):
    """Unknown case or key, a bad value, or an inconsistent configuration."""


class InitialConditionError(FaiserError, ValueError):
    """Initial distribution that is non-finite, negative or of the wrong shape."""


class TimeStepError(FaiserError, ValueError):
    """A time step that violates the CFL or rotation limit and cannot be substepped."""


class NumericalError(FaiserError, FloatingPointError):
    """The state became non-finite during a run."""
