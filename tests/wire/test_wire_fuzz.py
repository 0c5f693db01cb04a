"""Hostile input: the frame decoder and every payload decoder raise only WireError.

reliability-anchors.md section 7 lists what a storage node must survive; each
test here feeds one family of it: random bytes, truncated and bit-flipped
frames, frames whose (correctly checksummed) CBOR payload is corrupted or has
the wrong shape, and hand-made CBOR that attacks the decoder itself (huge
declared lengths, deep nesting, tags, bignums, duplicate keys, trailing bytes).
After a failure a fresh decoder must work, and memory must stay bounded.

Pass condition for every input: the call returns a value or raises a
``WireError``; any other exception fails the test. Everything is seeded.
"""

from __future__ import annotations

import random
import resource
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multiraft.raft.types import Entry, Message, MessageType, Snapshot
from multiraft.wire import (
    HEADER_SIZE,
    FrameDecoder,
    FrameKind,
    MalformedPayload,
    SchemaError,
    TruncatedFrame,
    WireError,
    decode_conf_state,
    decode_entry,
    decode_envelope,
    decode_hard_state,
    decode_message,
    decode_payload,
    decode_snapshot,
    encode_frame,
    encode_message,
    encode_payload,
)
from tests.wire import wire_strategies as ws

CID = 7


def for_kind(kind: FrameKind) -> Callable[[bytes], Any]:
    """The payload decoder of one frame kind."""
    return lambda payload: decode_payload(kind, payload)


PAYLOAD_DECODERS: list[Callable[[bytes], Any]] = [
    *(for_kind(k) for k in FrameKind),
    decode_message,
    decode_envelope,
    decode_entry,
    decode_hard_state,
    decode_conf_state,
    decode_snapshot,
]


def survive(decode: Callable[[bytes], Any], payload: bytes) -> Any:
    """The decoded value, or None for a WireError; anything else propagates.

    The codecs convert any stray exception into a SchemaError saying "invalid
    structure" (a safety net); the explicit checks should catch everything
    first, so a net catch fails the test too.
    """
    try:
        return decode(payload)
    except WireError as e:
        assert "invalid structure" not in str(e), f"validation gap: {e}"
        return None


def feed_all(dec: FrameDecoder, data: bytes, rng: random.Random) -> list[Any]:
    """Feed in random chunks; return the frames, or stop at the first WireError."""
    frames: list[Any] = []
    i = 0
    try:
        while i < len(data):
            n = rng.randint(1, 64)
            dec.feed(data[i : i + n])
            frames += list(dec)
            i += n
    except WireError:
        pass
    return frames


def assert_fresh_decoder_works() -> None:
    dec = FrameDecoder(CID)
    kind, payload = encode_payload(_sample_payloads()[0])
    dec.feed(encode_frame(kind, CID, payload))
    frame = dec.next_frame()
    assert frame is not None
    assert decode_payload(frame.kind, frame.payload) == _sample_payloads()[0]


def _sample_payloads() -> list[Any]:
    """A deterministic, varied set of valid payload objects (one per kind at least)."""
    rng = random.Random(1234)
    out = []
    for strategy in (ws.raft_batches, ws.kv_requests, ws.kv_responses, ws.admin_requests,
                     ws.admin_responses, ws.snapshot_chunks, ws.snapshot_acks, ws.hellos,
                     ws.error_notices):  # fmt: skip
        for i in range(4):
            out.append(_example(strategy, rng.randrange(2**32) + i))
    return out


_EXAMPLES: dict[tuple[int, int], Any] = {}


def _example(strategy: st.SearchStrategy[Any], seed: int) -> Any:
    key = (id(strategy), seed)
    if key not in _EXAMPLES:
        found: list[Any] = []

        @settings(derandomize=True, max_examples=seed % 7 + 1, database=None, deadline=None)
        @given(strategy)
        def grab(obj: Any) -> None:
            found.append(obj)

        grab()
        _EXAMPLES[key] = max(found, key=lambda o: len(encode_payload(o)[1]))
    return _EXAMPLES[key]


# -- the frame layer -----------------------------------------------------------------------------


def test_random_bytes_never_escape_wire_error() -> None:
    rng = random.Random(1)
    starts = [b"", b"M", b"MR", b"MR\x01", b"MR\x01\x01", b"MR\x01\x09" + bytes(8)]
    for _ in range(3000):
        data = rng.choice(starts) + rng.randbytes(rng.randint(0, 120))
        dec = FrameDecoder(rng.choice([CID, 0]), max_frame_size=rng.choice([0, 16, 1 << 20]))
        for frame in feed_all(dec, data, rng):
            survive(for_kind(frame.kind), frame.payload)
        try:
            dec.feed_eof()
        except WireError:
            pass
    assert_fresh_decoder_works()


def test_truncated_frames_report_truncation_only() -> None:
    for obj in _sample_payloads()[::3]:
        kind, payload = encode_payload(obj)
        raw = encode_frame(kind, CID, payload)
        for cut in range(1, len(raw), max(1, len(raw) // 40)):
            dec = FrameDecoder(CID)
            dec.feed(raw[:cut])
            assert dec.next_frame() is None
            with pytest.raises(TruncatedFrame):
                dec.feed_eof()
    assert_fresh_decoder_works()


def test_every_single_bit_flip_of_a_frame_is_caught() -> None:
    rng = random.Random(2)
    for obj in _sample_payloads()[::4]:
        kind, payload = encode_payload(obj)
        raw = encode_frame(kind, CID, payload)
        bits = range(len(raw) * 8) if len(raw) < 300 else rng.sample(range(len(raw) * 8), 2400)
        for bit in bits:
            flipped = bytearray(raw)
            flipped[bit // 8] ^= 1 << (bit % 8)
            dec = FrameDecoder(CID)
            # Never a frame: the crc covers header and payload. A flip that enlarges
            # the length leaves the decoder waiting, which EOF reports as truncation.
            assert feed_all(dec, bytes(flipped), rng) == []
            if dec.error is None:
                with pytest.raises(TruncatedFrame):
                    dec.feed_eof()
    assert_fresh_decoder_works()


# -- payloads with valid framing -------------------------------------------------------------------


def _mutations(payload: bytes, rng: random.Random) -> Iterator[bytes]:
    n = len(payload)
    for _ in range(12):
        b = bytearray(payload)
        b[rng.randrange(n)] ^= 1 << rng.randrange(8)
        yield bytes(b)
    for _ in range(4):
        b = bytearray(payload)
        b[rng.randrange(n)] = rng.randrange(256)
        yield bytes(b)
    yield payload[: rng.randrange(n)]
    yield payload + rng.randbytes(rng.randint(1, 4))
    i = rng.randrange(n)
    yield payload[:i] + rng.randbytes(rng.randint(1, 9)) + payload[i:]
    yield payload[:i] + payload[i + rng.randint(1, 9) :]


def test_corrupted_cbor_inside_valid_frames() -> None:
    rng = random.Random(3)
    for obj in _sample_payloads():
        kind, payload = encode_payload(obj)
        for bad in _mutations(payload, rng):
            dec = FrameDecoder(CID)
            dec.feed(encode_frame(kind, CID, bad))  # the crc is right: only the codec can tell
            frame = dec.next_frame()
            assert frame is not None
            back = survive(for_kind(frame.kind), frame.payload)
            assert back is None or type(back) is type(obj)
    assert_fresh_decoder_works()


HOSTILE_VALUES: list[Any] = [
    -1, -(2**64), 2**64 - 1, True, False, 1.5, float("nan"), "text", b"bytes", None, [], [[1]],
    {}, {"k": 1}, cbor2.CBORTag(2, b"\x01" * 20), cbor2.CBORTag(1, 0), cbor2.CBORTag(999, 1),
    cbor2.CBORSimpleValue(16), cbor2.undefined,
]  # fmt: skip


def _paths(v: Any, path: tuple[int, ...] = ()) -> Iterator[tuple[int, ...]]:
    if isinstance(v, list):
        for i, x in enumerate(v):
            yield (*path, i)
            yield from _paths(x, (*path, i))


def _replace(v: Any, path: tuple[int, ...], new: Any) -> Any:
    if not path:
        return new
    out = list(v)
    out[path[0]] = _replace(v[path[0]], path[1:], new)
    return out


def test_schema_wrong_payloads_raise_schema_errors_only() -> None:
    """Every field of every sample, replaced by every hostile value; plus dropped and extra
    fields. The result is valid CBOR, so decoders may only succeed or raise WireError."""
    rng = random.Random(4)
    checked = 0
    for obj in _sample_payloads()[::2]:
        kind, payload = encode_payload(obj)
        tree = cbor2.loads(payload)
        paths = list(_paths(tree))
        for path in rng.sample(paths, min(len(paths), 40)):
            for value in HOSTILE_VALUES:
                bad = cbor2.dumps(_replace(tree, path, value))
                survive(for_kind(kind), bad)
                checked += 1
        for cut in range(len(tree)):
            survive(for_kind(kind), cbor2.dumps(tree[:cut]))
        survive(for_kind(kind), cbor2.dumps([*tree, 0]))
    assert checked > 1000


def test_specific_schema_violations_are_named() -> None:
    m = Message(MessageType.MsgAppend, 2, 1, 5, entries=[Entry(term=5, index=6, data=b"d")])
    tree = cbor2.loads(encode_message(m))
    cases = {
        "term as -1": (_replace(tree, (3,), -1), "term must be a u64"),
        "term as bool": (_replace(tree, (3,), True), "term must be an int"),
        "term as float": (_replace(tree, (3,), 5.0), "int"),
        "unknown msg_type": (_replace(tree, (0,), 19), "msg_type"),
        "entry data as text": (_replace(tree, (18,), "d"), "entries"),
        "more entries declared": (_replace(tree, (15,), 2), "declares 2 entries"),
        "huge entry count": (_replace(tree, (15,), 2**64 - 1), "entries"),
        "snapshot flag, no snapshot": (_replace(tree, (14,), 2), "snapshot"),
        "extra item": ([*tree, 1], "after the message"),
    }
    for name, (bad, fragment) in cases.items():
        with pytest.raises(SchemaError) as info:
            decode_message(cbor2.dumps(bad))
        assert fragment in str(info.value), name


HOSTILE_CBOR: dict[str, tuple[bytes, type[WireError]]] = {
    "empty": (b"", MalformedPayload),
    "bytes of length 2**63": (b"\x5b" + (2**63).to_bytes(8, "big"), MalformedPayload),
    "array of 2**32 items": (b"\x9b" + (2**32).to_bytes(8, "big") + b"\x00" * 8, MalformedPayload),
    "map of 2**31 pairs": (b"\xba" + (2**31).to_bytes(4, "big"), MalformedPayload),
    "text of 2**40": (b"\x7b" + (2**40).to_bytes(8, "big"), MalformedPayload),
    "nested 100000 deep": (b"\x81" * 100_000 + b"\x00", MalformedPayload),
    "nested 7 deep": (b"\x81" * 7 + b"\x00", MalformedPayload),
    "indefinite array": (b"\x9f\x01\x02\xff", MalformedPayload),
    "indefinite bytes": (b"\x5f\x41\x01\xff", MalformedPayload),
    "lone break": (b"\xff", MalformedPayload),
    "reserved additional info": (b"\x1c", MalformedPayload),
    "bad utf-8": (b"\x82\x01\x62\xff\xfe", MalformedPayload),
    "duplicate map keys": (b"\xa2\x61a\x01\x61a\x02", MalformedPayload),
    "int map keys": (b"\xa1\x01\x02", MalformedPayload),
    "trailing bytes": (cbor2.dumps([1, 2]) + b"\x00", MalformedPayload),
    "bignum": (cbor2.dumps([cbor2.CBORTag(2, b"\xff" * 4096)]), SchemaError),
    "datetime tag": (cbor2.dumps([cbor2.CBORTag(1, 0)]), SchemaError),
    "shared ref tags": (b"\x81\xd8\x1c\x81\xd8\x1d\x00", SchemaError),
    "set tag": (cbor2.dumps([cbor2.CBORTag(258, [1])]), SchemaError),
    "unknown tag": (cbor2.dumps([cbor2.CBORTag(4242, 1)]), SchemaError),
    "self-describe tag": (b"\xd9\xd9\xf7\x80", SchemaError),
    "many empty maps": (b"\x9a\x00\x01\x00\x00" + b"\xa0" * 65536, SchemaError),
    "many empty arrays": (b"\x9a\x00\x01\x00\x00" + b"\x80" * 65536, SchemaError),
    "top-level int": (cbor2.dumps(5), SchemaError),
    "top-level map": (cbor2.dumps({"a": 1}), SchemaError),
    "negative ints": (cbor2.dumps([-1] * 40), SchemaError),
    "floats": (cbor2.dumps([0.0] * 40), SchemaError),
    "nulls": (cbor2.dumps([None] * 40), SchemaError),
}


@pytest.mark.parametrize("name", list(HOSTILE_CBOR))
def test_hostile_cbor_gets_the_right_error_from_every_decoder(name: str) -> None:
    payload, expected = HOSTILE_CBOR[name]
    for decode in PAYLOAD_DECODERS:
        with pytest.raises(expected):
            decode(payload)


@settings(derandomize=True, max_examples=300, deadline=None, database=None)
@given(st.binary(max_size=300))
def test_payload_decoders_on_arbitrary_bytes(data: bytes) -> None:
    for decode in PAYLOAD_DECODERS:
        survive(decode, data)


@settings(derandomize=True, max_examples=200, deadline=None, database=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.binary(max_size=8)
    | st.text(max_size=4) | st.floats(),
    lambda kids: st.lists(kids, max_size=8),
    max_leaves=60,
))  # fmt: skip
def test_payload_decoders_on_arbitrary_cbor_values(value: Any) -> None:
    payload = cbor2.dumps(value)
    for decode in PAYLOAD_DECODERS:
        survive(decode, payload)


# -- bounded memory ----------------------------------------------------------------------------------


def test_memory_stays_bounded_under_hostile_input() -> None:
    # tracemalloc sees Python allocations; the high-water RSS also catches any
    # allocation inside cbor2's Rust code.
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    try:
        # A header announcing the maximum frame, then a trickle of body: the buffer
        # grows with what actually arrived, not with the announced length.
        dec = FrameDecoder(CID, max_frame_size=(1 << 30))
        raw = encode_frame(FrameKind.RAFT_BATCH, CID, b"\x00" * (1 << 16))
        header = bytearray(raw[:HEADER_SIZE])
        header[12:16] = (1 << 30).to_bytes(4, "big")
        dec.feed(bytes(header))
        dec.feed(b"\x00" * 4096)
        assert dec.buffered == HEADER_SIZE + 4096
        tracemalloc.reset_peak()
        for payload, _ in HOSTILE_CBOR.values():
            for decode in PAYLOAD_DECODERS:
                survive(decode, payload)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Nothing may allocate what a length prefix claims (2**63 bytes, 2**32 items).
    # The worst case is many small arrays: cbor2 builds them all before the schema
    # check, about 64 bytes of Python list per byte of CBOR (maps are refused on
    # sight); 64 kB of them is the largest input here.
    assert peak < 8 * 1024 * 1024
    rss_growth_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert rss_growth_kib < 64 * 1024


def test_snapshot_in_message_survives_mutation() -> None:
    snap_msg = Message(MessageType.MsgSnapshot, 2, 1, 3, snapshot=Snapshot(data=b"s"))
    tree = cbor2.loads(encode_message(snap_msg))
    for path in _paths(tree):
        for value in HOSTILE_VALUES:
            survive(decode_message, cbor2.dumps(_replace(tree, path, value)))


def test_intern_caches_stay_bounded() -> None:
    from multiraft.wire import RaftBatch, RaftEnvelope, _cbor, decode_raft_batch, encode_raft_batch
    from regions.region import Peer, RegionEpoch

    envs = [
        RaftEnvelope(i, Peer(i, i), Peer(i + 1, i), RegionEpoch(i, i), Message(MessageType.MsgBeat))
        for i in range(3000)
    ]
    batch = RaftBatch(1, envs)
    assert decode_raft_batch(encode_raft_batch(batch)) == batch
    assert len(_cbor.peer_cache) <= _cbor._CACHE_MAX
    assert len(_cbor.epoch_cache) <= _cbor._CACHE_MAX
