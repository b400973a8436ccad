"""Spatial domain decomposition of the reference stepper (``shard_map`` with halo exchange).

The distribution ``f`` of every species, ``(nx, ny, nz, nvx, nvy, nvz)``, is split into blocks
along one or two spatial axes (``blocks = (px, py, pz)``, one mesh axis per split spatial axis,
named ``space_x`` / ``space_y`` / ``space_z``); velocity space stays whole inside a block, so the
acceleration (a per-cell map) runs block-locally without communication. What crosses blocks:

* **translation** along a split axis: before the remap along that axis each block is extended by
  :func:`~faiser.vlasov.translate.halo_width` cells (``3 + ceil(max |v| dt / dx)``: the PPM stencil
  plus the integer part of the shift) of its neighbours, exchanged with ``lax.ppermute`` (a ring;
  at a non-periodic domain edge the halo is the boundary's ghost cells instead: outflow copies or
  the inflow Maxwellian). The stepper's own :func:`~faiser.vlasov.translate.translate` remaps the
  extended block and crops it, so every cell sees exactly the values it sees in a single domain.
  A block thinner than the halo is refused (:class:`~faiser.errors.DistributedError`).
* **hybrid field solve** (:class:`HaloFields`): block-local like the translation. The
  constrained-transport Faraday/Ohm solver pads every array by ``G = 3`` ghost cells per axis;
  on a block, the ghosts along a split axis are the neighbours' cells (``halo_with``: a
  ``ppermute`` ring, the boundary rule only at the domain's edges, including the div-B closure of
  the face B at a non-periodic high edge), the subcycle count comes from the global maximum
  signal speed (``pmax``), and the face-staggered B in ``State.aux["B_face"]`` is split with
  ``f``. Every Heun stage exchanges one halo of the face B: 3 x 3 x (cells of a block face)
  numbers, against the ``(3 + shift) x nv^3`` values per face cell of ``f``'s halos. A block
  computes exactly the values of its cells in the whole domain (tests: 1D, 2 x 2, 2 x 2 x 2).
* **electrostatic field solve** (:class:`GatheredFields`): each block computes its charge
  density, it is all-gathered and every device solves the periodic FFT Poisson problem of the
  whole domain, then keeps the E of its own block (one number per spatial cell gathered, against
  ``nv^3`` values of ``f`` per cell; 0.5-1.2 % of a CPU step).
* **sums** (mass lost from the velocity box, mass removed by the sparsity threshold): ``psum``.

Diagnostics and outputs run on the global (sharded) arrays under ``jax.jit``; XLA partitions them.
The MPI backend (:mod:`faiser.parallel.mpi`) runs the same block stepper with mpi4jax collectives.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from functools import partial
from typing import Protocol

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from faiser.errors import DistributedError
from faiser.grid import PhaseSpaceGrid
from faiser.parallel.mesh import SPACE_AXES, make_mesh
from faiser.vlasov.remap import Side, ghost_cells
from faiser.vlasov.state import State
from faiser.vlasov.stepper import CFL_LIMIT, Stepper, SteppingDefaults
from faiser.vlasov.translate import halo_width, translate

__all__ = [
    "BlockComm", "DomainStepper", "ShardMapComm", "block_grid", "choose_blocks", "check_blocks", "halo_widths",
]  # fmt: skip


def _periodic(side: Side) -> bool:
    return isinstance(side, str) and side == "periodic"


# ---- decomposition geometry ---------------------------------------------------------------------
def halo_widths(stepper: Stepper) -> tuple[int, int, int]:
    """Halo cells per spatial axis that one translation of ``stepper`` reads (the widest of its
    half-step and full-step translations; 0 on unresolved axes)."""
    g = stepper.grid
    return tuple(halo_width(g, d, stepper.dt) if g.nx[d] > 1 else 0 for d in range(3))  # type: ignore[return-value]


def check_blocks(stepper: Stepper, blocks: Sequence[int]) -> tuple[int, int, int]:
    """Validate a decomposition ``(px, py, pz)`` of ``stepper.grid``; returns it as a tuple.

    Raises:
      DistributedError: a split of an unresolved axis, cells that do not divide evenly, or a
        block thinner than the halo its translation needs.
    """
    blocks = tuple(int(b) for b in blocks)
    if len(blocks) != 3 or any(b < 1 for b in blocks):
        raise DistributedError(f"blocks must be 3 positive counts (px, py, pz), got {blocks}")
    g, widths = stepper.grid, halo_widths(stepper)
    for d, p in enumerate(blocks):
        if p == 1:
            continue
        n = g.nx[d]
        if n == 1:
            raise DistributedError(f"cannot split the unresolved spatial axis {'xyz'[d]} over {p} blocks")
        if n % p:
            raise DistributedError(f"nx[{d}]={n} cells do not split evenly over {p} blocks along {'xyz'[d]}")
        if n // p < widths[d]:
            raise DistributedError(
                f"blocks of {n // p} cells along {'xyz'[d]} are thinner than the halo of {widths[d]} cells "
                f"that a translation needs (3 + ceil(max|v| dt/dx)); use fewer devices or more cells"
            )
    return blocks  # type: ignore[return-value]


def block_grid(grid: PhaseSpaceGrid, blocks: Sequence[int], coords: Sequence[int]) -> PhaseSpaceGrid:
    """The grid of the block at ``coords`` of a ``blocks`` decomposition of ``grid``: its part of
    the spatial box and cells, the whole velocity mesh (for per-cell diagnostics of one block)."""
    lo, hi, n = list(grid.x_min), list(grid.x_max), list(grid.nx)
    for d in range(3):
        if blocks[d] > 1:
            width = (grid.x_max[d] - grid.x_min[d]) / blocks[d]
            lo[d], hi[d] = grid.x_min[d] + coords[d] * width, grid.x_min[d] + (coords[d] + 1) * width
            n[d] = grid.nx[d] // blocks[d]
    return dataclasses.replace(grid, x_min=tuple(lo), x_max=tuple(hi), nx=tuple(n))


def choose_blocks(stepper: Stepper, n: int) -> tuple[int, int, int]:
    """The decomposition of ``stepper.grid`` over ``n`` blocks with the smallest halo volume per
    block (ties: fewer split axes, then x before y before z).

    Raises:
      DistributedError: no valid decomposition (see :func:`check_blocks`).
    """
    if n < 1:
        raise DistributedError(f"the number of devices must be >= 1, got {n}")
    g, widths = stepper.grid, halo_widths(stepper)
    best, best_key, first_error = None, None, None
    divisors = [p for p in range(1, n + 1) if n % p == 0]
    for px, py in itertools.product(divisors, divisors):
        if n % (px * py):
            continue
        blocks = (px, py, n // (px * py))
        try:
            check_blocks(stepper, blocks)
        except DistributedError as e:
            first_error = first_error or e
            continue
        local = [g.nx[d] // blocks[d] for d in range(3)]
        halo = sum(2 * widths[d] * math.prod(local) // local[d] for d in range(3) if blocks[d] > 1)
        key = (halo, sum(b > 1 for b in blocks), tuple(-b for b in blocks))
        if best_key is None or key < best_key:
            best, best_key = blocks, key
    if best is None:
        raise DistributedError(f"cannot decompose the {g.nx} spatial grid over {n} devices: {first_error}")
    return best


# ---- communication inside a block step ----------------------------------------------------------
class BlockComm(Protocol):
    """What the block stepper needs from its neighbours (shard_map or MPI implementations).

    Per-cell arrays have the spatial axes first: ``(nx, ny, nz, ...)`` globally and
    ``(nx / px, ny / py, nz / pz, ...)`` in a block.
    """

    blocks: tuple[int, int, int]

    def halo(self, f: jax.Array, width: int, left: Side, right: Side, *, axis: int) -> jax.Array:
        """``f`` extended by ``width`` cells of the neighbouring blocks on both sides of ``axis``
        (the boundary's ghost cells at a non-periodic domain edge)."""
        ...

    def halo_with(self, a: jax.Array, width: int, axis: int, lo: jax.Array | None, hi: jax.Array | None) -> jax.Array:
        """``a`` extended by ``width`` cells of the neighbouring blocks along ``axis``; at the
        domain's low (high) edge by ``lo`` (``hi``) instead, unless that is None (periodic)."""
        ...

    def pmax(self, x: jax.Array) -> jax.Array:
        """Maximum of ``x`` over all blocks."""
        ...

    def gather(self, x: jax.Array) -> jax.Array:
        """The global per-cell array assembled from every block's ``x``."""
        ...

    def local(self, x: jax.Array, skip: Sequence[int] = ()) -> jax.Array:
        """This block's part of a global per-cell array (spatial axes in ``skip`` left whole)."""
        ...

    def psum(self, x: jax.Array) -> jax.Array:
        """Sum of ``x`` over all blocks."""
        ...


class ShardMapComm:
    """:class:`BlockComm` inside ``shard_map``: ``ppermute`` halos, ``all_gather``, ``psum``."""

    def __init__(self, blocks: tuple[int, int, int]):
        self.blocks = blocks
        self.names = {d: SPACE_AXES[d] for d in range(3) if blocks[d] > 1}

    def halo(self, f, width, left, right, *, axis):
        return exchange_halo(self, f, width, left, right, axis)

    def halo_with(self, a, width, axis, lo, hi):
        name, p, n = self.names[axis], self.blocks[axis], a.shape[axis]
        to_right = lax.slice_in_dim(a, n - width, n, axis=axis)  # becomes the right neighbour's left halo
        to_left = lax.slice_in_dim(a, 0, width, axis=axis)
        from_left = lax.ppermute(to_right, name, [(i, (i + 1) % p) for i in range(p)])
        from_right = lax.ppermute(to_left, name, [(i, (i - 1) % p) for i in range(p)])
        idx = lax.axis_index(name)
        if lo is not None:
            from_left = jnp.where(idx == 0, lo, from_left)
        if hi is not None:
            from_right = jnp.where(idx == p - 1, hi, from_right)
        return jnp.concatenate([from_left, a, from_right], axis=axis)

    def pmax(self, x):
        return lax.pmax(x, tuple(self.names.values())) if self.names else x

    def gather(self, x):
        for d, name in self.names.items():
            x = lax.all_gather(x, name, axis=d, tiled=True)
        return x

    def local(self, x, skip=()):
        for d, name in self.names.items():
            if d in skip:
                continue
            n = x.shape[d] // self.blocks[d]
            x = lax.dynamic_slice_in_dim(x, lax.axis_index(name) * n, n, axis=d)
        return x

    def psum(self, x):
        return lax.psum(x, tuple(self.names.values())) if self.names else x


def exchange_halo(comm, f, width, left: Side, right: Side, axis: int):
    """:meth:`BlockComm.halo` from :meth:`BlockComm.halo_with`: the ghost cells of ``f``'s
    boundary (outflow copies, inflow values) at a non-periodic domain edge."""
    lo = None if _periodic(left) else ghost_cells(f, left, True, axis, width)
    hi = None if _periodic(right) else ghost_cells(f, right, False, axis, width)
    return comm.halo_with(f, width, axis, lo, hi)


# ---- the block stepper ----------------------------------------------------------------------------
class _BlockFields:
    """What a block's field model forwards to the wrapped model."""

    @property
    def magnetized(self) -> bool:
        return self.model.magnetized

    def max_gyrofrequency(self, species) -> float:
        return self.model.max_gyrofrequency(species)

    def initialize(self, state, grid, species):  # the global state is initialized before splitting
        raise DistributedError("initialize the global state before decomposing it")


class HaloFields(_BlockFields):
    """A field model that runs block-locally (e.g. the hybrid CT solver): its ``on_block(comm)``
    version takes ghost cells along split axes from the neighbouring blocks (``comm.halo_with``)
    and global maxima through ``comm.pmax``, and solves on the block's grid. Per-cell entries of
    ``state.aux`` (``model.cell_aux``, e.g. the face B) are split with ``f``."""

    def __init__(self, model, comm: BlockComm, grid: PhaseSpaceGrid):
        self.model = model.on_block(comm)
        self.comm = comm
        # the field solve reads nx, dx and the boundary kinds of a block's grid, not its position
        self.grid = block_grid(grid, comm.blocks, (0, 0, 0))

    def update(self, state, grid, species, dt):
        return self.model.update(state, self.grid, species, dt)

    def finalize(self, state, grid, species):
        return self.model.finalize(state, self.grid, species)


FIELD_SOLVES = ("halo", "gathered")


def _halo_solve(stepper: Stepper, field_solve: str) -> bool:
    if field_solve not in FIELD_SOLVES:
        raise DistributedError(f"unknown field_solve {field_solve!r}; use one of {', '.join(FIELD_SOLVES)}")
    return field_solve == "halo" and hasattr(stepper.fields, "on_block")


def cell_aux_keys(stepper: Stepper, field_solve: str = "halo") -> tuple[str, ...]:
    """The ``state.aux`` entries of ``stepper``'s field model that a decomposed run splits like
    ``f`` (per-cell arrays of a model that solves block by block); the rest is replicated."""
    return tuple(getattr(stepper.fields, "cell_aux", ())) if _halo_solve(stepper, field_solve) else ()


class GatheredFields(_BlockFields):
    """A field model seen from one block: per-cell moments are gathered, the fields of the whole
    domain are solved (replicated on every block; see the module docstring) and each block keeps
    its own E and B. ``state.aux`` is global and replicated. Used for models without
    ``on_block`` (the electrostatic FFT Poisson solve)."""

    def __init__(self, model, comm: BlockComm):
        for name in ("cell_moments", "update_from_moments", "finalize_from_moments"):
            if not hasattr(model, name):
                raise DistributedError(
                    f"the field model {type(model).__name__} has no {name}(): it cannot run domain-decomposed"
                )
        self.model, self.comm = model, comm

    def _solve(self, state: State, grid: PhaseSpaceGrid, species, dt=None) -> State:
        c = self.comm
        mom = jax.tree.map(c.gather, self.model.cell_moments(state.f, grid, species))
        whole = state.replace(f=(), E=c.gather(state.E), B=c.gather(state.B))
        if dt is None:
            out = self.model.finalize_from_moments(whole, mom, grid, species)
        else:
            out = self.model.update_from_moments(whole, mom, grid, species, dt)
        return state.replace(E=c.local(out.E), B=c.local(out.B), aux=out.aux)

    def update(self, state, grid, species, dt):
        return self._solve(state, grid, species, dt)

    def finalize(self, state, grid, species):
        return self._solve(state, grid, species)


class BlockStepper(Stepper):
    """The reference stepper's numerics on one block of a decomposed domain.

    Inherits the time loop (:meth:`Stepper.multi_step`), the acceleration and the sparsity
    threshold; translation gets halos from ``comm``, the field model is wrapped by
    :class:`HaloFields` (models with ``on_block``, the hybrid solver) or :class:`GatheredFields`,
    and domain sums go through ``comm.psum``. ``grid`` stays the global grid.
    """

    def __init__(self, base: Stepper, comm: BlockComm, field_solve: str = "halo"):  # noqa: D107
        self.__dict__.update(vars(base))
        self.base = base
        self.comm = comm
        if _halo_solve(base, field_solve):
            self.fields = HaloFields(base.fields, comm, base.grid)
        else:
            self.fields = GatheredFields(base.fields, comm)

    def _translate(self, fs, fraction: float):
        bounded = self.cfl * fraction < CFL_LIMIT
        dt = fraction * self.dt
        c = self.comm
        halo = {d: partial(c.halo, axis=d) for d in range(3) if c.blocks[d] > 1}
        out = []
        for f, inflow in zip(fs, self.inflow):
            if inflow is not None:  # ghost values are global along the axes they do not face
                inflow = {k: c.local(v, skip=(k[0],)) for k, v in inflow.items()}
            out.append(
                translate(f, self.grid, dt, self.scheme, inflow, bounded=bounded, limiter=self.limiter, halo=halo)
            )
        return tuple(out)

    def _domain_sum(self, x):
        return self.comm.psum(x)


# ---- shard_map driver -----------------------------------------------------------------------------
class DomainStepper(SteppingDefaults):
    """A :class:`~faiser.vlasov.stepper.Stepper` run domain-decomposed over devices with ``shard_map``.

    Args:
      stepper: the single-domain stepper (its grid, species, fields, dt and scheme are used).
      devices: number of devices (default: all); ignored when ``mesh`` is given.
      blocks: blocks per spatial axis ``(px, py, pz)`` with ``px * py * pz`` devices (default:
        :func:`choose_blocks`).
      mesh: an existing mesh whose axes are the ``space_*`` names of the split axes.
      field_solve: ``"halo"`` (default): a field model with ``on_block`` (the hybrid solver) solves
        block by block with halo exchanges (:class:`HaloFields`); ``"gathered"``: every block
        solves the whole domain on all-gathered moments (:class:`GatheredFields`; fewer, larger
        collectives, the choice for small grids where per-exchange latency dominates).

    The state is the global :class:`~faiser.vlasov.state.State` with ``f``, ``E``, ``B`` and the
    per-cell ``aux`` entries (:func:`cell_aux_keys`) sharded over the split axes (:meth:`shard`)
    and everything else replicated; :meth:`multi_step`,
    :meth:`step`, :meth:`advance` and :meth:`diagnostics` take and return such states, so a
    ``DomainStepper`` stands in for a ``Stepper`` (other attributes are the wrapped stepper's).

    Raises:
      DistributedError: more devices than exist, or a grid that cannot be split so.
    """

    def __init__(
        self,
        stepper: Stepper,
        devices: int | None = None,
        blocks: Sequence[int] | None = None,
        mesh: Mesh | None = None,
        field_solve: str = "halo",
    ):
        self.stepper = stepper
        if blocks is None:
            n = mesh.size if mesh is not None else (len(jax.devices()) if devices is None else int(devices))
            if n > len(jax.devices()):
                make_mesh(n)  # raises the standard "only k devices exist" error
            blocks = choose_blocks(stepper, n)
        self.blocks = check_blocks(stepper, blocks)
        self.split_axes = tuple(d for d in range(3) if self.blocks[d] > 1)
        names = tuple(SPACE_AXES[d] for d in self.split_axes)
        if mesh is None:
            shape = tuple(self.blocks[d] for d in self.split_axes)
            mesh = make_mesh(shape or (1,), names or (SPACE_AXES[0],))
        elif dict(mesh.shape) != {SPACE_AXES[d]: self.blocks[d] for d in self.split_axes}:
            raise DistributedError(f"mesh {dict(mesh.shape)} does not match blocks {self.blocks}")
        self.mesh = mesh
        self.comm = ShardMapComm(self.blocks)
        self.block_stepper = BlockStepper(stepper, self.comm, field_solve)
        self.cell_aux = cell_aux_keys(stepper, field_solve)
        self.cells_spec = PartitionSpec(*[SPACE_AXES[d] if self.blocks[d] > 1 else None for d in range(3)])

    @property
    def num_devices(self) -> int:
        return math.prod(self.blocks)

    def __getattr__(self, name):  # grid, species, dt, cfl, ... of the wrapped stepper
        if name == "stepper":
            raise AttributeError(name)
        return getattr(self.stepper, name)

    def state_specs(self, state: State) -> State:
        """PartitionSpecs of ``state``: per-cell arrays split, the rest replicated."""
        rep = PartitionSpec()
        return State(
            f=tuple(self.cells_spec for _ in state.f),
            E=self.cells_spec,
            B=self.cells_spec,
            time=rep,
            step=rep,
            mass_lost=rep,
            aux={
                k: (self.cells_spec if k in self.cell_aux else jax.tree.map(lambda _: rep, v))
                for k, v in state.aux.items()
            },
        )

    def shard(self, state: State) -> State:
        """``state`` placed on the mesh (``f``, ``E``, ``B`` split over the blocks)."""
        shardings = jax.tree.map(lambda s: NamedSharding(self.mesh, s), self.state_specs(state))
        return jax.device_put(state, shardings)

    def multi_step(self, state: State, n_steps: int) -> State:
        """:meth:`Stepper.multi_step` on every block at once (jit-able; ``n_steps`` static)."""
        if n_steps <= 0:
            return state
        specs = self.state_specs(state)
        body = jax.shard_map(
            lambda s: self.block_stepper.multi_step(s, n_steps),
            mesh=self.mesh,
            in_specs=(specs,),
            out_specs=specs,
            check_vma=False,  # replicated outputs (aux, time, sums) are computed identically on every block
        )
        return body(state)

    def diagnostics(self, state: State) -> dict[str, jax.Array]:
        """Global diagnostics (:meth:`Stepper.diagnostics` on the sharded global state)."""
        return self.stepper.diagnostics(state)


def decompose(stepper: Stepper, state: State, devices: int | None = None, blocks: Sequence[int] | None = None):
    """``(DomainStepper, sharded state)`` for ``stepper`` and its initialized global ``state``."""
    ds = DomainStepper(stepper, devices=devices, blocks=blocks)
    return ds, ds.shard(state)
