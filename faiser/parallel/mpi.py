"""MPI backend of the domain decomposition: one block per rank, mpi4jax collectives.

Launch with ``mpirun -n N faiser simulate CASE ... --distributed mpi --out DIR``. Every rank builds
the case and cuts its own block out of the initial state (:meth:`MpiStepper.shard`); from then on
a rank holds only its block of ``f``, ``E``, ``B`` and the per-cell ``State.aux`` entries (the
hybrid face B) and advances it with the same :class:`~faiser.parallel.domain.BlockStepper` as the
``shard_map`` path; only the collectives differ (:class:`MpiComm`): halos of ``f`` and of the
hybrid solver's fields by ``mpi4jax.sendrecv`` with the neighbouring ranks, the electrostatic
charge density by ``mpi4jax.allgather``, domain sums and maxima by ``mpi4jax.allreduce``.

Diagnostics are reduced, not gathered: every rank integrates its block and the partial sums,
minima and maxima are all-reduced (:meth:`MpiStepper.diagnostics`); case probes gather only their
per-cell velocity integrals (:class:`~faiser.vlasov.hybrid_diagnostics.CellProbe`). ``f`` is
assembled on rank 0 only where a file needs it (dataset snapshots, VLSV files, checkpoints) by
``MPI_Gather`` into host memory (:meth:`MpiStepper.gather_cells`); resuming scatters a checkpoint's
state from rank 0 (:meth:`MpiStepper.scatter`). Host-side exchanges use mpi4py's buffer methods
(``Gather``, ``Scatter``, ``Bcast``) on NumPy arrays and JSON text, never pickles.

mpi4jax >= 0.8 orders its operations by JAX effects (no tokens). Gradients must not flow through
these collectives (mpi4jax supports reverse mode for few ops).

A rank that dies makes ``mpirun`` abort the job (OpenMPI's default for a process that exits without
``MPI_Finalize``); a Python error on one rank calls ``MPI_Abort`` (:func:`abort_on_error`), so a
failed run never leaves the other ranks waiting in a collective.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from faiser.errors import DistributedError
from faiser.parallel.domain import BlockStepper, block_grid, cell_aux_keys, check_blocks, choose_blocks, exchange_halo
from faiser.vlasov.diagnostics import global_diagnostics
from faiser.vlasov.remap import Side
from faiser.vlasov.state import State
from faiser.vlasov.stepper import Stepper, SteppingDefaults

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


def assemble_blocks(g, blocks: Sequence[int]):
    """The global per-cell array from ``g`` = the blocks stacked in rank order (C order of the block
    coordinates), ``(ranks, lx, ly, lz, ...)``; NumPy or JAX arrays."""
    px, py, pz = blocks
    lx, ly, lz, *rest = g.shape[1:]
    g = g.reshape(px, py, pz, lx, ly, lz, *rest).transpose(0, 3, 1, 4, 2, 5, *range(6, g.ndim + 2))
    return g.reshape(px * lx, py * ly, pz * lz, *rest)


def split_blocks(x, blocks: Sequence[int]):
    """The inverse of :func:`assemble_blocks`: ``(ranks, lx, ly, lz, ...)`` from a global array."""
    px, py, pz = blocks
    (nx, ny, nz), rest = x.shape[:3], x.shape[3:]
    x = x.reshape(px, nx // px, py, ny // py, pz, nz // pz, *rest).transpose(0, 2, 4, 1, 3, 5, *range(6, x.ndim + 3))
    return x.reshape(px * py * pz, nx // px, ny // py, nz // pz, *rest)


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
        return exchange_halo(self, f, width, left, right, axis)

    def halo_with(self, a, width, axis, lo, hi):
        import mpi4jax

        n = a.shape[axis]
        left, right = self._neighbour(axis, -1), self._neighbour(axis, +1)
        to_right = lax.slice_in_dim(a, n - width, n, axis=axis)
        to_left = lax.slice_in_dim(a, 0, width, axis=axis)
        # always the full ring, so every send has its receive; the domain edges then use ghosts
        from_left = mpi4jax.sendrecv(to_right, to_right, source=left, dest=right, comm=self.comm)
        from_right = mpi4jax.sendrecv(to_left, to_left, source=right, dest=left, comm=self.comm)
        if self.coords[axis] == 0 and lo is not None:
            from_left = lo
        if self.coords[axis] == self.blocks[axis] - 1 and hi is not None:
            from_right = hi
        return jnp.concatenate([from_left, a, from_right], axis=axis)

    def pmax(self, x):
        import mpi4jax
        from mpi4py import MPI

        return mpi4jax.allreduce(x, op=MPI.MAX, comm=self.comm)

    def gather(self, x):
        import mpi4jax

        return assemble_blocks(mpi4jax.allgather(x, comm=self.comm), self.blocks)

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


_SUM_KEYS = (
    "mass", "momentum_x", "momentum_y", "momentum_z", "kinetic_energy", "electric_energy", "magnetic_energy",
    "total_energy",
)  # fmt: skip


def bcast_json(obj, comm, root: int = 0):
    """``obj`` (JSON-serializable) of rank ``root`` on every rank, sent as UTF-8 JSON text."""
    data = np.frombuffer(json.dumps(obj).encode(), np.uint8) if comm.Get_rank() == root else None
    n = np.array([0 if data is None else data.size], np.int64)
    comm.Bcast(n, root=root)
    buf = data.copy() if data is not None else np.empty(int(n[0]), np.uint8)
    comm.Bcast(buf, root=root)
    return json.loads(buf.tobytes().decode())


class MpiStepper(SteppingDefaults):
    """A :class:`~faiser.vlasov.stepper.Stepper` decomposed over the ranks of an MPI launch.

    States are this rank's block: ``f``, ``E``, ``B`` and the per-cell ``aux`` entries (the hybrid
    face B) of its cells, the rest (time, step, ``mass_lost``, other ``aux``) replicated.
    :meth:`shard` cuts a block from a global state, :meth:`multi_step` advances it,
    :meth:`diagnostics` returns the global diagnostics on every rank, :meth:`gather_cells` /
    :meth:`gather_state` assemble global arrays on rank 0 (for file writes) and :meth:`scatter`
    distributes a global state held by rank 0.

    Args:
      stepper: the single-domain stepper.
      devices: must be None or the number of ranks.
      blocks: blocks per spatial axis (product = ranks; default :func:`choose_blocks`).
      comm: an mpi4py communicator (default ``COMM_WORLD``).
      field_solve: ``"halo"`` or ``"gathered"`` (see :class:`~faiser.parallel.domain.DomainStepper`).
    """

    ordered_effects = True  # mpi4jax calls: jitted functions only, no AOT-compiled objects

    def __init__(
        self,
        stepper: Stepper,
        devices: int | None = None,
        blocks: Sequence[int] | None = None,
        comm=None,
        field_solve: str = "halo",
    ):
        self.stepper = stepper
        self.comm = comm or world()
        size = self.comm.Get_size()
        if devices not in (None, size):
            raise DistributedError(f"--devices {devices} with --distributed mpi: the run has {size} MPI ranks")
        self.blocks = check_blocks(stepper, blocks) if blocks is not None else choose_blocks(stepper, size)
        if math.prod(self.blocks) != size:
            raise DistributedError(f"blocks {self.blocks} need {math.prod(self.blocks)} ranks, the run has {size}")
        self.block_comm = MpiComm(self.blocks, self.comm)
        self.block_stepper = BlockStepper(stepper, self.block_comm, field_solve)
        self.rank = self.comm.Get_rank()
        self._local_grid = block_grid(stepper.grid, self.blocks, self.block_comm.coords)
        self.cell_aux = cell_aux_keys(stepper, field_solve)
        self._crash = _crash_step(self.rank)

    @property
    def num_devices(self) -> int:
        return math.prod(self.blocks)

    @property
    def local_grid(self):
        """The grid of this rank's block."""
        return self._local_grid

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def __getattr__(self, name):
        if name == "stepper":
            raise AttributeError(name)
        return getattr(self.stepper, name)

    # ---- placement ---------------------------------------------------------------------------
    def shard(self, state: State) -> State:
        """This rank's block of the global ``state`` (every rank passes the same global state),
        on this rank's device. Only the block's slices are copied to the device."""
        cut = lambda x: jnp.asarray(np.ascontiguousarray(self._cut(np.asarray(x))))  # noqa: E731
        return state.replace(
            f=tuple(cut(f) for f in state.f), E=cut(state.E), B=cut(state.B),
            time=jnp.asarray(state.time), step=jnp.asarray(state.step), mass_lost=jnp.asarray(state.mass_lost),
            aux={k: cut(v) if k in self.cell_aux else jax.tree.map(jnp.asarray, v) for k, v in state.aux.items()},
        )  # fmt: skip

    def _cut(self, x: np.ndarray) -> np.ndarray:
        index = tuple(
            slice(c * (n // p), (c + 1) * (n // p)) for n, p, c in zip(x.shape, self.blocks, self.block_comm.coords)
        )
        return x[index]

    def scatter(self, state: State | None, like: State) -> State:
        """The block of ``state``, a global state held by rank 0 only (None on the other ranks);
        ``like`` is a global state of the same structure, shapes and dtypes on every rank."""
        root = self.is_root
        is_cell = like.replace(
            f=tuple(True for _ in like.f), E=True, B=True, time=False, step=False, mass_lost=False,
            aux={k: (True if k in self.cell_aux else jax.tree.map(lambda _: False, v)) for k, v in like.aux.items()},
        )  # fmt: skip
        leaves, tree = jax.tree_util.tree_flatten(like)
        given = jax.tree_util.tree_leaves(state) if root else [None] * len(leaves)
        if len(given) != len(leaves):
            raise DistributedError("the state to scatter does not match the case's state")
        out = []
        for lk, x, cell in zip(leaves, given, jax.tree_util.tree_leaves(is_cell)):
            shape, dtype = np.shape(lk), np.dtype(lk.dtype)
            if cell:
                local = tuple(n // b for n, b in zip(shape[:3], self.blocks)) + shape[3:]
                send = np.ascontiguousarray(split_blocks(np.asarray(x, dtype), self.blocks)) if root else None
                buf = np.empty(local, dtype)
                self.comm.Scatter(send, buf, root=0)
            else:
                buf = np.array(x, dtype, order="C") if root else np.empty(shape, dtype)  # keeps 0-d arrays 0-d
                self.comm.Bcast(buf, root=0)
            out.append(jnp.asarray(buf))
        return jax.tree_util.tree_unflatten(tree, out)

    def gather_cells(self, tree):
        """A pytree of per-cell block arrays (spatial axes first) assembled into global NumPy
        arrays on rank 0 (``MPI_Gather`` into host memory); None on the other ranks."""
        root = self.is_root
        out = []
        leaves, treedef = jax.tree_util.tree_flatten(jax.device_get(tree))
        for x in leaves:
            x = np.ascontiguousarray(x)
            recv = np.empty((self.num_devices, *x.shape), x.dtype) if root else None
            self.comm.Gather(x, recv, root=0)
            if root:
                out.append(assemble_blocks(recv, self.blocks))
        return jax.tree_util.tree_unflatten(treedef, out) if root else None

    def gather_state(self, state: State) -> State | None:
        """The global state (NumPy arrays) on rank 0, None on the other ranks."""
        cells = self.gather_cells((state.f, state.E, state.B))
        aux = self.gather_aux(state)
        if cells is None:
            return None
        f, E, B = cells
        return jax.device_get(state.replace(f=(), E=(), B=(), aux={})).replace(f=tuple(f), E=E, B=B, aux=aux)

    def gather_aux(self, state: State) -> dict | None:
        """``state.aux`` with its per-cell entries assembled (NumPy) on rank 0; None elsewhere."""
        cells = self.gather_cells({k: v for k, v in state.aux.items() if k in self.cell_aux})
        if cells is None:
            return None
        return {k: cells[k] if k in cells else jax.device_get(v) for k, v in state.aux.items()}

    # ---- stepping and diagnostics --------------------------------------------------------------
    def multi_step(self, state: State, n_steps: int) -> State:
        """``n_steps`` Strang steps of this rank's block (jit-able; ``n_steps`` static)."""
        if n_steps <= 0:
            return state
        block = self.block_stepper.multi_step(state, n_steps)
        if self._crash is not None:
            jax.debug.callback(partial_crash(self._crash), block.step)
        return block

    def compile(self, fn, state: State):
        """``fn`` jitted and compiled for ``state``. The MPI collectives carry ordered effects,
        which ahead-of-time ``Compiled`` objects cannot be called with: this returns the jitted
        function, compiled now through the same cache its calls use."""
        jitted = jax.jit(fn)
        jitted.lower(state).compile()
        return jitted

    def diagnostics(self, state: State) -> dict[str, jax.Array]:
        """The global diagnostics of :meth:`Stepper.diagnostics` from this rank's block: block
        integrals all-reduced (sums; ``l2_norm`` through its square; min / max of ``f``)."""
        import mpi4jax
        from mpi4py import MPI

        d = global_diagnostics(state.f, state.E, state.B, self.local_grid, self.species)
        sums = jnp.stack([d[k] for k in _SUM_KEYS] + [d["l2_norm"] ** 2])
        sums = mpi4jax.allreduce(sums, op=MPI.SUM, comm=self.comm)
        out = {k: sums[i] for i, k in enumerate(_SUM_KEYS)}
        out["l2_norm"] = jnp.sqrt(sums[-1])
        out["f_min"] = mpi4jax.allreduce(d["f_min"], op=MPI.MIN, comm=self.comm)
        out["f_max"] = mpi4jax.allreduce(d["f_max"], op=MPI.MAX, comm=self.comm)
        out["time"], out["step"], out["mass_lost"] = state.time, state.step, jnp.sum(state.mass_lost)
        return {k: out[k] for k in (*d, "time", "step", "mass_lost")}

    def probe(self, probe, state: State) -> dict:
        """A case probe of the global state from this rank's block: a
        :class:`~faiser.vlasov.hybrid_diagnostics.CellProbe` gathers its per-cell integrals, E and
        B; any other probe gets the whole gathered state."""
        c = self.block_comm
        aux = {k: c.gather(v) if k in self.cell_aux else v for k, v in state.aux.items()}
        whole = state.replace(E=c.gather(state.E), B=c.gather(state.B), aux=aux)
        if hasattr(probe, "cells") and hasattr(probe, "finish"):
            cells = jax.tree.map(c.gather, probe.cells(state.f, self.local_grid))
            return probe.finish(whole.replace(f=()), cells)
        return probe(whole.replace(f=tuple(c.gather(f) for f in state.f)))


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
