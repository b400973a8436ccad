"""VQ-VAE training: loss decreases, reproducible, data-parallel equals one device, resume, non-finite loss."""

import jax
import numpy as np
import pytest

from faiser.errors import DistributedError, TrainingError
from faiser.models.vqvae3d import VQVAE3DConfig, inference_fns
from faiser.parallel.mesh import make_mesh
from faiser.train.vqvae import VQVAETrainConfig, VQVAETrainer, train_vqvae

N = 16
MODEL = VQVAE3DConfig(window=N, channels=(4, 8), n_res=1, codebook_size=32, code_dim=4, ema_decay=0.9)


def _windows(count: int, seed: int = 0) -> np.ndarray:
    """Normalized log windows of Maxwellians and two-beam VDFs (log10 with a 1e-4 floor, in [-1, 1])."""
    rng = np.random.default_rng(seed)
    c = np.linspace(-1, 1, N)
    v = np.stack(np.meshgrid(c, c, c, indexing="ij"), -1)
    out = []
    for _ in range(count):
        u, vt = rng.uniform(-0.4, 0.4, 3), rng.uniform(0.15, 0.3)
        f = np.exp(-((v - u) ** 2).sum(-1) / (2 * vt**2))
        if rng.random() < 0.5:
            u2 = rng.uniform(-0.5, 0.5, 3)
            f += rng.uniform(0.2, 1.0) * np.exp(-((v - u2) ** 2).sum(-1) / (2 * (0.7 * vt) ** 2))
        out.append((np.log10(np.maximum(f / f.max(), 1e-4)) + 2) / 2)
    return np.stack(out).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    return _windows(64)


def _params(result):
    return [np.asarray(a) for a in jax.tree.leaves(result.state["params"])]


def test_loss_decreases(data):
    cfg = VQVAETrainConfig(steps=60, batch_size=8, lr=3e-3, warmup_steps=5, seed=1, vq_warmup_steps=20)
    r = train_vqvae(data, MODEL, cfg, mesh=make_mesh(1), progress=False)
    loss = r.history["loss"]
    assert loss.shape == (60,) and np.all(np.isfinite(loss))
    first, last = loss[:5].mean(), loss[-5:].mean()
    assert first / last >= 3.0, (first, last)  # stated: at least 3x in 60 steps (measured ~5.5x)
    assert r.history["restarted"][20] > 0  # data initialisation of unused codes when quantization starts
    assert np.all(r.history["commit"][:20] > 0) and np.all(r.history["commit"][20:] > 0)
    assert r.history["perplexity"][-1] > 4
    encode, decode = inference_fns(r.model)
    rec = np.asarray(decode(encode(data[:8])))[..., 0]
    # quantized reconstructions beat the best constant clearly (measured 0.43 of the variance)
    assert np.mean((rec - data[:8]) ** 2) < 0.6 * np.var(data[:8])


@pytest.fixture(scope="module")
def short_runs(data, tmp_path_factory):
    cfg = VQVAETrainConfig(steps=20, batch_size=8, lr=3e-3, warmup_steps=5, seed=2)
    ckpt = tmp_path_factory.mktemp("vqvae_ckpt")
    t1 = VQVAETrainer(MODEL, cfg, make_mesh(1))
    r1 = train_vqvae(data, MODEL, cfg, trainer=t1, progress=False, checkpoint_dir=ckpt, checkpoint_every=10)
    r1b = train_vqvae(data, MODEL, cfg, trainer=t1, progress=False)
    # 4 devices: fake CPU devices (tests/conftest.py); a 1-GPU machine skips the comparison
    r4 = train_vqvae(data, MODEL, cfg, mesh=make_mesh(4), progress=False) if jax.device_count() >= 4 else None
    return {"cfg": cfg, "t1": t1, "r1": r1, "r1b": r1b, "r4": r4, "ckpt": ckpt}


def test_same_seed_identical(short_runs):
    for a, b in zip(_params(short_runs["r1"]), _params(short_runs["r1b"])):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(short_runs["r1"].history["loss"], short_runs["r1b"].history["loss"])


def test_data_parallel_matches_one_device(short_runs):
    if short_runs["r4"] is None:
        pytest.skip(f"needs 4 devices, {jax.device_count()} here ({jax.default_backend()})")
    r1, r4 = short_runs["r1"], short_runs["r4"]
    leaf = jax.tree.leaves(r4.state["params"])[0]
    assert len(leaf.sharding.device_set) == 4 and leaf.sharding.is_fully_replicated
    np.testing.assert_allclose(r4.history["loss"], r1.history["loss"], rtol=1e-5, atol=1e-6)
    for a, b in zip(_params(r1), _params(r4)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
    cb1 = [np.asarray(a) for a in jax.tree.leaves(r1.state["codebook"])]
    cb4 = [np.asarray(a) for a in jax.tree.leaves(r4.state["codebook"])]
    for a, b in zip(cb1, cb4):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
    # the step really runs on 4 devices: the batch is split, 2 windows per device
    t4 = VQVAETrainer(MODEL, short_runs["cfg"], make_mesh(4))
    x, _ = t4.place_batch(np.zeros((8, N, N, N), np.float32))
    assert {s.data.shape[0] for s in x.addressable_shards} == {2}
    with pytest.raises(DistributedError):
        VQVAETrainer(MODEL, VQVAETrainConfig(batch_size=6), make_mesh(4))


def test_resume_continues_exactly(data, short_runs):
    from faiser.run.checkpoint import CheckpointStore

    ckpt, cfg, t1 = short_runs["ckpt"], short_runs["cfg"], short_runs["t1"]
    with CheckpointStore(ckpt) as store:
        assert store.steps() == [10, 20]
        store.delete(20)  # as if killed after the step-10 checkpoint
    r = train_vqvae(data, MODEL, cfg, trainer=t1, progress=False, checkpoint_dir=ckpt, checkpoint_every=10)
    assert r.resumed_from == 10 and r.history["step"][0] == 10
    np.testing.assert_array_equal(r.history["loss"], short_runs["r1"].history["loss"][10:])
    for a, b in zip(_params(short_runs["r1"]), _params(r)):
        np.testing.assert_array_equal(a, b)


def test_nonfinite_loss_raises(data, short_runs):
    bad = data.copy()
    bad[:, 0, 0, 0] = np.nan
    with pytest.raises(TrainingError, match="non-finite"):
        train_vqvae(bad, MODEL, short_runs["cfg"], trainer=short_runs["t1"], progress=False)
