"""The Codec interface: ``fit``, ``encode``, ``decode`` and byte accounting that counts every byte.

A codec turns VDFs ``(N, nvx, nvy, nvz)`` on a :class:`~faiser.data.sparse_blocks.VelocityMesh`
into an :class:`Encoded` (named streams, each tagged ``payload`` or ``side``) and back. What a
subclass writes is only ``_encode`` / ``_decode`` (and ``_fit`` plus ``model_arrays`` when it
learns something); this base class adds what every lossy codec shares:

- the stored moments (n, V, full P; 10 float32 per VDF, a ``side`` stream) and **moment
  restoration** after decoding (on by default; ``restore=false`` turns it off);
- the per-VDF **Maxwellian fallback** (``fallback=true``): a VDF that the Maxwellian of its own
  moments reproduces better than the codec is stored as moments only;
- model identity: the hash of the settings and model arrays is written into every encoded file,
  and a decoder with a different model refuses it with :class:`CompressedFileError`.

Settings are a frozen dataclass per codec (``Codec.Settings``); they can be given as strings
(``--set key=value``) and are stored as JSON in every model directory and compressed file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from faiser.atomic import atomic_path, atomic_write_text
from faiser.codecs.container import Section, Stream
from faiser.codecs.moments import maxwellian, moments
from faiser.codecs.restoration import restore_moments
from faiser.config import apply_overrides
from faiser.data.sparse_blocks import VelocityMesh
from faiser.errors import CodecError, CompressedFileError, ConfigError

MODEL_FORMAT = 1
RUNTIME_SETTINGS = ("devices",)  # how a codec runs, not what it computes: not part of a model's identity


def coerce_settings(cls: type, values: Mapping[str, Any] | None, where: str = "codec") -> Any:
    """Build the frozen dataclass ``cls`` from ``values`` (strings from ``--set`` are converted)."""
    try:
        return apply_overrides(cls(), dict(values or {}))
    except ConfigError as e:
        raise CodecError(f"{where} settings: {e}") from None
    except (TypeError, ValueError) as e:  # a __post_init__ check
        raise CodecError(f"bad {where} settings: {e}") from None


@dataclasses.dataclass
class Encoded:
    """Encoded VDFs of one velocity mesh.

    Attributes:
      codec: codec name.
      settings: the codec's settings (JSON).
      model_id: hash of the codec's model (settings + arrays) that can decode this.
      mesh: velocity mesh of the VDFs.
      shape: ``(N, nvx, nvy, nvz)`` of the original VDFs.
      dtype: dtype name of the original VDFs (decoded VDFs get it back).
      streams: named streams (see :class:`~faiser.codecs.container.Stream`).
      meta: extra JSON the codec needs to decode.
    """

    codec: str
    settings: dict[str, Any]
    model_id: str
    mesh: VelocityMesh
    shape: tuple[int, ...]
    dtype: str
    streams: dict[str, Stream]
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def n_vdfs(self) -> int:
        return int(self.shape[0])

    def nbytes(self) -> dict[str, int]:
        """Stored bytes per role (``payload``, ``side``) and their ``sum``, without the file header."""
        out = self.section().bytes_by_role()
        out["sum"] = out["payload"] + out["side"]
        return out

    def section(self, extra: Mapping[str, Any] | None = None) -> Section:
        meta = {
            "codec": self.codec,
            "settings": self.settings,
            "model_id": self.model_id,
            "mesh": self.mesh.to_json(),
            "shape": list(self.shape),
            "dtype": self.dtype,
            "meta": self.meta,
            **(extra or {}),
        }
        return Section(meta, dict(self.streams))

    @classmethod
    def from_section(cls, sec: Section) -> Encoded:
        m = sec.meta
        try:
            mesh = VelocityMesh(**m["mesh"])
            return cls(
                m["codec"],
                dict(m["settings"]),
                str(m["model_id"]),
                mesh,
                tuple(int(x) for x in m["shape"]),
                str(m["dtype"]),
                dict(sec.streams),
                dict(m.get("meta", {})),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise CompressedFileError(f"bad section description ({e})") from None


@dataclasses.dataclass(frozen=True)
class LossySettings:
    """Settings every lossy codec has.

    Attributes:
      restore: correct decoded VDFs to the stored n, V, P (exact to ~1e-6) with f >= 0.
      fallback: store a VDF as its Maxwellian (moments only) where that is more accurate.
      fallback_check: ``exact`` compares the decoder's real outputs (both restored: the guarantee
        that no VDF decodes worse than its Maxwellian; it costs two restorations at encode time),
        ``raw`` compares them before restoration (5-10x faster encoding; a VDF near the tie may
        then decode slightly worse than its Maxwellian).
    """

    restore: bool = True
    fallback: bool = False
    fallback_check: str = "exact"

    def __post_init__(self):
        if self.fallback_check not in ("exact", "raw"):
            raise ValueError(f"fallback_check must be exact or raw, got {self.fallback_check!r}")


class Codec:
    """Base class of every codec (see the module docstring). Subclasses set the class attributes."""

    name: ClassVar[str] = "base"
    lossy: ClassVar[bool] = True
    trainable: ClassVar[bool] = False
    Settings: ClassVar[type] = LossySettings

    def __init__(self, settings: Any = None, **overrides: Any):
        if settings is None or isinstance(settings, Mapping):
            self.settings = coerce_settings(self.Settings, {**dict(settings or {}), **overrides}, self.name)
        elif dataclasses.is_dataclass(settings):
            self.settings = dataclasses.replace(settings, **overrides) if overrides else settings
        else:
            raise CodecError(f"settings must be a mapping or {self.Settings.__name__}")
        self.fitted = not self.trainable

    # ---- what subclasses implement ------------------------------------------------------------
    def _fit(self, f: np.ndarray, mesh: VelocityMesh, m: np.ndarray, progress: bool) -> None:
        """Learn the model from VDFs ``f`` with moments ``m`` (trainable codecs)."""

    def _encode(self, f: np.ndarray, mesh: VelocityMesh, m: np.ndarray) -> tuple[dict[str, Stream], dict]:
        raise NotImplementedError

    def _decode(self, enc: Encoded, m: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    def model_arrays(self) -> dict[str, np.ndarray]:
        """The learned arrays as stored (their ``nbytes`` are the model bytes)."""
        return {}

    def _load_arrays(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        """Restore the learned arrays saved by :meth:`save`."""

    def model_meta(self) -> dict[str, Any]:
        """Extra JSON of the learned model (e.g. training statistics)."""
        return {}

    # ---- public API ------------------------------------------------------------------------------
    @property
    def settings_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self.settings).items()}

    def model_id(self) -> str:
        """SHA-256 (hex, 16 chars) of the codec name, settings (but runtime-only ones such as
        ``devices``) and model arrays."""
        h = hashlib.sha256()
        ident = {k: v for k, v in self.settings_json.items() if k not in RUNTIME_SETTINGS}
        h.update(json.dumps({"codec": self.name, "settings": ident}, sort_keys=True).encode())
        for k, a in sorted(self.model_arrays().items()):
            h.update(k.encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]

    def model_bytes(self) -> int:
        """Bytes of the stored model (decoder weights, codebook, components); 0 for model-free codecs."""
        return int(sum(np.asarray(a).nbytes for a in self.model_arrays().values()))

    def fit(self, f: np.ndarray, mesh: VelocityMesh, *, progress: bool = False) -> Codec:
        """Learn the codec's model from VDFs ``f`` ``(N, nvx, nvy, nvz)`` (no-op for model-free codecs)."""
        f = self._check_input(f, mesh)
        if self.trainable:
            self._fit(f, mesh, moments(f, mesh), progress)
            self.fitted = True
        return self

    def encode(self, f: np.ndarray, mesh: VelocityMesh) -> Encoded:
        """Encode VDFs ``f`` ``(N, nvx, nvy, nvz)`` (non-negative, finite) on ``mesh``."""
        f = self._check_input(f, mesh)
        if not self.fitted:
            raise CodecError(f"codec {self.name!r} must be fitted (faiser train-codec) before encoding")
        m = moments(f, mesh)
        streams, meta = self._encode(f, mesh, m)
        enc = self._wrap(f, mesh, m, streams, meta, np.arange(f.shape[0]))
        if getattr(self.settings, "fallback", False) and f.shape[0]:
            enc = self._apply_fallback(f, mesh, m, enc)
        return enc

    def decode(self, enc: Encoded) -> np.ndarray:
        """Decode to VDFs ``(N, nvx, nvy, nvz)`` in the original dtype (moments restored if stored)."""
        self._check_encoded(enc)
        N = enc.n_vdfs
        m = enc.streams["moments"].data.astype(np.float64) if "moments" in enc.streams else None
        wants = enc.settings.get("restore") or enc.settings.get("fallback") or getattr(self, "needs_moments", False)
        if m is None and wants:
            raise CompressedFileError("the encoded data lacks its moments stream (truncated or corrupt)")
        if m is not None and m.shape != (N, 10):
            raise CompressedFileError(f"moments stream has shape {m.shape}, expected ({N}, 10)")
        own = np.arange(N)
        if "fallback" in enc.streams:
            flags = np.unpackbits(enc.streams["fallback"].data, count=N).astype(bool)
            own = np.flatnonzero(~flags)
        out = np.empty(enc.shape, dtype=np.float64)
        if own.size:
            sub = dataclasses.replace(enc, shape=(own.size, *enc.shape[1:]))
            out[own] = self._decode(sub, None if m is None else m[own])
        if own.size < N:
            fb = np.setdiff1d(np.arange(N), own)
            out[fb] = maxwellian(m[fb], enc.mesh, dtype=np.float64)
        if m is not None and getattr(self.settings, "restore", False):
            return restore_moments(out, m, enc.mesh, dtype=enc.dtype)
        if self.lossy:
            np.maximum(out, 0.0, out=out)
        return out.astype(enc.dtype)

    # ---- model persistence -----------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``model.npz`` then ``model.json`` (no pickles) into ``directory``.

        Each file is replaced atomically, and the pair is a unit by its write order: ``model.json``,
        written last, holds the SHA-256 of ``model.npz`` (``npz_sha256``) and the model id (a hash of
        the settings and arrays), so a model half written (a new npz beside an old json, a torn or
        missing npz) is refused by :meth:`load` and never decodes with the wrong arrays."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        arrays = self.model_arrays()
        with atomic_path(d / "model.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
            digest = _file_sha256(tmp)
        doc = {
            "format": MODEL_FORMAT, "codec": self.name, "settings": self.settings_json, "model_id": self.model_id(),
            "model_bytes": self.model_bytes(), "npz_sha256": digest, "meta": self.model_meta(),
        }  # fmt: skip
        atomic_write_text(d / "model.json", json.dumps(doc, indent=2) + "\n")
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Codec:
        """Load a model written by :meth:`save`; checks ``model.npz`` against the SHA-256 in
        ``model.json`` and the stored model id against the arrays.

        Raises :class:`CodecError` for a directory that holds no codec model (or another codec's),
        :class:`CompressedFileError` for a corrupt, truncated, edited or half-written one."""
        d = Path(directory)
        try:
            info = json.loads((d / "model.json").read_text())
            codec_name, settings = info["codec"], info["settings"]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise CodecError(f"{d}: not a faiser codec model directory ({e})") from None
        if not isinstance(codec_name, str) or not isinstance(settings, dict):
            raise CompressedFileError(f"{d}: model.json is corrupt (codec or settings of the wrong type)")
        from faiser.codecs.registry import codec_class

        klass = codec_class(codec_name)
        if cls is not Codec and klass is not cls:
            raise CodecError(f"{d}: holds a {codec_name!r} model, not {cls.name!r}")
        obj = klass(settings)
        npz = d / "model.npz"
        try:
            if "npz_sha256" in info and _file_sha256(npz) != info["npz_sha256"]:
                raise CompressedFileError(
                    f"{d}: model.npz and model.json do not match (corrupt, edited or half-written model)"
                )
            with np.load(npz, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except CompressedFileError:
            raise
        except (OSError, ValueError, EOFError, KeyError, TypeError, SyntaxError, zipfile.BadZipFile, zlib.error) as e:
            raise CompressedFileError(f"{d}: cannot read model.npz (corrupt or truncated: {e})") from None
        try:
            obj._load_arrays(arrays, info.get("meta", {}))
        except (KeyError, ValueError, TypeError, IndexError, AttributeError) as e:
            raise CompressedFileError(f"{d}: model.npz does not hold a {codec_name!r} model ({e!r})") from None
        obj.fitted = True
        if obj.model_id() != info.get("model_id"):
            raise CompressedFileError(f"{d}: model arrays do not match model.json (corrupt or edited model)")
        return obj

    # ---- helpers ------------------------------------------------------------------------------
    def _check_input(self, f: np.ndarray, mesh: VelocityMesh) -> np.ndarray:
        f = np.asarray(f)
        if f.ndim == 3:
            f = f[None]
        if f.ndim != 4 or tuple(f.shape[1:]) != tuple(mesh.nv):
            raise CodecError(f"VDFs must have shape (N, {', '.join(map(str, mesh.nv))}), got {f.shape}")
        if f.dtype.kind != "f":
            raise CodecError(f"VDFs must be floating point, got {f.dtype}")
        if f.size and not np.isfinite(f).all():
            raise CodecError("VDFs contain NaN or infinite values")
        # tiny negative values (Vlasiator's files hold some) are kept by lossless codecs, clipped by lossy ones
        return f

    def _check_encoded(self, enc: Encoded) -> None:
        if enc.codec != self.name:
            raise CompressedFileError(f"data was encoded by codec {enc.codec!r}, not {self.name!r}")
        if enc.model_id != self.model_id():
            raise CompressedFileError(
                f"data was encoded with model {enc.model_id}, this {self.name!r} model is {self.model_id()} "
                "(pass the model directory it was compressed with)"
            )

    def _wrap(self, f, mesh, m, streams, meta, idx) -> Encoded:
        streams = dict(streams)
        if self.lossy and (
            getattr(self.settings, "restore", False)
            or getattr(self.settings, "fallback", False)
            or getattr(self, "needs_moments", False)
        ):
            streams["moments"] = Stream(m.astype(np.float32), "side")
        return Encoded(
            self.name, self.settings_json, self.model_id(), mesh, tuple(f.shape), f.dtype.name, streams, meta
        )

    def _apply_fallback(self, f, mesh, m, enc: Encoded) -> Encoded:
        m32 = m.astype(np.float32).astype(np.float64)
        exact = getattr(self.settings, "fallback_check", "exact") == "exact"
        rec = self.decode(enc).astype(np.float64) if exact else np.maximum(self._decode(enc, m32), 0.0)
        fm = maxwellian(m32, mesh, dtype=np.float64)
        if exact and getattr(self.settings, "restore", False):
            fm = restore_moments(fm, m32, mesh, dtype=np.float64)
        use_m = _sq_err(fm, f) <= _sq_err(rec, f)
        if not use_m.any():
            return enc
        own = np.flatnonzero(~use_m)
        if own.size:
            streams, meta = self._encode(f[own], mesh, m[own])
        else:
            streams, meta = {}, dict(enc.meta)
        out = self._wrap(f, mesh, m, streams, meta, own)
        out.streams["moments"] = Stream(m.astype(np.float32), "side")
        out.streams["fallback"] = Stream(np.packbits(use_m), "side")
        return out


def _file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sq_err(a: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Squared L2 distance per VDF ``(N,)``, in float32 (a comparison, not a reported figure)."""
    d = (np.asarray(a, np.float32) - np.asarray(f, np.float32)).reshape(len(f), -1)
    return np.einsum("ij,ij->i", d, d, dtype=np.float64)
