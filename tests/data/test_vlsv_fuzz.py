"""Property-based fuzzing of the VLSV reader: corrupt bytes raise VlsvError and nothing else."""

import json
import os
import re
import struct
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faiser.data.vlsv import (
    Population,
    VelocityMesh,
    format_inspection,
    inspect_file,
    open_vlsv,
    write_vlsv,
)
from faiser.errors import VlsvError

_TMP = tempfile.TemporaryDirectory(prefix="faiser-vlsv-fuzz-")
_DIR = Path(_TMP.name)


def _build() -> bytes:
    rng = np.random.default_rng(0)
    pm = VelocityMesh((8, 8, 8), -4e5, 4e5)
    am = VelocityMesh((4, 8, 4), (-2e5, -4e5, -2e5), (2e5, 4e5, 2e5))
    fp = (rng.random((3, 8, 8, 8)) ** 8).astype(np.float32)
    fa = rng.random((1, 4, 8, 4))
    p = write_vlsv(
        _DIR / "orig.vlsv",
        spatial=dict(nx=3, ny=1, nz=1, xmin=0, xmax=3e6, ymin=0, ymax=1e6, zmin=0, zmax=1e6),
        cellids=[2, 1, 3],
        populations={"proton": Population(pm, fp, f_min=0.5), "alpha": Population(am, fa, vdf_cellids=[3])},
        variables={"proton/vg_rho": np.array([1.0, 2.0, 3.0]), "vg_b_vol": rng.random((3, 3))},
        parameters={"time": 2.0, "timestep": np.uint32(4)},
        config_text="[proton_properties]\nmass = 1\n",
    )
    return p.read_bytes()


RAW = _build()
FOOTER = struct.unpack("<Q", RAW[8:16])[0]
FOOTER_TEXT = RAW[FOOTER:].decode()
ELEMENTS = re.findall(r"<[A-Z_]+ [^>]*>[^<]*</[A-Z_]+>", FOOTER_TEXT)
ATTRS = ["arraysize", "vectorsize", "datasize", "datatype", "name", "mesh"]
# FAISER_FUZZ_EXAMPLES=5000 for a longer search (the suite keeps it quick)
FUZZ = settings(
    max_examples=int(os.environ.get("FAISER_FUZZ_EXAMPLES", "120")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)


def exercise(raw: bytes) -> None:
    """Read everything the reader offers; only VlsvError may come out."""
    path = _DIR / "fuzz.vlsv"
    path.write_bytes(raw)
    try:
        with open_vlsv(path) as f:
            _ = (f.parameters, f.variables, f.time, f.timestep, f.meshes, f.config_text, f.version_text)
            _ = f.spatial_mesh
            for name in f.variables:
                f.read_variable(name)
            if f.ncells:
                f.read_variable(f.variables[0], f.cellids()[:1])
            for pop in f.populations:
                f.velocity_mesh(pop)
                cells = f.cells_with_vdf(pop)
                f.read_vdf(pop)
                if cells.size:
                    f.read_vdf_sparse(pop, cells[::-1])
        info = inspect_file(path)
        json.dumps(info, allow_nan=False)
        format_inspection(info)
    except VlsvError as e:
        assert str(e)


def test_original_file_reads():
    exercise(RAW)
    with open_vlsv(_DIR / "fuzz.vlsv") as f:
        assert f.populations == ["proton", "alpha"]


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, len(RAW) - 1), st.integers(1, 255)), min_size=1, max_size=6))
def test_byte_flips(flips):
    raw = bytearray(RAW)
    for pos, x in flips:
        raw[pos] ^= x
    exercise(bytes(raw))


@FUZZ
@given(length=st.integers(0, len(RAW) - 1))
def test_truncations(length):
    exercise(RAW[:length])


@FUZZ
@given(endian=st.integers(0, 255), offset=st.one_of(st.integers(0, 2**64 - 1), st.integers(FOOTER - 64, FOOTER + 64)))
def test_header_mutations(endian, offset):
    exercise(bytes([endian]) + RAW[1:8] + struct.pack("<Q", max(offset, 0)) + RAW[16:])


_VALUES = st.one_of(
    st.integers(-3, 2**66).map(str),
    st.sampled_from(["", "x", "float", "uint", "int", "1e3", " 7", "-0", "proton", "SpatialGrid", "alpha", "CellID"]),
    st.text(max_size=6),
)


@FUZZ
@given(
    which=st.integers(0, len(ELEMENTS) - 1),
    action=st.sampled_from(["attr", "drop_attr", "offset", "tag", "drop_element", "duplicate"]),
    attr=st.sampled_from(ATTRS),
    value=_VALUES,
)
def test_footer_mutations(which, action, attr, value):
    elem = ELEMENTS[which]
    if action == "attr":
        if f'{attr}="' in elem:
            new = re.sub(f'{attr}="[^"]*"', lambda m: f'{attr}="{value}"', elem)
        else:
            new = elem.replace(" ", f' {attr}="{value}" ', 1)
    elif action == "drop_attr":
        new = re.sub(f' {attr}="[^"]*"', "", elem)
    elif action == "offset":
        new = re.sub(r">[^<]*<", lambda m: f">{value}<", elem)
    elif action == "tag":
        tag = re.match(r"<([A-Z_]+)", elem).group(1)
        repl = value if re.fullmatch(r"[A-Za-z_]+", value or "") else "VARIABLE"
        new = elem.replace(f"<{tag} ", f"<{repl} ", 1).replace(f"</{tag}>", f"</{repl}>")
    elif action == "drop_element":
        new = ""
    else:
        new = elem + "\n   " + elem
    exercise(RAW[:FOOTER] + FOOTER_TEXT.replace(elem, new, 1).encode("utf-8"))
