"""Choosing a stepping backend: the single-domain stepper, shard_map over local devices, or MPI."""

from __future__ import annotations

from faiser.errors import DistributedError
from faiser.parallel.domain import DomainStepper
from faiser.vlasov.stepper import Stepper, SteppingBackend

__all__ = ["distribute"]


def distribute(stepper: Stepper, devices: int | None = None, distributed: str = "none") -> SteppingBackend:
    """The decomposed stand-in for ``stepper``: a :class:`DomainStepper` over ``devices`` local
    devices (``distributed="none"``) or a :class:`~faiser.parallel.mpi.MpiStepper` over the ranks of
    an MPI launch (``distributed="mpi"``); ``stepper`` itself for one device and no MPI.

    Raises:
      DistributedError: the decomposition cannot be set up (too many devices, thin blocks, no MPI).
    """
    if distributed == "mpi":
        from faiser.parallel.mpi import MpiStepper

        return MpiStepper(stepper, devices=devices)
    if distributed != "none":
        raise DistributedError(f"unknown distributed backend {distributed!r}; use 'none' or 'mpi'")
    if (devices or 1) <= 1:
        return stepper
    return DomainStepper(stepper, devices=devices)
