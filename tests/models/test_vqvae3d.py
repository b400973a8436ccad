"""3D VQ-VAE: latent shapes (32^3 and 16^3 -> 4^3), exact strided layers, config JSON, jitted inference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from faiser.errors import ConfigError
from faiser.models.quantizer import get_value
from faiser.models.vqvae3d import VQVAE3D, PatchDown, PatchUp, VQVAE3DConfig, inference_fns


@pytest.mark.parametrize("n,stages", [(32, 3), (16, 2)])
def test_shapes_and_real_downsampling(n, stages):
    cfg = VQVAE3DConfig(window=n, channels=(4, 8, 8)[:stages], n_res=1, codebook_size=16, code_dim=4)
    assert cfg.n_stages == stages and cfg.downsample == n // 4
    model = VQVAE3D(cfg, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (2, n, n, n, 1))
    encode, decode = inference_fns(model)
    idx = encode(x)
    assert idx.shape == (2, 4, 4, 4) and idx.dtype == jnp.int32
    assert int(idx.min()) >= 0 and int(idx.max()) < 16
    rec = decode(idx)
    assert rec.shape == (2, n, n, n, 1) and rec.dtype == jnp.float32
    if n == 16:  # (the 32^3 model compiles slowly on CPU: fewer variants)
        np.testing.assert_array_equal(encode(x[..., 0]), idx)  # (b, n, n, n) input accepted
        # each window's indices depend only on that window (batched, no cross-talk)
        np.testing.assert_array_equal(encode(x[1:2])[0], idx[1])
        z = nnx.jit(lambda m, x: m.encode_continuous(x))(model, x)
        assert z.shape == (2, 4, 4, 4, 4)
        out = nnx.jit(lambda m, x: m(x))(model, x)
        np.testing.assert_allclose(out.reconstruction, rec, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(out.quant.indices, idx)


@jax.default_matmul_precision("highest")  # GPUs default to TF32 matmuls and convolutions
def test_patch_layers_equal_strided_convolutions():
    dn = ("NDHWC", "DHWIO", "NDHWC")
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 8, 3))
    down = PatchDown(3, 5, nnx.Rngs(0))
    ref = jax.lax.conv_general_dilated(x, get_value(down.kernel), (2, 2, 2), "VALID", dimension_numbers=dn)
    np.testing.assert_allclose(down(x), ref + get_value(down.bias), rtol=1e-5, atol=1e-5)
    up = PatchUp(3, 5, nnx.Rngs(0))
    xt = jax.random.normal(jax.random.key(3), (2, 4, 4, 4, 3))
    k = get_value(up.kernel)[::-1, ::-1, ::-1]  # lax.conv_transpose flips the kernel
    ref = jax.lax.conv_transpose(xt, k, (2, 2, 2), "VALID", dimension_numbers=dn)
    assert ref.shape == (2, 8, 8, 8, 5)
    np.testing.assert_allclose(up(xt), ref + get_value(up.bias), rtol=1e-5, atol=1e-5)


def test_config_json_roundtrip_and_validation():
    cfg = VQVAE3DConfig(window=16, channels=(4, 8), codebook_size=64)
    back = VQVAE3DConfig.from_json(__import__("json").dumps(cfg.to_json()))
    assert back == cfg and hash(back) == hash(cfg)
    with pytest.raises(ConfigError):
        VQVAE3DConfig(window=24)  # 24 / 4 = 6, not a power of two
    with pytest.raises(ConfigError):
        VQVAE3DConfig(window=16, channels=(4, 8, 16))
    with pytest.raises(ConfigError):
        VQVAE3DConfig.from_json({"window": 16, "bogus": 1})
    with pytest.raises(ConfigError):
        VQVAE3D(cfg, rngs=nnx.Rngs(0)).encode(jnp.zeros((1, 32, 32, 32, 1)))
