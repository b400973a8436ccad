"""Every codec behind one interface: round trips, error bounds, restoration, byte accounting, refusals."""

import numpy as np
import pytest
from codec_data import make_vdfs

from faiser.codecs import Codec, get_codec, moment_errors, moments
from faiser.codecs.base import Encoded
from faiser.codecs.container import from_bytes, to_bytes
from faiser.errors import CodecError, CompressedFileError

MODEL_FREE = [("sparse", {}), ("maxwellian", {}), ("zfp", {"tolerance": 1e-3}), ("sz3", {"tolerance": 1e-3})]


def _codec(name, kw, train=None):
    c = get_codec(name, kw)
    if c.trainable:
        c.fit(*train)
    return c


ALL = MODEL_FREE + [("pca", {"components": 8, "window": 12})]


@pytest.mark.parametrize("name,kw", ALL)
def test_round_trip_shape_dtype_and_order(name, kw, beams, train_beams):
    f, mesh = beams
    c = _codec(name, kw, train_beams)
    for dtype in (np.float32, np.float64):
        x = f.astype(dtype)
        r = c.decode(c.encode(x, mesh))
        assert r.shape == x.shape and r.dtype == x.dtype
        # cell order: each decoded VDF has its own original's density and bulk velocity (all distinct)
        mx, mr = moments(x, mesh), moments(r, mesh)
        d = np.abs(mr[:, None, :4] - mx[None, :, :4]).sum(axis=2)
        assert np.all(np.argmin(d, axis=1) == np.arange(len(x)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_is_lossless(beams, dtype):
    f, mesh = beams
    x = f.astype(dtype)
    x[0, 0, 0, 0] = -1e-30  # Vlasiator files hold tiny negative values: kept exactly
    c = get_codec("sparse")
    np.testing.assert_array_equal(c.decode(c.encode(x, mesh)), x)


@pytest.mark.parametrize("name", ["zfp", "sz3"])
@pytest.mark.parametrize("tol", [1e-2, 1e-4])
def test_error_bounded_codecs_honour_their_bound(name, tol, beams):
    f, mesh = beams
    c = get_codec(name, tolerance=tol, restore=False)
    r = c.decode(c.encode(f, mesh))
    err = np.abs(r.astype(np.float64) - f).reshape(len(f), -1).max(axis=1)
    bound = tol * f.reshape(len(f), -1).max(axis=1)
    assert np.all(err <= bound * (1 + 1e-5))


@pytest.mark.parametrize("name,kw", [c for c in ALL if c[0] != "sparse"])
def test_restoration_makes_moments_exact_and_f_positive(name, kw, beams, train_beams):
    f, mesh = beams
    c = _codec(name, kw, train_beams)
    r = c.decode(c.encode(f, mesh))
    assert r.min() >= 0
    e = moment_errors(moments(f, mesh), moments(r, mesh))
    assert max(float(v.max()) for v in e.values()) < 1e-6, {k: float(v.max()) for k, v in e.items()}


def test_fallback_is_never_worse_than_maxwellian(beams, train_beams):
    f, mesh = beams
    near_max, _ = make_vdfs(6, nv=24, seed=5, beams=False)
    x = np.concatenate([f, near_max])
    mx = get_codec("maxwellian")
    err_m = np.linalg.norm((mx.decode(mx.encode(x, mesh)) - x).reshape(len(x), -1), axis=1)
    for c in (get_codec("sz3", tolerance=5e-2, fallback=True), _codec("pca", {"components": 2}, train_beams)):
        enc = c.encode(x, mesh)
        err = np.linalg.norm((c.decode(enc) - x).reshape(len(x), -1), axis=1)
        assert np.all(err <= err_m * (1 + 1e-4) + 1e-9 * np.linalg.norm(x))
        assert "fallback" in enc.streams


def test_bytes_are_counted(beams):
    f, mesh = beams
    for name, kw in MODEL_FREE:
        c = get_codec(name, kw)
        enc = c.encode(f, mesh)
        data, counts = to_bytes({"codec": name}, [enc.section()])
        nb = enc.nbytes()
        assert nb["payload"] == counts["payload"] and nb["side"] == counts["side"]
        assert counts["total"] == len(data) > nb["sum"]
        # every stream is accounted for: the encoded object cannot decode without them
        for key in list(enc.streams):
            if key == "fallback":
                continue
            partial = Encoded(**{**enc.__dict__, "streams": {k: v for k, v in enc.streams.items() if k != key}})
            with pytest.raises((CompressedFileError, KeyError, ValueError)):
                c.decode(partial)
    # maxwellian: exactly 10 float32 per VDF
    assert get_codec("maxwellian").encode(f, mesh).nbytes()["payload"] == 40 * len(f)


def test_mismatched_model_and_codec_are_refused(beams, train_beams, tmp_path):
    f, mesh = beams
    a = _codec("pca", {"components": 4}, train_beams)
    b = _codec("pca", {"components": 4}, (train_beams[0][:40], train_beams[1]))
    enc = a.encode(f, mesh)
    with pytest.raises(CompressedFileError, match="model"):
        b.decode(enc)
    with pytest.raises(CompressedFileError, match="codec"):
        get_codec("zfp").decode(get_codec("sz3").encode(f, mesh))
    # a saved model round-trips; an edited one is refused
    a.save(tmp_path / "m")
    back = Codec.load(tmp_path / "m")
    np.testing.assert_allclose(back.decode(enc), a.decode(enc), rtol=1e-5, atol=1e-6 * f.max())
    z = np.load(tmp_path / "m" / "model.npz")
    arrays = {k: z[k] for k in z.files}
    arrays["components"][0, 0] += 1.0
    np.savez(tmp_path / "m" / "model.npz", **arrays)
    with pytest.raises(CodecError, match="do not match"):
        Codec.load(tmp_path / "m")


def test_truncated_encoded_streams_are_refused(beams):
    f, mesh = beams
    for name in ("zfp", "sz3"):
        c = get_codec(name, restore=False)
        enc = c.encode(f, mesh)
        data = enc.streams["data"].data
        enc.streams["data"].data = data[: len(data) // 2]
        with pytest.raises(CompressedFileError):
            c.decode(enc)
    data, _ = to_bytes({}, [get_codec("zfp").encode(f, mesh).section()])
    with pytest.raises(CompressedFileError):
        from_bytes(data[: len(data) - 100])


def test_bad_input_and_settings_raise_named_errors(beams):
    f, mesh = beams
    with pytest.raises(CodecError, match="unknown codec"):
        get_codec("gzip")
    with pytest.raises(CodecError, match="unknown key 'tolerence'"):
        get_codec("zfp", tolerence=1e-3)
    with pytest.raises(CodecError, match="bad value"):
        get_codec("zfp", tolerance="abc")
    with pytest.raises(CodecError):
        get_codec("zfp", tolerance=-1)
    with pytest.raises(CodecError, match="shape"):
        get_codec("zfp").encode(f[:, :-1], mesh)
    bad = f.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(CodecError, match="NaN"):
        get_codec("sparse").encode(bad, mesh)
    with pytest.raises(CodecError, match="fitted"):
        get_codec("pca").encode(f, mesh)


def test_incremental_pca_matches_exact_pca(train_beams, beams):
    f, mesh = beams
    exact = _codec("pca", {"components": 6, "fallback": False, "restore": False}, train_beams)
    inc = _codec("pca", {"components": 6, "fallback": False, "restore": False, "incremental": True, "batch": 20},
                 train_beams)
    re, ri = exact.decode(exact.encode(f, mesh)), inc.decode(inc.encode(f, mesh))
    e_exact, e_inc = np.linalg.norm(re - f), np.linalg.norm(ri - f)
    assert e_inc < 1.1 * e_exact + 1e-6 * np.linalg.norm(f)


def test_raw_fallback_check_still_falls_back(beams, train_beams):
    f, mesh = beams
    near_max, _ = make_vdfs(6, nv=24, seed=5, beams=False)
    x = np.concatenate([f, near_max])
    c = _codec("pca", {"components": 2, "fallback_check": "raw"}, train_beams)
    enc = c.encode(x, mesh)
    flags = np.unpackbits(enc.streams["fallback"].data, count=len(x)).astype(bool)
    assert flags[len(f):].all()  # the Maxwellians are stored as moments only
    r = c.decode(enc)
    assert r.min() >= 0
    e = moment_errors(moments(x, mesh), moments(r, mesh))
    assert max(float(v.max()) for v in e.values()) < 1e-6
    with pytest.raises(CodecError):
        get_codec("pca", fallback_check="sometimes")

