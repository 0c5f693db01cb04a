"""The frame layer: header layout, the sans-IO decoder's buffering, limits and poisoning."""

from __future__ import annotations

import struct
import time
import zlib

import pytest

from multiraft.wire import (
    HEADER_SIZE,
    MAGIC,
    WIRE_VERSION,
    BadMagic,
    ChecksumMismatch,
    Frame,
    FrameDecoder,
    FrameKind,
    FrameTooLarge,
    TruncatedFrame,
    UnknownFrameKind,
    UnknownVersion,
    WireError,
    WrongClusterId,
    encode_frame,
)

CID = 0xC1A5_7E12_0000_0042
K = FrameKind.RAFT_BATCH


def frames_of(dec: FrameDecoder) -> list[Frame]:
    return list(dec)


def test_header_layout_is_as_documented() -> None:
    raw = encode_frame(FrameKind.KV_REQUEST, CID, b"\x83\x01\x02\x03")
    magic, version, kind, cid, length, crc = struct.unpack(">2sBBQII", raw[:HEADER_SIZE])
    assert (magic, version, kind, cid, length) == (MAGIC, WIRE_VERSION, 2, CID, 4)
    assert HEADER_SIZE == 20
    assert crc == zlib.crc32(raw[HEADER_SIZE:], zlib.crc32(raw[:16]))
    assert raw[HEADER_SIZE:] == b"\x83\x01\x02\x03"


def test_one_frame_round_trips() -> None:
    dec = FrameDecoder(CID)
    dec.feed(encode_frame(K, CID, b"payload"))
    assert dec.next_frame() == Frame(K, CID, b"payload")
    assert dec.next_frame() is None
    assert dec.buffered == 0


def test_byte_by_byte_feed() -> None:
    raw = encode_frame(K, CID, bytes(range(256)) * 3) + encode_frame(FrameKind.HELLO, CID, b"")
    dec = FrameDecoder(CID)
    got = []
    for i in range(len(raw)):
        dec.feed(raw[i : i + 1])
        got += frames_of(dec)
    assert got == [Frame(K, CID, bytes(range(256)) * 3), Frame(FrameKind.HELLO, CID, b"")]


def test_many_frames_in_one_feed_and_a_split_tail() -> None:
    payloads = [b"x" * n for n in range(50)]
    raw = b"".join(encode_frame(K, CID, p) for p in payloads)
    tail = encode_frame(K, CID, b"tail")
    dec = FrameDecoder(CID)
    dec.feed(raw + tail[:7])
    assert [f.payload for f in frames_of(dec)] == payloads
    assert dec.buffered == 7
    dec.feed(tail[7:])
    assert [f.payload for f in frames_of(dec)] == [b"tail"]


def test_header_only_then_body() -> None:
    raw = encode_frame(K, CID, b"b" * 1000)
    dec = FrameDecoder(CID)
    dec.feed(raw[:HEADER_SIZE])
    assert dec.next_frame() is None
    dec.feed(raw[HEADER_SIZE:500])
    assert dec.next_frame() is None
    dec.feed(raw[500:])
    assert dec.next_frame() == Frame(K, CID, b"b" * 1000)


def test_max_frame_size_exactly_at_the_limit_passes() -> None:
    dec = FrameDecoder(CID, max_frame_size=4096)
    dec.feed(encode_frame(K, CID, b"m" * 4096))
    frame = dec.next_frame()
    assert frame is not None and len(frame.payload) == 4096


def test_one_byte_over_the_limit_fails_on_the_header_alone() -> None:
    dec = FrameDecoder(CID, max_frame_size=4096)
    raw = encode_frame(K, CID, b"m" * 4097)
    with pytest.raises(FrameTooLarge) as info:
        dec.feed(raw[:HEADER_SIZE])  # before a single body byte arrives
    assert "4097" in str(info.value) and "4096" in str(info.value)
    assert dec.buffered == 0


def test_a_huge_length_prefix_allocates_nothing() -> None:
    header = struct.pack(">2sBBQII", MAGIC, WIRE_VERSION, K, CID, 2**32 - 1, 0)
    dec = FrameDecoder(CID, max_frame_size=1 << 20)
    with pytest.raises(FrameTooLarge):
        dec.feed(header + b"\x00" * 100)
    assert dec.buffered == 0


def test_buffer_never_exceeds_one_frame_while_waiting() -> None:
    limit = 64 * 1024
    dec = FrameDecoder(CID, max_frame_size=limit)
    raw = encode_frame(K, CID, b"z" * limit) * 3
    for i in range(0, len(raw), 7919):
        dec.feed(raw[i : i + 7919])
        assert dec.buffered < HEADER_SIZE + limit
        frames_of(dec)


def test_trickled_body_is_linear_not_quadratic() -> None:
    raw = encode_frame(K, CID, b"t" * (256 * 1024))
    dec = FrameDecoder(CID)
    t0 = time.perf_counter()
    for i in range(0, len(raw), 16):
        dec.feed(raw[i : i + 16])
    assert dec.next_frame() is not None
    assert time.perf_counter() - t0 < 5.0  # quadratic rescans would take minutes


@pytest.mark.parametrize(
    ("prefix", "error"),
    [
        (b"X", BadMagic),
        (b"MX", BadMagic),
        (b"MR\x02", UnknownVersion),
        (b"MR\x00", UnknownVersion),
        (b"MR\x01\x00", UnknownFrameKind),
        (b"MR\x01\xff", UnknownFrameKind),
    ],
)
def test_bad_stream_start_fails_before_a_whole_header(prefix: bytes, error: type) -> None:
    dec = FrameDecoder(CID)
    with pytest.raises(error):
        dec.feed(prefix)


def test_wrong_cluster_id() -> None:
    dec = FrameDecoder(CID)
    with pytest.raises(WrongClusterId) as info:
        dec.feed(encode_frame(K, CID + 1, b""))
    assert str(CID) in str(info.value) and str(CID + 1) in str(info.value)


def test_cluster_id_zero_only_on_hello() -> None:
    dec = FrameDecoder(CID)
    dec.feed(encode_frame(FrameKind.HELLO, 0, b"hi"))
    assert dec.next_frame() == Frame(FrameKind.HELLO, 0, b"hi")
    with pytest.raises(ValueError):
        encode_frame(K, 0, b"")
    forged = bytearray(encode_frame(FrameKind.HELLO, 0, b""))
    forged[3] = K
    with pytest.raises(WrongClusterId):
        FrameDecoder(CID).feed(bytes(forged))


def test_decoder_that_does_not_know_the_cluster_id_accepts_hello_then_adopts() -> None:
    dec = FrameDecoder(0)
    dec.feed(encode_frame(FrameKind.HELLO, CID, b"server hello"))
    assert dec.next_frame() == Frame(FrameKind.HELLO, CID, b"server hello")
    dec.adopt_cluster_id(CID)
    dec.feed(encode_frame(K, CID, b"x"))
    assert dec.next_frame() == Frame(K, CID, b"x")
    with pytest.raises(WrongClusterId):
        FrameDecoder(0).feed(encode_frame(K, CID, b"x"))


def test_checksum_covers_payload_and_header() -> None:
    raw = bytearray(encode_frame(FrameKind.KV_REQUEST, CID, b"payload"))
    body_flip = bytearray(raw)
    body_flip[-1] ^= 0x01
    with pytest.raises(ChecksumMismatch):
        FrameDecoder(CID).feed(bytes(body_flip))
    kind_flip = bytearray(raw)
    kind_flip[3] = FrameKind.KV_RESPONSE  # still a valid kind: only the crc can tell
    with pytest.raises(ChecksumMismatch):
        FrameDecoder(CID).feed(bytes(kind_flip))


def test_error_poisons_the_decoder_and_a_new_one_works() -> None:
    dec = FrameDecoder(CID, max_frame_size=10)
    good = encode_frame(K, CID, b"ok")
    with pytest.raises(FrameTooLarge) as info:
        dec.feed(good + encode_frame(K, CID, b"x" * 11))
    assert dec.error is info.value
    for call in (lambda: dec.feed(good), dec.next_frame, dec.feed_eof):
        with pytest.raises(FrameTooLarge) as again:
            call()
        assert again.value is info.value
    fresh = FrameDecoder(CID, max_frame_size=10)
    fresh.feed(good)
    assert fresh.next_frame() == Frame(K, CID, b"ok")


def test_eof_between_frames_is_clean_and_inside_a_frame_is_truncated() -> None:
    raw = encode_frame(K, CID, b"abc")
    dec = FrameDecoder(CID)
    dec.feed(raw)
    dec.feed_eof()
    assert dec.next_frame() == Frame(K, CID, b"abc")
    for cut in (1, HEADER_SIZE - 1, HEADER_SIZE, len(raw) - 1):
        dec = FrameDecoder(CID)
        dec.feed(raw[:cut])
        with pytest.raises(TruncatedFrame):
            dec.feed_eof()


def test_empty_feed_is_harmless_and_payload_may_be_empty() -> None:
    dec = FrameDecoder(CID)
    dec.feed(b"")
    dec.feed(bytearray(encode_frame(K, CID, b"")))
    assert dec.next_frame() == Frame(K, CID, b"")


def test_accepts_memoryview_and_bytearray_chunks() -> None:
    raw = encode_frame(K, CID, b"v" * 100)
    dec = FrameDecoder(CID)
    dec.feed(memoryview(raw)[:30])
    dec.feed(bytearray(raw[30:]))
    assert dec.next_frame() == Frame(K, CID, b"v" * 100)


def test_constructor_and_encoder_refuse_misuse() -> None:
    with pytest.raises(ValueError):
        FrameDecoder(-1)
    with pytest.raises(ValueError):
        FrameDecoder(CID, max_frame_size=2**32)
    with pytest.raises(ValueError):
        encode_frame(K, 2**64, b"")
    with pytest.raises(ValueError):
        FrameDecoder(CID).adopt_cluster_id(5)


def test_all_frame_errors_are_wire_errors() -> None:
    for err in (BadMagic, ChecksumMismatch, FrameTooLarge, TruncatedFrame, UnknownFrameKind,
                UnknownVersion, WrongClusterId):  # fmt: skip
        assert issubclass(err, WireError)
