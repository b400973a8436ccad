"""Writer of VLSV files that Vlasiator's readers (analysator, pyvlasiator, Vlasiator.jl) read.

The layout mimics what Vlasiator itself writes (compare the footer of a real ``bulk.*.vlsv``):

- spatial mesh ``SpatialGrid`` (``MESH`` of type ``amr_ucd`` holding ``CellID - 1`` of every
  written cell, ``MESH_BBOX = [nx, ny, nz, 1, 1, 1]``, ``MESH_NODE_CRDS_X/Y/Z``,
  ``MESH_DOMAIN_SIZES = [[ncells, 0]]``, empty ``MESH_GHOST_DOMAINS`` / ``MESH_GHOST_LOCALIDS``);
  ``CellID = 1 + i + j*nx + k*nx*ny`` (1-based, ``i`` along x);
- per population ``pop``: ``CELLSWITHBLOCKS``, ``BLOCKSPERCELL``, ``BLOCKIDS`` (uint32),
  ``BLOCKVARIABLE`` (float32 or float64, vector size 64) and the velocity mesh named ``pop``
  (``MESH_BBOX = [nbx, nby, nbz, 4, 4, 4]``, ``MESH_NODE_CRDS_X/Y/Z`` with ``nv + 1`` nodes);
- ``VARIABLE`` entries on ``SpatialGrid`` (with Vlasiator's unit attributes for the names it
  knows), ``PARAMETER`` entries (``time``, ``timestep``, ``xmin`` ... ``zmax``,
  ``xcells_ini`` ...), optionally ``CONFIG`` (``config_file``) and ``VERSION`` text;
- little-endian data, XML footer sorted by tag like the vlsv library writes it.

Files are written atomically: to a temporary file in the target folder, then ``os.replace``.
Units are the caller's; Vlasiator files are SI (m, m/s, s^3/m^6, T, V/m, Pa).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from faiser.atomic import atomic_path
from faiser.data.sparse_blocks import SparseBlocks, VelocityMesh, dense_to_sparse
from faiser.data.vlsv_reader import SpatialMesh
from faiser.errors import ConfigError, VlsvError
from faiser.units import PROTON_MASS

__all__ = ["Population", "write_vlsv", "spatial_mesh_from"]

_UNITS = {
    "vg_rho": ("1/m^3", r"$\mathrm{m}^{-3}$", r"$n_\mathrm{%s}$"),
    "vg_v": ("m/s", r"$\mathrm{m}\,\mathrm{s}^{-1}$", r"$V_\mathrm{%s}$"),
    "vg_ptensor_diagonal": ("Pa", r"$\mathrm{Pa}$", r"$\mathcal{P}_\mathrm{%s}$"),
    "vg_ptensor_offdiagonal": ("Pa", r"$\mathrm{Pa}$", r"$\mathcal{\tilde{P}}_\mathrm{%s}$"),
    "vg_b_vol": ("T", r"$\mathrm{T}$", r"$B_\mathrm{vol}$"),
    "vg_e_vol": ("V/m", r"$\mathrm{V}\,\mathrm{m}^{-1}$", r"$E_\mathrm{vol}$"),
    "vg_rhom": ("kg/m^3", r"$\mathrm{kg}\,\mathrm{m}^{-3}$", r"$\rho_\mathrm{m}$"),
    "vg_rhoq": ("C/m^3", r"$\mathrm{C}\,\mathrm{m}^{-3}$", r"$\rho_\mathrm{q}$"),
    "vg_pressure": ("Pa", r"$\mathrm{Pa}$", r"$P_\mathrm{solver}$"),
    "vg_boundarytype": ("", "", r"$\mathrm{vGrid Boundary type}$"),
    "vg_blocks": ("", "", r"$\mathrm{%s blocks}$"),
}
_FILE_KINDS = {"i": "int", "u": "uint", "f": "float"}


@dataclasses.dataclass(frozen=True)
class Population:
    """One population to write.

    Attributes:
      mesh: velocity mesh (SI: m/s); ``nv`` must be a multiple of ``mesh.wid`` on every axis.
      vdf: :class:`~faiser.data.sparse_blocks.SparseBlocks` (its ``cellids`` are the cells that
        store a VDF), or dense VDFs ``(len(vdf_cellids), nvx, nvy, nvz)`` (s^3/m^6), or ``None``
        (velocity mesh only, no cell stores a VDF).
      mass: particle mass (kg); kept for callers computing moments, not stored by VLSV itself.
      charge: particle charge in units of e.
      vdf_cellids: cells of a dense ``vdf`` (default: all written cells, in order).
      f_min: sparsity threshold for a dense ``vdf`` (units of ``vdf``; ``<= 0`` keeps all blocks).
      dtype: stored value dtype for a dense ``vdf`` (default: its own, float32 or float64).
    """

    mesh: VelocityMesh
    vdf: SparseBlocks | np.ndarray | None = None
    mass: float = PROTON_MASS
    charge: float = 1.0
    vdf_cellids: np.ndarray | None = None
    f_min: float = 0.0
    dtype: object = None


def spatial_mesh_from(spatial) -> SpatialMesh:
    """A :class:`~faiser.data.vlsv_reader.SpatialMesh` from itself or a dict.

    The dict holds ``nx, ny, nz, xmin, xmax, ymin, ymax, zmin, zmax`` (m) and optionally
    ``periodic`` (3 bools) and ``max_refinement_level``; or ``ncells``, ``xmin``, ``xmax`` as
    3-vectors.
    """
    if isinstance(spatial, SpatialMesh):
        return spatial
    if not isinstance(spatial, Mapping):
        raise ConfigError(f"spatial must be a SpatialMesh or a dict, got {type(spatial).__name__}")
    try:
        if "ncells" in spatial:
            ncells = tuple(int(n) for n in spatial["ncells"])
            lo = tuple(float(x) for x in spatial["xmin"])
            hi = tuple(float(x) for x in spatial["xmax"])
        else:
            ncells = tuple(int(spatial[f"n{a}"]) for a in "xyz")
            lo = tuple(float(spatial[f"{a}min"]) for a in "xyz")
            hi = tuple(float(spatial[f"{a}max"]) for a in "xyz")
        periodic = tuple(bool(p) for p in spatial.get("periodic", (False, False, False)))
        level = int(spatial.get("max_refinement_level", 0))
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"bad spatial mesh description {dict(spatial)!r}: {e}") from None
    if len(ncells) != 3 or len(lo) != 3 or len(hi) != 3 or len(periodic) != 3:
        raise ConfigError("spatial mesh needs 3 cell counts, bounds and periodicities")
    if any(n < 1 for n in ncells) or any(not (b > a) for a, b in zip(lo, hi)) or level < 0:
        raise ConfigError(f"bad spatial mesh: ncells {ncells}, box {lo} .. {hi}, refinement {level}")
    return SpatialMesh(ncells, lo, hi, level, periodic)  # type: ignore[arg-type]


class _Builder:
    """Streams arrays to an open file and collects their footer lines."""

    def __init__(self, fh):
        self.fh = fh
        self.offset = 16
        self.items: list[tuple[str, dict, int]] = []

    def add(self, tag: str, attrib: dict, data, vectorsize: int | None = None) -> None:
        arr = np.asarray(data)
        if arr.dtype.kind == "b":
            arr = arr.astype(np.int32)
        if arr.dtype.kind not in _FILE_KINDS or arr.dtype.itemsize not in (1, 2, 4, 8):
            raise ConfigError(f"{tag} {attrib.get('name', '')}: cannot store dtype {arr.dtype} in VLSV")
        if arr.ndim == 0:
            arr = arr.reshape(1)
        vs = vectorsize if vectorsize is not None else (1 if arr.ndim == 1 else int(np.prod(arr.shape[1:])))
        arraysize = arr.shape[0] if arr.size or vectorsize is None else 0
        if arr.size != arraysize * vs:
            raise ConfigError(f"{tag} {attrib.get('name', '')}: {arr.size} values for {arraysize} x {vs}")
        le = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
        full = dict(attrib)
        full.update(
            arraysize=str(arraysize),
            vectorsize=str(vs),
            datasize=str(arr.dtype.itemsize),
            datatype=_FILE_KINDS[arr.dtype.kind],
        )
        self.items.append((tag, full, self.offset))
        if le.nbytes:
            self.fh.write(memoryview(le.reshape(-1)).cast("B"))
        self.offset += le.nbytes

    def add_bytes(self, tag: str, attrib: dict, raw: bytes) -> None:
        self.add(tag, attrib, np.frombuffer(raw, dtype=np.uint8))

    def footer(self) -> bytes:
        lines = ["<VLSV>"]
        for tag, attrib, off in sorted(self.items, key=lambda t: t[0]):
            attrs = " ".join(f"{k}={quoteattr(v)}" for k, v in sorted(attrib.items()))
            lines.append(f"   <{tag} {attrs}>{off}</{tag}>")
        lines.append("</VLSV>\n")
        return "\n".join(lines).encode("utf-8")


def _variable_attrib(name: str) -> dict:
    pop, _, short = name.rpartition("/")
    if short in _UNITS:
        unit, unit_latex, var_latex = _UNITS[short]
        var_latex = var_latex % (pop or "total") if "%s" in var_latex else var_latex
        return {
            "unit": unit,
            "unitLaTeX": unit_latex,
            "variableLaTeX": var_latex,
            "unitConversion": "1.0" if unit else "",
        }
    return {}


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not name or escape(name) != name or any(c in name for c in "\"'\n\r\t"):
        raise ConfigError(f"{what} name {name!r} must be a non-empty plain string")


def _max_cellid(sp: SpatialMesh) -> int:
    n = int(np.prod(sp.ncells))
    return sum(n * 8**level for level in range(sp.max_refinement_level + 1))


def _population_blocks(pop: str, p, cellids: np.ndarray) -> tuple[VelocityMesh, SparseBlocks | None]:
    if isinstance(p, tuple):
        if not 1 <= len(p) <= 4:
            raise ConfigError(f"population {pop!r}: give (mesh, vdf, mass, charge) or a Population")
        p = Population(*p)
    if not isinstance(p, Population):
        raise ConfigError(f"population {pop!r}: expected a Population or a tuple, got {type(p).__name__}")
    mesh = p.mesh
    if not isinstance(mesh, VelocityMesh):
        raise ConfigError(f"population {pop!r}: mesh must be a VelocityMesh")
    if mesh.padded:
        raise ConfigError(
            f"population {pop!r}: velocity mesh {mesh.nv} is not a multiple of the {mesh.wid}-cell block on every "
            "axis; VLSV stores whole velocity blocks, so such VDFs cannot be written"
        )
    vdf = p.vdf
    if vdf is None:
        return mesh, None
    if isinstance(vdf, SparseBlocks):
        sb = vdf
        if sb.mesh.nv != mesh.nv or sb.mesh.wid != mesh.wid:
            raise ConfigError(f"population {pop!r}: the blocks' mesh {sb.mesh.nv} differs from {mesh.nv}")
    else:
        cells = cellids if p.vdf_cellids is None else np.asarray(p.vdf_cellids, dtype=np.uint64).reshape(-1)
        sb = dense_to_sparse(np.asarray(vdf), mesh, p.f_min, cellids=cells, dtype=p.dtype)
    if sb.values.dtype not in (np.float32, np.float64):
        raise ConfigError(f"population {pop!r}: VDF values must be float32 or float64, got {sb.values.dtype}")
    if not np.all(np.isin(sb.cellids, cellids)):
        raise ConfigError(f"population {pop!r}: VDF cells that are not among the written cellids")
    if len(np.unique(sb.cellids)) != sb.ncells:
        raise ConfigError(f"population {pop!r}: a cell has two VDFs")
    if sb.nblocks_total and int(sb.block_ids.max()) >= mesh.num_blocks:
        raise ConfigError(f"population {pop!r}: block id outside the velocity mesh")
    return mesh, sb


def write_vlsv(
    path: str | os.PathLike,
    *,
    spatial,
    cellids,
    populations: Mapping | None = None,
    variables: Mapping | None = None,
    parameters: Mapping | None = None,
    config_text: str | None = None,
    version_text: str | None = None,
) -> Path:
    """Write a VLSV file (atomically).

    Args:
      path: output file.
      spatial: :class:`~faiser.data.vlsv_reader.SpatialMesh` or a dict (see
        :func:`spatial_mesh_from`), SI lengths (m).
      cellids: ``(ncells,)`` distinct CellIDs of the written cells (``1 + i + j*nx + k*nx*ny`` on a
        uniform mesh), in file order; every variable follows this order.
      populations: ``{name: Population}`` or ``{name: (VelocityMesh, vdf, mass_kg, charge)}``;
        the population's VDF cells must be among ``cellids``.
      variables: ``{name: array}`` with first dimension ``ncells`` (vectors as ``(ncells, k)``),
        stored on ``SpatialGrid`` with their dtype; ``CellID`` is written from ``cellids``.
      parameters: ``{name: scalar}`` (numpy scalars keep their dtype; Python ints are int64,
        floats float64). ``x/y/zmin``, ``x/y/zmax``, ``x/y/zcells_ini`` and
        ``numWritingRanks`` are added unless given.
      config_text: configuration text stored as ``CONFIG`` (``config_file``), as Vlasiator does.
      version_text: version text stored as ``VERSION``.

    Returns:
      The path written.

    Raises:
      ConfigError: inconsistent inputs (sizes, cell ids, velocity meshes not made of whole blocks).
      VlsvError: the file cannot be written.
    """
    sp = spatial_mesh_from(spatial)
    cellids = np.asarray(cellids).reshape(-1)
    if cellids.size and (cellids.dtype.kind not in "iu" or int(cellids.min()) < 1):
        raise ConfigError("cellids must be integers >= 1 (VLSV CellIDs are 1-based)")
    cellids = cellids.astype(np.uint64)
    if len(np.unique(cellids)) != cellids.size:
        raise ConfigError("cellids must be distinct")
    if cellids.size and int(cellids.max()) > _max_cellid(sp):
        raise ConfigError(f"CellID {int(cellids.max())} is outside the {sp.ncells} mesh")
    n = cellids.size
    pops = {}
    for name, p in (populations or {}).items():
        _check_name(name, "population")
        pops[name] = _population_blocks(name, p, cellids)
    var_arrays = {}
    for name, arr in (variables or {}).items():
        _check_name(name, "variable")
        a = np.asarray(arr)
        if name == "CellID":
            if a.shape != (n,) or not np.array_equal(a.astype(np.uint64), cellids):
                raise ConfigError("variable CellID differs from cellids")
            continue
        if a.ndim == 0 or a.shape[0] != n:
            raise ConfigError(f"variable {name!r} has shape {a.shape}, expected ({n}, ...)")
        var_arrays[name] = a
    params = dict(parameters or {})
    for d, a in enumerate("xyz"):
        params.setdefault(f"{a}min", float(sp.xmin[d]))
        params.setdefault(f"{a}max", float(sp.xmax[d]))
    for d, a in enumerate("xyz"):
        params.setdefault(f"{a}cells_ini", np.uint32(sp.ncells[d]))
    params.setdefault("numWritingRanks", np.int32(1))

    path = Path(path)
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            fh.write(b"\0" * 16)
            b = _Builder(fh)
            _write_spatial(b, sp, cellids)
            for name, value in params.items():
                _check_name(name, "parameter")
                v = np.asarray(value)
                if v.dtype.kind not in "iuf" and v.dtype.kind != "b":
                    raise ConfigError(f"parameter {name!r} = {value!r} is not a number")
                b.add("PARAMETER", {"name": name}, v.reshape(-1), vectorsize=1)
            b.add("VARIABLE", {"name": "CellID", "mesh": "SpatialGrid"}, cellids)
            for name, a in var_arrays.items():
                b.add("VARIABLE", {"name": name, "mesh": "SpatialGrid", **_variable_attrib(name)}, a)
            for name, (mesh, sb) in pops.items():
                _write_population(b, name, mesh, sb)
            if config_text is not None:
                b.add_bytes("CONFIG", {"name": "config_file"}, str(config_text).encode("utf-8"))
            if version_text is not None:
                b.add_bytes("VERSION", {"name": "version_information"}, str(version_text).encode("utf-8"))
            footer_offset = b.offset
            fh.write(b.footer())
            fh.seek(0)
            fh.write(np.array([0], dtype="<u8").tobytes() + np.array([footer_offset], dtype="<u8").tobytes())
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as e:
        raise VlsvError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def _write_spatial(b: _Builder, sp: SpatialMesh, cellids: np.ndarray) -> None:
    per = {f"{a}periodic": "yes" if p else "no" for a, p in zip("xyz", sp.periodic)}
    b.add(
        "MESH",
        {"name": "SpatialGrid", "type": "amr_ucd", "max_refinement_level": str(sp.max_refinement_level), **per},
        cellids - np.uint64(1),
    )
    b.add("MESH_BBOX", {"mesh": "SpatialGrid"}, np.array([*sp.ncells, 1, 1, 1], dtype=np.uint64))
    for d, a in enumerate("XYZ"):
        b.add(f"MESH_NODE_CRDS_{a}", {"mesh": "SpatialGrid"}, np.linspace(sp.xmin[d], sp.xmax[d], sp.ncells[d] + 1))
    b.add("MESH_DOMAIN_SIZES", {"mesh": "SpatialGrid"}, np.array([[cellids.size, 0]], dtype=np.uint32))
    b.add("MESH_GHOST_DOMAINS", {"mesh": "SpatialGrid"}, np.zeros(0, dtype=np.uint64))
    b.add("MESH_GHOST_LOCALIDS", {"mesh": "SpatialGrid"}, np.zeros(0, dtype=np.uint64))


def _write_population(b: _Builder, name: str, mesh: VelocityMesh, sb: SparseBlocks | None) -> None:
    vattr = {"mesh": name, "type": "amr_ucd", "max_velocity_ref_level": "0"}
    b.add("MESH_BBOX", vattr, np.array([*mesh.nblocks, mesh.wid, mesh.wid, mesh.wid], dtype=np.uint64))
    for d, a in enumerate("XYZ"):
        b.add(f"MESH_NODE_CRDS_{a}", vattr, mesh.vmin[d] + np.arange(mesh.nv[d] + 1) * mesh.dv[d])
    attr = {"name": name, "mesh": "SpatialGrid"}
    if sb is None:
        cells = np.zeros(0, np.uint64)
        counts = np.zeros(0, np.uint32)
        ids = np.zeros(0, np.uint32)
        vals = np.zeros((0, mesh.wid**3), np.float32)
    else:
        cells, counts, ids, vals = sb.cellids, sb.blocks_per_cell.astype(np.uint32), sb.block_ids, sb.values
    b.add("CELLSWITHBLOCKS", attr, cells.astype(np.uint64))
    b.add("BLOCKSPERCELL", attr, counts)
    b.add("BLOCKIDS", attr, ids.astype(np.uint32))
    b.add("BLOCKVARIABLE", attr, vals, vectorsize=mesh.wid**3)
