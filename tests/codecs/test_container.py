"""The compressed-file container: round trip, and refusal of truncated or corrupt files."""

import numpy as np
import pytest

from faiser.codecs.container import Section, Stream, from_bytes, read_file, to_bytes, write_file
from faiser.errors import CompressedFileError


def _sections():
    rng = np.random.default_rng(0)
    return [
        Section({"kind": "grid"}, {"ids": Stream(np.arange(10, dtype=np.uint64), "side", "lzma")}),
        Section({"kind": "vdfs", "x": [1, 2]}, {
            "a": Stream(rng.random((3, 4)).astype(np.float32)),
            "b": Stream(rng.integers(0, 7, 1000).astype(np.uint16), "payload", "zlib"),
        }),
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
