"""Checkpoints of pytrees of arrays plus JSON metadata, over orbax's ``CheckpointManager``.

One :class:`CheckpointStore` serves the training loops (params, optimizer state, RNG key data,
data-loader position) and the simulation (the full :class:`~faiser.vlasov.state.State`)::

    from faiser.run.checkpoint import CheckpointStore

    with CheckpointStore("run/checkpoints", keep=3) as store:
        store.save(step, {"params": params, "opt": opt_state, "key": jax.random.key_data(key)},
                   {"config": cfg_json, "loader": loader.state_dict(), "epoch": epoch})
    ...
    store = CheckpointStore("run/checkpoints")
    tree, meta = store.restore(target=template)   # newest valid step; meta["step"] is its step
    store.close()

Layout: ``DIRECTORY/<step>/`` holds two orbax items, ``state`` (the arrays, written with
``ocp.args.StandardSave``: tensorstore/zarr + JSON metadata) and ``meta`` (``ocp.args.JsonSave``:
the caller's metadata plus a format tag and the SHA-256 of every array), then
``faiser_manifest.json`` (size and SHA-256 of every file of the step). Nothing is pickled, and
nothing is ever unpickled: orbax is only asked for its array and JSON handlers.

Guarantees:

* **Atomic.** orbax writes a step into a temporary directory and renames it when complete
  (with a ``commit_success`` marker where renames are not atomic); a run killed while writing
  leaves no step directory, only a temporary one that is ignored.
* **Keep-N.** Only the ``keep`` newest steps stay on disk (``keep=None`` keeps all).
* **Async.** With ``async_=True`` (default), :meth:`save` returns once the arrays are copied to
  the host; writing goes on in a background thread. The next :meth:`save`, :meth:`wait`,
  :meth:`restore` and :meth:`close` wait for it.
* **Validity.** :meth:`latest_valid` and ``restore(step=None)`` walk back from the newest step
  and skip, with a :class:`UserWarning`, a step whose files are missing, truncated or unreadable
  (a partial copy, a full disk); they use the newest step that restores completely.
* **Tamper check.** A step whose file bytes differ from its manifest (same size, different
  content) or whose restored arrays do not hash to the stored SHA-256 raises
  :class:`~faiser.errors.CheckpointError`: it is never loaded silently and never skipped
  silently. ``restore(step=N)`` of an incomplete or unreadable step raises too.

The manifest of a step is written once orbax has committed it, i.e. by the next :meth:`save`,
:meth:`wait` or :meth:`close` of the store that saved it. A step committed just before the
process died has none; for it only the array hashes are checked (a corrupt compressed chunk then
counts as unreadable). In a multi-process run every process calls :meth:`save` (orbax
coordinates them); the hashes cover the arrays each process can address, and process 0 writes
the manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from faiser._version import __version__
from faiser.atomic import atomic_write_text
from faiser.errors import CheckpointError

__all__ = ["FORMAT", "VERSION", "CheckpointStore", "IncompleteCheckpointError", "tree_hashes"]

FORMAT = "faiser-checkpoint"
VERSION = 1
MANIFEST = "faiser_manifest.json"
_STATE, _META = "state", "meta"
log = logging.getLogger(__name__)


class IncompleteCheckpointError(CheckpointError):
    """A checkpoint step with missing, truncated or unreadable files (skipped when walking back)."""


def _leaf_hash(x) -> str | None:
    """SHA-256 of one array's dtype, shape and C-order bytes (None if not fully addressable)."""
    if not getattr(x, "is_fully_addressable", True):
        return None
    a = np.ascontiguousarray(np.asarray(jax.device_get(x)))
    h = hashlib.sha256(f"{a.dtype.str}|{a.shape}|".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def _path_name(path) -> str:
    """``a/0/b`` for a key path: the same for a namedtuple and the dict orbax rebuilds from it."""
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def tree_hashes(tree) -> dict[str, dict]:
    """``{"a/0/b": {"sha256", "dtype", "shape"}}`` for every leaf of ``tree`` (paths joined from
    dict keys, attribute names and sequence indices): the tamper check stored with a checkpoint."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        leaf = _as_array(leaf)
        out[_path_name(path)] = {
            "sha256": _leaf_hash(leaf),
            "dtype": np.dtype(leaf.dtype).str,
            "shape": [int(n) for n in np.shape(leaf)],
        }
    return out


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _as_array(x):
    """Arrays (jax, numpy, ``jax.ShapeDtypeStruct``) as they are; scalars as 0-d numpy arrays."""
    if isinstance(x, np.generic) or not (hasattr(x, "dtype") and hasattr(x, "shape")):
        return np.asarray(x)
    return x


def _tree_spec(tree) -> dict[str, tuple[str, list[int]]]:
    """``{path: (dtype, shape)}`` of every leaf (no data read)."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        leaf = _as_array(leaf)
        out[_path_name(path)] = (np.dtype(leaf.dtype).str, [int(n) for n in np.shape(leaf)])
    return out


class CheckpointStore:
    """Numbered checkpoints (pytree of arrays + JSON metadata) in ``directory``; see the module doc.

    Args:
      directory: folder of the step directories (created unless ``create=False``).
      keep: number of newest steps kept on disk (``None``: all).
      async_: write in the background (:meth:`save` returns after the host copy).
      create: create ``directory`` if missing; with False a missing folder raises
        :class:`~faiser.errors.CheckpointError`.

    Use as a context manager, or call :meth:`close` (which waits for a pending save).
    """

    def __init__(self, directory: str | os.PathLike, keep: int | None = 3, async_: bool = True, create: bool = True):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.directory = Path(directory).absolute()
        if keep is not None and keep < 1:
            raise CheckpointError(f"keep must be >= 1 or None, got {keep}")
        if not create and not self.directory.is_dir():
            raise CheckpointError(f"no checkpoints at {self.directory}")
        if self.directory.exists() and not self.directory.is_dir():
            raise CheckpointError(f"{self.directory} is not a directory")
        self.keep = keep
        self.async_ = bool(async_)
        kwargs = {"max_to_keep": keep, "create": create, "enable_async_checkpointing": self.async_}
        if "cleanup_tmp_directories" in getattr(ocp.CheckpointManagerOptions, "__dataclass_fields__", {}):
            kwargs["cleanup_tmp_directories"] = True  # leftovers of a save killed midway
        options = ocp.CheckpointManagerOptions(**kwargs)
        try:
            self._mgr = ocp.CheckpointManager(self.directory, options=options, item_names=(_STATE, _META))
        except Exception as e:  # orbax raises several types for an unusable folder
            raise CheckpointError(f"cannot open checkpoints at {self.directory}: {e}") from e
        self._pending: list[int] = []  # steps saved here whose manifest is not written yet
        self._closed = False

    # -- listing ----------------------------------------------------------------------------
    def steps(self) -> list[int]:
        """Committed steps on disk, oldest first (temporary, unfinished ones are not listed)."""
        if hasattr(self._mgr, "reload"):  # see steps written or deleted by another process
            self._mgr.reload()
        return sorted(int(s) for s in self._mgr.all_steps())

    def step_dir(self, step: int) -> Path:
        """Directory of ``step`` (orbax's default step naming: the bare number)."""
        return self.directory / str(int(step))

    # -- saving -----------------------------------------------------------------------------
    def save(self, step: int, tree, meta: Mapping[str, Any] | None = None) -> None:
        """Save ``tree`` (a pytree of jax/numpy arrays or scalars) and ``meta`` (JSON-ready dict)
        as ``step``. Waits for the previous save, then returns once this one is started (async)
        or written (sync). Raises :class:`~faiser.errors.CheckpointError` if ``step`` exists or
        ``meta`` is not JSON."""
        ocp = self._ocp
        step = int(step)
        self._finish_pending()
        if step in self.steps():
            raise CheckpointError(f"checkpoint step {step} already exists in {self.directory}")
        tree = jax.tree_util.tree_map(_as_array, tree)
        record = {
            "format": FORMAT,
            "version": VERSION,
            "faiser_version": __version__,
            "step": step,
            "arrays": tree_hashes(tree),
            "meta": dict(meta or {}),
        }
        try:
            record = json.loads(json.dumps(record, allow_nan=False))
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"checkpoint metadata is not JSON: {e}") from e
        args = ocp.args.Composite(**{_STATE: ocp.args.StandardSave(tree), _META: ocp.args.JsonSave(record)})
        try:
            saved = self._mgr.save(step, args=args, force=True)
        except Exception as e:
            raise CheckpointError(f"saving checkpoint step {step} to {self.directory} failed: {e}") from e
        if saved is False:
            raise CheckpointError(f"orbax declined to save checkpoint step {step} in {self.directory}")
        self._pending.append(step)
        if not self.async_:
            self._finish_pending()

    def wait(self) -> None:
        """Block until every started save is committed (and its manifest written)."""
        self._finish_pending()

    def _finish_pending(self) -> None:
        try:
            self._mgr.wait_until_finished()
        except Exception as e:
            raise CheckpointError(f"a background checkpoint save in {self.directory} failed: {e}") from e
        pending, self._pending = self._pending, []
        if jax.process_index() != 0:
            return
        on_disk = set(self.steps())
        for step in pending:
            if step in on_disk:
                self._write_manifest(step)

    def _write_manifest(self, step: int) -> None:
        root = self.step_dir(step)
        files = {}
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.name != MANIFEST:
                files[path.relative_to(root).as_posix()] = {"size": path.stat().st_size, "sha256": _file_digest(path)}
        atomic_write_text(root / MANIFEST, json.dumps({"format": FORMAT, "version": VERSION, "files": files}))

    def delete(self, step: int) -> None:
        """Remove ``step`` from disk (e.g. steps newer than the one a run resumes from)."""
        self._finish_pending()
        try:
            self._mgr.delete(int(step))
        except Exception as e:
            raise CheckpointError(f"cannot delete checkpoint step {step} in {self.directory}: {e}") from e

    def prune_after(self, step: int) -> list[int]:
        """Delete every step newer than ``step`` (a run resuming from ``step`` rewrites them);
        returns the deleted steps."""
        newer = [s for s in self.steps() if s > int(step)]
        for s in newer:
            self.delete(s)
        return newer

    # -- checking and restoring -------------------------------------------------------------
    def check_files(self, step: int) -> bool:
        """Compare the files of ``step`` with its manifest. Returns False if it has no manifest.

        Raises :class:`IncompleteCheckpointError` for a missing or resized file and
        :class:`~faiser.errors.CheckpointError` for a file whose bytes changed (tampering)."""
        root = self.step_dir(step)
        if not root.is_dir():
            raise IncompleteCheckpointError(f"checkpoint step {step} is missing from {self.directory}")
        mpath = root / MANIFEST
        if not mpath.exists():
            return False
        try:
            manifest = json.loads(mpath.read_text())
            files = manifest["files"]
            if manifest.get("format") != FORMAT:
                raise ValueError(f"format {manifest.get('format')!r}")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"checkpoint step {step} in {self.directory}: unreadable manifest ({e})") from e
        for rel, info in files.items():
            path = root / rel
            if not path.is_file():
                raise IncompleteCheckpointError(f"checkpoint step {step}: file {rel} is missing")
            if path.stat().st_size != info["size"]:
                raise IncompleteCheckpointError(
                    f"checkpoint step {step}: file {rel} has {path.stat().st_size} bytes, expected {info['size']}"
                )
        for rel, info in files.items():
            if _file_digest(root / rel) != info["sha256"]:
                raise CheckpointError(
                    f"checkpoint step {step} in {self.directory} was modified after it was written "
                    f"(SHA-256 of {rel} does not match); refusing to load it"
                )
        return True

    def _read_record(self, step: int) -> dict:
        """The ``meta`` item of ``step`` (format tag, array hashes, the caller's metadata)."""
        ocp = self._ocp
        try:
            record = self._mgr.restore(step, args=ocp.args.Composite(**{_META: ocp.args.JsonRestore()}))[_META]
        except Exception as e:
            raise IncompleteCheckpointError(f"checkpoint step {step} in {self.directory} is unreadable: {e}") from e
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise CheckpointError(f"checkpoint step {step} in {self.directory} is not a faiser checkpoint")
        if record.get("version") != VERSION:
            raise CheckpointError(f"checkpoint step {step}: format version {record.get('version')!r} is not {VERSION}")
        if not isinstance(record.get("arrays"), dict):
            raise CheckpointError(f"checkpoint step {step} in {self.directory}: malformed metadata")
        return record

    def _restore_step(self, step: int, target=None) -> tuple[Any, dict]:
        ocp = self._ocp
        self.check_files(step)
        record = self._read_record(step)
        stored = record["arrays"]
        if target is not None:
            target = jax.tree_util.tree_map(_as_array, target)
            want = _tree_spec(target)
            if set(want) != set(stored):
                raise CheckpointError(
                    f"checkpoint step {step} holds arrays {sorted(stored)}, the target asks for {sorted(want)}"
                )
            for key, (dtype, shape) in want.items():
                if (dtype, shape) != (stored[key]["dtype"], stored[key]["shape"]):
                    raise CheckpointError(
                        f"checkpoint step {step}: {key} is {stored[key]['dtype']}{stored[key]['shape']}, "
                        f"the target asks for {dtype}{shape}"
                    )
        state_args = ocp.args.StandardRestore(target) if target is not None else ocp.args.StandardRestore()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # orbax warns about sharding when restoring without target
                tree = self._mgr.restore(step, args=ocp.args.Composite(**{_STATE: state_args}))[_STATE]
        except Exception as e:  # missing/truncated files, undecodable chunks, malformed metadata
            raise IncompleteCheckpointError(f"checkpoint step {step} in {self.directory} is unreadable: {e}") from e
        got = tree_hashes(tree)
        if set(got) != set(stored):
            raise CheckpointError(f"checkpoint step {step} restored arrays {sorted(got)}, expected {sorted(stored)}")
        for key, info in stored.items():
            g = got[key]
            if (g["dtype"], g["shape"]) != (info["dtype"], info["shape"]) or (
                info["sha256"] is not None and g["sha256"] is not None and g["sha256"] != info["sha256"]
            ):
                raise CheckpointError(
                    f"checkpoint step {step} in {self.directory}: array {key} does not match its SHA-256 "
                    "(corrupt or tampered with); refusing to load it"
                )
        meta = dict(record.get("meta", {}))
        meta["step"] = int(record.get("step", step))
        return tree, meta

    def restore(self, step: int | None = None, target=None) -> tuple[Any, dict]:
        """Restore ``(tree, meta)`` of ``step``, or of the newest valid step if ``step`` is None.

        ``target`` is a pytree of arrays or ``jax.ShapeDtypeStruct`` of the saved structure,
        dtypes and shapes (restored arrays take its shardings); without it the tree comes back
        as orbax rebuilds it (nested dicts/lists of numpy or jax arrays). ``meta`` is the saved
        metadata dict with ``"step"`` set to the checkpoint's step.

        Raises :class:`~faiser.errors.CheckpointError` if there is no (valid) checkpoint, the
        target does not match, or the step was tampered with; :class:`IncompleteCheckpointError`
        if an explicitly named ``step`` is incomplete or unreadable.
        """
        self._finish_pending()
        if step is not None:
            if int(step) not in self.steps():
                raise CheckpointError(f"no checkpoint step {step} in {self.directory} (have {self.steps()})")
            return self._restore_step(int(step), target)
        steps = self.steps()
        if not steps:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        for s in reversed(steps):
            try:
                return self._restore_step(s, target)
            except IncompleteCheckpointError as e:
                warnings.warn(f"skipping checkpoint: {e}", UserWarning, stacklevel=2)
                log.warning("skipping checkpoint: %s", e)
        raise CheckpointError(f"no valid checkpoint in {self.directory} (all of steps {steps} are incomplete)")

    def latest_valid(self, target=None) -> int | None:
        """The newest step that restores completely and passes the tamper check (None if there is
        no step at all). Skips incomplete steps with a warning; raises
        :class:`~faiser.errors.CheckpointError` on a tampered step or if every step is incomplete."""
        if not self.steps():
            return None
        _, meta = self.restore(target=target)
        return int(meta["step"])

    # -- lifetime ---------------------------------------------------------------------------
    def close(self) -> None:
        """Wait for a pending save, write its manifest, and release orbax's resources."""
        if self._closed:
            return
        self._closed = True
        try:
            self._finish_pending()
        finally:
            with contextlib.suppress(Exception):
                self._mgr.close()

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()
