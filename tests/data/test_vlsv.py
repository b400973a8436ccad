"""VLSV reader and writer: real Vlasiator files, edge cases, pyvlasiator cross-check, corrupt files, CLI."""

import json
import os
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from faiser.cli import main
from faiser.data.vlsv import (
    Population,
    VelocityMesh,
    dense_to_sparse,
    format_inspection,
    inspect_file,
    open_vlsv,
    sparse_moments,
    sparse_to_dense,
    write_snapshot,
    write_vlsv,
)
from faiser.errors import ConfigError, VlsvError

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "vlasiator"
BULK = REAL / "bulk.0000004.vlsv"
AMR = REAL / "bulk.amr.vlsv"
needs_real = pytest.mark.skipif(not (BULK.is_file() and AMR.is_file()), reason="real Vlasiator files not present")

SPATIAL = dict(nx=6, ny=1, nz=1, xmin=0.0, xmax=6e6, ymin=0.0, ymax=1e6, zmin=0.0, zmax=1e6)


def maxwellians(mesh: VelocityMesh, n: np.ndarray, u: np.ndarray, vth: float, dtype=np.float64) -> np.ndarray:
    """Drifting Maxwellians ``(len(n), nvx, nvy, nvz)`` in SI (s^3/m^6)."""
    vx, vy, vz = np.meshgrid(*(mesh.v_centers(a) for a in range(3)), indexing="ij")
    out = [
        ni
        / (2 * np.pi * vth**2) ** 1.5
        * np.exp(-((vx - ui[0]) ** 2 + (vy - ui[1]) ** 2 + (vz - ui[2]) ** 2) / (2 * vth**2))
        for ni, ui in zip(n, u)
    ]
    return np.asarray(out, dtype=dtype)


# ---- real Vlasiator output ---------------------------------------------------------------------
@needs_real
def test_real_file_vdfs_match_vlasiator_moments():
    with open_vlsv(BULK) as f:
        assert f.populations == ["proton"]
        mesh = f.velocity_mesh("proton")
        assert mesh.nv == (40, 40, 40) and mesh.nblocks == (10, 10, 10) and mesh.wid == 4
        assert f.cellids().tolist() == list(range(1, 11))
        assert f.cells_with_vdf("proton").tolist() == list(range(1, 11))
        vdf = f.read_vdf("proton")
        assert vdf.shape == (10, 40, 40, 40) and vdf.dtype == np.float64
        sb = f.read_vdf_sparse("proton")
        assert sb.blocks_per_cell.tolist() == [1000] * 10
        m = sparse_moments(sb)
        interior = f.read_variable("vg_boundarytype") == 1
        assert interior.sum() == 6
        rho, v = f.read_variable("proton/vg_rho"), f.read_variable("proton/vg_v")
        np.testing.assert_allclose(m["density"][interior], rho[interior], rtol=1e-6)
        scale = np.linalg.norm(v[interior], axis=1, keepdims=True)
        assert np.all(np.abs(m["bulk_velocity"][interior] - v[interior]) <= 1e-6 * scale)
        # dense VDFs give the same density, and partial reads equal slices of the full read
        np.testing.assert_allclose(vdf.sum(axis=(1, 2, 3)) * mesh.dv3, m["density"], rtol=1e-12)
        np.testing.assert_array_equal(f.read_vdf("proton", [7, 2]), vdf[[6, 1]])
        np.testing.assert_array_equal(f.read_variable("proton/vg_rho", [7, 2]), rho[[6, 1]])
        assert f.time == 8.0 and f.timestep == 16 and f.parameter("xcells_ini") == 10
        assert f.spatial_mesh.ncells == (10, 1, 1) and f.max_refinement_level == 0
        assert f.config_text is None


@needs_real
def test_real_amr_file_lists_meshes_variables_parameters():
    with open_vlsv(AMR) as f:
        assert f.max_refinement_level == 2
        assert f.spatial_mesh.ncells == (8, 4, 4) and f.spatial_mesh.periodic == (False, True, True)
        assert set(f.meshes) == {"SpatialGrid", "fsgrid"} and f.meshes["fsgrid"]["bbox"][:3] == [32, 16, 16]
        assert {"CellID", "fg_b", "fg_e", "proton/vg_rho", "vg_boundarytype"} <= set(f.variables)
        assert f.parameter("timestep") == 94 and abs(f.time - 180.23682408) < 1e-6
        assert f.ncells == 1080 and np.all(np.diff(f.cellids().astype(np.int64)) > 0)
        assert f.read_variable("fg_b").shape == (8192, 3)
        assert f.read_variable("proton/vg_v").shape == (1080, 3)
        assert f.velocity_mesh("proton").nv == (60, 60, 60)
        assert f.cells_with_vdf("proton").size == 0 and f.read_vdf_sparse("proton").ncells == 0
    info = inspect_file(AMR)
    assert info["populations"]["proton"]["cells"] == [] and "fg_e" in info["variables"]


@needs_real
def test_real_read_write_read_is_exact(tmp_path):
    out = tmp_path / "copy.vlsv"
    with open_vlsv(BULK) as f:
        cellids = f.cellids()
        sb = f.read_vdf_sparse("proton")
        variables = {name: f.read_variable(name) for name in f.variables}
        params = f.parameters
        sm = f.spatial_mesh
        write_vlsv(
            out,
            spatial=sm,
            cellids=cellids,
            populations={"proton": Population(f.velocity_mesh("proton"), sb)},
            variables=variables,
            parameters={k: np.asarray(f.read_array("PARAMETER", name=k))[0, 0] for k in params},
        )
    with open_vlsv(out) as g, open_vlsv(BULK) as f:
        assert g.cellids().tolist() == f.cellids().tolist()
        assert g.variables == f.variables and g.parameters == f.parameters
        for name in f.variables:
            a, b = f.read_variable(name), g.read_variable(name)
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
        s1, s2 = f.read_vdf_sparse("proton"), g.read_vdf_sparse("proton")
        np.testing.assert_array_equal(s1.block_ids, s2.block_ids)
        np.testing.assert_array_equal(s1.values, s2.values)
        np.testing.assert_array_equal(f.read_vdf("proton"), g.read_vdf("proton"))
        assert g.velocity_mesh("proton") == f.velocity_mesh("proton")
        assert g.spatial_mesh == f.spatial_mesh


# ---- edge cases on written files ----------------------------------------------------------------
def test_single_cell_file(tmp_path):
    mesh = VelocityMesh((8, 8, 8), -8e5, 8e5)
    f = maxwellians(mesh, [1e6], [[1e5, 0, 0]], 2e5)
    p = write_vlsv(
        tmp_path / "one.vlsv",
        spatial=dict(nx=1, ny=1, nz=1, xmin=0, xmax=1e6, ymin=0, ymax=1e6, zmin=0, zmax=1e6),
        cellids=[1],
        populations={"proton": (mesh, f)},
        variables={"proton/vg_rho": np.array([1e6])},
    )
    with open_vlsv(p) as r:
        assert r.cellids().tolist() == [1] and r.read_variable("proton/vg_rho").tolist() == [1e6]
        np.testing.assert_array_equal(r.read_vdf("proton"), f)
    info = inspect_file(p)
    cell = info["populations"]["proton"]["cells"][0]
    assert cell["cellid"] == 1 and abs(cell["density"] / (f.sum() * mesh.dv3) - 1) < 1e-12


def test_two_populations_float32_float64_cells_without_vdf(tmp_path):
    pm = VelocityMesh((32, 32, 32), -1.6e6, 1.6e6)
    am = VelocityMesh((8, 12, 4), (-4e5, -6e5, -2e5), (4e5, 6e5, 2e5))
    fp = maxwellians(pm, [1e6, 2e6, 3e6, 4e6], [[0, 0, 0], [1e5, 0, 0], [0, 2e5, 0], [0, 0, -1e5]], 1.5e5, np.float32)
    fa = maxwellians(am, [1e5, 2e5], [[0, 1e5, 0], [5e4, 0, 0]], 1e5, np.float64)
    p = write_vlsv(
        tmp_path / "pops.vlsv",
        spatial=SPATIAL,
        cellids=[6, 2, 4, 1],
        populations={
            "proton": Population(pm, fp, f_min=1e-15),
            "alpha": Population(am, fa, vdf_cellids=[4, 2], mass=4 * 1.67e-27, charge=2),
        },
        variables={"vg_b_vol": np.zeros((4, 3)), "vg_boundarytype": np.ones(4, np.int32)},
        parameters={"time": 12.5, "timestep": np.uint32(7)},
        config_text="ParticlePopulations = proton\nParticlePopulations = alpha\n",
    )
    with open_vlsv(p) as r:
        assert r.populations == ["proton", "alpha"]
        assert r.velocity_mesh("alpha") == am and r.velocity_mesh("proton") == pm
        assert r.cells_with_vdf("alpha").tolist() == [2, 4]
        assert r.cells_with_vdf("proton").tolist() == [1, 2, 4, 6]
        a = r.read_vdf("alpha")
        assert a.dtype == np.float64
        np.testing.assert_array_equal(a, fa[[1, 0]])  # sorted by CellID
        pv = r.read_vdf("proton")
        assert pv.dtype == np.float32
        order = np.argsort([6, 2, 4, 1])
        np.testing.assert_array_equal(pv, sparse_to_dense(dense_to_sparse(fp, pm, 1e-15))[order])
        assert r.read_vdf_sparse("proton").nblocks_total < 4 * pm.num_blocks  # threshold dropped blocks
        with pytest.raises(VlsvError, match="not in CELLSWITHBLOCKS"):
            r.read_vdf("alpha", [6])  # a cell without an alpha VDF
        assert r.time == 12.5 and r.timestep == 7 and "alpha" in r.config_text
        assert r.read_variable("vg_boundarytype").dtype == np.int32
    info = inspect_file(p)
    dens = [c["density"] for c in info["populations"]["alpha"]["cells"]]
    np.testing.assert_allclose(dens, fa[[1, 0]].sum(axis=(1, 2, 3)) * am.dv3, rtol=1e-12)
    assert info["populations"]["alpha"]["velocity_mesh"]["nv"] == [8, 12, 4]
    assert "alpha" in format_inspection(info)


def test_large_sparse_mesh_200_cubed(tmp_path):
    mesh = VelocityMesh((200, 200, 200), -2e6, 2e6)
    f = maxwellians(mesh, [1e6, 2e6, 5e5], [[0, 0, 0], [2e5, 1e5, 0], [-3e5, 0, 1e5]], 1.2e5, np.float32)
    sb = dense_to_sparse(f, mesh, 1e-15, cellids=[1, 3, 5])
    fill = sb.nblocks_total / (3 * mesh.num_blocks)
    assert 0.003 < fill < 0.03, fill
    p = write_vlsv(tmp_path / "big.vlsv", spatial=SPATIAL, cellids=[1, 3, 5], populations={"proton": (mesh, sb)})
    assert os.path.getsize(p) < 4 * sb.nbytes  # sparse on disk
    with open_vlsv(p) as r:
        back = r.read_vdf_sparse("proton", [5])
        np.testing.assert_array_equal(back.values, sb.select([2]).values)
        np.testing.assert_array_equal(r.read_vdf("proton", [3])[0], sparse_to_dense(sb.select([1]))[0])
    cells = inspect_file(p)["populations"]["proton"]["cells"]
    np.testing.assert_allclose([c["density"] for c in cells], [1e6, 2e6, 5e5], rtol=1e-5)
    np.testing.assert_allclose(cells[1]["bulk_velocity"], [2e5, 1e5, 0], atol=5.0)


def test_writer_refuses_bad_input_and_is_atomic(tmp_path):
    target = tmp_path / "t.vlsv"
    target.write_bytes(b"old")
    mesh = VelocityMesh((8, 8, 8), -1e5, 1e5)
    with pytest.raises(ConfigError, match="multiple"):
        write_vlsv(target, spatial=SPATIAL, cellids=[1], populations={"e": (VelocityMesh((10, 1, 1), -1, 1), None)})
    with pytest.raises(ConfigError):
        write_vlsv(target, spatial=SPATIAL, cellids=[1, 1])
    with pytest.raises(ConfigError):
        write_vlsv(target, spatial=SPATIAL, cellids=[7])  # outside the 6-cell mesh
    with pytest.raises(ConfigError):
        pop = Population(mesh, np.ones((1, 8, 8, 8)), vdf_cellids=[2])  # a VDF for a cell not written
        write_vlsv(target, spatial=SPATIAL, cellids=[1], populations={"p": pop})
    with pytest.raises(ConfigError):  # fails while streaming: the temporary file is removed
        write_vlsv(target, spatial=SPATIAL, cellids=[1, 2], parameters={"bad": "text"})
    assert target.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["t.vlsv"]


# ---- pyvlasiator cross-check ---------------------------------------------------------------------
def test_pyvlasiator_reads_faiser_files(tmp_path):
    pyvlasiator = pytest.importorskip("pyvlasiator.vlsv")
    mesh = VelocityMesh((12, 8, 8), (-6e5, -4e5, -4e5), (6e5, 4e5, 4e5))
    f = maxwellians(mesh, [1e6, 3e6, 2e6], [[1e5, 0, 0], [0, 0, 0], [-1e5, 5e4, 0]], 1.5e5, np.float32)
    sb = dense_to_sparse(f, mesh, 1e-20, cellids=[3, 1, 2])
    m = sparse_moments(sb)
    p = write_vlsv(
        tmp_path / "pv.vlsv",
        spatial=dict(nx=3, ny=1, nz=1, xmin=0, xmax=3e6, ymin=0, ymax=1e6, zmin=0, zmax=1e6),
        cellids=[3, 1, 2],
        populations={"proton": (mesh, sb)},
        variables={"proton/vg_rho": m["density"], "proton/vg_v": m["bulk_velocity"]},
        parameters={"time": 4.0},
    )
    meta = pyvlasiator.Vlsv(str(p))
    assert meta.time == 4.0 and meta.species == ["proton"] and meta.hasvdf
    np.testing.assert_allclose(meta.meshes["proton"].vmin, mesh.vmin)
    np.testing.assert_allclose(meta.meshes["proton"].dv, mesh.dv)
    np.testing.assert_allclose(meta.read_variable("proton/vg_rho"), m["density"][[1, 2, 0]], rtol=1e-6)
    with open_vlsv(p) as r:
        for k, cid in enumerate((3, 1, 2)):
            vcellids, vcellf = meta.read_vcells(cid, "proton")
            ids, vals = sb.cell(k)
            expect_ids = (ids.astype(np.int64)[:, None] * 64 + np.arange(64)).ravel()
            np.testing.assert_array_equal(vcellids, expect_ids)
            np.testing.assert_array_equal(vcellf, vals.ravel())
            dens_pv = vcellf.astype(np.float64).sum() * np.prod(meta.meshes["proton"].dv)
            assert abs(dens_pv / r.read_variable("proton/vg_rho", [cid])[0] - 1) < 1e-6


# ---- write_snapshot -------------------------------------------------------------------------------
def test_write_snapshot_moments_and_vdfs(tmp_path):
    from faiser.grid import PhaseSpaceGrid
    from faiser.units import ELEMENTARY_CHARGE, HybridUnits
    from faiser.vlasov.state import Species, State

    g = PhaseSpaceGrid.make((3, 2, 1), (4.0, 2.0, 1.0), (8, 8, 8), 4.0)
    vx, vy, vz, x = g.v_mesh(0), g.v_mesh(1), g.v_mesh(2), g.x_mesh(0)
    fp = (1 + 0.1 * np.cos(x)) * np.exp(-((vx - 0.5) ** 2 + vy**2 + vz**2) / 2) / (2 * np.pi) ** 1.5
    fa = 0.05 * np.exp(-((vx + 0.3) ** 2 + (vy - 0.2) ** 2 + vz**2) / 0.5) + 0 * x
    fp, fa = (np.broadcast_to(a, g.shape).astype(np.float32) for a in (fp, fa))
    state = State.create([fp, fa], B=(0.0, 0.0, 1.0), E=(0.1, 0.0, 0.0), time=2.0, dtype=np.float32)
    units = HybridUnits(n0=1e6, B0=5e-9)
    species = (Species("proton", 1.0, 1.0), Species("alpha", 2.0, 4.0))
    p = write_snapshot(tmp_path / "bulk.0000001.vlsv", state, g, units, species, config={"case": "test"}, vdf_stride=2)
    fac = units.factors()
    with open_vlsv(p) as r:
        assert r.populations == ["proton", "alpha"] and r.ncells == 6
        assert abs(r.time - 2.0 * fac["time_s"]) < 1e-12 * fac["time_s"]
        assert json.loads(r.config_text) == {"case": "test"}
        assert r.cells_with_vdf("proton").tolist() == [1, 3, 5]  # every 2nd cell
        np.testing.assert_allclose(r.read_variable("vg_b_vol")[:, 2], units.B0)
        np.testing.assert_allclose(r.read_variable("vg_e_vol")[:, 0], 0.1 * fac["electric_field_V_per_m"], rtol=1e-6)
        rho = r.read_variable("proton/vg_rho")
        # density of the perturbed Maxwellian (cells x-fastest: CellID 1 + i + 3 j)
        xs = g.x_centers(0)
        n_exact = (1 + 0.1 * np.cos(xs)) * units.n0
        np.testing.assert_allclose(rho, np.tile(n_exact, 2), rtol=2e-3)  # 8^3 mesh quadrature
        np.testing.assert_allclose(r.read_variable("proton/vg_v")[:, 0], 0.5 * fac["velocity_m_per_s"], rtol=5e-3)
        rhoq = r.read_variable("vg_rhoq")
        np.testing.assert_allclose(rhoq, ELEMENTARY_CHARGE * (rho + 2 * r.read_variable("alpha/vg_rho")), rtol=1e-12)
        pd = r.read_variable("alpha/vg_ptensor_diagonal")
        assert np.all(pd > 0) and r.read_variable("proton/vg_ptensor_offdiagonal").shape == (6, 3)
        # SI pressures agree with those computed independently from the stored proton blocks
        from_blocks = sparse_moments(r.read_vdf_sparse("proton"), mass=units.mass)
        for key in ("ptensor_diagonal", "ptensor_offdiagonal"):
            stored = r.read_variable(f"proton/vg_{key}")[[0, 2, 4]]
            np.testing.assert_allclose(stored, from_blocks[key], rtol=1e-5, atol=1e-6 * np.abs(pd).max())
        vdf = r.read_vdf("proton", [3])[0]
        np.testing.assert_allclose(vdf, fp[2, 0, 0] * fac["f_s3_per_m6"], rtol=1e-6)
    info = inspect_file(p)
    cells = info["populations"]["proton"]["cells"]
    np.testing.assert_allclose([c["density"] for c in cells], rho[[0, 2, 4]], rtol=1e-6)


def test_write_snapshot_1d1v_writes_moments_only(tmp_path):
    from faiser.grid import PhaseSpaceGrid
    from faiser.units import ElectrostaticUnits
    from faiser.vlasov.state import Species, State

    g = PhaseSpaceGrid.make_1d1v(8, 10.0, 32, 6.0)
    state = State.create(np.ones(g.shape, np.float32), dtype=np.float32)
    units = ElectrostaticUnits()
    p = write_snapshot(tmp_path / "es.vlsv", state, g, units, (Species("electron", -1.0, 1.0),))
    with open_vlsv(p) as r:
        assert r.populations == []
        np.testing.assert_allclose(r.read_variable("electron/vg_rho"), 12.0 * units.n0, rtol=1e-6)
    assert inspect_file(p)["populations"] == {}


# ---- corrupt files --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_file(tmp_path_factory) -> bytes:
    mesh = VelocityMesh((8, 8, 8), -4e5, 4e5)
    f = maxwellians(mesh, [1e6, 2e6], [[0, 0, 0], [1e5, 0, 0]], 1e5, np.float32)
    p = write_vlsv(
        tmp_path_factory.mktemp("vlsv") / "s.vlsv",
        spatial=SPATIAL,
        cellids=[1, 2],
        populations={"proton": (mesh, f)},
        variables={"proton/vg_rho": np.array([1e6, 2e6])},
        parameters={"time": 1.0},
    )
    return p.read_bytes()


def read_everything(path) -> None:
    with open_vlsv(path) as f:
        assert f.parameters is not None and f.spatial_mesh is not None and f.meshes is not None
        assert (f.time, f.config_text, f.version_text) is not None
        for name in f.variables:
            f.read_variable(name)
        for pop in f.populations:
            f.velocity_mesh(pop)
            f.read_vdf(pop)
    json.dumps(inspect_file(path), allow_nan=False)


def _footer(raw: bytes) -> tuple[int, str]:
    off = struct.unpack("<Q", raw[8:16])[0]
    return off, raw[off:].decode()


BPC3 = b'<BLOCKSPERCELL arraysize="3"'
RHO_CPLX = b'datatype="cplx" mesh="SpatialGrid" name="proton/vg_rho"'
CORRUPTIONS = {
    "empty": lambda raw: b"",
    "truncated_header": lambda raw: raw[:10],
    "truncated_data": lambda raw: raw[:2000],
    "cut_footer": lambda raw: raw[:-40],
    "missing_footer": lambda raw: raw[: _footer(raw)[0]],
    "footer_offset_past_end": lambda raw: raw[:8] + struct.pack("<Q", len(raw) + 10) + raw[16:],
    "bad_endianness": lambda raw: b"\x07" + raw[1:],
    "broken_xml": lambda raw: raw.replace(b"</VLSV>", b"</VLS"),
    "not_vlsv_root": lambda raw: raw.replace(b"<VLSV>", b"<XYZ>").replace(b"</VLSV>", b"</XYZ>"),
    "offset_past_end": lambda raw: re.sub(rb'(name="proton/vg_rho"[^>]*>)[0-9]+<', rb"\g<1>999999999<", raw),
    "arraysize_too_large": lambda raw: raw.replace(b'BLOCKVARIABLE arraysize="', b'BLOCKVARIABLE arraysize="9'),
    "unknown_datatype": lambda raw: raw.replace(b'datatype="float" mesh="SpatialGrid" name="proton/vg_rho"', RHO_CPLX),
    "bad_datasize": lambda raw: raw.replace(b'datasize="4" datatype="float"', b'datasize="3" datatype="float"'),
    "blocks_per_cell_mismatch": lambda raw: raw.replace(b'<BLOCKSPERCELL arraysize="2"', BPC3),
    "non_integer_offset": lambda raw: raw.replace(b"</PARAMETER>", b"x</PARAMETER>", 1),
    "entity": lambda raw: raw[: _footer(raw)[0]] + b'<!DOCTYPE VLSV [<!ENTITY a "b">]>' + raw[_footer(raw)[0] :],
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corrupt_files_raise_vlsv_error(small_file, tmp_path, kind):
    read_everything(_write(tmp_path / "ok.vlsv", small_file))  # the intact file reads
    bad = CORRUPTIONS[kind](small_file)
    assert bad != small_file
    with pytest.raises(VlsvError):
        read_everything(_write(tmp_path / "bad.vlsv", bad))


def test_missing_file_and_directory_raise_vlsv_error(tmp_path):
    with pytest.raises(VlsvError):
        open_vlsv(tmp_path / "nope.vlsv")
    with pytest.raises(VlsvError):
        open_vlsv(tmp_path)


def test_block_id_outside_mesh_raises(small_file, tmp_path):
    with open_vlsv(_write(tmp_path / "ok.vlsv", small_file)) as f:
        e = f.entry("BLOCKIDS", name="proton")
    raw = bytearray(small_file)
    raw[e.offset : e.offset + 4] = struct.pack("<I", 4000)
    with pytest.raises(VlsvError, match="outside the mesh"):
        read_everything(_write(tmp_path / "bad.vlsv", bytes(raw)))


def _write(path: Path, raw: bytes) -> Path:
    path.write_bytes(raw)
    return path


# ---- CLI -----------------------------------------------------------------------------------------
@needs_real
def test_cli_inspect_json_on_real_file(capsys):
    assert main(["inspect", str(BULK), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info) == {"time", "populations", "variables", "parameters"}
    proton = info["populations"]["proton"]
    assert proton["velocity_mesh"] == {"nv": [40, 40, 40], "vmin": [-1.5, -2.0, -2.0], "vmax": [2.5, 2.0, 2.0]}
    assert [c["cellid"] for c in proton["cells"]] == list(range(1, 11))
    assert set(proton["cells"][0]) == {"cellid", "density", "bulk_velocity"}
    assert info["time"] == 8.0 and info["parameters"]["timestep"] == 16 and "proton/vg_rho" in info["variables"]
    with open_vlsv(BULK) as f:
        rho = f.read_variable("proton/vg_rho")
    assert abs(proton["cells"][5]["density"] / rho[5] - 1) < 1e-6


def test_cli_inspect_human_and_corrupt(small_file, tmp_path, capsys):
    good = _write(tmp_path / "good.vlsv", small_file)
    assert main(["inspect", str(good)]) == 0
    out = capsys.readouterr().out
    assert "population proton" in out and "8 x 8 x 8" in out and "2 cells with VDFs" in out
    bad = _write(tmp_path / "bad.vlsv", small_file[:-50])
    assert main(["inspect", str(bad), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("faiser: error:") and "XML" in lines[0]


def test_dense_read_refuses_huge_allocations(small_file, tmp_path, monkeypatch):
    import faiser.data.vlsv_reader as reader

    monkeypatch.setattr(reader, "MAX_DENSE_BYTES", 1000)
    with open_vlsv(_write(tmp_path / "s.vlsv", small_file)) as f:
        assert f.read_vdf_sparse("proton").ncells == 2
        with pytest.raises(VlsvError, match="sparse blocks"):
            f.read_vdf("proton")


def test_benchmark_script_runs_small(tmp_path):
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_vlsv.py"
    spec = importlib.util.spec_from_file_location("bench_vlsv", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    res = bench.run(size_gb=0.002, repeats=1, folder=str(tmp_path), dense_batch=4)
    assert res["file"]["ncells"] >= 2 and set(res["throughput_mb_per_s"]) >= {"plain_fromfile", "faiser_sparse"}
    assert os.listdir(tmp_path) == []  # the temporary file is gone
    json.dumps(res, allow_nan=False)


def test_old_format_velocity_mesh_from_parameters_and_unnamed_avgs(tmp_path):
    mesh = VelocityMesh((8, 4, 4), (-4e5, -2e5, -2e5), (4e5, 2e5, 2e5))
    f = maxwellians(mesh, [1e6, 2e6], [[0, 0, 0], [1e5, 0, 0]], 1e5)
    params = {f"v{a}blocks_ini": np.uint32(n) for a, n in zip("xyz", mesh.nblocks)}
    params.update({f"v{a}min": lo for a, lo in zip("xyz", mesh.vmin)})
    params.update({f"v{a}max": hi for a, hi in zip("xyz", mesh.vmax)})
    raw = write_vlsv(
        tmp_path / "new.vlsv", spatial=SPATIAL, cellids=[1, 2], populations={"avgs": (mesh, f)}, parameters=params
    ).read_bytes()
    off = struct.unpack("<Q", raw[8:16])[0]
    footer = raw[off:].decode()
    footer = re.sub(r'\s*<MESH_(BBOX|NODE_CRDS_[XYZ]) [^>]*mesh="avgs"[^>]*>[0-9]+</MESH_[A-Z_]+>', "", footer)
    footer = footer.replace(' name="avgs"', "")  # Vlasiator 4 files had unnamed block arrays
    old = _write(tmp_path / "old.vlsv", raw[:off] + footer.encode())
    with open_vlsv(old) as r:
        assert r.populations == ["avgs"] and r.velocity_mesh("avgs") == mesh
        np.testing.assert_array_equal(r.read_vdf("avgs"), f)


def test_vlsv_file_pickles_as_its_path(small_file, tmp_path):
    import pickle

    with open_vlsv(_write(tmp_path / "s.vlsv", small_file)) as f:
        g = pickle.loads(pickle.dumps(f))
        np.testing.assert_array_equal(g.read_vdf("proton"), f.read_vdf("proton"))
        g.close()
