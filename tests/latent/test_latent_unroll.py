"""Stage-2 unrolled loss of the latent solver: value against a hand-written unroll, remat changes memory but not
the numbers, the activation memory of a rematerialized train step does not grow with the unroll length,
pushforward stops the gradient between steps, and the moment loss."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from faiser.config import config_keys
from faiser.errors import ConfigError
from faiser.latent.train import LatentTrainConfig, make_unroll_loss, moment_loss, windows
from faiser.models.propagator import LatentPropagator, PropagatorConfig
from faiser.models.quantizer import get_value, set_value
from faiser.models.vqvae6d import PhaseSpaceVQVAE, PhaseSpaceVQVAEConfig

B = 2


def _models(spatial=(8, 1, 1), n_cond=1):
    """A tiny VQ-VAE and a propagator whose zero-initialised last convolution is made random (so the
    propagator is not the identity and every unrolled step depends on the parameters)."""
    cfg = PhaseSpaceVQVAEConfig(
        spatial_shape=spatial, velocity_shape=(8, 8, 8), n_fields=6, velocity_stages=1, velocity_channels=8,
        cell_dim=8, spatial_stages=1, hidden=8, n_res=1, code_dim=8, code_groups=2, codebook_size=16,
    )  # fmt: skip
    vq = PhaseSpaceVQVAE(cfg, rngs=nnx.Rngs(0))
    prop = LatentPropagator(
        PropagatorConfig(latent_shape=cfg.latent_shape, code_dim=8, n_cond=n_cond, hidden=8, n_blocks=1),
        rngs=nnx.Rngs(1),
    )
    k = get_value(prop.out.kernel)
    set_value(prop.out.kernel, jnp.asarray(0.1 * np.random.default_rng(2).standard_normal(k.shape), jnp.float32))
    gd, params = nnx.split(prop, nnx.Param)
    return vq, prop, gd, nnx.to_pure_dict(params)


def _batch(cfg: PhaseSpaceVQVAEConfig, K: int, n_cond: int, seed=0):
    rng = np.random.default_rng(seed)
    L, S, V = cfg.latent_shape, cfg.spatial_shape, cfg.velocity_shape
    z0 = rng.standard_normal((B, *L, cfg.code_dim)).astype(np.float32)
    zt = rng.standard_normal((K, B, *L, cfg.code_dim)).astype(np.float32)
    xt = rng.uniform(0, 1, (K, B, *S, *V)).astype(np.float32)
    ft = rng.standard_normal((K, B, *S, 6)).astype(np.float32)
    cond = rng.standard_normal((B, n_cond)).astype(np.float32)
    return tuple(jnp.asarray(a) for a in (z0, zt, xt, ft, cond))


# ---- value and gradients --------------------------------------------------------------------------------------


def _cfg(**kw) -> LatentTrainConfig:
    """A train config; the f-space reconstruction term (``f_space_weight``, where the config has it) is off
    unless asked for, so the reconstruction part is the plain MSE of the model values over ``x2``."""
    if "f_space_weight" in _leaf_names():
        kw = {"f_space_weight": 0.0, **kw}
    return LatentTrainConfig.of(**kw)


def _leaf_names() -> set[str]:
    """The bare key names of the (nested) train config."""
    return {k.rsplit(".", 1)[-1] for k in config_keys(LatentTrainConfig)}


@pytest.fixture(scope="module")
def small():
    """``(vq, prop, prop_graphdef, params, batch, vg)``: tiny models, a K=3 batch and ``vg(**config)``, the
    ``((loss, parts), grads)`` of its K=3 loss (cached: one compilation per config, shared by the tests)."""
    vq, prop, gd, params = _models()
    batch = _batch(vq.config, 3, 1)

    @functools.cache
    def vg(**kw):
        fn = make_unroll_loss(vq, gd, _cfg(unroll=3, **kw), z_var=1.0, x2=1.0)
        return jax.jit(jax.value_and_grad(fn, has_aux=True))(params, *batch)

    return vq, prop, gd, params, batch, vg


@jax.default_matmul_precision("highest")
def test_unroll_loss_matches_hand_written_unroll(small):
    vq, prop, gd, params, (z0, zt, xt, ft, cond), _ = small
    K, z_var, x2 = zt.shape[0], 1.7, 0.4
    w = {"latent_weight": 0.5, "f_weight": 2.0, "moment_weight": 0.3, "field_weight": 0.7}
    loss, parts = jax.jit(make_unroll_loss(vq, gd, _cfg(unroll=K, remat=False, **w), z_var=z_var, x2=x2))(
        params, z0, zt, xt, ft, cond
    )

    @jax.jit
    def reference(z):
        out = []
        for k in range(K):
            z = prop(z, cond)
            xr, fr = vq.decode_latent(z)
            out.append([jnp.mean((z - zt[k]) ** 2) / z_var,
                        jnp.mean((xr - xt[k]) ** 2) / x2 + 0.7 * jnp.mean((fr - ft[k]) ** 2),
                        moment_loss(xr, xt[k]),
                        jnp.mean((jnp.maximum(xr, 0.0) ** 2 - xt[k] ** 2) ** 2)])  # fmt: skip
        return jnp.mean(jnp.asarray(out), axis=0)

    want = np.asarray(reference(z0))
    assert np.all(want > 0)
    np.testing.assert_allclose(parts, want[:3], rtol=1e-5)
    np.testing.assert_allclose(loss, 0.5 * want[0] + 2.0 * want[1] + 0.3 * want[2], rtol=1e-5)

    # no decoding at all when neither the f nor the moment loss is weighted
    fn0 = make_unroll_loss(vq, gd, _cfg(unroll=K, remat=False, f_weight=0.0, moment_weight=0.0), z_var=z_var, x2=x2)
    loss0, parts0 = jax.jit(fn0)(params, z0, zt, xt, ft, cond)
    np.testing.assert_allclose(parts0, [want[0], 0.0, 0.0], rtol=1e-5)
    np.testing.assert_allclose(loss0, want[0], rtol=1e-5)

    if "f_space_weight" in _leaf_names():
        # + f_space_weight x MSE of f / f_ref = max(x, 0)^2 over x4
        fn1 = make_unroll_loss(vq, gd, _cfg(unroll=K, remat=False, f_space_weight=0.25, **w), z_var=z_var, x2=x2,
                               x4=0.2)  # fmt: skip
        _, parts1 = jax.jit(fn1)(params, z0, zt, xt, ft, cond)
        np.testing.assert_allclose(parts1, [want[0], want[1] + 0.25 * want[3] / 0.2, want[2]], rtol=1e-5)


@jax.default_matmul_precision("highest")
def test_remat_changes_nothing_but_memory(small):
    vg = small[-1]
    (l1, p1), g1 = vg(remat=True)
    (l0, p0), g0 = vg(remat=False)
    np.testing.assert_allclose(l1, l0, rtol=1e-5)
    np.testing.assert_allclose(p1, p0, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    assert all(np.any(np.asarray(a) != 0) for a in jax.tree.leaves(g1))


@jax.default_matmul_precision("highest")
def test_pushforward_stops_the_gradient_between_steps(small):
    """With pushforward the K-step gradient is the mean of one-step gradients, each from the (fixed) state the
    model itself predicted; without it the gradient also flows through the earlier steps."""
    vq, prop, gd, params, (z0, zt, xt, ft, cond), vg = small
    K = zt.shape[0]
    (lp, pp), gp = vg(remat=True, pushforward=True)
    (ln, pn), gn = vg(remat=True)
    np.testing.assert_allclose(lp, ln, rtol=1e-6)  # the forward pass is the same
    np.testing.assert_allclose(pp, pn, rtol=1e-6)

    one = jax.jit(jax.grad(make_unroll_loss(vq, gd, _cfg(unroll=1), z_var=1.0, x2=1.0), has_aux=True))
    step = jax.jit(lambda z: prop(z, cond))
    z, acc = z0, None
    for k in range(K):
        g, _ = one(params, z, zt[k : k + 1], xt[k : k + 1], ft[k : k + 1], cond)
        acc = g if acc is None else jax.tree.map(jnp.add, acc, g)
        z = step(z)
    for a, b in zip(jax.tree.leaves(gp), jax.tree.leaves(acc)):
        np.testing.assert_allclose(a, b / K, rtol=1e-4, atol=1e-7)
    diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(gp), jax.tree.leaves(gn)))
    assert diff > 1e-3 * max(float(jnp.max(jnp.abs(a))) for a in jax.tree.leaves(gn))


# ---- memory of an unrolled train step -------------------------------------------------------------------------


@functools.cache
def _temp_bytes(remat: bool, K: int) -> int | None:
    """Temporary (activation) bytes of the compiled ``value_and_grad`` of the K-step loss, or None when the
    backend reports no memory analysis. 16 cells x 8^3 velocities x batch 2: the decoded VDFs of one step
    (and the decoder activations behind them) are far larger than a latent carry (8 x 8 floats per sample)."""
    vq, _, gd, params = _models(spatial=(16, 1, 1), n_cond=0)
    fn = make_unroll_loss(vq, gd, _cfg(unroll=K, remat=remat), z_var=1.0, x2=1.0)
    cfg = vq.config
    spec = lambda *s: jax.ShapeDtypeStruct(s, jnp.float32)
    S, L = cfg.spatial_shape, cfg.latent_shape
    args = (spec(B, *L, 8), spec(K, B, *L, 8), spec(K, B, *S, *cfg.velocity_shape), spec(K, B, *S, 6), spec(B, 0))
    compiled = jax.jit(jax.value_and_grad(fn, has_aux=True)).lower(params, *args).compile()
    ma = compiled.memory_analysis()
    if ma is None or getattr(ma, "temp_size_in_bytes", None) is None:
        return None
    return int(ma.temp_size_in_bytes)


def _temps(remat: bool) -> tuple[int, int]:
    t2, t8 = _temp_bytes(remat, 2), _temp_bytes(remat, 8)
    if t2 is None or t8 is None:
        pytest.skip(f"compiled.memory_analysis() reports no temp sizes on the {jax.default_backend()} backend")
    return t2, t8


# The two bounds below are separated (1.6 < 2.5): the no-remat ratio is always clearly larger than the remat one.
def test_remat_memory_does_not_grow_with_unroll():
    t2, t8 = _temps(remat=True)
    # 4x the steps: only the latent carries and per-step loss parts grow (measured on CPU: t8 / t2 ~ 1.00)
    assert t8 < 1.6 * t2, (t2, t8)


def test_memory_grows_with_unroll_without_remat():
    t2, t8 = _temps(remat=False)
    # every step's decoder activations are kept for the backward pass (measured on CPU: t8 / t2 ~ 3.3)
    assert t8 > 2.5 * t2, (t2, t8)


# ---- moment loss and windows ----------------------------------------------------------------------------------


def test_moment_loss():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(0, 1, (2, 4, 1, 1, 8, 8, 8)), jnp.float32)
    assert float(moment_loss(x, x)) == 0.0
    # only the positive part counts (f = max(x, 0)^2): negative values are empty cells
    np.testing.assert_allclose(moment_loss(jnp.where(x > 0.5, x, -x), jnp.where(x > 0.5, x, 0.0)), 0.0, atol=1e-12)
    # scale-free: f -> c^2 f in both arguments leaves it unchanged
    y = jnp.roll(x, 1, axis=-3)
    np.testing.assert_allclose(moment_loss(3.0 * y, 3.0 * x), moment_loss(y, x), rtol=1e-5)
    # x -> sqrt(2) x doubles every moment m_i of every cell: the loss is mean_i(mean m_i^2) / mean n^2 >= 1/5
    assert float(moment_loss(jnp.sqrt(2.0) * x, x)) > 0.2
    # a drifting Maxwellian: shifting it along v_x leaves the density, changes the momentum -> a clear loss,
    # growing with the shift
    u = (np.arange(8) + 0.5) / 8 * 2 - 1
    ux, uy, uz = np.meshgrid(u, u, u, indexing="ij")
    maxwell = lambda u0: jnp.asarray(np.exp(-((ux - u0) ** 2 + uy**2 + uz**2) / 0.2)[None], jnp.float32)
    m0 = maxwell(0.0)
    small_shift, big_shift = float(moment_loss(maxwell(0.25), m0)), float(moment_loss(maxwell(0.5), m0))
    assert 1e-3 < small_shift < big_shift
    # 1V mesh
    v = jnp.asarray(rng.uniform(0, 1, (3, 16, 1, 1)), jnp.float32)
    assert float(moment_loss(v, v)) == 0.0 and float(moment_loss(jnp.roll(v, 2, axis=-3), v)) > 0


def test_windows_and_config_errors():
    w = windows(2, 6, stride=2, unroll=2)
    assert w.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]  # t0 + 2 * 2 <= 5
    with pytest.raises(ConfigError):
        windows(1, 4, stride=2, unroll=2)
    for bad in ({"unroll": 0}, {"stride": 0}, {"prop_batch": 0}, {"noise_std": -1.0}, {"prop_lr": 0.0}):
        with pytest.raises(ConfigError):
            LatentTrainConfig.of(**bad)
