"""CLI fuzz: random argument lists (subcommands, flags, --set items, malformed files) never end in a
traceback. Every run exits 0 or 2, and an exit 2 prints at most one line on stderr.

In process (``faiser.cli.main``) with the file descriptors captured, so XLA's own stderr counts too.
Simulations are kept short: ``t_end`` is 0 or a few steps of a tiny grid, or the input is refused.
``FAISER_FUZZ_EXAMPLES=N`` runs N random examples instead of the fixed 40.
"""

import json
import os
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faiser.cli import main

N = int(os.environ.get("FAISER_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=N or 40, deadline=None, derandomize=not N, database=None, suppress_health_check=list(HealthCheck)
)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Valid and malformed inputs of every kind the commands read."""
    from faiser.codecs import get_codec
    from faiser.codecs.io import compress_file
    from faiser.data.sparse_blocks import VelocityMesh
    from faiser.data.vlsv_writer import Population, write_vlsv

    d = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(0)
    mesh = VelocityMesh(nv=(8, 8, 8), vmin=(-4e5,) * 3, vmax=(4e5,) * 3)
    v = np.linspace(-1, 1, 8)
    g = np.exp(-4 * (v[:, None, None] ** 2 + v[None, :, None] ** 2 + v[None, None, :] ** 2))
    f = np.stack([g * (1 + 0.1 * i) for i in range(4)]).astype(np.float32) * 1e-12
    cells = np.arange(1, 5, dtype=np.uint64)
    spatial = {"nx": 4, "ny": 1, "nz": 1, "xmin": 0, "xmax": 4, "ymin": 0, "ymax": 1, "zmin": 0, "zmax": 1}
    good = d / "good.vlsv"
    write_vlsv(good, spatial=spatial, cellids=cells, populations={"proton": Population(mesh, f)},
               parameters={"time": 1.0})  # fmt: skip
    raw = good.read_bytes()
    (d / "trunc.vlsv").write_bytes(raw[: len(raw) // 2])
    (d / "garbage.vlsv").write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    (d / "empty.vlsv").write_bytes(b"")
    (d / "xml_tail.vlsv").write_bytes(raw[:-200] + b"<VLSV><BROKEN")
    compress_file(good, get_codec("zfp", tolerance=1e-3), d / "good.fz")
    fz = (d / "good.fz").read_bytes()
    (d / "trunc.fz").write_bytes(fz[: len(fz) // 2])
    (d / "flip.fz").write_bytes(fz[:60] + bytes([fz[60] ^ 0xFF]) + fz[61:])
    (d / "garbage.fz").write_bytes(b"FAISERZ\x01" + rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
    model = d / "pca"
    get_codec("pca", components=2, window=8).fit(f, mesh).save(model)
    for name, edit in (("model_flip", lambda p: p.write_bytes(_flipped(p.read_bytes(), 150))),
                       ("model_trunc", lambda p: p.write_bytes(p.read_bytes()[:100]))):  # fmt: skip
        shutil.copytree(model, d / name)
        edit(d / name / "model.npz")
    (d / "model_badjson").mkdir()
    (d / "model_badjson" / "model.json").write_text("{")
    (d / "emptydir").mkdir()
    (d / "bad.json").write_bytes(b"\x00{not json")
    (d / "list.json").write_text("[1, 2]")
    (d / "other_case.json").write_text(json.dumps({"case": "shock", "config": {"nx": 8}}))
    (d / "unknown_key.json").write_text(json.dumps({"nope": 1}))
    (d / "tiny.json").write_text(json.dumps({"nx": 8, "nv": 16, "t_end": 0}))
    (d / "sweep_bad.json").write_text(json.dumps({"case": "landau", "product": {"k": "abc"}, "save_every": 1}))
    tiny = {"case": "landau", "base": {"t_end": 0, "nx": 8, "nv": 16}, "product": {"k": [0.5]}, "save_every": 1}
    (d / "sweep_tiny.json").write_text(json.dumps(tiny))
    afile = d / "afile"
    afile.write_text("x")
    return d


def _flipped(b: bytes, pos: int) -> bytes:
    return b[:pos] + bytes([b[pos] ^ 0x55]) + b[pos + 1 :]


def _sets(keys_values):
    return st.lists(st.sampled_from(keys_values), max_size=3).map(lambda kv: [a for k in kv for a in ("--set", k)])


CASES = ["landau", "larmor", "two_stream", "free_streaming", "exb", "nope", ""]
CASE_SETS = ["nx=abc", "nx=-1", "nv=0", "nx=1099511627776", "nv=100000", "dt=0", "dt=nan", "dt=-1", "t_end=-1",
             "t_end=1e15", "k=1e-30", "k=0", "k=inf", "f_min=10", "f_min=-1", "dtype=float16", "scheme=weno",
             "alpha=3", "B=0,1", "nope=1", "=", "novalue", "diag_every=0", "vdf_stride=0", "save_every=1",
             "alpha=0.02", "k=0.4", "dtype=float64", "f_min=1e-12", "mass=conserve"]  # fmt: skip
GOOD_SETS = ["alpha=0.02", "k=0.4", "dtype=float64", "f_min=1e-12", "diag_every=2", "vdf_stride=2"]
CODEC_SETS = ["tolerance=1e-3", "tolerance=x", "tolerance=-1", "components=2", "window=8", "nope=1", "seed=1",
              "snapshot=0", "max_vdfs=2", "mode=bogus", "restore=maybe"]  # fmt: skip
FLAG_VALUES = ["0", "1", "-1", "x", "2"]


VLSV_IN = ("good.vlsv", "trunc.vlsv", "garbage.vlsv", "empty.vlsv", "xml_tail.vlsv", "missing", "emptydir", "good.fz")
FZ_IN = ("good.fz", "trunc.fz", "flip.fz", "garbage.fz", "good.vlsv", "missing", "emptydir")
MODELS = ("pca", "model_flip", "model_trunc", "model_badjson", "emptydir", "missing", "afile")
CONFIGS = ("bad.json", "list.json", "other_case.json", "unknown_key.json", "tiny.json", "missing")
COMMANDS = ["simulate", "simulate", "simulate", "inspect", "compress", "decompress", "train-codec", "train-latent",
            "rollout", "sweep", "bench", "report", "noise"]  # fmt: skip
NOISE = ["simulate", "--set", "x=1", "--bogus", "-h", "landau", "--out", "", "--", "inspect", "compress", "--quiet",
         "report"]  # fmt: skip


@st.composite
def argv(draw, paths: dict):
    """One argument list: a subcommand with random arguments, or noise."""

    def p(*names):
        return draw(st.sampled_from([paths[n] for n in names]))

    def maybe(odds, items):
        return items if draw(st.integers(0, odds - 1)) == 0 else []

    def out():
        return ["--out", p("fresh", "fresh", "fresh", "afile", "proc", "empty", "long", "dir")]

    cmd = draw(st.sampled_from(COMMANDS))
    if cmd == "simulate":
        case = draw(st.sampled_from(CASES))
        a = ["simulate", case, *draw(_sets(CASE_SETS + GOOD_SETS * 3)), *maybe(3, ["--config", p(*CONFIGS)])]
        for flag in ("--save-every", "--vlsv-every", "--checkpoint-every", "--devices"):
            a += maybe(5, [flag, draw(st.sampled_from(FLAG_VALUES))])
        a += maybe(5, ["--resume"])
        # a few steps at most on a tiny grid (a later --set wins), unless the draw refuses the input anyway
        a += ["--set", f"t_end={draw(st.sampled_from(['0', '0', '0.2', '0.74']))}"]
        a += ["--set", "nv=8"] if case in ("larmor", "exb") else ["--set", "nx=8", "--set", "nv=16"]
        return [*a, *out(), "--quiet"]
    if cmd == "inspect":
        return ["inspect", p(*VLSV_IN), *maybe(2, ["--json"])]
    if cmd == "compress":
        a = ["compress", p(*VLSV_IN), "--codec", draw(st.sampled_from(["zfp", "sparse", "pca", "nope", "maxwellian"]))]
        a += [*draw(_sets(CODEC_SETS)), *maybe(2, ["--model", p(*MODELS)])]
        a += maybe(4, ["--snapshot", draw(st.sampled_from(["0", "-1", "99", "x"]))])
        a += maybe(4, ["--population", draw(st.sampled_from(["proton", "electron", ""]))])
        return [*a, "--out", p("fresh_fz", "afile", "proc_fz", "empty", "dir"), "--quiet"]
    if cmd == "decompress":
        a = ["decompress", p(*FZ_IN), *maybe(2, ["--model", p(*MODELS)])]
        return [*a, "--out", p("fresh_vlsv", "afile", "proc_fz", "empty", "dir"), "--quiet"]
    if cmd == "train-codec":
        a = ["train-codec", "--codec", draw(st.sampled_from(["pca", "zfp", "nope"])), "--data", p(*VLSV_IN)]
        a += [*draw(_sets(CODEC_SETS)), "--set", "window=8", "--set", "components=2"]
        a += maybe(2, ["--max-vdfs", draw(st.sampled_from(["0", "2", "-1", "x"]))])
        a += maybe(4, ["--seed", draw(st.sampled_from(["1", "x"]))])
        return [*a, *out(), "--quiet"]
    if cmd == "train-latent":  # never a valid dataset: a training run is not a fuzz example
        a = ["train-latent", "--data", p("good.vlsv", "garbage.vlsv", "missing", "emptydir", "sweep_bad.json")]
        return [*a, *draw(_sets(["ae_steps=1", "nope=1", "unroll=0", "seed=x"])), *out(), "--quiet"]
    if cmd == "rollout":
        a = ["rollout", draw(st.sampled_from(CASES)), "--model", p(*MODELS), *draw(_sets(CASE_SETS))]
        a += draw(st.sampled_from([[], ["--mass", "conserve"], ["--mass", "x"], ["--propagator", "persistence"]]))
        return [*a, *out(), "--quiet"]
    if cmd == "sweep":
        a = ["sweep", p("sweep_bad.json", "sweep_tiny.json", "bad.json", "list.json", "missing")]
        return [*a, *maybe(2, ["--dry-run"]), *out(), "--quiet"]
    if cmd == "bench":  # always an unknown setting: a benchmark is not a fuzz example
        a = ["bench", draw(st.sampled_from(["stepper", "codecs", "latent", "loader", "nope"]))]
        a += ["--set", draw(st.sampled_from(["nope=1", "repeats=x"]))]
        return [*a, "--out", p("fresh_json", "afile", "proc_fz")]
    if cmd == "report":
        return ["report", p("fresh", "afile", "missing", "emptydir", "empty")]
    return draw(st.lists(st.sampled_from(NOISE), max_size=5))


def _paths(files, fresh_root) -> dict:
    names = ["good.vlsv", "trunc.vlsv", "garbage.vlsv", "empty.vlsv", "xml_tail.vlsv", "good.fz", "trunc.fz",
             "flip.fz", "garbage.fz", "pca", "model_flip", "model_trunc", "model_badjson", "emptydir", "bad.json",
             "list.json", "other_case.json", "unknown_key.json", "tiny.json", "sweep_bad.json", "sweep_tiny.json",
             "afile"]  # fmt: skip
    out = {n: str(files / n) for n in names}
    out.update(
        missing=str(files / "missing"), proc="/proc/faiser-fuzz/out", proc_fz="/proc/faiser-fuzz/x.fz", empty="",
        long="L" * 5000, dir=str(files), fresh=str(fresh_root / "out"), fresh_fz=str(fresh_root / "x.fz"),
        fresh_vlsv=str(fresh_root / "x.vlsv"), fresh_json=str(fresh_root / "b.json"),
    )  # fmt: skip
    return out


def test_cli_fuzz_never_prints_a_traceback(files, tmp_path_factory, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))  # relative outputs ("L" * 5000) land nowhere that matters

    @FUZZ
    @given(data=st.data())
    def run(data):
        fresh = tmp_path_factory.mktemp("out")
        args = data.draw(argv(_paths(files, fresh)), label="argv")
        capfd.readouterr()
        try:
            code = main(args)
        except SystemExit as e:  # argparse: usage errors and --help
            code = e.code
        out, err = capfd.readouterr()
        assert "Traceback" not in err, (args, err)
        assert code in (0, 2), (args, code, err)
        if code == 2:  # argparse's errors too: faiser's parser prints one line, no usage
            lines = [line for line in err.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith("faiser: error:"), (args, err)

    run()
