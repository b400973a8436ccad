"""Training loaders: order, epochs, resume, process shares, device sharding, sample contents, sources."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from faiser.data.dataset import DatasetWriter, open_dataset
from faiser.data.loaders import PatchLoader, VdfLoader, WindowLoader
from faiser.data.normalization import denormalize, fit_normalization
from faiser.data.sources import ZarrSource, open_source
from faiser.errors import ConfigError, DataError
from faiser.grid import PhaseSpaceGrid
from faiser.vlasov.state import ELECTRON, PROTON

NX = (6, 4, 1)
NV = (4, 4, 4)
T = 5
VLSV = Path(__file__).resolve().parents[3] / "shared" / "data" / "vlasiator" / "bulk.0000004.vlsv"


def _write(path: Path, seed: int, boundaries="periodic", species=(ELECTRON,)) -> Path:
    """A tiny 2D3V dataset of positive random VDFs, 5 snapshots at t = 0.5 k."""
    grid = PhaseSpaceGrid.make(NX, (3.0, 2.0, 1.0), NV, 3.0, boundaries=boundaries)
    rng = np.random.default_rng(seed)
    zero = np.zeros((*NX, 3))
    with DatasetWriter(path, grid, species, capacity=T, background=False) as w:
        for t in range(T):
            fs = [(rng.random(grid.shape) + 0.01).astype(np.float32) for _ in species]
            w.append(0.5 * t, 10 * t, fs, zero, zero)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return _write(tmp_path_factory.mktemp("loaders") / "a", seed=1)


@pytest.fixture(scope="module")
def data_b(tmp_path_factory) -> Path:
    return _write(tmp_path_factory.mktemp("loaders") / "b", seed=2, boundaries="outflow", species=(ELECTRON, PROTON))


def _ids(loader, n=None):
    return [np.asarray(b["index"]) for b in (loader if n is None else loader.stream(n))]


def test_same_seed_same_batches_different_seed_different_order(data):
    kw = dict(batch_size=8, to_device=False)
    a = _ids(VdfLoader(data, seed=3, **kw))
    b = _ids(VdfLoader(data, seed=3, prefetch=0, **kw))
    c = _ids(VdfLoader(data, seed=4, **kw))
    assert len(a) == len(b) == 120 // 8
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    ordered = np.concatenate(_ids(VdfLoader(data, shuffle=False, **kw)))
    assert np.array_equal(ordered, np.arange(120))


@pytest.mark.parametrize("mode", ["global", "chunks"])
def test_epoch_visits_every_sample_once(data, mode):
    loader = VdfLoader(data, batch_size=7, shuffle_mode=mode, seed=0, to_device=False)
    assert loader.num_samples == T * 24 and len(loader) == 120 // 7
    epochs = [np.concatenate(_ids(loader)) for _ in range(2)]  # each iter(loader) = one epoch
    for seen in epochs:  # drop_last: 17 full batches, the 1 leftover sample of this epoch's order skipped
        assert len(seen) == 119 and len(np.unique(seen)) == 119
    assert not np.array_equal(epochs[0], epochs[1])  # a new permutation per epoch
    assert loader.state_dict()["epoch"] == 2 and loader.state_dict()["position"] == 0

    padded = VdfLoader(data, batch_size=7, shuffle_mode=mode, drop_last=False, to_device=False)
    batches = list(padded)
    assert len(batches) == 18 and all(len(b["index"]) == 7 for b in batches)
    real = np.concatenate([b["index"][b["mask"]] for b in batches])
    assert np.array_equal(np.sort(real), np.arange(120))
    assert batches[-1]["mask"].sum() == 120 - 17 * 7


def test_chunk_shuffle_batches_touch_few_chunks(data):
    """``chunks`` mode: a batch of 24 comes from at most 2 blocks of 1 snapshot-chunk each (24 cells a chunk)."""
    loader = VdfLoader(data, batch_size=24, shuffle_mode="chunks", shuffle_block=1, to_device=False)
    for b in loader:
        assert len(np.unique(b["t_index"])) == 1


def test_resume_continues_exact_sequence_through_json(data):
    kw = dict(batch_size=8, seed=11, to_device=False, prefetch=3)
    reference = _ids(VdfLoader(data, **kw), n=40)  # crosses two epoch boundaries (15 batches each)
    loader = VdfLoader(data, **kw)
    it = loader.stream()
    first = [np.asarray(next(it)["index"]) for _ in range(17)]
    state = json.loads(json.dumps(loader.state_dict()))
    it.close()
    assert state["epoch"] == 1 and state["position"] == 2 and state["seed"] == 11
    resumed = VdfLoader(data, **{**kw, "seed": 0})  # the seed comes with the state
    rest = [np.asarray(b["index"]) for b in resumed.iter_from(state, num_batches=23)]
    assert all(np.array_equal(x, y) for x, y in zip(first + rest, reference))
    assert len(first + rest) == 40
    with pytest.raises(DataError):
        VdfLoader(data, batch_size=4).load_state_dict(state)  # another batch size cannot continue it


def test_process_shares_are_disjoint_and_make_the_global_batch(data):
    kw = dict(batch_size=12, seed=5, to_device=False)
    whole = list(VdfLoader(data, **kw))
    shares = [list(VdfLoader(data, process_index=p, process_count=2, **kw)) for p in range(2)]
    for g, s0, s1 in zip(whole, *shares):
        assert len(s0["index"]) == len(s1["index"]) == 6
        assert not set(s0["index"]) & set(s1["index"])
        assert np.array_equal(np.concatenate([s0["index"], s1["index"]]), g["index"])
        assert np.array_equal(np.concatenate([s0["f"], s1["f"]]), g["f"])
    with pytest.raises(ConfigError):
        VdfLoader(data, batch_size=7, process_index=0, process_count=2)


_SHARDED = """
import json, sys
import jax, numpy as np
from jax.sharding import NamedSharding, PartitionSpec
from faiser.data.loaders import VdfLoader, WindowLoader
from faiser.parallel.mesh import make_mesh
mesh = make_mesh(4)
out = {"devices": jax.device_count()}
for name, loader in [("vdf", VdfLoader(sys.argv[1], batch_size=8, mesh=mesh, seed=2)),
                     ("window", WindowLoader(sys.argv[1], batch_size=4, window=1, mesh=mesh))]:
    b = next(iter(loader))
    host = loader.read_batch(*loader.batch_ids(0, 0))
    f = b["f"]
    out[name] = {
        "sharding_ok": f.sharding.is_equivalent_to(NamedSharding(mesh, PartitionSpec("data")), f.ndim),
        "shards": sorted([list(s.data.shape) for s in f.addressable_shards]),
        "n_devices": len({s.device for s in f.addressable_shards}),
        "index_sharded": b["index"].sharding.is_equivalent_to(NamedSharding(mesh, PartitionSpec("data")), 1),
        "equal": bool(np.array_equal(np.asarray(f), host["f"])),
    }
    loader.close()
print(json.dumps(out))
"""


def test_batches_sharded_over_four_fake_devices(data):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    res = subprocess.run([sys.executable, "-c", _SHARDED, str(data)], env=env, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["devices"] == 4
    assert out["vdf"] == {"sharding_ok": True, "shards": [[2, *NV]] * 4, "n_devices": 4, "index_sharded": True,
                          "equal": True}  # fmt: skip
    assert out["window"]["shards"] == [[1, 2, *NX, *NV]] * 4 and out["window"]["equal"]


_MULTIPROCESS = """
import json, sys
import jax
jax.distributed.initialize(coordinator_address="localhost:" + sys.argv[2], num_processes=2, process_id=int(sys.argv[1]))
import numpy as np
from faiser.data.loaders import VdfLoader
from faiser.parallel.mesh import make_mesh
loader = VdfLoader(sys.argv[3], batch_size=8, mesh=make_mesh(), seed=3)  # process index/count from JAX
f = next(iter(loader))["f"]
local = loader.read_batch(*loader.batch_ids(0, 0))
shards = sorted((s.index[0].start, np.asarray(s.data)) for s in f.addressable_shards)
print(json.dumps({"process": jax.process_index(), "devices": jax.device_count(), "shape": list(f.shape),
                  "local_ok": bool(np.array_equal(np.concatenate([d for _, d in shards]), local["f"])),
                  "index": local["index"].tolist()}))
loader.close()
"""


def test_two_jax_processes_assemble_the_global_batch(data):
    """Two real JAX processes (2 CPU devices each): each reads its half, the global array spans 4 devices."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = str(s.getsockname()[1])
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    procs = [subprocess.Popen([sys.executable, "-c", _MULTIPROCESS, str(i), port, str(data)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]  # fmt: skip
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr[-2000:]
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    outs.sort(key=lambda o: o["process"])
    assert [o["devices"] for o in outs] == [4, 4] and all(o["shape"] == [8, *NV] and o["local_ok"] for o in outs)
    whole = VdfLoader(data, batch_size=8, seed=3, to_device=False)
    assert outs[0]["index"] + outs[1]["index"] == whole.read_batch(*whole.batch_ids(0, 0))["index"].tolist()


def test_vdf_samples_and_conditioning(data):
    ds = open_dataset(data)
    loader = VdfLoader(data, batch_size=16, conditioning=("time", "position", "density", "bulk_velocity"))
    b = next(iter(loader))
    grid = ds.grid
    for i in range(16):
        t, (x, y, z) = int(b["t_index"][i]), (int(v) for v in b["origin"][i])
        f = ds.f("electron", t, x, y, z)
        np.testing.assert_array_equal(np.asarray(b["f"][i]), f)
        assert b["time"][i] == pytest.approx(0.5 * t)
        np.testing.assert_allclose(b["position"][i], [grid.x_centers(0)[x], grid.x_centers(1)[y], grid.x_centers(2)[z]])
        assert b["density"][i] == pytest.approx(f.sum() * grid.velocity_cell_volume, rel=1e-5)
    assert b["bulk_velocity"].shape == (16, 3) and b["species"].tolist() == [0] * 16


def test_patches_wrap_periodically(data):
    full = open_dataset(data).f("electron")  # (T, 6, 4, 1, nv...)
    loader = PatchLoader(data, batch_size=10, patch=(4, 3, 1), patch_stride=1, to_device=False)
    assert loader.num_samples == T * 6 * 4  # periodic: a patch at every origin
    assert loader.sample_shape == (4, 3, 1, *NV)
    wrapped = 0
    for b in loader:
        assert b["f"].shape == (10, 4, 3, 1, *NV)
        for f, t, (x, y, _) in zip(b["f"], b["t_index"], b["origin"]):
            ix, iy = (x + np.arange(4)) % 6, (y + np.arange(3)) % 4
            np.testing.assert_array_equal(f, full[t][np.ix_(ix, iy, [0])])
            wrapped += x + 4 > 6 or y + 3 > 4
    assert wrapped > 0


def test_patches_valid_only(data, data_b):
    loader = PatchLoader(data, batch_size=5, patch=(4, 3, 1), wrap="valid", patch_stride=1, to_device=False)
    assert loader.num_samples == T * 3 * 2
    auto = PatchLoader(data_b, batch_size=5, patch=2, species="proton", to_device=False)  # outflow: valid, tiles
    assert auto.patch == (2, 2, 1) and auto.num_samples == T * 3 * 2
    full = open_dataset(data_b).f("proton")
    for b in auto:
        assert b["species"].tolist() == [1] * 5
        for f, t, (x, y, _) in zip(b["f"], b["t_index"], b["origin"]):
            assert x + 2 <= 6 and y + 2 <= 4
            np.testing.assert_array_equal(f, full[t, x : x + 2, y : y + 2])
    with pytest.raises(ConfigError):
        PatchLoader(data, batch_size=1, patch=(7, 1, 1))


def test_window_contents_are_the_right_snapshots(data):
    full = open_dataset(data).f("electron")
    with pytest.raises(ConfigError):  # one window (t = 0, 2, 4) only: not a batch of 2
        WindowLoader(data, batch_size=2, window=2, stride=2)
    loader = WindowLoader(data, batch_size=3, window=1, stride=2, to_device=False, conditioning=("time",))
    assert loader.num_samples == 3 and loader.sample_shape == (2, *NX, *NV)
    b = next(iter(loader))
    assert b["f"].shape == (3, 2, *NX, *NV)
    for f, ti, tt in zip(b["f"], b["t_index"], b["time"]):
        assert ti[1] == ti[0] + 2
        np.testing.assert_array_equal(f, full[ti])
        np.testing.assert_allclose(tt, 0.5 * ti)
    patches = WindowLoader(data, batch_size=4, window=2, stride=1, patch=(2, 2, 1), to_device=False)
    assert patches.num_samples == 3 * 6  # starts t0 = 0, 1, 2; 3 x 2 tiles
    for b in patches:
        for f, ti, (x, y, _) in zip(b["f"], b["t_index"], b["origin"]):
            np.testing.assert_array_equal(f, full[ti][:, x : x + 2, y : y + 2])


def test_several_runs_and_normalized_batches(data, tmp_path):
    other = _write(tmp_path / "c", seed=9)
    src = ZarrSource([data, other], cache_bytes=0)
    stats = fit_normalization(src, center=True, n_vdfs=64, seed=0)
    loader = VdfLoader(src, batch_size=30, stats=stats, shuffle=False, to_device=False)
    assert loader.num_samples == 240
    seen_runs = set()
    for b in loader:
        seen_runs |= set(b["run"].tolist())
        raw = np.stack([open_dataset([data, other][r]).f("electron", t, *o) for r, t, o in
                        zip(b["run"], b["t_index"], b["origin"])])  # fmt: skip
        back = denormalize(b["f"], stats, b)
        keep = raw / b["scale"][:, None, None, None] > stats.floor * 1.01
        np.testing.assert_allclose(back[keep], raw[keep], rtol=2e-5)
        assert b["shift"].shape == (30, 3)
    assert seen_runs == {0, 1}


@pytest.mark.parametrize("prefetch", [2, 0])
def test_errors_reach_the_consumer_and_threads_stop(data, monkeypatch, prefetch):
    before = threading.active_count()
    loader = VdfLoader(data, batch_size=4, to_device=False, prefetch=prefetch)
    calls = {"n": 0}
    original = loader.source.read_vdfs

    def flaky(space, ids, memo=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk gone")
        return original(space, ids, memo)

    monkeypatch.setattr(loader.source, "read_vdfs", flaky)
    it = iter(loader)
    next(it), next(it)
    with pytest.raises(OSError, match="disk gone"):
        next(it)
    assert loader.state_dict()["position"] == 2  # the failed batch was not consumed
    with pytest.raises(StopIteration):
        next(it)
    it2 = iter(loader)
    assert np.array_equal(next(it2)["index"], loader.read_batch(*loader.batch_ids(0, 2))["index"])
    it2.close()  # stops early: the thread goes away
    it3 = iter(loader)
    next(it3)
    loader.close()
    assert threading.active_count() == before


def test_vlsv_source_gives_the_files_vdfs():
    if not VLSV.exists():
        pytest.skip(f"{VLSV} absent")
    from faiser.data.vlsv import open_vlsv

    vf = open_vlsv(VLSV)
    src = open_source([VLSV])
    cells = vf.cells_with_vdf("proton")
    assert src.species == ("proton",) and src.run_shape(0) == (len(cells), 1, 1)
    loader = VdfLoader(src, batch_size=5, seed=1, conditioning=("time", "position", "density"), to_device=False)
    b = next(iter(loader))
    ref = vf.read_vdf("proton", cellids=cells[b["origin"][:, 0]])
    np.testing.assert_array_equal(b["f"], ref.astype(np.float32))  # float32 by default
    assert b["f"].shape == (5, 40, 40, 40) and np.all(b["time"] == np.float32(vf.time))
    assert np.all(np.isfinite(b["position"]))
    with pytest.raises(ConfigError):
        PatchLoader(src, batch_size=1, patch=(2, 1, 1))


def test_bad_arguments(data):
    with pytest.raises(ConfigError):
        VdfLoader(data, batch_size=0)
    with pytest.raises(ConfigError):
        VdfLoader(data, batch_size=200)  # more than the 120 samples with drop_last
    with pytest.raises(ConfigError):
        VdfLoader(data, batch_size=4, conditioning=("pressure",))
    with pytest.raises(ConfigError):
        VdfLoader(data, batch_size=4, shuffle_mode="blocks")
    with pytest.raises(DataError):
        VdfLoader(data, batch_size=4, species="proton")
    with pytest.raises(DataError):
        VdfLoader(data, batch_size=4).load_state_dict({"epoch": "x"})


def test_sweep_root_is_a_family_of_runs(tmp_path):
    root = tmp_path / "sweep"
    for i, name in enumerate(["k=0.3", "k=0.5", "k=0.7"]):
        if name != "k=0.7":  # not run yet: skipped
            _write(root / name / "snapshots", seed=20 + i)
    (root / "sweep.json").write_text(json.dumps({"runs": [{"name": n} for n in ["k=0.3", "k=0.5", "k=0.7"]]}))
    src = open_source(root)
    assert src.n_runs == 2 and [d.path.parent.name for d in src.datasets] == ["k=0.3", "k=0.5"]
    loader = VdfLoader(root, batch_size=24, to_device=False)
    assert loader.num_samples == 2 * 120
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "sweep.json").write_text(json.dumps({"runs": [{"name": "x"}]}))
    with pytest.raises(DataError):
        open_source(tmp_path / "empty")
