"""The compressed-file container: round trip, and refusal of truncated or corrupt files."""

import numpy as np
import pytest

from faiser.codecs.container import Section, Stream, from_bytes, read_file, to_bytes, write_file
from faiser.errors import CompressedFileError


def _sections():
    rng = np.random.default_rng(0)
    return [
        Section({"kind": "grid"}, {"ids": Stream(np.arange(10, dtype=np.uint64), "side", "lzma")}),
        Section(
            {"kind": "vdfs", "x": [1, 2]},
            {
                "a": Stream(rng.random((3, 4)).astype(np.float32)),
                "b": Stream(rng.integers(0, 7, 1000).astype(np.uint16), "payload", "zlib"),
            },
        ),
    ]


def test_round_trip_and_byte_counts(tmp_path):
    secs = _sections()
    counts = write_file(tmp_path / "x.fz", {"codec": "test"}, secs)
    assert counts["total"] == (tmp_path / "x.fz").stat().st_size
    assert counts["payload"] + counts["side"] + counts["header"] == counts["total"]
    header, back = read_file(tmp_path / "x.fz")
    assert header["codec"] == "test" and header["format_version"] == 1
    for s0, s1 in zip(secs, back):
        assert s0.meta == s1.meta
        for k, st in s0.streams.items():
            np.testing.assert_array_equal(st.data, s1.streams[k].data)
            assert st.data.dtype == s1.streams[k].data.dtype


def test_entropy_coding_shrinks_repetitive_streams():
    a = np.zeros(10000, dtype=np.uint16)
    raw, _ = to_bytes({}, [Section({}, {"a": Stream(a)})])
    packed, _ = to_bytes({}, [Section({}, {"a": Stream(a, coding="lzma")})])
    assert len(packed) < len(raw) / 20


@pytest.mark.parametrize("cut", [1, 10, 33, 200])
def test_truncated_file_is_refused(cut):
    data, _ = to_bytes({"codec": "t"}, _sections())
    with pytest.raises(CompressedFileError):
        from_bytes(data[:-cut])


def test_every_flipped_byte_is_refused():
    data, _ = to_bytes({"codec": "t"}, _sections())
    for pos in range(0, len(data), max(1, len(data) // 97)):
        bad = bytearray(data)
        bad[pos] ^= 0x5A
        with pytest.raises(CompressedFileError):
            from_bytes(bytes(bad))


def test_not_a_container(tmp_path):
    p = tmp_path / "x.fz"
    p.write_bytes(b"hello world" * 10)
    with pytest.raises(CompressedFileError, match="not a faiser compressed file"):
        read_file(p)
    with pytest.raises(CompressedFileError, match="cannot read"):
        read_file(tmp_path / "missing.fz")


# ---- crafted files: the SHA-256 trailer is recomputed, so only the parser stands in the way ----------------
def _craft(table: list[dict], blobs: list[bytes], sections=None) -> bytes:
    """Container bytes with any stream table (and a valid trailer)."""
    import hashlib
    import json
    import struct

    from faiser.codecs.container import MAGIC

    header = {"codec": "t", "format_version": 1, "sections": sections or [{"kind": "x"}], "streams": table}
    hb = json.dumps(header).encode()
    body = MAGIC + struct.pack("<Q", len(hb)) + hb + b"".join(blobs)
    return body + hashlib.sha256(body).digest()


def _row(blob: bytes, coding: str, shape, dtype="|u1", **kw) -> dict:
    return {"section": 0, "name": "a", "role": "payload", "coding": coding, "dtype": dtype, "shape": shape,
            "nbytes": len(blob), **kw}  # fmt: skip


def _zlib_bomb(n_bytes: int) -> bytes:
    import zlib

    c = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    return b"".join(c.compress(chunk) for _ in range(n_bytes >> 20)) + c.flush()


@pytest.mark.parametrize("coding", ["zlib", "lzma"])
def test_a_stream_that_inflates_beyond_its_declared_size_is_refused_without_inflating_it(coding):
    """A 256 MiB bomb declared as 64 bytes: refused after producing at most 65 bytes."""
    import lzma
    import tracemalloc

    bomb = _zlib_bomb(256 << 20) if coding == "zlib" else lzma.compress(bytes(256 << 20), preset=1)
    data = _craft([_row(bomb, coding, [64])], [bomb])
    tracemalloc.start()
    try:
        with pytest.raises(CompressedFileError, match="beyond its declared 64 bytes"):
            from_bytes(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * len(data) + (8 << 20), peak  # the file itself, never the 256 MiB


def test_declared_sizes_are_checked_before_inflating():
    z = __import__("zlib").compress(bytes(1000))
    cases = {
        "more than deflate can encode": _row(z, "zlib", [1 << 40]),  # 1 TB from 30 bytes
        "raw stream of": _row(b"abcd", "raw", [5]),
        "bad stream shape": _row(b"abcd", "raw", [-4]),
        "not a plain numeric type": _row(b"abcd", "raw", [1], dtype="|O"),
        "bad stream dtype": _row(b"abcd", "raw", [1], dtype="nonsense"),
        "bad stream table entry": _row(b"abcd", "raw", [4], section=7),
    }
    for needle, row in cases.items():
        blob = z if row["coding"] == "zlib" else b"abcd"
        with pytest.raises(CompressedFileError, match=needle):
            from_bytes(_craft([row], [blob]))
    huge = [_row(z, "lzma", [1 << 50], dtype="<f8")]  # lzma has no ratio bound: the memory check refuses it
    with pytest.raises(CompressedFileError, match="memory"):
        from_bytes(_craft(huge, [z]))
    with pytest.raises(CompressedFileError, match="more bytes than the file holds"):
        from_bytes(_craft([_row(z, "zlib", [1000], nbytes=10**6)], [z]))


def test_a_truncated_or_padded_stream_is_refused():
    import zlib

    z = zlib.compress(bytes(1000))
    with pytest.raises(CompressedFileError, match="truncated"):
        from_bytes(_craft([_row(z[:-6], "zlib", [1000])], [z[:-6]]))
    with pytest.raises(CompressedFileError, match="stray bytes"):
        from_bytes(_craft([_row(z + b"xx", "zlib", [1000])], [z + b"xx"]))
    with pytest.raises(CompressedFileError, match="declare 2000"):
        from_bytes(_craft([_row(z, "zlib", [2000])], [z]))
    ok = _craft([_row(z, "zlib", [1000])], [z])  # the same stream declared right decodes
    _, secs = from_bytes(ok)
    assert secs[0].streams["a"].data.shape == (1000,)


def test_module_docstring_says_the_trailer_catches_accidents_only():
    import faiser.codecs.container as c

    assert "catches accidents only" in c.__doc__
