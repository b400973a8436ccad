"""Communicators for the distributed PCA: simulated ranks in one process, or MPI ranks.

Every strategy in :mod:`faiser.reduce.strategies` is written once, against :class:`Comm`. A
process holds the data of ``comm.local`` ranks: all ``P`` of them for :class:`SimulatedComm` (the
tests, the benchmark), exactly one for :class:`MpiComm` (``mpirun``). Per-rank values travel as
lists indexed like ``comm.local``, and every collective returns one list entry per local rank.
Reductions visit the ranks in the same order in both communicators (a binary tree over rank
numbers), so a simulated fit and an MPI fit agree to rounding.

Both count what each rank sends (:class:`CommStats`): bytes, messages and communication rounds
(a round = one level of a tree, one neighbour exchange or one set of point-to-point messages, so
an allreduce, a reduction plus a broadcast down the same tree, is ``2 ceil(log2 P)`` rounds), and,
for MPI, the seconds spent inside message passing (simulated ranks report 0: nothing travels).
Only NumPy arrays travel; MPI uses mpi4py's buffer methods (never pickles).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import numpy as np

from faiser.errors import DistributedError


@dataclasses.dataclass
class CommStats:
    """Per-rank communication counters (``bytes_sent[r]`` etc. for every rank of the job)."""

    size: int
    bytes_sent: np.ndarray = None
    messages: np.ndarray = None
    rounds: int = 0
    seconds: float = 0.0

    def __post_init__(self):
        self.bytes_sent = np.zeros(self.size, np.int64) if self.bytes_sent is None else self.bytes_sent
        self.messages = np.zeros(self.size, np.int64) if self.messages is None else self.messages

    def summary(self) -> dict:
        """Max and mean bytes per rank, rounds and seconds (JSON-ready)."""
        return {
            "bytes_per_rank_max": int(self.bytes_sent.max()),
            "bytes_per_rank_mean": float(self.bytes_sent.mean()),
            "messages_per_rank_max": int(self.messages.max()),
            "rounds": int(self.rounds),
            "comm_seconds": float(self.seconds),
        }


def tree_schedule(size: int) -> list[list[tuple[int, int]]]:
    """Levels of a binary reduction tree over ranks ``0 .. size - 1``: at each level the pairs
    ``(receiver, sender)``; the result ends on rank 0 after ``ceil(log2 size)`` levels."""
    levels, step = [], 1
    while step < size:
        levels.append([(r, r + step) for r in range(0, size, 2 * step) if r + step < size])
        step *= 2
    return levels


class Comm:
    """Collectives over per-rank values (lists indexed like :attr:`local`)."""

    size: int
    local: list[int]
    stats: CommStats

    def allreduce(self, xs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Sum of every rank's array, on every local rank: a reduction and a broadcast down the
        tree of :meth:`tree_reduce`."""
        return self.tree_reduce([np.asarray(x) for x in xs], np.add, lambda x: [x], lambda a: np.array(a[0]))

    def tree_reduce(self, xs: Sequence, op: Callable, pack: Callable, unpack: Callable, down=None) -> list:
        """Combine per-rank values pairwise along :func:`tree_schedule` with ``op(left, right)``; every
        local rank gets the root's result back down the same tree. ``pack(value) -> list of arrays`` and
        ``unpack(arrays)`` move a value through MPI (and define the bytes a message costs).

        ``down = (encode, decode)`` compresses the way back: a parent knows the value each child sent
        up, so it sends ``encode(result, child's value)`` and the child rebuilds
        ``decode(arrays, its own value)`` (e.g. only what the child's subspace lacks)."""
        raise NotImplementedError

    def neighbour_exchange(
        self, xs: Sequence[np.ndarray], neighbours: Sequence[Sequence[int]]
    ) -> list[dict[int, np.ndarray]]:
        """Every rank sends its array to each of its neighbours (``neighbours[r]``: ranks, symmetric);
        returns, per local rank, ``{neighbour: its array}``. One round."""
        raise NotImplementedError

    def send_along(
        self, edges: Sequence[tuple[int, int]], payload: Callable[[int, int], list[np.ndarray]]
    ) -> dict[tuple[int, int], list[np.ndarray]]:
        """One round of point-to-point messages along ``edges`` ``(src, dst)``: ``payload(src, dst)``
        (evaluated on the process holding ``src``) arrives at ``dst``; returns
        ``{(src, dst): arrays}`` for the edges whose ``dst`` is local."""
        raise NotImplementedError

    def _count(self, rank: int, arrays: Sequence[np.ndarray], messages: int = 1):
        self.stats.bytes_sent[rank] += sum(int(np.asarray(a).nbytes) for a in arrays) * messages
        self.stats.messages[rank] += messages


class SimulatedComm(Comm):
    """``size`` ranks simulated in one process (all ranks are local)."""

    def __init__(self, size: int):
        if size < 1:
            raise DistributedError(f"a communicator needs at least one rank (got {size})")
        self.size = size
        self.local = list(range(size))
        self.stats = CommStats(size)

    def tree_reduce(self, xs, op, pack, unpack, down=None):
        parts, sent = list(xs), {}
        for level in tree_schedule(self.size):
            for recv, send in level:
                arrays = pack(parts[send])
                self._count(send, arrays)
                sent[send] = unpack(arrays)  # what the child sent = what its parent received
                parts[recv] = op(parts[recv], sent[send])
            self.stats.rounds += 1
        result = {0: unpack(pack(parts[0]))}
        for level in reversed(tree_schedule(self.size)):
            for recv, send in level:
                arrays = pack(result[recv]) if down is None else down[0](result[recv], sent[send])
                self._count(recv, arrays)
                result[send] = unpack(arrays) if down is None else down[1](arrays, sent[send])
            self.stats.rounds += 1
        return [result[r] for r in self.local]

    def neighbour_exchange(self, xs, neighbours):
        xs = [np.asarray(x) for x in xs]
        for r in range(self.size):
            self._count(r, [xs[r]], len(neighbours[r]))
        self.stats.rounds += 1
        return [{j: xs[j] for j in neighbours[r]} for r in range(self.size)]

    def send_along(self, edges, payload):
        out = {}
        for src, dst in edges:
            arrays = [np.asarray(a) for a in payload(src, dst)]
            self._count(src, arrays)
            out[(src, dst)] = arrays
        self.stats.rounds += 1
        return out


class MpiComm(Comm):
    """One rank per process over an mpi4py communicator (``MPI.COMM_WORLD`` by default).

    Arrays move with the buffer methods (``Send``/``Recv``/``Sendrecv``) after a small header of
    shapes and dtypes, so nothing is pickled. Collectives follow the same trees as
    :class:`SimulatedComm`, which keeps the two bit-compatible up to the order of float sums.
    """

    def __init__(self, comm=None):
        if comm is None:
            from faiser.parallel.mpi import world

            comm = world()
        self.comm = comm
        self.size = comm.Get_size()
        self.rank = comm.Get_rank()
        self.local = [self.rank]
        self.stats = CommStats(self.size)

    # -- point to point (header of ints, then each array's buffer) --------------------------------
    _DTYPES = [np.dtype(t) for t in ("float64", "float32", "int64", "int32")]

    def _send(self, arrays, dst, tag=0, requests=None):
        """Send ``arrays`` to ``dst``; non-blocking when ``requests`` (a list the caller waits on)."""
        arrays = [np.ascontiguousarray(a) for a in arrays]
        header = [len(arrays)]
        for a in arrays:
            if a.dtype not in self._DTYPES:
                raise DistributedError(f"cannot send arrays of dtype {a.dtype}")
            header += [self._DTYPES.index(a.dtype), a.ndim, *a.shape]
        t0 = time.perf_counter()
        for buf in [np.asarray([len(header), *header], np.int64), *arrays]:
            if requests is None:
                self.comm.Send(buf, dest=dst, tag=tag)
            else:
                requests.append((self.comm.Isend(buf, dest=dst, tag=tag), buf))
        self.stats.seconds += time.perf_counter() - t0
        self._count(self.rank, arrays)

    def _recv(self, src, tag=0):
        from mpi4py import MPI

        t0 = time.perf_counter()
        status = MPI.Status()
        self.comm.Probe(source=src, tag=tag, status=status)
        head = np.empty(status.Get_count(MPI.INT64_T), np.int64)
        self.comm.Recv(head, source=src, tag=tag)
        header, pos, arrays = head[1:], 1, []
        for _ in range(int(header[0])):
            dtype, ndim = self._DTYPES[int(header[pos])], int(header[pos + 1])
            shape = tuple(int(s) for s in header[pos + 2 : pos + 2 + ndim])
            pos += 2 + ndim
            a = np.empty(shape, dtype)
            self.comm.Recv(a, source=src, tag=tag)
            arrays.append(a)
        self.stats.seconds += time.perf_counter() - t0
        return arrays

    def tree_reduce(self, xs, op, pack, unpack, down=None):
        (value,) = xs
        received, mine = {}, None
        for level in tree_schedule(self.size):
            for recv, send in level:
                if self.rank == send:
                    arrays = pack(value)
                    mine = unpack(arrays)
                    self._send(arrays, recv, tag=3)
                elif self.rank == recv:
                    received[send] = unpack(self._recv(send, tag=3))
                    value = op(value, received[send])
            self.stats.rounds += 1
        result = unpack(pack(value)) if self.rank == 0 else None
        for level in reversed(tree_schedule(self.size)):
            for recv, send in level:
                if self.rank == recv:
                    arrays = pack(result) if down is None else down[0](result, received[send])
                    self._send(arrays, send, tag=2)
                elif self.rank == send:
                    arrays = self._recv(recv, tag=2)
                    result = unpack(arrays) if down is None else down[1](arrays, mine)
            self.stats.rounds += 1
        return [result]

    def neighbour_exchange(self, xs, neighbours):
        from mpi4py import MPI

        t0 = time.perf_counter()
        (x,) = xs
        x = np.ascontiguousarray(x)
        out, reqs = {}, []
        for j in sorted(neighbours[self.rank]):
            out[j] = np.empty_like(x)
            reqs.append(self.comm.Irecv(out[j], source=j, tag=4))
        for j in sorted(neighbours[self.rank]):
            reqs.append(self.comm.Isend(x, dest=j, tag=4))
            self._count(self.rank, [x])
        MPI.Request.Waitall(reqs)
        self.stats.rounds += 1
        self.stats.seconds += time.perf_counter() - t0
        return [out]

    def send_along(self, edges, payload):
        from mpi4py import MPI

        out, pending = {}, []
        for src, dst in edges:
            if self.rank == src:
                self._send(payload(src, dst), dst, tag=5, requests=pending)
        for src, dst in edges:
            if self.rank == dst:
                out[(src, dst)] = self._recv(src, tag=5)
        t0 = time.perf_counter()
        MPI.Request.Waitall([r for r, _buf in pending])
        self.stats.seconds += time.perf_counter() - t0
        self.stats.rounds += 1
        return out

    def gather_stats(self) -> CommStats:
        """Every rank's counters, summed over the job (each rank counted only its own sends)."""
        total = CommStats(self.size)
        from mpi4py import MPI

        self.comm.Allreduce(self.stats.bytes_sent, total.bytes_sent, op=MPI.SUM)
        self.comm.Allreduce(self.stats.messages, total.messages, op=MPI.SUM)
        total.rounds, total.seconds = self.stats.rounds, self.stats.seconds
        return total
