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
the header's model id lets a decoder refuse a file written with a different model.

The SHA-256 trailer catches accidents only (a torn write, a flipped bit): anyone can recompute it,
so a crafted file passes it. What protects a reader from such a file is the parser: every stream's
declared dtype and shape give its decoded size, which is checked against the header before anything
is inflated (a raw stream must hold exactly that many bytes, a zlib stream cannot expand more than
1032-fold, and the total must fit in the memory available), and each stream is inflated with
that size as the bound, so a stream that inflates to more (a "zip bomb") is refused after at most
its declared size has been produced. The file size
is the byte count every ratio uses: ``payload`` streams (codes, coefficients, weights),
``side`` streams (per-VDF moments, scales, windows, block maps) and the header.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import lzma
import math
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


ZLIB_MAX_RATIO = 1032
"""The most a deflate stream can expand (258 bytes per 2-bit code): bounds a zlib stream's size."""


def _declared(row: Mapping[str, Any], where: str) -> tuple[np.dtype, tuple[int, ...], int]:
    """The dtype, shape and decoded byte count a stream table entry declares (checked)."""
    try:
        dt = np.dtype(str(row["dtype"])).newbyteorder("<")
    except (TypeError, ValueError) as e:
        raise CompressedFileError(f"{where}: bad stream dtype ({e})") from None
    if dt.hasobject or dt.itemsize == 0 or dt.fields is not None or dt.subdtype is not None:
        raise CompressedFileError(f"{where}: stream dtype {row['dtype']!r} is not a plain numeric type")
    shape = row["shape"]
    if not isinstance(shape, list) or len(shape) > 32:
        raise CompressedFileError(f"{where}: bad stream shape {shape!r}")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise CompressedFileError(f"{where}: bad stream shape {shape!r}")
    return dt, tuple(shape), math.prod(shape) * dt.itemsize


def _inflate(b: bytes, coding: str, size: int, where: str) -> bytes:
    """Decode ``b`` to exactly ``size`` bytes, producing at most ``size + 1`` whatever it holds."""
    if coding == "raw":
        out = b
    elif coding in ("zlib", "lzma"):
        d = zlib.decompressobj() if coding == "zlib" else lzma.LZMADecompressor()
        out = d.decompress(b, size + 1)  # max_length: never more than one byte past the declared size
        if len(out) > size:
            raise CompressedFileError(f"{where}: a stream inflates beyond its declared {size} bytes")
        if not d.eof:
            raise CompressedFileError(f"{where}: a {coding} stream is truncated")
        if d.unused_data:
            raise CompressedFileError(f"{where}: a {coding} stream is followed by {len(d.unused_data)} stray bytes")
    else:
        raise CompressedFileError(f"{where}: unknown stream coding {coding!r}")
    if len(out) != size:
        raise CompressedFileError(f"{where}: a stream holds {len(out)} bytes, its dtype and shape declare {size}")
    return out


def _decode_bytes(b: bytes, coding: str, dtype: str, shape: list[int], where: str) -> np.ndarray:
    dt, shp, size = _declared({"dtype": dtype, "shape": list(shape)}, where)
    try:
        raw = _inflate(b, coding, size, where)
        return np.frombuffer(raw, dtype=dt).reshape(shp).astype(dt.newbyteorder("="), copy=True)
    except (lzma.LZMAError, zlib.error, ValueError, TypeError) as e:
        raise CompressedFileError(f"{where}: cannot decode stream ({e})") from None


def _check_table(table: Any, n_sections: int, available: int, where: str) -> list[tuple[int, str]]:
    """Check every stream table entry against the file before anything is inflated; returns the
    (stored bytes, coding) of each entry."""
    if not isinstance(table, list):
        raise CompressedFileError(f"{where}: the stream table is not a list")
    rows, total = [], 0
    for row in table:
        try:
            n, coding, sec = int(row["nbytes"]), row["coding"], int(row["section"])
            _, _, size = _declared(row, where)
            str(row["name"]), str(row["role"])
        except CompressedFileError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CompressedFileError(f"{where}: bad stream table entry ({e})") from None
        if n < 0 or not 0 <= sec < n_sections or row["role"] not in ROLES or coding not in CODINGS:
            raise CompressedFileError(f"{where}: bad stream table entry {row!r}"[:300])
        if coding == "raw" and n != size:
            raise CompressedFileError(f"{where}: a raw stream of {n} bytes declares {size}")
        if coding == "zlib" and size > ZLIB_MAX_RATIO * n + 64:
            raise CompressedFileError(
                f"{where}: a zlib stream of {n} bytes declares {size} bytes, more than deflate can encode"
            )
        total += size
        rows.append((n, coding))
    if sum(n for n, _ in rows) > available:
        raise CompressedFileError(f"{where}: the stream table declares more bytes than the file holds")
    from faiser.resources import format_bytes, host_available_bytes

    free = host_available_bytes()
    if free is not None and total > free:
        raise CompressedFileError(
            f"{where}: its streams decode to {format_bytes(total)}, more than the {format_bytes(free)} of memory "
            "available (a corrupt or crafted header, or a file for a bigger machine)"
        )
    return rows


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
                {
                    "section": si,
                    "name": name,
                    "role": s.role,
                    "coding": s.coding,
                    "dtype": np.dtype(s.data.dtype).str.replace(">", "<").replace("=", "<"),
                    "shape": list(s.data.shape),
                    "nbytes": len(b),
                }
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
        sections = [Section(dict(m), {}) for m in metas]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, AttributeError, TypeError, ValueError) as e:
        raise CompressedFileError(f"{where}: unreadable header ({e})") from None
    pos = start + hlen
    _check_table(table, len(sections), len(body) - pos, where)
    for row in table:
        n = int(row["nbytes"])
        arr = _decode_bytes(body[pos : pos + n], row["coding"], row["dtype"], row["shape"], where)
        sections[int(row["section"])].streams[str(row["name"])] = Stream(arr, row["role"], row["coding"])
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
