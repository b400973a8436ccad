"""6D phase-space VQ-VAE: encode/decode shapes on 1D, 2D and 3D cell grids and a 1V velocity mesh, shape and
config errors, gradients through encoder -> straight-through quantizer -> propagator -> decoder (every parameter
reached, directional derivatives against central differences), and the latent model files (round trip, corrupt or
missing arrays -> CheckpointError)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from faiser.errors import CheckpointError, ConfigError
from faiser.grid import PhaseSpaceGrid
from faiser.latent.data import Normalization
from faiser.latent.model import LatentModel, load_latent_model, save_latent_model
from faiser.models.propagator import LatentPropagator, PropagatorConfig
from faiser.models.quantizer import get_value, set_value
from faiser.models.vqvae6d import PhaseSpaceVQVAE, PhaseSpaceVQVAEConfig

TINY = {"n_fields": 6, "velocity_channels": 8, "cell_dim": 8, "hidden": 8, "n_res": 1, "code_dim": 8,
        "code_groups": 2, "codebook_size": 16}  # fmt: skip


def _config(spatial, velocity=(8, 8, 8), spatial_stages=1, velocity_stages=1, **kw) -> PhaseSpaceVQVAEConfig:
    return PhaseSpaceVQVAEConfig(spatial_shape=spatial, velocity_shape=velocity, spatial_stages=spatial_stages,
                                 velocity_stages=velocity_stages, **{**TINY, **kw})  # fmt: skip


def _inputs(cfg: PhaseSpaceVQVAEConfig, batch: int = 2, seed: int = 0) -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(seed)
    f = rng.uniform(0.0, 1.0, (batch, *cfg.spatial_shape, *cfg.velocity_shape)).astype(np.float32)
    fields = rng.standard_normal((batch, *cfg.spatial_shape, cfg.n_fields)).astype(np.float32)
    return jnp.asarray(f), jnp.asarray(fields)


# ---- shapes -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spatial,velocity,stages,latent",
    [
        ((8, 1, 1), (8, 8, 8), 0, (8, 1, 1)),  # 1D3V, one latent vector per cell
        ((8, 1, 1), (8, 8, 8), 1, (4, 1, 1)),  # 1D3V
        ((8, 8, 1), (8, 8, 8), 1, (4, 4, 1)),  # 2D3V
        ((8, 8, 1), (8, 8, 8), 0, (8, 8, 1)),
        ((4, 4, 4), (8, 8, 8), 1, (2, 2, 2)),  # 3D3V
        ((8, 1, 1), (16, 1, 1), 1, (4, 1, 1)),  # 1D1V: velocity axes of size 1 are not downsampled
    ],
)
def test_encode_decode_shapes(spatial, velocity, stages, latent):
    vstages = 2 if velocity == (16, 1, 1) else 1
    cfg = _config(spatial, velocity, spatial_stages=stages, velocity_stages=vstages)
    assert cfg.latent_shape == latent
    assert cfg.velocity_latent_shape == tuple(n // 2**vstages if n > 1 else 1 for n in velocity)
    assert cfg.indices_per_snapshot == int(np.prod(latent)) * cfg.code_groups
    model = PhaseSpaceVQVAE(cfg, rngs=nnx.Rngs(0))
    f, fields = _inputs(cfg)

    @nnx.jit
    def run(m, f, fields):
        idx = m.encode(f, fields)
        z = m.encode_continuous(f, fields)
        return idx, z, m.quantize(z), m.decode(idx), m(f, fields)

    idx, z, zq, (f_rec, fields_rec), out = run(model, f, fields)
    assert idx.shape == (2, *latent, cfg.code_groups) and idx.dtype == jnp.int32
    assert int(idx.min()) >= 0 and int(idx.max()) < cfg.codebook_size
    assert z.shape == zq.shape == (2, *latent, cfg.code_dim)
    assert f_rec.shape == f.shape and f_rec.dtype == jnp.float32
    assert fields_rec.shape == fields.shape
    # straight-through quantize, lookup of encode and the forward pass all agree on the codes
    np.testing.assert_allclose(zq, model.lookup(idx), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(out.quant.indices, idx)
    np.testing.assert_allclose(out.f, f_rec, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.fields, fields_rec, rtol=1e-5, atol=1e-5)
    assert np.all(np.isfinite(np.asarray(f_rec))) and np.all(np.isfinite(np.asarray(fields_rec)))


def test_fields_optional_without_field_channels():
    cfg = _config((8, 1, 1), n_fields=0)
    model = PhaseSpaceVQVAE(cfg, rngs=nnx.Rngs(0))
    f, _ = _inputs(cfg)
    idx = nnx.jit(lambda m, f: m.encode(f))(model, f)
    assert idx.shape == (2, 4, 1, 1, 2)
    f_rec, fields_rec = nnx.jit(lambda m, i: m.decode(i))(model, idx)
    assert f_rec.shape == f.shape and fields_rec.shape == (2, 8, 1, 1, 0)


def test_bad_input_shapes_raise_config_error():
    cfg = _config((8, 1, 1))
    model = PhaseSpaceVQVAE(cfg, rngs=nnx.Rngs(0))
    f, fields = _inputs(cfg, batch=1)
    bad = [
        (f[..., :4], fields),  # velocity mesh
        (jnp.zeros((1, 4, 1, 1, 8, 8, 8)), fields[:, :4]),  # spatial grid
        (f[0], fields[0]),  # no batch axis
        (f.reshape(1, 8, 1, 1, 8, 64), fields),  # 6D
        (f, fields[..., :3]),  # field channels
        (f, jnp.zeros((2, 8, 1, 1, 6))),  # fields of another batch
    ]
    for fb, fl in bad:
        with pytest.raises(ConfigError):
            model.encode_continuous(fb, fl)
    with pytest.raises(ConfigError):
        model.encode(f[..., :4], fields)


@pytest.mark.parametrize(
    "kw",
    [
        {"code_dim": 8, "code_groups": 3},  # groups do not divide code_dim
        {"code_groups": 0},
        {"spatial_shape": (6, 1, 1), "spatial_stages": 2},  # 6 not divisible by 4
        {"spatial_shape": (8, 6, 1), "spatial_stages": 2},
        {"velocity_shape": (8, 8, 12), "velocity_stages": 3},  # 12 not divisible by 8
        {"velocity_shape": (8, 8, 8), "velocity_stages": 4},
        {"spatial_shape": (8, 1)},
        {"spatial_shape": (8, 0, 1)},
        {"velocity_shape": (8, 8, 8, 8)},
        {"padding": "reflect"},
        {"codebook_size": 1},
        {"hidden": 0},
        {"n_fields": -1},
        {"n_res": -1},
    ],
)
def test_bad_configs_raise_config_error(kw):
    base = {"spatial_shape": (8, 1, 1), "velocity_shape": (8, 8, 8), "spatial_stages": 1, "velocity_stages": 1}
    with pytest.raises(ConfigError):
        PhaseSpaceVQVAEConfig(**{**TINY, **base, **kw})


def test_config_json_round_trip():
    cfg = _config((8, 8, 1), padding="circular")
    back = PhaseSpaceVQVAEConfig.from_json(json.loads(json.dumps(cfg.to_json())))
    assert back == cfg and back.latent_shape == (4, 4, 1)


# ---- gradients ----------------------------------------------------------------------------------------------


def _path(p) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in p)


def _randomize_zero_kernels(module: nnx.Module, seed: int, scale: float = 0.1) -> list[str]:
    """Give every all-zero kernel small random values; returns their paths.

    Zero-initialised layers (the propagator's last convolution, the second linear map of every pointwise
    residual block) block the gradient of the layers before them at initialisation: with them the check
    "every parameter gets a gradient" tests the architecture, not the initialisation.
    """
    rng = np.random.default_rng(seed)
    changed = []
    for path, var in nnx.iter_graph(module):
        if isinstance(var, nnx.Param) and path and path[-1] == "kernel" and not np.any(np.asarray(get_value(var))):
            v = get_value(var)
            set_value(var, jnp.asarray(scale * rng.standard_normal(v.shape) / np.sqrt(np.prod(v.shape[:-1])), v.dtype))
            changed.append("/".join(map(str, path)))
    return changed


@pytest.fixture(scope="module")
def pipeline():
    """A tiny VQ-VAE and propagator (zero kernels randomized) and the composed loss, as pure functions of
    ``params = {"vq": ..., "prop": ...}`` (pure dicts of the ``nnx.Param`` leaves; the codebook is fixed state).

    ``encode(params, f, fields)``: the encoder outputs; ``tail(params, z, f, fields)``: propagator -> decode_latent
    -> MSE against the inputs; ``loss = tail(quantize(encode))`` with the straight-through quantizer;
    ``loss_bypass = tail(encode)`` without it (smooth in every parameter).
    """
    cfg = _config((8, 1, 1), (8, 8, 8), spatial_stages=1, velocity_stages=1)
    vq = PhaseSpaceVQVAE(cfg, rngs=nnx.Rngs(0))
    prop = LatentPropagator(PropagatorConfig(latent_shape=cfg.latent_shape, code_dim=cfg.code_dim, hidden=8,
                                             n_blocks=1), rngs=nnx.Rngs(1))  # fmt: skip
    changed = _randomize_zero_kernels(vq, 2) + _randomize_zero_kernels(prop, 3)
    assert "out/kernel" in changed  # the propagator's zero-initialised last convolution
    vq_gd, vq_p, vq_rest = nnx.split(vq, nnx.Param, ...)
    p_gd, p_p = nnx.split(prop, nnx.Param)
    params = {"vq": nnx.to_pure_dict(vq_p), "prop": nnx.to_pure_dict(p_p)}

    def model(params):
        return nnx.merge(vq_gd, nnx.State(params["vq"]), vq_rest)

    def encode(params, f, fields):
        return model(params).encode_continuous(f, fields)

    def tail(params, z, f, fields):
        f_rec, fields_rec = model(params).decode_latent(nnx.merge(p_gd, nnx.State(params["prop"]))(z))
        return jnp.mean((f_rec - f) ** 2) + jnp.mean((fields_rec - fields) ** 2)

    def loss(params, f, fields):
        return tail(params, model(params).quantize(encode(params, f, fields)), f, fields)

    def loss_bypass(params, f, fields):
        return tail(params, encode(params, f, fields), f, fields)

    f, fields = _inputs(cfg, batch=2, seed=5)
    # one compiled program each, shared by the tests below
    fns = {"loss": jax.jit(lambda p: loss(p, f, fields)), "bypass": jax.jit(lambda p: loss_bypass(p, f, fields))}
    grads = {k: jax.jit(jax.grad(v)) for k, v in fns.items()}
    return {"params": params, "model": model, "encode": encode, "tail": tail, "fns": fns, "grads": grads,
            "f": f, "fields": fields}  # fmt: skip


def test_gradients_reach_every_parameter(pipeline):
    g = pipeline["grads"]["loss"](pipeline["params"])
    assert set(g) == {"vq", "prop"}
    leaves = jax.tree_util.tree_flatten_with_path(g)[0]
    names = {_path(p) for p, _ in leaves}
    # the trainable parts of the composition are all there (the codebook is EMA state, not a Param)
    for part in ("vq/velocity_encoder", "vq/spatial_encoder", "vq/spatial_decoder", "vq/velocity_decoder",
                 "prop/stem", "prop/blocks", "prop/out"):  # fmt: skip
        assert any(n.startswith(part) for n in names), part
    assert not any("codebook" in n or "ema_" in n for n in names)
    dead = [_path(p) for p, v in leaves if not np.all(np.isfinite(v)) or not np.any(np.asarray(v) != 0)]
    assert not dead, f"parameters without a (finite, nonzero) gradient: {dead}"


def _directional_check(fn, grad_fn, params, select, eps=1e-3, rtol=2e-2, checks=2):
    """``grad . d`` along random directions ``d`` (standard normal in the ``select``-ed parameters, 0 elsewhere)
    against the float32 central difference ``(fn(p + eps d) - fn(p - eps d)) / 2 eps``.

    Tolerance ``rtol * |grad . d| + atol`` with ``atol`` the float32 rounding of the loss divided by ``2 eps``. A
    random direction can be nearly orthogonal to the gradient, leaving nothing to compare above that rounding:
    such directions are skipped until ``checks`` directions with ``|grad . d| > 10 atol`` have been compared.
    Returns the compared ``(grad . d, central difference)`` pairs.
    """
    g = grad_fn(params)
    loss = float(fn(params))
    atol = 8 * float(np.finfo(np.float32).eps) * abs(loss) / (2 * eps)
    done = []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
        d = jax.tree_util.tree_unflatten(treedef, [
            jnp.asarray(rng.standard_normal(v.shape), jnp.float32) if select(_path(path)) else jnp.zeros_like(v)
            for path, v in leaves
        ])  # fmt: skip
        gd = sum(float(jnp.vdot(a, b)) for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(d)))
        if abs(gd) < 10 * atol:
            continue
        fd = (float(fn(jax.tree.map(lambda p, v: p + eps * v, params, d)))
              - float(fn(jax.tree.map(lambda p, v: p - eps * v, params, d)))) / (2 * eps)  # fmt: skip
        assert abs(fd - gd) <= rtol * abs(gd) + atol, f"seed {seed}: grad . d = {gd}, central difference {fd}"
        done.append((gd, fd))
        if len(done) == checks:
            return done
    raise AssertionError(f"fewer than {checks} random directions with a measurable derivative (atol {atol})")


@pytest.mark.parametrize("part", ["prop", "vq/spatial_decoder", "vq/velocity_decoder"])
@jax.default_matmul_precision("highest")  # GPUs default to TF32 matmuls and convolutions
def test_directional_derivatives_match_central_differences(pipeline, part):
    """Propagator and decoder parameters enter the loss smoothly (silu), after the quantizer: autodiff equals
    central differences of the full (quantized) loss."""
    fn, grad_fn = pipeline["fns"]["loss"], pipeline["grads"]["loss"]
    _directional_check(fn, grad_fn, pipeline["params"], lambda n: n.startswith(part))


@jax.default_matmul_precision("highest")
def test_jvp_equals_grad_dot_direction(pipeline):
    """Forward and reverse mode agree along a direction in every parameter at once."""
    params = pipeline["params"]
    rng = np.random.default_rng(11)
    d = jax.tree.map(lambda v: jnp.asarray(rng.standard_normal(v.shape), jnp.float32), params)
    _, dd = jax.jit(lambda p, d: jax.jvp(pipeline["fns"]["loss"], (p,), (d,)))(params, d)
    g = pipeline["grads"]["loss"](params)
    gd = sum(float(jnp.vdot(a, b)) for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(d)))
    np.testing.assert_allclose(float(dd), gd, rtol=1e-4)


# The quantizer is piecewise constant in the encoder output, so central differences of the quantized loss in the
# encoder parameters are zero (or jumps) and cannot check the encoder's gradient. Checked instead: (1) with the
# quantizer bypassed, the encoder's autodiff matches central differences; (2) with it, the encoder's gradient is
# the straight-through one: the encoder's VJP of the downstream gradient taken at the quantized latents.


@jax.default_matmul_precision("highest")
def test_encoder_directional_derivatives_without_quantizer(pipeline):
    is_encoder = lambda n: n.startswith(("vq/velocity_encoder", "vq/spatial_encoder"))
    _directional_check(pipeline["fns"]["bypass"], pipeline["grads"]["bypass"], pipeline["params"], is_encoder)


@jax.default_matmul_precision("highest")
def test_encoder_gradient_is_straight_through(pipeline):
    params, f, fields = pipeline["params"], pipeline["f"], pipeline["fields"]

    @jax.jit
    def references(params):
        z, vjp = jax.vjp(lambda vp: pipeline["encode"]({**params, "vq": vp}, f, fields), params["vq"])
        q = pipeline["model"](params).quantize(z)
        tail = jax.grad(lambda z: pipeline["tail"](params, z, f, fields))
        return vjp(tail(q))[0], vjp(tail(z))[0], jnp.max(jnp.abs(q - z))

    at_q, at_z, moved = references(params)
    assert float(moved) > 1e-3  # the quantizer does move the latents
    g = pipeline["grads"]["loss"](params)["vq"]
    for key in ("velocity_encoder", "spatial_encoder"):
        for a, b in zip(jax.tree.leaves(g[key]), jax.tree.leaves(at_q[key])):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    # not the gradient of the unquantized loss: the downstream gradient is taken at q, not at z
    flat = lambda t: np.concatenate([np.ravel(a) for a in jax.tree.leaves(t["spatial_encoder"])])
    assert not np.allclose(flat(g), flat(at_z), rtol=1e-3, atol=1e-6)


# ---- model files --------------------------------------------------------------------------------------------


@pytest.fixture
def latent_model():
    cfg = _config((8, 1, 1), (8, 8, 8), spatial_stages=1, velocity_stages=1)
    vq = PhaseSpaceVQVAE(cfg, rngs=nnx.Rngs(0))
    prop = LatentPropagator(PropagatorConfig(latent_shape=cfg.latent_shape, code_dim=cfg.code_dim, hidden=8,
                                             n_blocks=1), rngs=nnx.Rngs(1))  # fmt: skip
    _randomize_zero_kernels(prop, 4)  # so the propagator is not the identity and its weights matter
    grid = PhaseSpaceGrid.make_1d3v(8, 8.0, 8, 3.0)
    meta = {"case": "landau", "species": "proton", "grid": grid.to_json(), "dt": 0.1, "steps_per_latent": 5,
            "latent_dt": 0.5}  # fmt: skip
    return LatentModel(vq, prop, Normalization(), meta)


def _outputs(model: LatentModel, f, fields) -> list[np.ndarray]:
    E, B = fields[..., :3], fields[..., 3:]
    z = model.encode(f, E, B)
    zs = model.propagate(z, jnp.zeros((f.shape[0], 0)), 2)
    return [np.asarray(a) for a in (z, zs, *model.decode(zs[-1]))]


def test_latent_model_round_trip(latent_model, tmp_path):
    cfg = latent_model.vqvae.config
    f, fields = _inputs(cfg, batch=2, seed=7)
    f = f**2  # physical f >= 0 (the model values are sqrt(f / f_ref))
    save_latent_model(tmp_path / "m", latent_model)
    assert (tmp_path / "m" / "model.json").is_file() and (tmp_path / "m" / "model.npz").is_file()
    back = load_latent_model(tmp_path / "m")
    assert back.vqvae.config == cfg and back.propagator.config == latent_model.propagator.config
    assert back.norm == latent_model.norm
    assert {k: back.meta[k] for k in latent_model.meta} == json.loads(json.dumps(latent_model.meta))
    assert back.steps_per_latent == 5 and back.latent_dt == 0.5
    want, got = _outputs(latent_model, f, fields), _outputs(back, f, fields)
    assert not np.allclose(want[1][-1], want[1][0])  # the propagator moves the state
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)
    # a model with other weights decodes differently (the loaded weights are really used)
    other = LatentModel(PhaseSpaceVQVAE(cfg, rngs=nnx.Rngs(9)), back.propagator, back.norm, back.meta)
    assert not np.allclose(np.asarray(other.decode(jnp.asarray(want[0]))[0]), got[2])


def test_corrupt_or_missing_model_npz_raises_checkpoint_error(latent_model, tmp_path):
    save_latent_model(tmp_path / "m", latent_model)
    npz = tmp_path / "m" / "model.npz"
    raw = bytearray(npz.read_bytes())
    # flip one byte of the array data (middle of the file: past the zip header, inside a stored array)
    for pos in (len(raw) // 2, len(raw) // 3, 40):
        bad = bytearray(raw)
        bad[pos] ^= 0xFF
        npz.write_bytes(bytes(bad))
        with pytest.raises(CheckpointError):
            load_latent_model(tmp_path / "m")
    npz.write_bytes(bytes(raw[: len(raw) // 2]))  # truncated
    with pytest.raises(CheckpointError):
        load_latent_model(tmp_path / "m")
    npz.write_bytes(bytes(raw))
    load_latent_model(tmp_path / "m")  # intact again
    npz.unlink()
    with pytest.raises(CheckpointError):
        load_latent_model(tmp_path / "m")
    with pytest.raises(CheckpointError):
        load_latent_model(tmp_path / "nothing_here")
