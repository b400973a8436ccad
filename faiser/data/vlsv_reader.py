"""Memory-mapped reader of VLSV files (Vlasiator's output format).

Layout of a VLSV file:

- a 16-byte header: byte 0 is the endianness (0 little, 1 big), bytes 8..16 the offset of the
  XML footer (uint64 in the file's endianness);
- raw arrays;
- the XML footer ``<VLSV> ... </VLSV>``: one element per array, tag = kind of array (``MESH``,
  ``MESH_BBOX``, ``MESH_NODE_CRDS_X``, ``VARIABLE``, ``PARAMETER``, ``CELLSWITHBLOCKS``,
  ``BLOCKSPERCELL``, ``BLOCKIDS``, ``BLOCKVARIABLE``, ``CONFIG``, ``VERSION``...), attributes
  ``arraysize``, ``vectorsize``, ``datasize`` (bytes per element), ``datatype`` (``int``,
  ``uint``, ``float``) plus ``name`` / ``mesh``, and as text the byte offset of the array.

Velocity distributions: for population ``pop``, ``CELLSWITHBLOCKS`` lists the spatial cells that
store one, ``BLOCKSPERCELL`` their block counts (same order), ``BLOCKIDS`` and ``BLOCKVARIABLE``
the block ids and the ``wid**3`` values of every block, cell after cell (the blocks of a cell start
at the cumulative sum of ``BLOCKSPERCELL``). Block ids are 0-based, ``bi + bj*nbx + bk*nbx*nby``
(see :mod:`faiser.data.sparse_blocks`); the velocity mesh is the ``MESH_BBOX`` /
``MESH_NODE_CRDS_*`` of the mesh named ``pop``.

The file is memory-mapped: opening parses only the header and the footer, and each read touches
only the bytes it needs (reading a few cells of a file of several GB is cheap). Everything that
is returned is a copy, so the file can be closed at any time. Every inconsistency (truncated
file, offsets past the end, unknown datatype, sizes that disagree) raises
:class:`~faiser.errors.VlsvError` with the reason.
"""

from __future__ import annotations

import dataclasses
import math
import mmap
import os
import re
import struct
import xml.etree.ElementTree as ET
from functools import cached_property
from pathlib import Path

import numpy as np

from faiser.data.sparse_blocks import SparseBlocks, VelocityMesh, _ranges, sparse_to_dense
from faiser.errors import ConfigError, VlsvError

__all__ = ["SpatialMesh", "VlsvEntry", "VlsvFile", "open_vlsv"]

HEADER_BYTES = 16
_ARRAY_ATTRS = ("arraysize", "vectorsize", "datasize", "datatype")
_VALID_SIZES = {"int": (1, 2, 4, 8), "uint": (1, 2, 4, 8), "float": (4, 8)}
_KIND = {"int": "i", "uint": "u", "float": "f"}
MAX_DENSE_BYTES = 1 << 36
"""Largest dense VDF array :meth:`VlsvFile.read_vdf` allocates (64 GiB); beyond, read sparse."""


@dataclasses.dataclass(frozen=True)
class VlsvEntry:
    """One array of the footer.

    Attributes:
      tag: the element's tag (``VARIABLE``, ``MESH_BBOX``...).
      attrib: all attributes (strings).
      offset: byte offset of the data in the file.
      arraysize, vectorsize, datasize: elements, components per element, bytes per component.
      dtype: numpy dtype (with the file's byte order).
    """

    tag: str
    attrib: dict
    offset: int
    arraysize: int
    vectorsize: int
    datasize: int
    dtype: np.dtype

    @property
    def name(self) -> str | None:
        return self.attrib.get("name")

    @property
    def mesh(self) -> str | None:
        return self.attrib.get("mesh")

    @property
    def nbytes(self) -> int:
        return self.arraysize * self.vectorsize * self.datasize

    def describe(self) -> str:
        who = "/".join(x for x in (self.name, self.mesh) if x)
        return f"{self.tag}[{who}]" if who else self.tag


@dataclasses.dataclass(frozen=True)
class SpatialMesh:
    """Spatial mesh ``SpatialGrid`` of a file.

    Attributes:
      ncells: cells per axis on the coarsest level ``(nx, ny, nz)`` (``MESH_BBOX``).
      xmin, xmax: box per axis (m in Vlasiator files).
      max_refinement_level: spatial AMR levels above the base (0: uniform).
      periodic: per axis, from the mesh's ``x/y/zperiodic`` attributes.
    """

    ncells: tuple[int, int, int]
    xmin: tuple[float, float, float]
    xmax: tuple[float, float, float]
    max_refinement_level: int = 0
    periodic: tuple[bool, bool, bool] = (False, False, False)

    @property
    def dx(self) -> tuple[float, float, float]:
        return tuple((b - a) / n for a, b, n in zip(self.xmin, self.xmax, self.ncells))  # type: ignore[return-value]

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def _int_attr(elem: ET.Element, key: str, where: str) -> int:
    raw = elem.attrib.get(key)
    if raw is None:
        raise VlsvError(f"{where}: attribute {key!r} missing")
    try:
        val = int(raw.strip())
    except ValueError:
        raise VlsvError(f"{where}: attribute {key}={raw!r} is not an integer") from None
    if val < 0:
        raise VlsvError(f"{where}: attribute {key}={val} is negative")
    return val


class VlsvFile:
    """An open VLSV file (read-only, memory-mapped). Use as a context manager or call :meth:`close`.

    Args:
      path: the ``.vlsv`` file.

    Raises:
      VlsvError: missing, unreadable, truncated or corrupt file.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._mm: mmap.mmap | None = None
        self._file = None
        self._vmeshes: dict[str, VelocityMesh] = {}
        self._block_index: dict[str, tuple] = {}
        try:
            self._file = open(self.path, "rb")  # noqa: SIM115
            size = os.fstat(self._file.fileno()).st_size
            if size < HEADER_BYTES:
                raise VlsvError(f"{self.path}: {size} bytes, shorter than the 16-byte VLSV header")
            self._mm = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as e:
            self.close()
            raise VlsvError(f"cannot read {path}: {e.strerror or e}") from None
        except VlsvError:
            self.close()
            raise
        self.size = size
        try:
            self._parse()
        except BaseException:
            self.close()
            raise

    # ---- life cycle -------------------------------------------------------------------
    def close(self) -> None:
        """Release the mapping and the file (results already returned stay valid)."""
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:  # a view is still alive somewhere; the GC will unmap
                pass
            self._mm = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def __getstate__(self) -> dict:  # pickles as its path (e.g. for worker processes); reopened on load
        return {"path": str(self.path)}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])

    def __enter__(self) -> VlsvFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VlsvFile({str(self.path)!r}, {len(self.entries)} arrays)"

    # ---- header and footer ------------------------------------------------------------
    def _parse(self) -> None:
        mm = self._mm
        endian = mm[0]
        if endian not in (0, 1):
            raise VlsvError(f"{self.path}: endianness byte is {endian}, expected 0 (little) or 1 (big)")
        self.byteorder = "<" if endian == 0 else ">"
        (footer,) = struct.unpack(self.byteorder + "Q", mm[8:16])
        if not HEADER_BYTES <= footer < self.size:
            raise VlsvError(f"{self.path}: footer offset {footer} outside the file ({self.size} bytes; truncated?)")
        self.footer_offset = footer
        if not bytes(mm[footer : footer + 256]).lstrip().startswith(b"<"):
            raise VlsvError(f"{self.path}: no XML footer at offset {footer} (missing footer or corrupt header)")
        xml = bytes(mm[footer:])
        if b"<!DOCTYPE" in xml or b"<!ENTITY" in xml:
            raise VlsvError(f"{self.path}: XML footer declares a DOCTYPE/ENTITY, refused")
        try:
            root = ET.fromstring(xml)
        except (ET.ParseError, ValueError) as e:
            raise VlsvError(f"{self.path}: broken XML footer ({e})") from None
        if root.tag != "VLSV":
            raise VlsvError(f"{self.path}: footer root is <{root.tag}>, expected <VLSV> (missing footer?)")
        entries: list[VlsvEntry] = []
        for elem in root:
            if not any(a in elem.attrib for a in _ARRAY_ATTRS):
                continue  # not an array description (none known, tolerated)
            entries.append(self._entry(elem))
        self.entries = entries

    def _entry(self, elem: ET.Element) -> VlsvEntry:
        name = elem.attrib.get("name") or elem.attrib.get("mesh") or ""
        where = f"{self.path}: <{elem.tag}{' ' + name if name else ''}>"
        arraysize = _int_attr(elem, "arraysize", where)
        vectorsize = _int_attr(elem, "vectorsize", where)
        datasize = _int_attr(elem, "datasize", where)
        datatype = elem.attrib.get("datatype")
        if datatype not in _VALID_SIZES:
            raise VlsvError(f"{where}: unknown datatype {datatype!r}")
        if datasize not in _VALID_SIZES[datatype]:
            raise VlsvError(f"{where}: datasize {datasize} is not valid for datatype {datatype!r}")
        text = (elem.text or "").strip()
        if not re.fullmatch(r"[0-9]{1,20}", text):
            raise VlsvError(f"{where}: data offset {text[:40]!r} is not a non-negative integer")
        offset = int(text)
        nbytes = arraysize * vectorsize * datasize
        if nbytes and (offset < HEADER_BYTES or offset + nbytes > self.footer_offset):
            raise VlsvError(
                f"{where}: {arraysize}x{vectorsize}x{datasize} bytes at offset {offset} run outside the data "
                f"section [16, {self.footer_offset}) (truncated or corrupt file)"
            )
        dtype = np.dtype(f"{self.byteorder}{_KIND[datatype]}{datasize}")
        return VlsvEntry(elem.tag, dict(elem.attrib), offset, arraysize, vectorsize, datasize, dtype)

    def _mapped(self) -> mmap.mmap:
        if self._mm is None:
            raise VlsvError(f"{self.path}: file is closed")
        return self._mm

    # ---- generic array access ------------------------------------------------------------
    def find(self, tag: str, name: str | None = None, mesh: str | None = None) -> list[VlsvEntry]:
        """All footer entries with this tag (and name / mesh when given)."""
        return [
            e
            for e in self.entries
            if e.tag == tag and (name is None or e.name == name) and (mesh is None or e.mesh == mesh)
        ]

    def entry(self, tag: str, name: str | None = None, mesh: str | None = None) -> VlsvEntry:
        """The unique entry with this tag/name/mesh (:class:`VlsvError` if absent or ambiguous)."""
        found = self.find(tag, name, mesh)
        what = f"{tag}" + (f" name={name!r}" if name else "") + (f" mesh={mesh!r}" if mesh else "")
        if not found:
            raise VlsvError(f"{self.path}: no {what} in the file")
        if len(found) > 1:
            raise VlsvError(f"{self.path}: {len(found)} entries {what}, expected one")
        return found[0]

    def view(self, e: VlsvEntry) -> np.ndarray:
        """Zero-copy ``(arraysize, vectorsize)`` view of an entry (valid while the file is open)."""
        mm = self._mapped()
        if e.nbytes == 0:
            return np.zeros((e.arraysize, e.vectorsize), dtype=e.dtype)
        return np.frombuffer(mm, dtype=e.dtype, count=e.arraysize * e.vectorsize, offset=e.offset).reshape(
            e.arraysize, e.vectorsize
        )

    def read_array(self, tag: str, name: str | None = None, mesh: str | None = None) -> np.ndarray:
        """Copy of an entry's data, ``(arraysize, vectorsize)``, native byte order."""
        v = self.view(self.entry(tag, name, mesh))
        return v.astype(v.dtype.newbyteorder("="), copy=True)

    # ---- parameters and metadata ---------------------------------------------------------
    @cached_property
    def parameters(self) -> dict[str, int | float | list]:
        """All ``PARAMETER`` entries: scalars as Python numbers, arrays as lists."""
        out: dict[str, int | float | list] = {}
        for e in self.find("PARAMETER"):
            if e.name is None:
                continue
            v = self.view(e).reshape(-1)
            vals = v.tolist()
            out[e.name] = vals[0] if len(vals) == 1 else vals
        return out

    def parameter(self, name: str):
        """One parameter (:class:`VlsvError` if absent)."""
        if name not in self.parameters:
            raise VlsvError(f"{self.path}: no parameter {name!r}")
        return self.parameters[name]

    @property
    def time(self) -> float | None:
        """Simulation time (parameter ``time``, or ``t`` in old files); ``None`` if absent."""
        for key in ("time", "t"):
            val = self.parameters.get(key)
            if isinstance(val, (int, float)):
                return float(val)
        return None

    @property
    def timestep(self) -> int | None:
        val = self.parameters.get("timestep")
        return int(val) if isinstance(val, (int, float)) and math.isfinite(val) else None

    @cached_property
    def variables(self) -> list[str]:
        """Names of the ``VARIABLE`` entries, in footer order."""
        return [e.name for e in self.find("VARIABLE") if e.name is not None]

    @cached_property
    def meshes(self) -> dict[str, dict]:
        """Meshes by name: ``type``, ``arraysize`` and attributes of each ``MESH`` entry, plus ``bbox``."""
        out: dict[str, dict] = {}
        for e in self.find("MESH"):
            if e.name is None:
                continue
            info = {k: v for k, v in e.attrib.items() if k not in _ARRAY_ATTRS}
            info["arraysize"] = e.arraysize
            bb = self.find("MESH_BBOX", mesh=e.name)
            if bb and bb[0].arraysize * bb[0].vectorsize == 6:
                info["bbox"] = [int(x) for x in self.view(bb[0]).reshape(-1)]
            out[e.name] = info
        return out

    @cached_property
    def spatial_mesh(self) -> SpatialMesh:
        """The ``SpatialGrid`` mesh (falls back on the ``x/y/zcells_ini`` and ``x/y/zmin/max`` parameters)."""
        bb = self.find("MESH_BBOX", mesh="SpatialGrid")
        try:
            if bb:
                box = [int(x) for x in self.read_array("MESH_BBOX", mesh="SpatialGrid").reshape(-1)]
                if len(box) != 6:
                    raise VlsvError(f"{self.path}: SpatialGrid MESH_BBOX has {len(box)} values, expected 6")
                ncells = tuple(box[:3])
                crd = [self.read_array(f"MESH_NODE_CRDS_{a}", mesh="SpatialGrid").reshape(-1) for a in "XYZ"]
                if any(c.size < 2 for c in crd):
                    raise VlsvError(f"{self.path}: SpatialGrid node coordinates have fewer than 2 nodes")
                lo = tuple(float(c[0]) for c in crd)
                hi = tuple(float(c[-1]) for c in crd)
            else:
                p = self.parameters
                ncells = tuple(int(p[f"{a}cells_ini"]) for a in "xyz")
                lo = tuple(float(p[f"{a}min"]) for a in "xyz")
                hi = tuple(float(p[f"{a}max"]) for a in "xyz")
        except (KeyError, TypeError, ValueError, OverflowError):
            raise VlsvError(f"{self.path}: no usable SpatialGrid mesh (MESH_BBOX or *cells_ini parameters)") from None
        if any(n < 1 for n in ncells):
            raise VlsvError(f"{self.path}: SpatialGrid has {ncells} cells per axis")
        mesh_e = self.find("MESH", name="SpatialGrid")
        attrib = mesh_e[0].attrib if mesh_e else {}
        try:
            level = int(attrib.get("max_refinement_level", "0"))
        except ValueError:
            raise VlsvError(f"{self.path}: max_refinement_level is not an integer") from None
        periodic = tuple(attrib.get(f"{a}periodic", "no") == "yes" for a in "xyz")
        return SpatialMesh(ncells, lo, hi, level, periodic)  # type: ignore[arg-type]

    @property
    def max_refinement_level(self) -> int:
        """Spatial AMR levels above the base mesh (0 for a uniform mesh)."""
        return self.spatial_mesh.max_refinement_level

    @cached_property
    def config_text(self) -> str | None:
        """The embedded configuration (``CONFIG`` entry, ``config_file``) as text, ``None`` if absent."""
        return self._text("CONFIG")

    @cached_property
    def version_text(self) -> str | None:
        """The embedded version information (``VERSION`` entry), ``None`` if absent."""
        return self._text("VERSION")

    def _text(self, tag: str) -> str | None:
        found = self.find(tag)
        if not found:
            return None
        e = found[0]
        raw = self.view(e).reshape(-1).view(np.uint8) if e.nbytes else np.zeros(0, np.uint8)
        return raw.tobytes().decode("utf-8", errors="replace").rstrip("\x00")

    # ---- spatial cells and variables ------------------------------------------------------
    @cached_property
    def _cellids_file_order(self) -> np.ndarray:
        e = self.entry("VARIABLE", name="CellID", mesh="SpatialGrid")
        if e.vectorsize != 1 or e.dtype.kind not in "iu":
            raise VlsvError(f"{self.path}: CellID must be an integer scalar variable")
        ids = self.read_array("VARIABLE", name="CellID", mesh="SpatialGrid").reshape(-1).astype(np.uint64)
        return ids

    @cached_property
    def _cell_order(self) -> tuple[np.ndarray, np.ndarray]:
        ids = self._cellids_file_order
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        if sorted_ids.size > 1 and np.any(sorted_ids[1:] == sorted_ids[:-1]):
            raise VlsvError(f"{self.path}: duplicate CellIDs")
        return order, sorted_ids

    def cellids(self) -> np.ndarray:
        """All spatial CellIDs, sorted ascending, ``(ncells,)`` uint64."""
        return self._cell_order[1].copy()

    @property
    def ncells(self) -> int:
        return int(self._cellids_file_order.shape[0])

    def _rows_for(self, cellids, sorted_ids: np.ndarray, order: np.ndarray, what: str) -> np.ndarray:
        req = np.asarray(cellids).reshape(-1)
        if req.size and req.dtype.kind not in "iu":
            raise VlsvError(f"cellids must be integers, got dtype {req.dtype}")
        if req.size and req.dtype.kind == "i" and int(req.min()) < 0:
            raise VlsvError(f"cellids must be non-negative, got {int(req.min())}")
        req = req.astype(np.uint64)
        pos = np.searchsorted(sorted_ids, req)
        pos_c = np.minimum(pos, max(sorted_ids.size - 1, 0))
        bad = (pos >= sorted_ids.size) | (sorted_ids[pos_c] != req) if sorted_ids.size else np.ones(req.shape, bool)
        if np.any(bad):
            raise VlsvError(f"{self.path}: cell(s) {req[bad][:5].tolist()} not in {what}")
        return order[pos_c]

    def read_variable(self, name: str, cellids=None, mesh: str | None = None) -> np.ndarray:
        """A ``VARIABLE`` as an array ``(ncells,)`` (vector size 1) or ``(ncells, vectorsize)``.

        Args:
          name: variable name, e.g. ``proton/vg_rho``.
          cellids: ``None`` for all cells sorted by CellID, or CellIDs (returned in that order).
            Only for variables of the ``SpatialGrid`` mesh.
          mesh: mesh name when the name is ambiguous (e.g. ``fsgrid``); variables of other meshes
            are returned in file order.

        Returns:
          Native-endian copy (dtype as stored).
        """
        found = self.find("VARIABLE", name=name, mesh=mesh)
        if not found:
            raise VlsvError(f"{self.path}: no variable {name!r}" + (f" on mesh {mesh!r}" if mesh else ""))
        if len(found) > 1:
            found = [e for e in found if e.mesh == "SpatialGrid"] or found
        e = found[0]
        v = self.view(e)
        if e.mesh == "SpatialGrid":
            if e.arraysize != self.ncells:
                raise VlsvError(f"{self.path}: variable {name!r} has {e.arraysize} cells, CellID has {self.ncells}")
            order, sorted_ids = self._cell_order
            rows = order if cellids is None else self._rows_for(cellids, sorted_ids, order, "the file")
            out = v[rows]
        else:
            if cellids is not None:
                raise VlsvError(f"{self.path}: cellids select only SpatialGrid variables, {name!r} is on {e.mesh!r}")
            out = v
        out = out.astype(out.dtype.newbyteorder("="), copy=True)
        return out.reshape(-1) if e.vectorsize == 1 else out

    # ---- populations and VDFs ---------------------------------------------------------------
    @cached_property
    def populations(self) -> list[str]:
        """Populations with velocity data (names of the ``BLOCKIDS`` entries), in footer order."""
        out: list[str] = []
        for e in self.find("BLOCKIDS"):
            name = e.name or "avgs"
            if name not in out:
                out.append(name)
        return out

    def _check_pop(self, pop: str) -> None:
        if pop not in self.populations:
            raise VlsvError(f"{self.path}: no population {pop!r} (populations: {self.populations})")

    def velocity_mesh(self, pop: str) -> VelocityMesh:
        """Velocity mesh of population ``pop`` (``MESH_BBOX`` and ``MESH_NODE_CRDS_*`` of mesh ``pop``)."""
        return self._vmesh(pop)

    def _vmesh(self, pop: str) -> VelocityMesh:
        if pop in self._vmeshes:
            return self._vmeshes[pop]
        self._check_pop(pop)
        if not self.find("MESH_BBOX", mesh=pop):
            return self._vmesh_from_parameters(pop)
        box = self.read_array("MESH_BBOX", mesh=pop).reshape(-1)
        if box.size != 6:
            raise VlsvError(f"{self.path}: velocity MESH_BBOX of {pop!r} has {box.size} values, expected 6")
        nb = [int(x) for x in box[:3]]
        wids = [int(x) for x in box[3:]]
        if len(set(wids)) != 1 or not 1 <= wids[0] <= 64:
            raise VlsvError(f"{self.path}: velocity blocks of {pop!r} are {wids} cells, expected cubic blocks")
        w = wids[0]
        self._check_block_counts(pop, nb)
        lo, hi = [], []
        for d, a in enumerate("XYZ"):
            crd = self.view(self.entry(f"MESH_NODE_CRDS_{a}", mesh=pop)).reshape(-1)
            if crd.size != nb[d] * w + 1:
                raise VlsvError(
                    f"{self.path}: {crd.size} velocity nodes along {a} for {pop!r}, expected {nb[d] * w + 1}"
                )
            lo.append(float(crd[0]))
            hi.append(float(crd[-1]))
        return self._store_vmesh(pop, nb, w, lo, hi)

    def _check_block_counts(self, pop: str, nb: list[int]) -> None:
        if any(not 1 <= b < (1 << 20) for b in nb) or nb[0] * nb[1] * nb[2] >= (1 << 40):
            raise VlsvError(f"{self.path}: velocity mesh of {pop!r} has {nb} blocks per axis")

    def _vmesh_from_parameters(self, pop: str) -> VelocityMesh:
        """Old (Vlasiator 4) files: one velocity mesh from ``v*blocks_ini`` / ``v*min`` / ``v*max``, 4^3 blocks."""
        p = self.parameters
        try:
            nb = [int(p[f"v{a}blocks_ini"]) for a in "xyz"]
            lo = [float(p[f"v{a}min"]) for a in "xyz"]
            hi = [float(p[f"v{a}max"]) for a in "xyz"]
        except (KeyError, TypeError, ValueError, OverflowError):
            raise VlsvError(f"{self.path}: no velocity mesh for {pop!r} (no MESH_BBOX, no vxblocks_ini)") from None
        self._check_block_counts(pop, nb)
        return self._store_vmesh(pop, nb, 4, lo, hi)

    def _store_vmesh(self, pop: str, nb: list[int], w: int, lo: list[float], hi: list[float]) -> VelocityMesh:
        try:
            mesh = VelocityMesh(tuple(b * w for b in nb), tuple(lo), tuple(hi), w)
        except ConfigError as e:
            raise VlsvError(f"{self.path}: velocity mesh of {pop!r}: {e}") from None
        self._vmeshes[pop] = mesh
        return mesh

    def _blocks(self, pop: str):
        """(cells_with_blocks in file order, counts, offsets, ids entry, values entry) for ``pop``."""
        if pop in self._block_index:
            return self._block_index[pop]
        self._check_pop(pop)
        mesh = self._vmesh(pop)
        cwb_e, bpc_e, ids_e, val_e = (
            self._pop_entry(t, pop) for t in ("CELLSWITHBLOCKS", "BLOCKSPERCELL", "BLOCKIDS", "BLOCKVARIABLE")
        )
        for e in (cwb_e, bpc_e, ids_e):
            if e.vectorsize != 1 or e.dtype.kind not in "iu":
                raise VlsvError(f"{self.path}: {e.describe()} must be an integer array with vectorsize 1")
        if val_e.dtype.kind != "f":
            raise VlsvError(f"{self.path}: {val_e.describe()} must hold floats, not {val_e.attrib.get('datatype')}")
        if cwb_e.arraysize != bpc_e.arraysize:
            raise VlsvError(
                f"{self.path}: {cwb_e.arraysize} CELLSWITHBLOCKS but {bpc_e.arraysize} BLOCKSPERCELL for {pop!r}"
            )
        if val_e.vectorsize != mesh.wid**3:
            raise VlsvError(
                f"{self.path}: BLOCKVARIABLE of {pop!r} has vectorsize {val_e.vectorsize}, expected {mesh.wid**3}"
            )
        cells = self.view(cwb_e).reshape(-1).astype(np.uint64)
        counts = self.view(bpc_e).reshape(-1).astype(np.int64)
        if counts.size and counts.min() < 0:
            raise VlsvError(f"{self.path}: negative BLOCKSPERCELL for {pop!r}")
        total = int(counts.sum(dtype=np.uint64)) if counts.size else 0
        if total != ids_e.arraysize or total != val_e.arraysize:
            raise VlsvError(
                f"{self.path}: BLOCKSPERCELL of {pop!r} sums to {total} blocks but BLOCKIDS has {ids_e.arraysize} "
                f"and BLOCKVARIABLE {val_e.arraysize}"
            )
        offsets = np.zeros(counts.size + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        order = np.argsort(cells, kind="stable")
        sorted_cells = cells[order]
        if sorted_cells.size > 1 and np.any(sorted_cells[1:] == sorted_cells[:-1]):
            raise VlsvError(f"{self.path}: a cell is listed twice in CELLSWITHBLOCKS of {pop!r}")
        res = (cells, counts, offsets, ids_e, val_e, order, sorted_cells)
        self._block_index[pop] = res
        return res

    def _pop_entry(self, tag: str, pop: str) -> VlsvEntry:
        if pop == "avgs" and not self.find(tag, name=pop):  # old single-population files: no name
            unnamed = [e for e in self.find(tag) if e.name is None]
            if len(unnamed) == 1:
                return unnamed[0]
        return self.entry(tag, name=pop)

    def cells_with_vdf(self, pop: str) -> np.ndarray:
        """CellIDs that store a VDF of ``pop`` (listed in ``CELLSWITHBLOCKS``, possibly with 0 blocks), sorted."""
        return self._blocks(pop)[6].copy()

    def blocks_per_cell(self, pop: str, cellids=None) -> np.ndarray:
        """Stored block counts ``(ncells,)`` int64 of the cells (default: :meth:`cells_with_vdf`)."""
        cells, counts, _, _, _, order, sorted_cells = self._blocks(pop)
        rows = order if cellids is None else self._rows_for(cellids, sorted_cells, order, f"CELLSWITHBLOCKS of {pop!r}")
        return counts[rows]

    def read_vdf_sparse(self, pop: str, cellids=None) -> SparseBlocks:
        """Stored VDFs of ``pop`` as :class:`~faiser.data.sparse_blocks.SparseBlocks` (values as stored).

        Args:
          pop: population name, e.g. ``proton``.
          cellids: ``None`` for every cell with a VDF, sorted by CellID; or CellIDs (in that order).

        Raises:
          VlsvError: unknown population, cell without a stored VDF, inconsistent block arrays or
            block ids outside the velocity mesh.
        """
        mesh = self._vmesh(pop)
        cells, counts, offsets, ids_e, val_e, order, sorted_cells = self._blocks(pop)
        rows = order if cellids is None else self._rows_for(cellids, sorted_cells, order, f"CELLSWITHBLOCKS of {pop!r}")
        sel_counts = counts[rows]
        ids_v = self.view(ids_e).reshape(-1)
        val_v = self.view(val_e)
        starts = offsets[rows]
        if rows.size and np.all(starts[1:] == starts[:-1] + sel_counts[:-1]):  # contiguous: one slice
            a, b = int(starts[0]), int(starts[0] + sel_counts.sum())
            bids = np.array(ids_v[a:b])
            vals = np.array(val_v[a:b])
        else:
            idx = _ranges(starts, sel_counts)
            bids = np.take(ids_v, idx)
            vals = np.take(val_v, idx, axis=0)
        # fresh arrays from here on: convert only when needed (byte order, id width)
        bids = bids.astype(np.uint32 if ids_e.datasize <= 4 and ids_e.dtype.kind == "u" else np.int64, copy=False)
        if not vals.dtype.isnative:
            vals = vals.astype(vals.dtype.newbyteorder("="))
        if bids.size:
            if bids.dtype.kind == "i" and int(bids.min()) < 0:
                raise VlsvError(f"{self.path}: negative velocity block id in {pop!r}")
            if int(bids.max()) >= mesh.num_blocks:
                raise VlsvError(
                    f"{self.path}: velocity block id {int(bids.max())} of {pop!r} is outside the mesh "
                    f"({mesh.num_blocks} blocks; velocity-space AMR is not supported)"
                )
        return SparseBlocks(mesh, cells[rows].copy(), sel_counts.copy(), bids, vals)

    def read_vdf(self, pop: str, cellids=None, dtype=None) -> np.ndarray:
        """Stored VDFs of ``pop`` as dense ``(ncells, nvx, nvy, nvz)`` arrays (0 outside stored blocks).

        Args:
          pop: population name.
          cellids: as in :meth:`read_vdf_sparse`.
          dtype: output dtype, default the stored one (float32 or float64).
        """
        mesh = self._vmesh(pop)
        n = self._blocks(pop)[1].size if cellids is None else np.asarray(cellids).reshape(-1).size
        nbytes = n * math.prod(mesh.nv) * np.dtype(dtype or self._blocks(pop)[4].dtype).itemsize
        if nbytes > MAX_DENSE_BYTES:
            raise VlsvError(
                f"{self.path}: dense VDFs of {n} cells on a {mesh.nv} mesh would take {nbytes / 2**30:.0f} GiB; "
                "read them as sparse blocks or by batches of cells"
            )
        return sparse_to_dense(self.read_vdf_sparse(pop, cellids), dtype=dtype)


def open_vlsv(path: str | os.PathLike) -> VlsvFile:
    """Open a VLSV file for reading (see :class:`VlsvFile`)."""
    return VlsvFile(path)
