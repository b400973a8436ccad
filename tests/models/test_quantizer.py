"""EMA vector quantizer: nearest-code assignment, straight-through gradient, EMA update, dead-code restart."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from faiser.models.quantizer import CodebookStat, VectorQuantizer, get_value


def _vq(**kw):
    return VectorQuantizer(8, 4, rngs=nnx.Rngs(0), **kw)


def test_nearest_code_and_lookup():
    vq = _vq()
    e = get_value(vq.codebook)
    z = e[jnp.array([3, 1, 7, 7])] + 1e-3
    out = vq(z.reshape(2, 2, 4))
    assert out.indices.shape == (2, 2) and out.indices.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(out.indices).ravel(), [3, 1, 7, 7])
    np.testing.assert_allclose(out.quantized.reshape(4, 4), e[jnp.array([3, 1, 7, 7])], atol=1e-6)
    np.testing.assert_allclose(vq.lookup(out.indices).reshape(4, 4), e[jnp.array([3, 1, 7, 7])])
    assert float(out.usage) == 3 / 8
    # perplexity of usage (1/4, 1/4, 1/2)
    p = np.array([0.25, 0.25, 0.5])
    np.testing.assert_allclose(float(out.perplexity), np.exp(-(p * np.log(p)).sum()), rtol=1e-5)


def test_straight_through_gradient_is_identity():
    vq = _vq()
    z = jax.random.normal(jax.random.key(1), (5, 4))
    g = jax.random.normal(jax.random.key(2), (5, 4))
    grad = jax.grad(lambda z: jnp.sum(vq(z).quantized * g))(z)
    np.testing.assert_allclose(grad, g, rtol=1e-6)
    # commitment gradient: beta * 2 (z - e) / (N * D)
    out = vq(z)
    gc = jax.grad(lambda z: vq(z).commitment_loss)(z)
    np.testing.assert_allclose(gc, vq.beta * 2 * (z - out.quantized) / z.size, rtol=1e-5, atol=1e-7)


def test_codebook_is_not_a_param():
    vq = _vq()
    assert not jax.tree.leaves(nnx.state(vq, nnx.Param))
    assert len(jax.tree.leaves(nnx.state(vq, CodebookStat))) == 3


def test_ema_update_moves_codes_toward_assigned_encodings():
    vq = _vq(decay=0.5, restart_threshold=0.0)
    e0 = np.asarray(get_value(vq.codebook))
    target = jnp.asarray(e0[2] + 0.5)
    z = jnp.broadcast_to(target, (16, 4)) + 0.01 * jax.random.normal(jax.random.key(3), (16, 4))
    idx = vq.nearest(z)
    assert bool(jnp.all(idx == idx[0]))
    k = int(idx[0])
    d0 = float(jnp.linalg.norm(get_value(vq.codebook)[k] - z.mean(0)))
    for _ in range(5):
        vq.update_codebook(z, vq.nearest(z))
    d1 = float(jnp.linalg.norm(get_value(vq.codebook)[k] - z.mean(0)))
    assert d1 < 0.1 * d0
    # codes not assigned keep their value up to the Laplace-smoothing factor (no data pull)
    others = [i for i in range(8) if i != k]
    e1 = np.asarray(get_value(vq.codebook))
    cos = (e1[others] * e0[others]).sum(1) / np.linalg.norm(e1[others], axis=1) / np.linalg.norm(e0[others], axis=1)
    np.testing.assert_allclose(cos, 1.0, atol=1e-5)


def test_dead_codes_restarted_from_batch_deterministically():
    def run(seed):
        vq = _vq(decay=0.5, restart_threshold=0.05)
        z = jax.random.normal(jax.random.key(4), (64, 4)) * 3.0
        idx = jnp.zeros((64,), jnp.int32)  # every vector assigned to code 0: the others decay
        infos = [vq.update_codebook(z, idx, key=jax.random.key(seed)) for _ in range(5)]
        return vq, z, infos

    vq, z, infos = run(7)
    restarted = [int(i["restarted"]) for i in infos]
    assert restarted[:4] == [0, 0, 0, 0] and restarted[4] == 7  # 0.5**5 < 0.05 <= 0.5**4
    e = np.asarray(get_value(vq.codebook))
    zz = np.asarray(z)
    for k in range(1, 8):  # each restarted code is one of the batch's encoder outputs
        assert np.min(np.abs(zz - e[k]).max(axis=1)) < 1e-6
    np.testing.assert_allclose(np.asarray(get_value(vq.ema_count))[1:], 1.0)
    vq2, _, _ = run(7)
    np.testing.assert_array_equal(e, np.asarray(get_value(vq2.codebook)))
    vq3, _, _ = run(8)
    assert not np.array_equal(e, np.asarray(get_value(vq3.codebook)))


def test_restart_respects_weights_and_unused_flag():
    vq = _vq(decay=0.99, restart_threshold=0.0)
    z = jnp.concatenate([jnp.full((4, 4), 5.0), jnp.full((4, 4), -5.0)])
    w = jnp.array([1.0] * 4 + [0.0] * 4)  # the -5 rows are padding
    idx = jnp.zeros((8,), jnp.int32)
    info = vq.update_codebook(z, idx, key=jax.random.key(0), weights=w, restart_unused=True)
    assert int(info["restarted"]) == 7
    np.testing.assert_allclose(np.asarray(get_value(vq.codebook))[1:], 5.0)
