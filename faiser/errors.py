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


class ResourceError(FaiserError, MemoryError):
    """A run or file that would not fit in memory: refused from an estimate before allocating, or an
    allocation that failed (XLA's ``RESOURCE_EXHAUSTED``, NumPy's ``MemoryError``)."""


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a failed allocation: :class:`MemoryError`, or a jax/XLA runtime error whose
    message says ``RESOURCE_EXHAUSTED`` or ``Out of memory``."""
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, RuntimeError) and type(exc).__name__ in ("XlaRuntimeError", "JaxRuntimeError"):
        text = str(exc)
        return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()
    return False


def out_of_memory_error(exc: BaseException, what: str = "the run") -> ResourceError:
    """A one-line :class:`ResourceError` for the failed allocation ``exc`` (see :func:`is_out_of_memory`)."""
    if isinstance(exc, ResourceError):
        return exc
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    if len(first) > 200:
        first = first[:197] + "..."
    return ResourceError(f"{what} ran out of memory ({first}); use a smaller grid or a machine with more memory")


class ExtrapolationWarning(UserWarning):
    """A learned model applied outside the range of parameters it was trained on."""
