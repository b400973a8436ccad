"""The compressed-file format: a self-describing container of named binary streams.

Layout (little-endian)::

    b"FAISERZ\\x01"          8 bytes  magic + format version
    header_length           8 bytes  uint64
    header                  JSON (UTF-8): format version, codec name and settings, model id,
                            sections (population, velocity mesh, shape, dtype, cell ids...) and a
                            table of streams (name, role, dtype, shape, coding, stored bytes)
    stream bytes            back to back, in table order
    sha256                  32 bytes  over everything before it

Streams are numpy arrays stored raw or entropy-coded (``lzma``, ``zlib``); nothing is ever
unpickled. The trailer hash catches truncation and corruption before any stream is decoded, and
the header's model id lets a decoder refuse a file written with a different model. The file size
is the byte count every ratio uses: ``payload`` streams (codes, coefficients, weights),
``side`` streams (per-VDF moments, scales, windows, block maps) and the header.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import lzma
import os
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from faiser.atomic import atomic_path
from faiser.errors import CompressedFileError

MAGIC = b"FAISERZ\x01"
FORMAT_VERSION = 1
ROLES = ("payload", "side")
CODINGS = ("raw", "lzma", "zlib")
_HASH = 32


@dataclasses.dataclass
class Stream:
    """One stored array: ``role`` is ``payload`` or ``side``; ``coding`` how its bytes are stored."""

    data: np.ndarray
    role: str = "payload"
    coding: str = "raw"

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"stream role must be one of {ROLES}, got {self.role!r}")
        if self.coding not in CODINGS:
            raise ValueError(f"stream coding must be one of {CODINGS}, got {self.coding!r}")


def _encode_bytes(a: np.ndarray, coding: str) -> bytes:
    raw = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
    if coding == "lzma":
        return lzma.compress(raw, preset=6)
    if coding == "zlib":
        return zlib.compress(raw, 9)
    return raw


def _decode_bytes(b: bytes, coding: str, dtype: str, shape: list[int], where: str) -> np.ndarray:
    try:
        if coding == "lzma":
            b = lzma.decompress(b)
        elif coding == "zlib":
            b = zlib.decompress(b)
        elif coding != "raw":
            raise CompressedFileError(f"{where}: unknown stream coding {coding!r}")
        dt = np.dtype(dtype).newbyteorder("<")
        if dt.hasobject:
            raise CompressedFileError(f"{where}: object dtypes are not allowed")
        a = np.frombuffer(b, dtype=dt)
        return a.reshape(shape).astype(dt.newbyteorder("="), copy=True)
    except (lzma.LZMAError, zlib.error, ValueError, TypeError) as e:
        raise CompressedFileError(f"{where}: cannot decode stream ({e})") from None


@dataclasses.dataclass
class Section:
    """A group of streams with its JSON description (e.g. the VDFs of one population)."""

    meta: dict[str, Any]
    streams: dict[str, Stream]

    def array(self, name: str) -> np.ndarray:
        try:
            return self.streams[name].data
        except KeyError:
            raise CompressedFileError(f"stream {name!r} is missing from the compressed data") from None

    def bytes_by_role(self) -> dict[str, int]:
        """Stored bytes of this section's streams per role (after entropy coding)."""
        out = dict.fromkeys(ROLES, 0)
        for s in self.streams.values():
            out[s.role] += len(_encode_bytes(s.data, s.coding))
        return out


def to_bytes(header: Mapping[str, Any], sections: list[Section]) -> tuple[bytes, dict[str, int]]:
    """Serialize ``header`` and ``sections``; returns the file bytes and a per-role byte count."""
    blobs: list[bytes] = []
    table = []
    counts = {"payload": 0, "side": 0}
    for si, sec in enumerate(sections):
        for name, s in sec.streams.items():
            b = _encode_bytes(s.data, s.coding)
            blobs.append(b)
            counts[s.role] += len(b)
            table.append(
                {"section": si, "name": name, "role": s.role, "coding": s.coding,
                 "dtype": np.dtype(s.data.dtype).str.replace(">", "<").replace("=", "<"),
                 "shape": list(s.data.shape), "nbytes": len(b)}
            )
    full = {**header, "format_version": FORMAT_VERSION, "sections": [s.meta for s in sections], "streams": table}
    hb = json.dumps(full, separators=(",", ":"), allow_nan=False).encode()
    body = MAGIC + struct.pack("<Q", len(hb)) + hb + b"".join(blobs)
    out = body + hashlib.sha256(body).digest()
    counts["header"] = len(MAGIC) + 8 + len(hb) + _HASH
    counts["total"] = len(out)
    return out, counts


def from_bytes(data: bytes, where: str = "compressed data") -> tuple[dict[str, Any], list[Section]]:
    """Parse container bytes; raises :class:`CompressedFileError` on any inconsistency."""
    if len(data) < len(MAGIC) + 8 + _HASH or data[: len(MAGIC) - 1] != MAGIC[:-1]:
        raise CompressedFileError(f"{where}: not a faiser compressed file (bad magic or too short)")
    if data[len(MAGIC) - 1] != MAGIC[-1]:
        raise CompressedFileError(f"{where}: unsupported format version {data[len(MAGIC) - 1]}")
    body, digest = data[:-_HASH], data[-_HASH:]
    if hashlib.sha256(body).digest() != digest:
        raise CompressedFileError(f"{where}: checksum mismatch (the file is truncated or corrupt)")
    (hlen,) = struct.unpack("<Q", body[len(MAGIC) : len(MAGIC) + 8])
    start = len(MAGIC) + 8
    if start + hlen > len(body):
        raise CompressedFileError(f"{where}: header runs past the end of the file")
    try:
        header = json.loads(body[start : start + hlen].decode())
        table = header.pop("streams")
        metas = header.pop("sections")
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, AttributeError) as e:
        raise CompressedFileError(f"{where}: unreadable header ({e})") from None
    sections = [Section(dict(m), {}) for m in metas]
    pos = start + hlen
    for row in table:
        try:
            n = int(row["nbytes"])
            sec = sections[int(row["section"])]
            arr = _decode_bytes(body[pos : pos + n], row["coding"], row["dtype"], row["shape"], where)
            sec.streams[row["name"]] = Stream(arr, row["role"], row["coding"])
        except (KeyError, IndexError, TypeError, ValueError) as e:
            if isinstance(e, CompressedFileError):
                raise
            raise CompressedFileError(f"{where}: bad stream table entry ({e})") from None
        pos += n
    if pos != len(body):
        raise CompressedFileError(f"{where}: {len(body) - pos} unexpected bytes after the streams")
    return header, sections


def write_file(path: str | os.PathLike, header: Mapping[str, Any], sections: list[Section]) -> dict[str, int]:
    """Write a container atomically; returns the byte counts (``total`` equals the file size)."""
    data, counts = to_bytes(header, sections)
    with atomic_path(Path(path)) as tmp:
        Path(tmp).write_bytes(data)
    return counts


def read_file(path: str | os.PathLike) -> tuple[dict[str, Any], list[Section]]:
    """Read and verify a container written by :func:`write_file`."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise CompressedFileError(f"{p}: cannot read ({e.strerror or e})") from None
    return from_bytes(data, str(p))
