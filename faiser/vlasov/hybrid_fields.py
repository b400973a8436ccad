"""Hybrid-Vlasov field model (Vlasiator's): kinetic ions, massless electron fluid.

Normalized units (:class:`faiser.units.HybridUnits`): time ``1/Omega_i``, length ``d_i``,
velocity ``v_A``, B in ``B0``, density in ``n0``, E in ``v_A B0``, current in ``e n0 v_A``,
pressure in ``B0^2 / mu0 = n0 m_i v_A^2``, temperature in ``m_i v_A^2``. Then

* Ampere (no displacement current): ``J = curl B``;
* Ohm's law: ``E = -V_e x B - grad(p_e) / rho_q + eta J`` with the charge density
  ``rho_q = sum_s q_s n_s`` (quasi-neutrality, ``n_e = rho_q``) and the electron bulk velocity
  ``V_e = U_i - J / rho_q``, ``U_i = sum_s q_s n_s V_s / rho_q``; ``-V_e x B`` is the ideal
  ``-U_i x B`` plus the Hall term ``J x B / rho_q``;
* electrons isothermal (``gamma_e = 1``: ``p_e = rho_q T_e``) or polytropic
  (``p_e = T_e rho_q^gamma_e``, ``T_e`` the temperature at ``rho_q = 1``); in both cases
  ``grad(p_e) / rho_q = grad(h)`` with the electron enthalpy ``h`` (``T_e ln rho_q`` or
  ``T_e gamma/(gamma-1) rho_q^(gamma-1)``);
* Faraday: ``dB/dt = -curl E``.

Discretization (Yee staggering, constrained transport): component ``c`` of B lives on the low
``c``-faces of the cells, stored as ``state.aux["B_face"]`` of shape ``(nx, ny, nz, 3)`` (entry
``[i, j, k, 0]`` is ``B_x`` at ``(x_i - dx/2, y_j, z_k)``); component ``c`` of E and J lives on the
low edges along ``c``. ``J`` is the discrete curl of the face B and Faraday's law is the discrete
curl of the edge E, so the discrete ``div B`` of every cell stays at its initial value to
rounding. On a non-periodic axis ``d`` the high face of the last cell is not stored: it is closed
by ``div B = 0`` in that cell. The pressure term is the edge gradient of a node-centred enthalpy,
so it has no discrete curl (it accelerates ions but never changes B, as in the continuum).

The edge E carries a Rusanov-type upwind term ``(a/2) (jump_d B_e - jump_e B_d)`` with limited
(MC) reconstructions of B on both sides of the edge and ``a`` the largest local signal speed
(flow + fast speed + grid whistler speed): a numerical resistivity that acts at jumps (shocks,
grid-scale noise) and is of third order in smooth regions, as Vlasiator's upwinded field solver.

Time stepping: within one Vlasov step the ion moments are held at their half-step value (the
stepper calls :meth:`HybridFields.update` after the first half translation) and B is advanced
from ``t`` to ``t + dt`` by ``n`` RK2 (Heun) subcycles, ``n`` chosen at run time from the field
CFL ``h <= cfl * dx_min / (ndim * a_max)``. The acceleration then uses the half-step B and the
cell-centred ``E = -V_e x B - grad h + eta J``: ions rotate about ``b`` around the electron bulk
velocity (the stepper's Lorentz map rotates around ``E x B / B^2 = V_e,perp``) and so feel the
``J x B`` force whatever the Hall switch of the field solver, as in Vlasiator.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from faiser.errors import ConfigError
from faiser.grid import PhaseSpaceGrid
from faiser.vlasov.state import Species, State

G = 3  # ghost layers of the field solver (edge stencils reach 3 cells)


@dataclasses.dataclass(frozen=True)
class FieldInflow:
    """Prescribed plasma state behind an inflow face: charge density, ion bulk velocity, B."""

    axis: int
    side: int  # 0 = low, 1 = high
    density: float
    velocity: tuple[float, float, float]
    B: tuple[float, float, float]


# ---- padded-array helpers (spatial axes 0..2 first, optional trailing component axes) -------------
def _slab(a: jax.Array, axis: int, start: int, stop: int) -> jax.Array:
    return jax.lax.slice_in_dim(a, start, stop, axis=axis)


def _ghosts(a: jax.Array, axis: int, side, at_lo: bool, width: int) -> jax.Array:
    """The ``width`` ghost cells of ``a`` on one side of ``axis``: ``side`` is ``"periodic"``,
    ``"copy"`` or a value (inflow; an array broadcast along ``axis``)."""
    n = a.shape[axis]
    if isinstance(side, str) and side == "periodic":
        idx = np.arange(-width, 0) % n if at_lo else np.arange(n, n + width) % n
        return jnp.take(a, jnp.asarray(idx), axis=axis)
    if isinstance(side, str):  # copy
        edge = _slab(a, axis, 0, 1) if at_lo else _slab(a, axis, n - 1, n)
        return jnp.repeat(edge, width, axis=axis)
    shape = list(a.shape)
    shape[axis] = width
    return jnp.broadcast_to(jnp.asarray(side, a.dtype), shape)


def _pad_axis(a: jax.Array, axis: int, lo, hi, width: int = G) -> jax.Array:
    """Pad ``a`` along ``axis``: ``lo``/``hi`` are ``"periodic"``, ``"copy"`` or a value (inflow)."""
    return jnp.concatenate([_ghosts(a, axis, lo, True, width), a, _ghosts(a, axis, hi, False, width)], axis=axis)


def _crop(a: jax.Array, grid: PhaseSpaceGrid) -> jax.Array:
    for d in grid.spatial_dims:
        a = _slab(a, d, G, G + grid.nx[d])
    return a


def _back(a, d):
    return jnp.roll(a, 1, axis=d)


def _fwd(a, d):
    return jnp.roll(a, -1, axis=d)


def _mc_slope(a, d):
    """Monotonized-central limited slope (per cell) of ``a`` along ``d``."""
    dl = a - _back(a, d)
    dr = _fwd(a, d) - a
    lim = jnp.minimum(jnp.minimum(2 * jnp.abs(dl), 2 * jnp.abs(dr)), 0.5 * jnp.abs(dl + dr))
    return jnp.where(dl * dr > 0, jnp.sign(dl) * lim, 0.0)


def _jump(a, d):
    """``a_R - a_L`` at the low face along ``d`` from MC-limited linear reconstructions."""
    s = _mc_slope(a, d)
    return (a - 0.5 * s) - _back(a + 0.5 * s, d)


@dataclasses.dataclass(frozen=True, eq=False)
class HybridFields:
    """Hybrid field model (see module docstring): constrained-transport Faraday + Ohm's law.

    Args:
      B_face: initial face-staggered B, ``(nx, ny, nz, 3)`` (normalized, ``B0``); build it with
        :func:`face_field` from a vector potential or from a uniform field so that div B = 0.
      electron_temperature: ``T_e`` (``m_i v_A^2``; 0 disables the pressure term).
      gamma_e: electron polytropic index (1 = isothermal).
      resistivity: ``eta`` (``mu0 v_A d_i``), uniform.
      hall: include the Hall term ``J x B / rho_q`` in the field solver's E (the acceleration
        always rotates around the electron bulk velocity).
      pressure_term: include ``-grad p_e / rho_q``.
      upwind: factor on the Rusanov-type upwind term of the edge E (0 = centred).
      field_cfl: Courant number of the field subcycles.
      max_subcycles: upper bound of field subcycles per Vlasov step (a run needing more is
        clipped and flagged by ``state.aux["subcycles"]`` reaching this value).
      b_max: bound of |B| over the run (sizes the rotation substeps of the acceleration).
      density_floor: smallest ``rho_q`` used in divisions (vacuum safety).
      inflow: prescribed states behind inflow faces (:class:`FieldInflow`).
      evolve: advance B (False: B and E held fixed, E = ``E_external``).
      E_external: uniform external E added to Ohm's law (or used alone when ``evolve=False``).
      halo: None for a whole domain. In a domain-decomposed run (:meth:`on_block`) the block's
        communicator: ghost cells along a split axis come from the neighbouring blocks (the
        boundary rule only at the domain's edges) and the subcycle count from the global maximum
        signal speed, so a block computes exactly the values of its cells in the whole domain.
    """

    B_face: np.ndarray
    electron_temperature: float = 0.0
    gamma_e: float = 1.0
    resistivity: float = 0.0
    hall: bool = True
    pressure_term: bool = True
    upwind: float = 1.0
    field_cfl: float = 0.4
    max_subcycles: int = 2000
    b_max: float | None = None
    density_floor: float = 1e-3
    inflow: tuple[FieldInflow, ...] = ()
    evolve: bool = True
    E_external: tuple[float, float, float] = (0.0, 0.0, 0.0)
    halo: object | None = None

    # State.aux entries that are per-cell arrays (split with f in a decomposed run)
    cell_aux = ("B_face",)

    def __post_init__(self):
        B = np.asarray(self.B_face, np.float64)
        if B.ndim != 4 or B.shape[-1] != 3:
            raise ConfigError(f"B_face must have shape (nx, ny, nz, 3), got {B.shape}")
        object.__setattr__(self, "B_face", B)
        for name in ("electron_temperature", "resistivity", "upwind"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"{name} must be >= 0, got {v!r}")
        if not (math.isfinite(self.gamma_e) and self.gamma_e >= 1):
            raise ConfigError(f"gamma_e must be >= 1, got {self.gamma_e!r}")
        if not (0 < self.field_cfl <= 1):
            raise ConfigError(f"field_cfl must be in (0, 1], got {self.field_cfl!r}")
        if self.max_subcycles < 1:
            raise ConfigError("max_subcycles must be >= 1")
        if not (self.density_floor > 0):
            raise ConfigError("density_floor must be positive")

    # ---- FieldModel protocol ----------------------------------------------------------------
    @property
    def magnetized(self) -> bool:
        return True

    def max_gyrofrequency(self, species) -> float:
        bmax = self.b_max if self.b_max is not None else 2.0 * float(np.max(np.linalg.norm(self.B_face, axis=-1)))
        return max(abs(s.charge_to_mass) for s in species) * max(bmax, 1e-12)

    def initialize(self, state: State, grid: PhaseSpaceGrid, species) -> State:
        if self.B_face.shape[:3] != tuple(grid.nx):
            raise ConfigError(f"B_face has spatial shape {self.B_face.shape[:3]}, grid has {grid.nx}")
        keys = {(i.axis, i.side) for i in self.inflow}
        for d in grid.spatial_dims:
            for side in (0, 1):
                if grid.boundaries[d][side] == "inflow" and (d, side) not in keys:
                    raise ConfigError(f"inflow boundary on axis {d} side {side} needs a FieldInflow state")
        dtype = state.f[0].dtype
        aux = dict(state.aux)
        aux["B_face"] = jnp.asarray(self.B_face, dtype)
        aux["subcycles"] = jnp.asarray(0, jnp.int32)
        return self.finalize(state.replace(aux=aux), grid, species)

    def update(self, state: State, grid: PhaseSpaceGrid, species, dt) -> State:
        return self.update_from_moments(state, self.cell_moments(state.f, grid, species), grid, species, dt)

    def finalize(self, state: State, grid: PhaseSpaceGrid, species) -> State:
        return self.finalize_from_moments(state, self.cell_moments(state.f, grid, species), grid, species)

    def cell_moments(self, fs, grid: PhaseSpaceGrid, species) -> dict:
        """Per-cell ion moments (:func:`ion_moments`), the only input of the field solve."""
        return ion_moments(fs, grid, species)

    def update_from_moments(self, state: State, mom: dict, grid: PhaseSpaceGrid, species, dt) -> State:
        """:meth:`update` from the ion moments of the half-translated ``f`` (``state.f`` is not read)."""
        Bf = state.aux["B_face"]
        n_sub = jnp.asarray(0, jnp.int32)
        if self.evolve:
            # the moments come from f after the first half translation, before the acceleration:
            # the ion bulk velocity is predicted through the step (second order in dt)
            accel = self.bulk_acceleration(Bf, mom, grid)
            Bf_new, n_sub = self.advance_B(Bf, mom, grid, dt, accel)
            B_half = 0.5 * (Bf + Bf_new)
            mom = {**mom, "U": mom["U"] + 0.5 * dt * accel}
        else:
            Bf_new = B_half = Bf
        E, B = self.cell_fields(B_half, mom, grid)
        aux = {**state.aux, "B_face": Bf_new, "subcycles": n_sub}
        return state.replace(E=E, B=B, aux=aux)

    def finalize_from_moments(self, state: State, mom: dict, grid: PhaseSpaceGrid, species) -> State:
        """:meth:`finalize` from the ion moments of the new ``f`` (``state.f`` is not read)."""
        E, B = self.cell_fields(state.aux["B_face"], mom, grid)
        return state.replace(E=E, B=B)

    def on_block(self, comm) -> HybridFields:
        """This model on one block of a decomposed domain (see ``halo``). ``comm`` provides
        ``blocks``, ``halo_with(a, width, axis, lo, hi)`` (``a`` extended by ``width`` cells of the
        neighbouring blocks, or by the ghosts ``lo`` / ``hi`` where given at the domain's edges)
        and ``pmax(x)``; call the block model with the block's grid (:func:`faiser.parallel.domain.block_grid`)."""
        return dataclasses.replace(self, halo=comm)

    # ---- pieces ----------------------------------------------------------------------------------
    def _pad(self, a: jax.Array, axis: int, lo, hi, width: int = G) -> jax.Array:
        """:func:`_pad_axis`, or on a block the halo of its neighbours along a split ``axis``."""
        comm = self.halo
        if comm is None or comm.blocks[axis] == 1:
            return _pad_axis(a, axis, lo, hi, width)
        if isinstance(lo, str) and lo == "periodic":
            return comm.halo_with(a, width, axis, None, None)
        return comm.halo_with(a, width, axis, _ghosts(a, axis, lo, True, width), _ghosts(a, axis, hi, False, width))

    def _global_max(self, x: jax.Array) -> jax.Array:
        return x if self.halo is None else self.halo.pmax(x)

    def _sides(self, grid: PhaseSpaceGrid, d: int, values: dict | None):
        """Padding rule of each side of axis ``d``: periodic, copy, or the inflow value."""
        out = []
        for side in (0, 1):
            kind = grid.boundaries[d][side]
            if kind == "periodic":
                out.append("periodic")
            elif kind == "inflow" and values is not None:
                out.append(values[(d, side)])
            else:
                out.append("copy")
        return out

    def _pad_cells(self, a, grid, values=None):
        for d in grid.spatial_dims:
            lo, hi = self._sides(grid, d, values)
            a = self._pad(a, d, lo, hi)
        return a

    def _inflow_values(self, key: str, dtype) -> dict:
        out = {}
        for i in self.inflow:
            if key == "rho":
                v = i.density
            elif key == "U":
                v = i.velocity
            elif key == "h":
                v = self.enthalpy(jnp.asarray(i.density, dtype))
            else:
                v = i.B
            out[(i.axis, i.side)] = jnp.asarray(v, dtype)
        return out

    def enthalpy(self, rho):
        """Electron enthalpy ``h`` with ``grad(p_e)/rho = grad(h)`` (normalized)."""
        Te = self.electron_temperature
        if Te == 0 or not self.pressure_term:
            return jnp.zeros_like(rho)
        rho = jnp.maximum(rho, self.density_floor)
        if self.gamma_e == 1.0:
            return Te * jnp.log(rho)
        g = self.gamma_e
        return Te * g / (g - 1) * rho ** (g - 1)

    def electron_pressure(self, rho):
        """``p_e`` per cell (``B0^2 / mu0``)."""
        Te = self.electron_temperature
        rho = jnp.maximum(rho, 0.0)
        return Te * rho if self.gamma_e == 1.0 else Te * rho**self.gamma_e

    def padded_face_B(self, Bf: jax.Array, grid: PhaseSpaceGrid) -> list[jax.Array]:
        """Face B per component on the padded grid (``G`` ghosts per resolved axis).

        On a non-periodic axis ``c`` the high face of the last cell closes ``div B = 0`` there
        (closures in axis order; a later axis sees the earlier closures, so corner cells close too).
        """
        res = grid.spatial_dims
        periodic = {d: grid.boundaries[d][0] == "periodic" for d in res}
        comps = [Bf[..., c] for c in range(3)]

        def next_face(a, e, edge):  # the slice after the last one along e: neighbour's, wrapped, or `edge`
            n = a.shape[e]
            side = "periodic" if periodic[e] else edge
            return _slab(self._pad(a, e, side, side, width=1), e, n + 1, n + 2)

        closure, high = {}, {}  # non-periodic c: the closing face; the face after the stored ones
        for c in res:
            if periodic[c]:
                continue
            n = grid.nx[c]
            last = _slab(comps[c], c, n - 1, n)
            div_t = jnp.zeros_like(last)
            for e in res:
                if e == c:
                    continue
                nxt = high[e] if e in high else next_face(comps[e], e, "copy")
                a = jnp.concatenate([comps[e], nxt], axis=e)
                diff = _slab(a, e, 1, grid.nx[e] + 1) - _slab(a, e, 0, grid.nx[e])
                div_t = div_t + _slab(diff, c, n - 1, n) / grid.dx[e]
            closure[c] = last - grid.dx[c] * div_t
            high[c] = next_face(comps[c], c, closure[c])
        bvals = self._inflow_values("B", Bf.dtype)
        out = []
        for c in range(3):
            a = comps[c]
            if c in closure:  # own axis, non-periodic: copies of the first face, stored faces, closure copies
                a = self._pad(a, c, "copy", closure[c])
            elif c in res:
                a = self._pad(a, c, "periodic", "periodic")
            for d in res:
                if d != c:
                    lo, hi = self._sides(grid, d, {k: v[c] for k, v in bvals.items()})
                    a = self._pad(a, d, lo, hi)
            out.append(a)
        return out

    def div_B(self, Bf: jax.Array, grid: PhaseSpaceGrid) -> jax.Array:
        """Discrete ``div B`` per cell, ``(nx, ny, nz)`` (normalized, ``B0 / d_i``)."""
        P = self.padded_face_B(Bf, grid)
        div = jnp.zeros_like(P[0])
        for c in grid.spatial_dims:
            div = div + (_fwd(P[c], c) - P[c]) / grid.dx[c]
        return _crop(div, grid)

    def _edge_fields(self, P, rho_p, U_p, h_p, grid, with_E: bool = True):
        """Edge current J and (optionally) edge E on the padded grid, each a list of 3 arrays."""
        res = grid.spatial_dims
        dx = grid.dx

        def avg_low(a, d):
            return 0.5 * (a + _back(a, d)) if d in res else a

        def avg_center(a, d):  # from the low face/edge position along d to the centre
            return 0.5 * (a + _fwd(a, d)) if d in res else a

        def dback(a, d):
            return (a - _back(a, d)) / dx[d] if d in res else jnp.zeros_like(a)

        J = []
        for c in range(3):
            d, e = (c + 1) % 3, (c + 2) % 3
            J.append(dback(P[e], d) - dback(P[d], e))
        if not with_E:
            return J, None, None
        floor = self.density_floor
        zero = jnp.zeros_like(rho_p)
        E = []
        # signal speed per cell: flow + fast + grid whistler
        Bc = [avg_center(P[c], c) for c in range(3)]
        bmag = jnp.sqrt(Bc[0] ** 2 + Bc[1] ** 2 + Bc[2] ** 2)
        rho_s = jnp.maximum(rho_p, floor)
        umag = jnp.sqrt(U_p[0] ** 2 + U_p[1] ** 2 + U_p[2] ** 2)
        cs2 = self.gamma_e * self.electron_pressure(rho_p) / rho_s if self.pressure_term else zero
        a_base = umag + jnp.sqrt(bmag**2 / rho_s + cs2)
        # grid whistler speed (Hall): pi |B| / (rho dx) for jumps along an axis of spacing dx
        whistler = math.pi * bmag / rho_s if self.hall else jnp.zeros_like(a_base)
        a_cell = a_base + (whistler / min(dx[d] for d in res) if res else 0.0)
        h_node = h_p
        for d in res:
            h_node = avg_low(h_node, d)
        for c in range(3):
            d, e = (c + 1) % 3, (c + 2) % 3
            rho_e = avg_low(avg_low(rho_s, d), e)
            Ud = avg_low(avg_low(U_p[d], d), e)
            Ue = avg_low(avg_low(U_p[e], d), e)
            Bd = avg_low(P[d], e)
            Be = avg_low(P[e], d)
            if self.hall:
                Jd = avg_low(avg_center(J[d], c), d)
                Je = avg_low(avg_center(J[e], c), e)
                Ud = Ud - Jd / rho_e
                Ue = Ue - Je / rho_e
            Ec = -(Ud * Be - Ue * Bd) + self.E_external[c]
            if self.resistivity > 0:
                Ec = Ec + self.resistivity * J[c]
            if self.pressure_term and self.electron_temperature > 0 and c in res:
                Ec = Ec - (_fwd(h_node, c) - h_node) / dx[c]
            if self.upwind > 0 and (d in res or e in res):
                jumps = zero
                for ax, sign, comp in ((d, 1.0, e), (e, -1.0, d)):
                    if ax not in res:
                        continue
                    a = a_base + whistler / dx[ax]  # signal speed along the jump's axis
                    for ax2 in (d, e):
                        if ax2 in res:
                            a = jnp.maximum(a, _back(a, ax2))
                    jumps = jumps + sign * a * _jump(P[comp], ax)
                Ec = Ec + self.upwind * 0.5 * jumps
            E.append(Ec)
        return J, E, a_cell

    def _padded_moments(self, mom, grid):
        dtype = mom["rho"].dtype
        rho_p = self._pad_cells(mom["rho"], grid, self._inflow_values("rho", dtype))
        uvals = self._inflow_values("U", dtype)
        U_p = [self._pad_cells(mom["U"][..., c], grid, {k: v[c] for k, v in uvals.items()}) for c in range(3)]
        h_p = self.enthalpy(rho_p)
        return rho_p, U_p, h_p

    def _dBdt(self, Bf, padded, grid):
        rho_p, U_p, h_p = padded
        P = self.padded_face_B(Bf, grid)
        _, E, a_cell = self._edge_fields(P, rho_p, U_p, h_p, grid)
        res = grid.spatial_dims
        dB = []
        for c in range(3):
            d, e = (c + 1) % 3, (c + 2) % 3
            curl = jnp.zeros_like(P[c])
            if d in res:
                curl = curl + (_fwd(E[e], d) - E[e]) / grid.dx[d]
            if e in res:
                curl = curl - (_fwd(E[d], e) - E[d]) / grid.dx[e]
            dB.append(-_crop(curl, grid))
        return jnp.stack(dB, axis=-1), self._global_max(jnp.max(_crop(a_cell, grid)))

    def bulk_acceleration(self, Bf, mom, grid: PhaseSpaceGrid) -> jax.Array:
        """Acceleration of the ion bulk velocity by the fields of ``Bf``, ``(nx, ny, nz, 3)``:
        ``<q/m> (J x B / rho_q - grad h + eta J)`` (``<q/m>`` charge-weighted over the species)."""
        E, B = self.cell_fields(Bf, mom, grid)
        return mom["qm"][..., None] * (E + jnp.cross(mom["U"], B))

    def advance_B(self, Bf, mom, grid: PhaseSpaceGrid, dt, accel=None):
        """B from ``t`` to ``t + dt`` by RK2 (Heun) subcycles; the ion bulk velocity moves as
        ``U + s * accel`` (``s`` the time into the step; ``accel`` None: fixed), density is fixed.

        Returns the new face B and the number of subcycles (int32 scalar)."""
        res = grid.spatial_dims
        if not res:
            return Bf, jnp.asarray(0, jnp.int32)
        rho_p, U_p, h_p = self._padded_moments(mom, grid)
        if accel is None:
            acc_p = [jnp.zeros_like(rho_p)] * 3
        else:
            zero = {(i.axis, i.side): jnp.zeros((), Bf.dtype) for i in self.inflow}
            acc_p = [self._pad_cells(accel[..., c], grid, zero) for c in range(3)]
        _, a_max = self._dBdt(Bf, (rho_p, U_p, h_p), grid)
        h_max = self.field_cfl * min(grid.dx[d] for d in res) / (len(res) * jnp.maximum(a_max, 1e-12))
        n = jnp.clip(jnp.ceil(dt / h_max), 1, self.max_subcycles).astype(jnp.int32)
        h = (dt / n).astype(Bf.dtype)

        def at(s):
            return rho_p, [u + s * a for u, a in zip(U_p, acc_p)], h_p

        def heun(i, B):
            s0 = i.astype(Bf.dtype) * h
            k1, _a = self._dBdt(B, at(s0), grid)
            B1 = B + h * k1
            k2, _a = self._dBdt(B1, at(s0 + h), grid)
            return B + 0.5 * h * (k1 + k2)

        return jax.lax.fori_loop(0, n, heun, Bf), n

    def cell_fields(self, Bf, mom, grid: PhaseSpaceGrid):
        """Cell-centred ``(E, B)`` for the acceleration and diagnostics, each ``(nx, ny, nz, 3)``.

        ``E = -V_e x B - grad h + eta J + E_external`` with ``V_e = U_i - J / rho_q`` (J averaged
        from the edges to the centres); with ``evolve=False`` only ``E_external``."""
        dtype = Bf.dtype
        P = self.padded_face_B(Bf, grid)
        res = grid.spatial_dims

        def avg_center(a, d):
            return 0.5 * (a + _fwd(a, d)) if d in res else a

        Bc = [avg_center(P[c], c) for c in range(3)]
        B = jnp.stack([_crop(b, grid) for b in Bc], axis=-1)
        Eext = jnp.broadcast_to(jnp.asarray(self.E_external, dtype), B.shape)
        if not self.evolve:
            return Eext, B
        rho_p, U_p, h_p = self._padded_moments(mom, grid)
        J, _, _ = self._edge_fields(P, rho_p, U_p, h_p, grid, with_E=False)
        Jc = []
        for c in range(3):
            d, e = (c + 1) % 3, (c + 2) % 3
            Jc.append(_crop(avg_center(avg_center(J[c], d), e), grid))
        Jc = jnp.stack(Jc, axis=-1)
        rho = jnp.maximum(mom["rho"], self.density_floor)[..., None]
        Ve = mom["U"] - Jc / rho
        E = -jnp.cross(Ve, B) + Eext
        if self.resistivity > 0:
            E = E + self.resistivity * Jc
        if self.pressure_term and self.electron_temperature > 0:
            gh = []
            for c in range(3):
                if c in res:
                    gh.append(_crop((_fwd(h_p, c) - _back(h_p, c)) / (2 * grid.dx[c]), grid))
                else:
                    gh.append(jnp.zeros_like(mom["rho"]))
            E = E - jnp.stack(gh, axis=-1)
        return E.astype(dtype), B.astype(dtype)

    def current(self, Bf, grid: PhaseSpaceGrid) -> jax.Array:
        """Cell-centred current density ``J = curl B``, ``(nx, ny, nz, 3)`` (``e n0 v_A``)."""
        P = self.padded_face_B(Bf, grid)
        res = grid.spatial_dims
        J, _, _ = self._edge_fields(P, None, None, None, grid, with_E=False)

        def avg_center(a, d):
            return 0.5 * (a + _fwd(a, d)) if d in res else a

        out = []
        for c in range(3):
            d, e = (c + 1) % 3, (c + 2) % 3
            out.append(_crop(avg_center(avg_center(J[c], d), e), grid))
        return jnp.stack(out, axis=-1)


def ion_moments(fs, grid: PhaseSpaceGrid, species) -> dict[str, jax.Array]:
    """Charge density ``rho`` (nx, ny, nz), ion charge-weighted bulk velocity ``U`` (nx, ny, nz, 3),
    ion charge flux ``J_i`` (nx, ny, nz, 3) and the charge-weighted ``qm = sum q^2 n / m / rho``
    (nx, ny, nz) of all kinetic species."""
    dv3 = grid.velocity_cell_volume
    rho = 0.0
    flux = 0.0
    q2m = 0.0
    for f, s in zip(fs, species):
        g = [f.sum(axis=(4, 5)), f.sum(axis=(3, 5)), f.sum(axis=(3, 4))]
        n = g[0].sum(-1) * dv3
        v = [jnp.asarray(grid.v_centers(d), f.dtype) for d in range(3)]
        fl = jnp.stack([g[d] @ v[d] for d in range(3)], axis=-1) * dv3
        rho = rho + s.charge * n
        flux = flux + s.charge * fl
        q2m = q2m + s.charge * s.charge_to_mass * n
    safe = jnp.where(rho > 0, rho, 1.0)
    U = jnp.where((rho > 0)[..., None], flux / safe[..., None], 0.0)
    qm = jnp.where(rho > 0, q2m / safe, 1.0)
    return {"rho": rho, "U": U, "J_i": flux, "qm": qm}


def face_field(grid: PhaseSpaceGrid, B_uniform=(0.0, 0.0, 0.0), vector_potential=None, dtype=np.float64) -> np.ndarray:
    """Face-staggered B ``(nx, ny, nz, 3)``: a uniform field plus ``curl A`` of a vector potential.

    ``vector_potential(x, y, z) -> (Ax, Ay, Az)`` is evaluated on the edges (``A_c`` on the low
    edges along ``c``) and differenced exactly as the constrained-transport curl, so the discrete
    ``div B`` vanishes to rounding. Coordinates are broadcastable (nx, ny, nz) arrays.
    """
    B = np.zeros((*grid.nx, 3))
    B[...] = np.asarray(B_uniform, float)
    if vector_potential is None:
        return B.astype(dtype)
    res = grid.spatial_dims
    centers = [grid.x_centers(d) for d in range(3)]

    def coords(shift_axes):
        out = []
        for d in range(3):
            x = centers[d] - (0.5 * grid.dx[d] if d in shift_axes else 0.0)
            shape = [1, 1, 1]
            shape[d] = grid.nx[d]
            out.append(x.reshape(shape))
        return out

    A = []
    for c in range(3):
        x, y, z = coords([d for d in res if d != c])
        A.append(np.broadcast_to(np.asarray(vector_potential(x, y, z)[c], float), grid.nx))

    def fwd_diff(a, d):
        if d not in res:
            return np.zeros_like(a)
        if grid.boundaries[d][0] == "periodic":
            return (np.roll(a, -1, axis=d) - a) / grid.dx[d]
        # evaluate A one edge further analytically is not available: one-sided at the last cell
        nxt = np.concatenate([np.take(a, range(1, a.shape[d]), axis=d), np.take(a, [-1], axis=d)], axis=d)
        last = np.take(a, [-1], axis=d) - np.take(a, [-2], axis=d) if a.shape[d] > 1 else 0
        nxt = nxt.copy()
        idx = [slice(None)] * 3
        idx[d] = slice(-1, None)
        nxt[tuple(idx)] = np.take(a, [-1], axis=d) + last
        return (nxt - a) / grid.dx[d]

    for c in range(3):
        d, e = (c + 1) % 3, (c + 2) % 3
        B[..., c] += fwd_diff(A[e], d) - fwd_diff(A[d], e)
    return B.astype(dtype)


def electron_internal_energy(model: HybridFields, rho: jax.Array, grid: PhaseSpaceGrid) -> jax.Array:
    """Electron internal energy of the domain (``B0^2 d_i^3 / mu0``): ``int p_e/(gamma-1)`` (polytropic)
    or the isothermal free energy ``T_e int rho ln rho`` (what the ions' pressure work feeds)."""
    Te = model.electron_temperature
    if Te == 0 or not model.pressure_term:
        return jnp.zeros((), rho.dtype)
    r = jnp.maximum(rho, model.density_floor)
    if model.gamma_e == 1.0:
        dens = Te * r * jnp.log(r)
    else:
        dens = model.electron_pressure(r) / (model.gamma_e - 1)
    return jnp.sum(dens) * grid.cell_volume


def magnetic_energy_faces(Bf: jax.Array, grid: PhaseSpaceGrid) -> jax.Array:
    """``(1/2) sum_faces B^2 dV`` (the magnetic energy of the staggered field)."""
    return 0.5 * jnp.sum(Bf * Bf) * grid.cell_volume


def hybrid_species_check(species: tuple[Species, ...]) -> None:
    """Every kinetic species of the hybrid model must be a positive ion."""
    for s in species:
        if not (s.charge > 0 and s.mass > 0):
            raise ConfigError(f"the hybrid model's kinetic species must be ions (q > 0, m > 0), got {s}")
