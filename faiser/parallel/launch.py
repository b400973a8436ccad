"""JAX's multi-process runtime started under an MPI launcher (``mpirun -n N python script.py``).

:func:`initialize_from_mpi` lets rank 0 pick the coordinator address (its host and a free port),
broadcasts it with mpi4py and calls :func:`jax.distributed.initialize` on every rank, so that
``jax.devices()`` lists the devices of all processes and one mesh (:func:`faiser.parallel.mesh.make_mesh`)
spans them. On CPU the cross-process collectives use gloo. MPI is only the launcher and the
rendezvous here; the arrays move through JAX's own runtime (compare :mod:`faiser.parallel.mpi`,
where MPI moves them).
"""

from __future__ import annotations

import socket

import jax

from faiser.errors import DistributedError


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def coordinator_address(comm=None, port: int | None = None) -> str:
    """``host:port`` of rank 0 (a free port unless ``port`` is given), the same on every rank."""
    from faiser.parallel.mpi import bcast_json, world

    comm = comm or world()
    addr = None
    if comm.Get_rank() == 0:
        host = socket.gethostname()
        try:
            host = socket.gethostbyname(host)
        except OSError:
            host = "127.0.0.1"
        addr = f"{host}:{port or _free_port()}"
    return bcast_json(addr, comm)  # JSON text, not a pickle


def initialize_from_mpi(comm=None, port: int | None = None, cpu_collectives: str | None = "gloo") -> tuple[int, int]:
    """Start JAX's multi-process runtime on every rank of the MPI job; returns ``(process, processes)``.

    Call it before any other JAX call. ``cpu_collectives`` sets ``jax_cpu_collectives_implementation``
    (``"gloo"`` so that CPU devices of different processes can exchange data; None leaves it).

    Raises:
      DistributedError: without mpi4py, or if the runtime cannot start.
    """
    from faiser.parallel.mpi import world

    comm = comm or world()
    rank, size = comm.Get_rank(), comm.Get_size()
    addr = coordinator_address(comm, port)
    if cpu_collectives:
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    try:
        jax.distributed.initialize(coordinator_address=addr, num_processes=size, process_id=rank)
    except Exception as e:  # noqa: BLE001 (jax raises RuntimeError/XlaRuntimeError variants)
        msg = f"jax.distributed.initialize({addr}, {size} processes) failed on rank {rank}: {e}"
        raise DistributedError(msg) from e
    return jax.process_index(), jax.process_count()
