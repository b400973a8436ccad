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


class DataError(FaiserError, ValueError):
    """A file or dataset that cannot be read or written as asked (base of the data errors)."""


class VlsvError(DataError):
    """A VLSV file that is unreadable, truncated, corrupt or lacks what was asked for."""


class DatasetError(DataError):
    """A trajectory dataset that is missing, incomplete, corrupt or sliced out of range."""


class CodecError(FaiserError, ValueError):
    """A codec that cannot be built, fitted or applied as asked (unknown name, bad setting)."""


class CompressedFileError(CodecError, DataError):
    """A compressed file that is truncated, corrupt, or written by a different model or format."""


class CheckpointError(DataError):
    """A checkpoint that is missing, incomplete, tampered with or does not match the run."""


class DistributedError(FaiserError, RuntimeError):
    """A device mesh, domain decomposition or multi-process run that cannot be set up or failed."""


class TrainingError(FaiserError, RuntimeError):
    """A training run that diverged (non-finite loss) or was configured inconsistently."""
