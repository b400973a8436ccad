"""VLSV interoperability: read Vlasiator files, write faiser snapshots as VLSV, ``faiser inspect``.

Re-exports the reader (:class:`VlsvFile`, :func:`open_vlsv`), the writer (:func:`write_vlsv`,
:class:`Population`) and the sparse-block helpers, and adds:

- :func:`write_snapshot`: a faiser simulation state as a Vlasiator-style ``bulk.*.vlsv`` (SI);
- :func:`inspect_file` / :func:`format_inspection`: the ``faiser inspect`` contract object and
  its human-readable summary.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from faiser.data.sparse_blocks import (
    WID,
    SparseBlocks,
    VelocityMesh,
    dense_to_sparse,
    kept_blocks,
    sparse_moments,
    sparse_to_dense,
)
from faiser.data.vlsv_reader import SpatialMesh, VlsvEntry, VlsvFile, open_vlsv
from faiser.data.vlsv_writer import Population, spatial_mesh_from, write_vlsv
from faiser.errors import ConfigError
from faiser.units import ELEMENTARY_CHARGE
from faiser.vlasov.diagnostics import moments

__all__ = [
    "WID",
    "Population",
    "SparseBlocks",
    "SpatialMesh",
    "VelocityMesh",
    "VlsvEntry",
    "VlsvFile",
    "dense_to_sparse",
    "format_inspection",
    "inspect_file",
    "kept_blocks",
    "open_vlsv",
    "sparse_moments",
    "sparse_to_dense",
    "spatial_mesh_from",
    "write_snapshot",
    "write_vlsv",
]

_INSPECT_BATCH_BLOCKS = 1 << 20


# ---- faiser snapshots ----------------------------------------------------------------------
def write_snapshot(
    path: str | os.PathLike,
    state,
    grid,
    units,
    species,
    *,
    config=None,
    vdf_stride: int = 1,
    f_min: float = 0.0,
    vdf_dtype=np.float32,
) -> Path:
    """Write a faiser simulation state as a Vlasiator-style VLSV file in SI units.

    Every spatial cell of ``grid`` is written (CellID ``1 + i + j*nx + k*nx*ny``) with, per
    species ``s`` (its name is the population name), ``s/vg_rho`` (m^-3), ``s/vg_v`` (m/s),
    ``s/vg_ptensor_diagonal`` and ``s/vg_ptensor_offdiagonal`` (Pa; yz, zx, xy) computed from the
    state's ``f``; and ``vg_rhom`` (kg/m^3), ``vg_rhoq`` (C/m^3), ``vg_v`` (mass-weighted, m/s),
    ``vg_b_vol`` (T), ``vg_e_vol`` (V/m), ``vg_boundarytype`` (1: simulated cell) for all cells.
    Parameters: ``time`` (s), ``timestep``, the box and ``x/y/zcells_ini``. The resolved
    ``config`` (dict, stored as JSON; or text) goes to the ``CONFIG`` entry.

    VDFs (s^3/m^6, as ``vdf_dtype``) are stored as sparse 4x4x4 blocks for the cells with
    ``(CellID - 1) % vdf_stride == 0`` (every cell by default), blocks kept under Vlasiator's rule
    with threshold ``f_min`` in s^3/m^6 (``<= 0``, the default, keeps every block: lossless up
    to ``vdf_dtype``). Honest limit: a species whose velocity mesh is not a multiple of 4 cells
    on every axis (e.g. 1D1V runs, ``nvy = nvz = 1``) cannot be expressed as Vlasiator blocks;
    for it only the moments are written (no velocity mesh, no VDF, so VLSV readers do not list
    it as a population).

    Args:
      path: output ``.vlsv`` file (written atomically).
      state: :class:`faiser.vlasov.state.State` (``f`` one 6D array per species, ``E``/``B``
        ``(nx, ny, nz, 3)``, scalar ``time`` and ``step``), normalized units.
      grid: :class:`faiser.grid.PhaseSpaceGrid`.
      units: :class:`faiser.units.ElectrostaticUnits` or :class:`faiser.units.HybridUnits`
        (``units.mass`` is the reference mass; ``units.factors()`` the SI factors).
      species: tuple of :class:`faiser.vlasov.state.Species` (normalized charge and mass).
      config: resolved configuration (dict or str) or ``None``.
      vdf_stride: store VDFs of every ``vdf_stride``-th cell (>= 1).
      f_min: sparsity threshold (SI).
      vdf_dtype: float32 (Vlasiator's usual) or float64.

    Returns:
      The path written.
    """
    if int(vdf_stride) < 1:
        raise ConfigError(f"vdf_stride must be >= 1, got {vdf_stride}")
    fs = tuple(state.f)
    if len(fs) != len(species):
        raise ConfigError(f"{len(fs)} distributions for {len(species)} species")
    fac = units.factors()
    L, V, F = fac["length_m"], fac["velocity_m_per_s"], fac["f_s3_per_m6"]
    nx, ny, nz = grid.nx
    ncells = nx * ny * nz
    cellids = np.arange(1, ncells + 1, dtype=np.uint64)
    spatial = SpatialMesh(
        tuple(grid.nx),
        tuple(a * L for a in grid.x_min),
        tuple(b * L for b in grid.x_max),
        0,
        tuple(bd[0] == "periodic" for bd in grid.boundaries),
    )
    mesh = VelocityMesh(grid.nv, tuple(a * V for a in grid.v_min), tuple(b * V for b in grid.v_max))

    def cells_first(a: np.ndarray) -> np.ndarray:  # (nx, ny, nz, ...) -> (ncells, ...), x fastest
        a = np.asarray(a)
        return a.transpose(2, 1, 0, *range(3, a.ndim)).reshape(ncells, *a.shape[3:])

    variables: dict[str, np.ndarray] = {}
    populations: dict[str, Population] = {}
    rhom = np.zeros(ncells)
    rhoq = np.zeros(ncells)
    mom = np.zeros((ncells, 3))
    vdf_cells = cellids[(cellids - 1) % int(vdf_stride) == 0]
    for sp, f in zip(species, fs):
        f = np.asarray(f)
        if tuple(f.shape) != tuple(grid.shape):
            raise ConfigError(f"f of species {sp.name!r} has shape {f.shape}, the grid expects {grid.shape}")
        mass_kg = float(sp.mass) * float(units.mass)
        fc = cells_first(f)  # normalized
        m = {k: cells_first(np.asarray(v, np.float64)) for k, v in moments(f, grid, sp.mass).items()}
        dens = m["density"] * units.density
        vel = m["bulk_velocity"] * V
        P = m["pressure"] * (float(units.mass) * units.density * V**2)  # m_s int (v-V)(v-V) f d3v, SI
        variables[f"{sp.name}/vg_rho"] = dens
        variables[f"{sp.name}/vg_v"] = vel
        variables[f"{sp.name}/vg_ptensor_diagonal"] = np.stack([P[:, 0, 0], P[:, 1, 1], P[:, 2, 2]], -1)
        variables[f"{sp.name}/vg_ptensor_offdiagonal"] = np.stack([P[:, 1, 2], P[:, 2, 0], P[:, 0, 1]], -1)
        rhom += mass_kg * dens
        rhoq += float(sp.charge) * ELEMENTARY_CHARGE * dens
        mom += mass_kg * dens[:, None] * vel
        if not mesh.padded:
            rows = (vdf_cells - 1).astype(np.int64)
            sb = dense_to_sparse(fc[rows] * F, mesh, f_min, cellids=vdf_cells, dtype=vdf_dtype)
            blocks = np.zeros(ncells, dtype=np.uint32)
            blocks[rows] = sb.blocks_per_cell
            variables[f"{sp.name}/vg_blocks"] = blocks
            populations[sp.name] = Population(mesh, sb, mass_kg, float(sp.charge))
    variables["vg_rhom"] = rhom
    variables["vg_rhoq"] = rhoq
    with np.errstate(invalid="ignore", divide="ignore"):
        variables["vg_v"] = np.where(rhom[:, None] > 0, mom / np.where(rhom > 0, rhom, 1)[:, None], 0.0)
    variables["vg_b_vol"] = cells_first(np.asarray(state.B, dtype=np.float64)) * fac["magnetic_field_T"]
    variables["vg_e_vol"] = cells_first(np.asarray(state.E, dtype=np.float64)) * fac["electric_field_V_per_m"]
    variables["vg_boundarytype"] = np.ones(ncells, dtype=np.int32)
    parameters = {
        "time": float(np.asarray(state.time)) * fac["time_s"],
        "timestep": np.uint32(int(np.asarray(state.step))),
    }
    config_text = None if config is None else (config if isinstance(config, str) else json.dumps(config, default=str))
    return write_vlsv(
        path,
        spatial=spatial,
        cellids=cellids,
        populations=populations,
        variables=variables,
        parameters=parameters,
        config_text=config_text,
    )


# ---- faiser inspect ---------------------------------------------------------------------------
def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _json_value(v):
    if isinstance(v, list):
        return [_json_value(x) for x in v]
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return v
    return _finite(v)


def inspect_file(path: str | os.PathLike) -> dict:
    """The ``faiser inspect --json`` object of a VLSV file.

    Returns:
      ``{"time": t or None, "populations": {pop: {"velocity_mesh": {"nv", "vmin", "vmax"},
      "cells": [{"cellid", "density", "bulk_velocity"}, ...]}}, "variables": [...],
      "parameters": {...}}``: density (m^-3) and bulk velocity (m/s) computed from the stored VDFs
      of every cell that has one (sorted by CellID; bulk velocity 0 where the density is 0).
      Plain Python types only; non-finite numbers become ``None``.

    Raises:
      VlsvError: unreadable or corrupt file.
    """
    with open_vlsv(path) as f:
        pops = {}
        for pop in f.populations:
            mesh = f.velocity_mesh(pop)
            cells = f.cells_with_vdf(pop)
            counts = f.blocks_per_cell(pop)
            out = []
            # batches of cells holding about _INSPECT_BATCH_BLOCKS blocks (bounded memory)
            batch = np.cumsum(counts) // _INSPECT_BATCH_BLOCKS
            edges = np.r_[0, np.flatnonzero(np.diff(batch)) + 1, len(cells)] if len(cells) else np.zeros(1, int)
            for a, b in zip(edges[:-1], edges[1:]):
                m = sparse_moments(f.read_vdf_sparse(pop, cells[a:b]))
                for cid, n, v in zip(cells[a:b].tolist(), m["density"].tolist(), m["bulk_velocity"].tolist()):
                    out.append({"cellid": int(cid), "density": _finite(n), "bulk_velocity": [_finite(x) for x in v]})
            pops[pop] = {
                "velocity_mesh": {
                    "nv": [int(x) for x in mesh.nv],
                    "vmin": [_finite(x) for x in mesh.vmin],
                    "vmax": [_finite(x) for x in mesh.vmax],
                },
                "cells": out,
            }
        return {
            "time": None if f.time is None else _finite(f.time),
            "populations": pops,
            "variables": [str(v) for v in f.variables],
            "parameters": {str(k): _json_value(v) for k, v in f.parameters.items()},
        }


def _g(x) -> str:
    if x is None:
        return "n/a"
    return f"{x:.6g}" if isinstance(x, (int, float)) and not isinstance(x, bool) else str(x)


def format_inspection(info: dict, max_cells: int = 8) -> str:
    """Human-readable summary of an :func:`inspect_file` object (time, populations, velocity meshes,
    cells with VDFs and their moments, variables, parameters)."""
    lines = [f"time: {_g(info.get('time'))} s"]
    params = info.get("parameters", {})
    if all(f"{a}cells_ini" in params for a in "xyz"):
        box = " x ".join(f"[{_g(params.get(a + 'min'))}, {_g(params.get(a + 'max'))}]" for a in "xyz")
        cells = " x ".join(str(params[f"{a}cells_ini"]) for a in "xyz")
        lines.append(f"spatial mesh: {cells} cells, box {box} m")
    pops = info.get("populations", {})
    if not pops:
        lines.append("populations: none")
    for name, p in pops.items():
        vm = p["velocity_mesh"]
        nv = " x ".join(str(n) for n in vm["nv"])
        box = " x ".join(f"[{_g(a)}, {_g(b)}]" for a, b in zip(vm["vmin"], vm["vmax"]))
        cells = p["cells"]
        lines.append(f"population {name}: velocity mesh {nv} cells, v in {box} m/s; {len(cells)} cells with VDFs")
        shown = cells if len(cells) <= max_cells else cells[: max_cells // 2] + [None] + cells[-(max_cells // 2) :]
        if cells:
            lines.append(f"  {'cellid':>10}  {'density [m^-3]':>14}  bulk velocity [m/s]")
        for c in shown:
            if c is None:
                lines.append(f"  {'...':>10}")
                continue
            v = ", ".join(_g(x) for x in c["bulk_velocity"])
            lines.append(f"  {c['cellid']:>10}  {_g(c['density']):>14}  ({v})")
    variables = info.get("variables", [])
    lines.append(f"variables ({len(variables)}): {', '.join(variables)}")
    if params:
        shown = ", ".join(f"{k}={v if isinstance(v, (int, list)) else _g(v)}" for k, v in params.items())
        lines.append(f"parameters: {shown}")
    return "\n".join(lines)
