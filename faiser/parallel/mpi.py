"""MPI backend of the domain decomposition: one block per rank, mpi4jax collectives.

Launch with ``mpirun -n N faiser simulate CASE ... --distributed mpi --out DIR``. Every rank builds
the case, keeps the global state and advances its own block with the same
:class:`~faiser.parallel.domain.BlockStepper` as the ``shard_map`` path; only the collectives differ
(:class:`MpiComm`): halos by ``mpi4jax.sendrecv`` with the neighbouring ranks, the field-solve
moments by ``mpi4jax.allgather``, domain sums by ``mpi4jax.allreduce``. At the end of every compiled
chunk (each output stop of ``simulate``) the blocks are all-gathered, so every rank holds the global
state and the unchanged output code runs on it; rank 0 writes the files.

Limits of this first version: the global state (``f`` included) lives on every rank, so MPI
distributes the work but not the memory, and each output stop all-gathers ``f`` (choose
``diag_every`` accordingly). mpi4jax >= 0.8 orders its operations by JAX effects (no tokens).
Gradients must not flow through these collectives (mpi4jax supports reverse mode for few ops).

A rank that dies makes ``mpirun`` abort the job (OpenMPI's default for a process that exits without
``MPI_Finalize``); a Python error on one rank calls ``MPI_Abort`` (:func:`abort_on_error`), so a
failed run never leaves the other ranks waiting in a collective.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from faiser.errors import DistributedError
from faiser.parallel.domain import BlockStepper, _periodic, check_blocks, choose_blocks
from faiser.vlasov.remap import Side, ghost_cells
from faiser.vlasov.state import State
from faiser.vlasov.stepper import Stepper

# Test hook: "RANK:STEP" makes that rank exit abruptly (os._exit(1)) once the block state reaches
# STEP, to check that a crashed rank fails the whole run instead of hanging it.
CRASH_ENV = "FAISER_TEST_MPI_CRASH"


def world():
    """``mpi4py.MPI.COMM_WORLD``; raises :class:`DistributedError` without mpi4py / mpi4jax."""
    try:
        import mpi4jax  # noqa: F401
        from mpi4py import MPI
    except ImportError as e:
        raise DistributedError(
            f"--distributed mpi needs mpi4py and mpi4jax ({e}); install the 'mpi' extra (pip install 'faiser[mpi]')"
        ) from None
    return MPI.COMM_WORLD


@contextlib.contextmanager
def abort_on_error(comm=None) -> Iterator[None]:
    """Run the body; on any exception in a multi-rank job print it and ``MPI_Abort`` every rank."""
    comm = comm or world()
    try:
        yield
    except BaseException as e:
        if comm.Get_size() > 1:
            print(f"faiser: error on MPI rank {comm.Get_rank()}: {e}", file=sys.stderr, flush=True)
            comm.Abort(2)
        raise


class MpiComm:
    """:class:`~faiser.parallel.domain.BlockComm` of one MPI rank (block at ``coords``)."""

    def __init__(self, blocks: tuple[int, int, int], comm):
        self.blocks = blocks
        self.comm = comm
        self.rank = comm.Get_rank()
        self.coords = tuple(int(c) for c in np.unravel_index(self.rank, blocks))

    def _neighbour(self, axis: int, step: int) -> int:
        c = list(self.coords)
        c[axis] = (c[axis] + step) % self.blocks[axis]
        return int(np.ravel_multi_index(c, self.blocks))

    def halo(self, f, width, left: Side, right: Side, *, axis):
        import mpi4jax

        n = f.shape[axis]
        lo, hi = self._neighbour(axis, -1), self._neighbour(axis, +1)
        to_right = lax.slice_in_dim(f, n - width, n, axis=axis)
        to_left = lax.slice_in_dim(f, 0, width, axis=axis)
        # always the full ring, so every send has its receive; the domain edges then use ghosts
        from_left = mpi4jax.sendrecv(to_right, to_right, source=lo, dest=hi, comm=self.comm)
        from_right = mpi4jax.sendrecv(to_left, to_left, source=hi, dest=lo, comm=self.comm)
        if self.coords[axis] == 0 and not _periodic(left):
            from_left = ghost_cells(f, left, True, axis, width)
        if self.coords[axis] == self.blocks[axis] - 1 and not _periodic(right):
            from_right = ghost_cells(f, right, False, axis, width)
        return jnp.concatenate([from_left, f, from_right], axis=axis)

    def gather(self, x):
        import mpi4jax

        g = mpi4jax.allgather(x, comm=self.comm)  # (ranks, *x.shape), ranks in C order of coords
        px, py, pz = self.blocks
        lx, ly, lz, *rest = x.shape
        g = g.reshape(px, py, pz, lx, ly, lz, *rest)
        g = jnp.transpose(g, (0, 3, 1, 4, 2, 5, *range(6, g.ndim)))
        return g.reshape(px * lx, py * ly, pz * lz, *rest)

    def local(self, x, skip=()):
        for d in range(3):
            if self.blocks[d] > 1 and d not in skip:
                n = x.shape[d] // self.blocks[d]
                x = lax.slice_in_dim(x, self.coords[d] * n, (self.coords[d] + 1) * n, axis=d)
        return x

    def psum(self, x):
        import mpi4jax
        from mpi4py import MPI

        return mpi4jax.allreduce(x, op=MPI.SUM, comm=self.comm)


class MpiStepper:
    """A :class:`~faiser.vlasov.stepper.Stepper` decomposed over the ranks of an MPI launch.

    States are global and identical on every rank (see the module docstring); :meth:`multi_step`
    advances this rank's block and all-gathers the blocks at the end.

    Args:
      stepper: the single-domain stepper.
      devices: must be None or the number of ranks.
      blocks: blocks per spatial axis (product = ranks; default :func:`choose_blocks`).
      comm: an mpi4py communicator (default ``COMM_WORLD``).
    """

    def __init__(self, stepper: Stepper, devices: int | None = None, blocks: Sequence[int] | None = None, comm=None):
        self.stepper = stepper
        self.comm = comm or world()
        size = self.comm.Get_size()
        if devices not in (None, size):
            raise DistributedError(f"--devices {devices} with --distributed mpi: the run has {size} MPI ranks")
        self.blocks = check_blocks(stepper, blocks) if blocks is not None else choose_blocks(stepper, size)
        if math.prod(self.blocks) != size:
            raise DistributedError(f"blocks {self.blocks} need {math.prod(self.blocks)} ranks, the run has {size}")
        self.block_comm = MpiComm(self.blocks, self.comm)
        self.block_stepper = BlockStepper(stepper, self.block_comm)
        self.rank = self.comm.Get_rank()
        self._crash = _crash_step(self.rank)

    @property
    def num_devices(self) -> int:
        return math.prod(self.blocks)

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def __getattr__(self, name):
        if name == "stepper":
            raise AttributeError(name)
        return getattr(self.stepper, name)

    def shard(self, state: State) -> State:
        """The global state on this rank's device (every rank holds it whole)."""
        return jax.device_put(state, jax.devices()[0])

    def _block(self, state: State) -> State:
        c = self.block_comm
        return state.replace(f=tuple(c.local(f) for f in state.f), E=c.local(state.E), B=c.local(state.B))

    def multi_step(self, state: State, n_steps: int) -> State:
        """``n_steps`` Strang steps of the decomposed domain (jit-able; ``n_steps`` static)."""
        if n_steps <= 0:
            return state
        block = self.block_stepper.multi_step(self._block(state), n_steps)
        if self._crash is not None:
            jax.debug.callback(partial_crash(self._crash), block.step)
        c = self.block_comm
        return block.replace(f=tuple(c.gather(f) for f in block.f), E=c.gather(block.E), B=c.gather(block.B))

    def compile_chunk(self, state: State, n_steps: int):
        """A compiled ``state -> multi_step(state, n_steps)``. The MPI collectives carry ordered
        effects, which ahead-of-time ``Compiled`` objects cannot be called with: this returns the
        jitted function, compiled now through the same cache its calls use."""
        fn = jax.jit(lambda s: self.multi_step(s, n_steps))
        fn.lower(state).compile()
        return fn

    def diagnostics(self, state: State) -> dict[str, jax.Array]:
        """Global diagnostics of the (global) state."""
        return self.stepper.diagnostics(state)


def _crash_step(rank: int) -> int | None:
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return None
    r, s = spec.split(":")
    return int(s) if int(r) == rank else None


def partial_crash(at_step: int):
    """A host callback that ends this process abruptly once ``step >= at_step`` (test hook)."""

    def cb(step):
        if int(step) >= at_step:
            print(f"faiser: test hook {CRASH_ENV}: rank exits at step {int(step)}", file=sys.stderr, flush=True)
            os._exit(1)

    return cb
