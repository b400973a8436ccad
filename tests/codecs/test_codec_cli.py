"""`faiser train-codec / compress / decompress`: VLSV or dataset in, VLSV out, every byte counted."""

import json
from pathlib import Path

import numpy as np
import pytest
from codec_data import make_vdfs

from faiser.cli import main
from faiser.codecs import get_codec, moments
from faiser.codecs.io import compress_file
from faiser.data.vlsv import open_vlsv
from faiser.data.vlsv_writer import Population, write_vlsv

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "vlasiator" / "bulk.0000004.vlsv"


@pytest.fixture(scope="module")
def vlsv(tmp_path_factory):
    f, mesh = make_vdfs(6, nv=16, seed=3)
    p = tmp_path_factory.mktemp("v") / "bulk.vlsv"
    cells = np.arange(1, 9, dtype=np.uint64)  # 8 cells, 6 with VDFs
    write_vlsv(p, spatial={"nx": 8, "ny": 1, "nz": 1, "xmin": 0, "xmax": 8, "ymin": 0, "ymax": 1, "zmin": 0, "zmax": 1},
               cellids=cells, populations={"proton": Population(mesh, f, vdf_cellids=cells[[0, 1, 2, 4, 5, 7]])},
               variables={"vg_b_vol": np.tile([0.0, 0.0, 1e-9], (8, 1))}, parameters={"time": 3.5})  # fmt: skip
    return p


@pytest.mark.parametrize("codec,sets", [("sparse", []), ("maxwellian", []), ("zfp", ["tolerance=1e-3"]),
                                        ("sz3", ["tolerance=1e-3"])])  # fmt: skip
def test_compress_decompress_vlsv(vlsv, tmp_path, codec, sets, capsys):
    out = tmp_path / "c.fz"
    args = ["compress", str(vlsv), "--codec", codec, "--out", str(out), "--quiet"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    line = capsys.readouterr().out
    assert f"{out.stat().st_size} bytes" in line  # the reported size is the file's size
    assert main(["decompress", str(out), "--out", str(tmp_path / "d.vlsv"), "--quiet"]) == 0
    with open_vlsv(vlsv) as a, open_vlsv(tmp_path / "d.vlsv") as b:
        np.testing.assert_array_equal(a.cellids(), b.cellids())
        np.testing.assert_array_equal(a.cells_with_vdf("proton"), b.cells_with_vdf("proton"))
        assert a.velocity_mesh("proton") == b.velocity_mesh("proton")
        assert b.time == 3.5
        np.testing.assert_allclose(b.read_variable("vg_b_vol"), a.read_variable("vg_b_vol"))
        fa, fb = a.read_vdf("proton"), b.read_vdf("proton")
        mesh = a.velocity_mesh("proton")
        if codec == "sparse":
            np.testing.assert_array_equal(fa, fb)
            # the decoded file stores the blocks that hold values, not the whole velocity mesh
            from faiser.codecs.reference import nonzero_blocks

            nz = nonzero_blocks(fa, a.velocity_mesh("proton"), fa.dtype)
            np.testing.assert_array_equal(b.blocks_per_cell("proton"), nz.blocks_per_cell)
            assert nz.nblocks_total < a.velocity_mesh("proton").num_blocks * len(fa)
        ma, mb = moments(fa, mesh), moments(fb, mesh)
        np.testing.assert_allclose(mb[:, 0], ma[:, 0], rtol=1e-6)  # densities restored exactly
        np.testing.assert_allclose(b.read_variable("proton/vg_rho")[[0, 1, 2, 4, 5, 7]], ma[:, 0], rtol=1e-6)


def test_report_counts_every_byte(vlsv, tmp_path):
    rep = compress_file(vlsv, get_codec("zfp"), tmp_path / "x.fz")
    assert rep["file_bytes"] == (tmp_path / "x.fz").stat().st_size
    assert rep["file_bytes"] == rep["payload_bytes"] + rep["side_bytes"] + rep["header_bytes"]
    assert rep["n_vdfs"] == 6
    assert rep["ratio_vs_sparse"] == pytest.approx(rep["sparse_float32_bytes"] / rep["file_bytes"])


def test_trained_codec_from_a_dataset_applies_to_vlsv(vlsv, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["simulate", "larmor", "--set", "t_end=1", "--set", "nv=16", "--quiet", "--out", str(run),
                 "--save-every", "1"]) == 0  # fmt: skip
    model = tmp_path / "pca"
    assert main(["train-codec", "--codec", "pca", "--data", str(run), "--out", str(model), "--set", "components=3",
                 "--set", "window=8", "--quiet"]) == 0  # fmt: skip
    info = json.loads((model / "model.json").read_text())
    assert info["codec"] == "pca" and info["model_bytes"] == (8**3 + 3 * 8**3) * 4
    # the dataset itself (its last snapshot, written as SI VLSV) and any VLSV file
    for src in (run, vlsv):
        assert main(["compress", str(src), "--codec", "pca", "--model", str(model), "--out", str(tmp_path / "p.fz"),
                     "--quiet"]) == 0  # fmt: skip
        assert "counting the" in capsys.readouterr().out
        assert main(["decompress", str(tmp_path / "p.fz"), "--model", str(model), "--out", str(tmp_path / "p.vlsv"),
                     "--quiet"]) == 0  # fmt: skip
    # without the model, or with another one: exit 2 and one line
    capsys.readouterr()
    assert main(["decompress", str(tmp_path / "p.fz"), "--out", str(tmp_path / "q.vlsv")]) == 2
    assert "--model" in capsys.readouterr().err
    other = tmp_path / "pca2"
    assert main(["train-codec", "--codec", "pca", "--data", str(run), "--out", str(other), "--set", "components=2",
                 "--set", "window=8", "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["decompress", str(tmp_path / "p.fz"), "--model", str(other), "--out", str(tmp_path / "q.vlsv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model" in err
    assert not (tmp_path / "q.vlsv").exists()


def test_bad_input_exits_2(vlsv, tmp_path, capsys):
    out = tmp_path / "c.fz"
    assert main(["compress", str(vlsv), "--codec", "zfp", "--out", str(out), "--quiet"]) == 0
    run1v = tmp_path / "landau"  # a 1D1V dataset: its VLSV snapshots hold moments only
    assert main(["simulate", "landau", "--set", "t_end=0.5", "--quiet", "--out", str(run1v), "--save-every", "5"]) == 0
    cases = [
        ["compress", str(vlsv), "--codec", "nope", "--out", str(out)],
        ["compress", str(vlsv), "--codec", "zfp", "--set", "tolerance=x", "--out", str(out)],
        ["compress", str(tmp_path / "missing.vlsv"), "--codec", "zfp", "--out", str(out)],
        ["compress", str(vlsv), "--codec", "pca", "--out", str(out)],
        ["train-codec", "--codec", "pca", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "m")],
        ["compress", str(run1v), "--codec", "zfp", "--out", str(tmp_path / "l.fz")],
        ["train-codec", "--codec", "pca", "--data", str(run1v), "--out", str(tmp_path / "m")],
    ]
    data = out.read_bytes()
    (tmp_path / "trunc.fz").write_bytes(data[: len(data) // 2])
    (tmp_path / "flip.fz").write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    cases += [["decompress", str(tmp_path / n), "--out", str(tmp_path / "x.vlsv")] for n in ("trunc.fz", "flip.fz")]
    for args in cases:
        capsys.readouterr()
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("faiser: error:") and err.count("\n") == 1, err


@pytest.mark.skipif(not REAL.exists(), reason="shared Vlasiator data not present")
def test_real_vlasiator_file_round_trip(tmp_path):
    from faiser.codecs.io import decompress_file

    rep = compress_file(REAL, get_codec("zfp", tolerance=1e-3), tmp_path / "r.fz")
    assert rep["ratio_vs_sparse"] > 10
    decompress_file(tmp_path / "r.fz", tmp_path / "r.vlsv")
    with open_vlsv(REAL) as a, open_vlsv(tmp_path / "r.vlsv") as b:
        mesh = a.velocity_mesh("proton")
        fa, fb = a.read_vdf("proton"), b.read_vdf("proton")
        assert np.linalg.norm(fb - fa) / np.linalg.norm(fa) < 5e-3
        ma, mb = moments(fa, mesh), moments(fb, mesh)
        np.testing.assert_allclose(mb[:, :4], ma[:, :4], rtol=1e-6, atol=1e-6 * np.abs(ma[:, 1:4]).max())


@pytest.fixture(scope="module")
def pca_model(vlsv, tmp_path_factory):
    model = tmp_path_factory.mktemp("m") / "pca"
    assert main(["train-codec", "--codec", "pca", "--data", str(vlsv), "--out", str(model), "--set", "components=2",
                 "--set", "window=8", "--quiet"]) == 0  # fmt: skip
    fz = model.parent / "p.fz"
    assert main(["compress", str(vlsv), "--codec", "pca", "--model", str(model), "--out", str(fz), "--quiet"]) == 0
    return model, fz


def _corrupt_copy(model, tmp_path, name, edit):
    import shutil

    bad = tmp_path / name
    shutil.copytree(model, bad)
    edit(bad)
    return bad


def _flip(path, pos):
    data = bytearray(path.read_bytes())
    data[pos % len(data)] ^= 0x10
    path.write_bytes(bytes(data))


def _drop_digest(d):  # a model saved before model.json carried the npz digest: np.load meets the damage
    info = json.loads((d / "model.json").read_text())
    del info["npz_sha256"]
    (d / "model.json").write_text(json.dumps(info))


@pytest.mark.parametrize(
    "name, edit",
    [
        ("flip_npz", lambda d: _flip(d / "model.npz", 200)),
        ("flip_npz_no_digest", lambda d: (_drop_digest(d), _flip(d / "model.npz", 200))),
        ("flip_zip_directory_no_digest", lambda d: (_drop_digest(d), _flip(d / "model.npz", -30))),
        ("truncated_npz_no_digest", lambda d: (_drop_digest(d), (d / "model.npz").write_bytes(
            (d / "model.npz").read_bytes()[:300]))),
        ("garbage_npz", lambda d: (d / "model.npz").write_bytes(b"PK\x03\x04" + b"\x00" * 50)),
        ("missing_npz", lambda d: (d / "model.npz").unlink()),
        ("garbage_json", lambda d: (d / "model.json").write_bytes(b"\xff\xfe{")),
        ("list_json", lambda d: (d / "model.json").write_text("[1, 2]")),
        ("settings_json", lambda d: (d / "model.json").write_text('{"codec": "pca", "settings": [1]}')),
    ],
)  # fmt: skip
def test_a_corrupt_model_directory_exits_2(pca_model, tmp_path, capsys, name, edit):
    model, fz = pca_model
    bad = _corrupt_copy(model, tmp_path, name, edit)
    capsys.readouterr()
    assert main(["decompress", str(fz), "--model", str(bad), "--out", str(tmp_path / "x.vlsv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("faiser: error:") and err.count("\n") == 1 and str(bad) in err, err
    assert not (tmp_path / "x.vlsv").exists()


def test_a_half_written_model_is_refused(pca_model, tmp_path):
    """model.json is written last and carries model.npz's SHA-256: a new npz beside an old json is refused."""
    import shutil

    from faiser.codecs import Codec
    from faiser.errors import CompressedFileError

    model, _ = pca_model
    other = tmp_path / "other"
    f, mesh = make_vdfs(20, nv=16, seed=9)
    get_codec("pca", components=3, window=8).fit(f, mesh).save(other)
    half = tmp_path / "half"
    shutil.copytree(model, half)
    shutil.copy(other / "model.npz", half / "model.npz")  # killed between the two writes
    with pytest.raises(CompressedFileError, match="model.npz and model.json do not match"):
        Codec.load(half)
    assert Codec.load(other).model_id() == json.loads((other / "model.json").read_text())["model_id"]


def test_data_selection_flags(vlsv, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["simulate", "larmor", "--set", "t_end=0.74", "--set", "nv=16", "--quiet", "--out", str(run),
                 "--save-every", "1"]) == 0  # fmt: skip
    model = tmp_path / "pca"
    flags = ["--max-vdfs", "2", "--seed", "3", "--population", "proton", "--quiet"]
    assert main(["train-codec", "--codec", "pca", "--data", str(run), "--out", str(model), "--set", "components=2",
                 "--set", "window=8", *flags]) == 0  # fmt: skip
    info = json.loads((model / "model.json").read_text())
    assert "2 training VDFs" in capsys.readouterr().out and info["codec"] == "pca"
    times = []
    for snap in (0, -1):
        fz = tmp_path / f"s{snap}.fz"
        assert main(["compress", str(run), "--codec", "zfp", "--snapshot", str(snap), "--population", "proton",
                     "--out", str(fz), "--quiet"]) == 0  # fmt: skip
        from faiser.codecs.container import read_file

        header, _ = read_file(fz)
        assert header["input"]["populations"] == ["proton"]
        times.append(header["input"]["time"])  # SI seconds
    assert times[0] == 0.0 and times[1] > 0
    capsys.readouterr()
    assert main(["compress", str(vlsv), "--codec", "zfp", "--population", "electron", "--out",
                 str(tmp_path / "e.fz"), "--quiet"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "electron" in err, err
