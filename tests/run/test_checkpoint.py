"""CheckpointStore: keep-N, async saves, restore with and without a target, walking back past an
incomplete step with a warning, the tamper check, and no pickles anywhere."""

from __future__ import annotations

import json
import pickletools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faiser.errors import CheckpointError
from faiser.run.checkpoint import MANIFEST, CheckpointStore, IncompleteCheckpointError

pytestmark = pytest.mark.timeout(120)


def _tree(i: int) -> dict:
    """A training-like pytree: params, an optax-like namedtuple state, RNG key data, a scalar."""
    import optax

    params = {"w": jnp.full((3, 4), float(i)), "b": jnp.arange(4.0) + i}
    opt = optax.adam(1e-3).init(params)
    return {"params": params, "opt": opt, "key": jax.random.key_data(jax.random.key(i)), "n": np.int64(i)}


def _save_steps(directory: Path, steps=(1, 2, 3), keep=2, async_=True) -> None:
    with CheckpointStore(directory, keep=keep, async_=async_) as store:
        for s in steps:
            store.save(s, _tree(s), {"config": {"lr": 1e-3}, "loader": {"epoch": s, "pos": 7}})


def _array_files(step_dir: Path) -> list[Path]:
    """Data files of the array item, largest first (tensorstore chunk files under .../d/)."""
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    return sorted(files, key=lambda p: -p.stat().st_size)


def _assert_tree_equal(a, b) -> None:
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("async_", [True, False])
def test_save_keep_restore(tmp_path, async_):
    d = tmp_path / "ck"
    _save_steps(d, async_=async_)
    assert sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) == [2, 3]  # keep=2
    with CheckpointStore(d) as store:
        assert store.steps() == [2, 3]
        assert store.latest_valid() == 3
        tree, meta = store.restore(target=_tree(0))
        assert meta == {"config": {"lr": 1e-3}, "loader": {"epoch": 3, "pos": 7}, "step": 3}
        assert jax.tree_util.tree_structure(tree) == jax.tree_util.tree_structure(_tree(0))
        _assert_tree_equal(tree, _tree(3))
        raw, meta2 = store.restore(step=2)  # no target: nested dicts/lists of arrays
        assert meta2["step"] == 2
        np.testing.assert_array_equal(np.asarray(raw["params"]["w"]), np.full((3, 4), 2.0))
        assert (store.step_dir(3) / MANIFEST).exists()


def test_missing_step_and_empty_directory(tmp_path):
    with CheckpointStore(tmp_path / "empty") as store:
        assert store.latest_valid() is None
        with pytest.raises(CheckpointError, match="no checkpoint"):
            store.restore()
    with pytest.raises(CheckpointError, match="no checkpoints"):
        CheckpointStore(tmp_path / "nowhere", create=False)
    _save_steps(tmp_path / "ck")
    with CheckpointStore(tmp_path / "ck") as store:
        with pytest.raises(CheckpointError, match="no checkpoint step 1"):
            store.restore(step=1)
        with pytest.raises(CheckpointError, match="already exists"):
            store.save(3, _tree(3))
        with pytest.raises(CheckpointError, match="asks for"):
            store.restore(target={"params": _tree(0)["params"]})
        with pytest.raises(CheckpointError, match="not JSON"):
            store.save(4, _tree(4), {"bad": object()})


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_incomplete_newest_step_is_skipped_with_a_warning(tmp_path, damage):
    d = tmp_path / "ck"
    _save_steps(d)
    victim = _array_files(d / "3")[0]
    if damage == "truncate":
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    else:
        victim.unlink()
    with CheckpointStore(d) as store:
        with pytest.warns(UserWarning, match="skipping checkpoint.*step 3"):
            assert store.latest_valid() == 2
        with pytest.warns(UserWarning, match="skipping checkpoint"):
            tree, meta = store.restore(target=_tree(0))
        assert meta["step"] == 2
        _assert_tree_equal(tree, _tree(2))
        with pytest.raises(IncompleteCheckpointError):
            store.restore(step=3)
        store.delete(3)
        assert store.steps() == [2]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_incomplete_step_without_manifest_is_skipped(tmp_path):
    """A step committed just before the process died has no manifest: an unreadable array file
    still makes it incomplete (skipped), not a crash."""
    d = tmp_path / "ck"
    _save_steps(d)
    (d / "3" / MANIFEST).unlink()
    for f in _array_files(d / "3"):
        f.unlink()
    with CheckpointStore(d) as store, pytest.warns(UserWarning, match="skipping checkpoint"):
        assert store.latest_valid() == 2


def test_tampered_step_raises(tmp_path):
    """Bytes flipped in an array file (same size): the manifest catches it, by name, whether the
    step is asked for or found by walking back; the tampered step is never skipped silently."""
    d = tmp_path / "ck"
    _save_steps(d)
    victim = _array_files(d / "3")[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with CheckpointStore(d) as store:
        for call in (lambda: store.restore(step=3), lambda: store.restore(target=_tree(0)), store.latest_valid):
            with pytest.raises(CheckpointError, match="modified after it was written"):
                call()
        _, meta = store.restore(step=2)  # the older step is intact
        assert meta["step"] == 2


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_tampered_step_without_manifest_raises(tmp_path):
    """Without a manifest (the process died right after the commit) the array SHA-256 stored in
    the metadata still refuses changed data; an undecodable chunk is refused as unreadable."""
    d = tmp_path / "ck"
    _save_steps(d)
    (d / "3" / MANIFEST).unlink()
    meta_file = d / "3" / "meta" / "metadata"
    record = json.loads(meta_file.read_text())
    record["arrays"]["params/w"]["sha256"] = "0" * 64  # what a changed array would hash to
    meta_file.write_text(json.dumps(record))
    with CheckpointStore(d) as store:
        with pytest.raises(CheckpointError, match="params/w does not match its SHA-256"):
            store.restore(step=3, target=_tree(0))
        with pytest.raises(CheckpointError, match="SHA-256"):
            store.restore()  # a hash mismatch is tampering, not an incomplete step: no walking back
    d2 = tmp_path / "big"
    with CheckpointStore(d2, async_=False) as store:
        store.save(1, {"x": np.arange(4096, dtype=np.float32)})
    (d2 / "1" / MANIFEST).unlink()
    victim = _array_files(d2 / "1")[0]  # the compressed chunk of x (~10 kB)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with CheckpointStore(d2) as store, pytest.raises(CheckpointError, match="SHA-256|unreadable"):
        store.restore(step=1)


def test_no_pickles(tmp_path):
    d = tmp_path / "ck"
    _save_steps(d)
    names = []
    for p in d.rglob("*"):
        if not p.is_file():
            continue
        names.append(p.name)
        assert p.suffix not in (".pkl", ".pickle")
        data = p.read_bytes()
        # a pickle starts with PROTO (0x80) and a protocol number, and parses as opcodes
        if data[:1] == b"\x80" and len(data) > 1 and data[1] <= 5:
            with pytest.raises(Exception):  # noqa: B017 (any parse failure means: not a pickle)
                list(pickletools.genops(data))
        if p.name in ("_CHECKPOINT_METADATA", "_METADATA", "metadata", MANIFEST):
            text = p.read_text()
            json.loads(text)
            assert "pickle" not in text.lower()
    meta = json.loads((d / "3" / "_CHECKPOINT_METADATA").read_text())
    handlers = meta["item_handlers"]
    assert set(handlers) == {"state", "meta"}
    assert "StandardCheckpointHandler" in handlers["state"] or "PyTree" in handlers["state"]
    assert "JsonCheckpointHandler" in handlers["meta"]
    assert MANIFEST in names
