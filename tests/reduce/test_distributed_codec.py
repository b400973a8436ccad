"""The PCA codec fitted from a shock run split over ranks by spatial block: simulated ranks in one
process, and ``mpirun -n 2`` / ``-n 4`` (the same fit to 1e-6)."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from faiser.cli import main
from faiser.codecs.pca import MERGES, PcaCodec
from faiser.reduce import STRATEGIES, SimulatedComm, sin_theta, unexplained_variance
from faiser.reduce.codec import fit_pca_codec, rank_features
from faiser.reduce.partition import assign, blocks_for, rank_vdfs, spatial_blocks
from faiser.run.simulate import simulate

SETTINGS = {"window": 6, "components": 4}
MPIRUN = shutil.which("mpirun")
HAS_MPI = MPIRUN is not None and all(importlib.util.find_spec(m) for m in ("mpi4py", "mpi4jax"))


@pytest.fixture(scope="module")
def shock(tmp_path_factory):
    out = tmp_path_factory.mktemp("shock")
    simulate("shock", {"nx": 24, "nv": 10, "t_end": 2.0, "dt": 0.1}, out_dir=out, save_every=10, progress=False)
    return out


def test_merge_names_match_the_strategies():
    assert set(MERGES) == set(STRATEGIES)


def test_spatial_blocks_cut_equal_slabs_and_random_is_balanced():
    pos = np.stack(np.meshgrid(np.arange(8.0), np.arange(4.0), [0.0], indexing="ij"), -1).reshape(-1, 3)
    owner = spatial_blocks(pos, (2, 2, 1))
    assert np.bincount(owner).tolist() == [8, 8, 8, 8]
    assert set(owner[pos[:, 0] < 4]) == {0, 1}  # the low-x half is the first row of blocks
    assert blocks_for(8, (10.0, 1.0, 0.0)) == (8, 1, 1)
    assert blocks_for(4, (10.0, 10.0, 0.0)) == (2, 2, 1)
    rnd = assign(pos, 4, "random", seed=1)
    assert np.bincount(rnd).tolist() == [8, 8, 8, 8]


def test_each_rank_reads_only_its_block(shock):
    parts = [rank_vdfs([str(shock)], r, 4) for r in range(4)]
    xs = [p[1][:, 0] for p in parts]
    for a, b in zip(xs, xs[1:], strict=False):
        assert a.max() <= b.min()  # slabs along x, in rank order
    total = sum(len(p[0]) for p in parts)
    everything = rank_vdfs([str(shock)], 0, 1)[0]
    assert total == len(everything)


def _fit(shock, merge, ranks, mode="spatial"):
    codec = PcaCodec(**SETTINGS, merge=merge)
    return codec, fit_pca_codec(codec, [str(shock)], SimulatedComm(ranks), merge=merge, mode=mode)


def _features(shock, codec, ranks=4):
    return [rank_features(codec, [str(shock)], r, ranks)[0] for r in range(ranks)]


def test_merges_match_the_single_rank_fit(shock):
    ref, _ = _fit(shock, "tree", 1)
    feats = _features(shock, ref)
    floor = unexplained_variance(feats, ref.mean, ref.components)
    for merge in ("tree", "graph", "subspace", "randomized"):
        codec, res = _fit(shock, merge, 4)
        assert res.first.n == ref.n_seen
        np.testing.assert_allclose(codec.mean, ref.mean, atol=1e-9)
        uv = unexplained_variance(feats, codec.mean, codec.components)
        if merge == "subspace":  # iterates to the centralized subspace
            assert sin_theta(codec.components, ref.components) < 1e-6
        # the merges truncate each rank at k components: near, not at, the centralized optimum
        assert floor <= uv * (1 + 1e-9) and uv < 1.05 * floor, (merge, uv, floor)


def test_a_codec_fitted_over_ranks_encodes_and_decodes(shock, tmp_path):
    codec, _ = _fit(shock, "tree", 4)
    codec.save(tmp_path / "model")
    back = PcaCodec.load(tmp_path / "model")
    np.testing.assert_allclose(back.components, codec.components, atol=1e-6)


def _mpi_env(jax_cache_env):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", **jax_cache_env)
    env.pop("XLA_FLAGS", None)
    return env


@pytest.mark.skipif(not HAS_MPI, reason="needs mpirun, mpi4py and mpi4jax (the 'mpi' extra)")
@pytest.mark.parametrize(("ranks", "merge"), [(2, "tree"), (2, "subspace"), (4, "graph"), (4, "deepca")])
def test_mpirun_fit_equals_the_simulated_ranks_fit(shock, tmp_path, ranks, merge, jax_cache_env):
    # tree: tree_reduce with the residual way back; subspace: allreduce; graph: point-to-point
    # messages along the domain graph; deepca: neighbour exchanges
    out = tmp_path / "model"
    cmd = [MPIRUN, "-n", str(ranks), "--oversubscribe", sys.executable, "-m", "faiser", "train-codec", "--codec", "pca",
           "--data", str(shock), "--out", str(out), "--distributed", "mpi", "--quiet",
           *sum((["--set", f"{k}={v}"] for k, v in {**SETTINGS, "merge": merge}.items()), [])]  # fmt: skip
    res = subprocess.run(cmd, env=_mpi_env(jax_cache_env), capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"over {ranks} ranks, merge {merge}" in res.stdout
    model = PcaCodec.load(out)
    sim, fit = _fit(shock, merge, ranks)
    assert sin_theta(model.components, sim.components) < 1e-6
    np.testing.assert_allclose(model.mean, sim.mean, atol=1e-6)
    info = json.loads((out / "distributed.json").read_text())
    assert info["ranks"] == ranks and info["merge"] == merge
    assert len(info["bytes_per_rank"]) == ranks
    assert max(info["bytes_per_rank"]) == fit.comm["bytes_per_rank_max"]  # MPI counts what the simulation counts


def test_cli_merge_needs_distributed_and_distributed_needs_pca(shock, tmp_path, capsys):
    assert main(["train-codec", "--codec", "pca", "--data", str(shock), "--out", str(tmp_path / "m"),
                 "--set", "merge=tree"]) == 2  # fmt: skip
    assert "--distributed mpi" in capsys.readouterr().err
    assert main(["train-codec", "--codec", "pca", "--data", str(shock), "--out", str(tmp_path / "m"),
                 "--set", "merge=nope", "--distributed", "mpi"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "merge" in err and len(err.strip().splitlines()) == 1


def test_non_iid_split_hurts_the_unweighted_merge(shock):
    ref, _ = _fit(shock, "tree", 1)
    feats = _features(shock, ref)
    uv = {}
    for merge in ("tree", "unweighted"):
        codec, _ = _fit(shock, merge, 4)
        uv[merge] = unexplained_variance(feats, codec.mean, codec.components)
    assert uv["unweighted"] > uv["tree"]
