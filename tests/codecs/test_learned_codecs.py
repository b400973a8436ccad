"""The learned codecs (VQ-VAE, Fourier MLP): they train, reproducibly, and behave as codecs."""

import numpy as np
import pytest
from codec_data import make_vdfs

from faiser.codecs import Codec, get_codec, moment_errors, moments
from faiser.errors import CodecError, CompressedFileError

pytest.importorskip("flax")

TINY_VQ = {"window": 16, "base_channels": 4, "max_channels": 8, "code_dim": 4, "codebook_size": 16, "n_res": 1,
           "batch_size": 8, "steps": 60, "lr": 3e-3, "seed": 3}


@pytest.fixture(scope="module")
def data():
    train, mesh = make_vdfs(48, nv=16, seed=11)
    test, _ = make_vdfs(6, nv=16, seed=12)
    return train, test, mesh


@pytest.fixture(scope="module")
def vq(data):
    train, _, mesh = data
    return get_codec("vqvae", TINY_VQ).fit(train, mesh)


def test_vqvae_trains_and_is_a_codec(vq, data, tmp_path):
    _, test, mesh = data
    loss = np.asarray(vq.history["loss"])
    assert loss.shape == (TINY_VQ["steps"],) and np.all(np.isfinite(loss))
    assert loss[-5:].mean() < loss[0] / 3  # the stated factor: the loss falls at least 3x from the first step
    enc = vq.encode(test, mesh)
    idx = enc.streams.get("indices")
    fell_back = np.unpackbits(enc.streams["fallback"].data, count=len(test)) if "fallback" in enc.streams else 0
    if idx is not None:
        assert idx.data.shape[1:] == (4, 4, 4)  # 16^3 windows -> 4^3 indices
        assert idx.data.shape[0] == len(test) - np.sum(fell_back)
    r = vq.decode(enc)
    assert r.shape == test.shape and r.dtype == test.dtype and r.min() >= 0
    e = moment_errors(moments(test, mesh), moments(r, mesh))
    assert max(float(v.max()) for v in e.values()) < 1e-6
    # model: decoder + codebook counted; saved and loaded bit-exactly; refused when edited
    assert 0 < vq.model_bytes() < sum(a.nbytes for a in vq.model_arrays().values())
    vq.save(tmp_path / "m")
    back = Codec.load(tmp_path / "m")
    np.testing.assert_array_equal(back.decode(enc), r)
    other = get_codec("vqvae", {**TINY_VQ, "steps": 2})
    other.fit(data[0][:16], mesh)
    with pytest.raises(CompressedFileError, match="model"):
        other.decode(enc)


def test_vqvae_training_is_reproducible(vq, data):
    train, _, mesh = data
    again = get_codec("vqvae", TINY_VQ).fit(train, mesh)
    assert again.model_id() == vq.model_id()
    for k, a in vq.model_arrays().items():
        np.testing.assert_array_equal(a, again.model_arrays()[k])


def test_vqvae_settings_are_checked():
    with pytest.raises(CodecError):
        get_codec("vqvae", window=12)  # not a power-of-two multiple of the latent grid
    with pytest.raises(CodecError):
        get_codec("vqvae", scale="cbrt")


def test_mlp_codec_fits_each_vdf(data):
    _, test, mesh = data
    kw = {"window": 16, "hidden": 12, "n_freq": 8, "steps": 300, "fallback": False, "seed": 1}
    c = get_codec("mlp", kw)
    enc = c.encode(test, mesh)
    w = enc.streams["weights"].data
    assert w.dtype == np.float16 and w.shape == (len(test), c.mlp_config().n_params)
    r = c.decode(enc)
    assert r.min() >= 0
    assert max(float(v.max()) for v in moment_errors(moments(test, mesh), moments(r, mesh)).values()) < 1e-6
    rel = np.linalg.norm(r - test) / np.linalg.norm(test)
    mx = get_codec("maxwellian")
    rel_m = np.linalg.norm(mx.decode(mx.encode(test, mesh)) - test) / np.linalg.norm(test)
    assert rel < 0.5 * rel_m  # the fitted MLPs beat the Maxwellian of the same moments on beam VDFs
    # same seed, same weights
    np.testing.assert_array_equal(get_codec("mlp", kw).encode(test, mesh).streams["weights"].data, w)


def test_mlp_fits_data_parallel_over_4_devices(data):
    import jax

    if jax.device_count() < 4:
        pytest.skip(f"needs 4 devices, {jax.device_count()} here")
    _, test, mesh = data
    kw = {"window": 16, "hidden": 8, "n_freq": 6, "steps": 60, "fallback": False, "restore": False, "seed": 4}
    one, four = get_codec("mlp", kw), get_codec("mlp", {**kw, "devices": 4})
    assert one.model_id() == four.model_id()  # how it runs is not what it computes
    w1 = one.encode(test, mesh).streams["weights"].data.astype(np.float32)
    enc4 = four.encode(test, mesh)
    w4 = enc4.streams["weights"].data.astype(np.float32)
    np.testing.assert_allclose(w4, w1, rtol=2e-3, atol=2e-3)  # float16 storage: a rounding step apart at most
    np.testing.assert_allclose(one.decode(enc4), four.decode(enc4))

