"""The persisted record encodings (multiraft/wire/records.py): round trips and strict decoding."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multiraft.raft.types import ConfState, Entry, EntryType, HardState
from multiraft.wire.records import (
    ENTRY_HEADER_SIZE,
    RecordCorrupted,
    SnapshotData,
    SnapshotFooter,
    SnapshotHeader,
    decode_apply_state,
    decode_conf_state,
    decode_entry,
    decode_entry_term,
    decode_hard_state,
    decode_key_ranges,
    decode_raft_local_state,
    decode_region,
    decode_region_local_state,
    decode_snapshot_part,
    decode_store_ident,
    encode_apply_state,
    encode_conf_state,
    encode_entry,
    encode_hard_state,
    encode_key_ranges,
    encode_raft_local_state,
    encode_region,
    encode_region_local_state,
    encode_snapshot_part,
    encode_store_ident,
)
from regions.local_state import ApplyState, PeerState, RaftLocalState, RegionLocalState, StoreIdent
from regions.region import Peer, PeerRole, Region, RegionEpoch

u64 = st.integers(0, 2**64 - 1)
small = st.binary(max_size=40)

entries = st.builds(
    Entry,
    entry_type=st.sampled_from(list(EntryType)),
    term=u64,
    index=u64,
    data=small,
    context=small,
    sync_log=st.booleans(),
)
conf_states = st.builds(
    ConfState,
    voters=st.lists(u64, max_size=5),
    learners=st.lists(u64, max_size=5),
    voters_outgoing=st.lists(u64, max_size=5),
    learners_next=st.lists(u64, max_size=5),
    auto_leave=st.booleans(),
)
peers = st.builds(Peer, id=u64, store_id=u64, role=st.sampled_from(list(PeerRole)))
regions = st.builds(
    Region,
    id=u64,
    start_key=small,
    end_key=small,
    epoch=st.builds(RegionEpoch, conf_ver=u64, version=u64),
    peers=st.lists(peers, max_size=5),
)
pairs = st.lists(st.tuples(st.binary(min_size=1, max_size=20), small), max_size=10)
parts = st.one_of(
    st.builds(
        SnapshotHeader, region_id=u64, region=regions, index=u64, term=u64, conf_state=conf_states
    ),
    st.builds(SnapshotData, seq=u64, pairs=pairs),
    st.builds(SnapshotFooter, data_chunks=u64, keys=u64, checksum=u64),
)

FAST = settings(deadline=None, derandomize=True, database=None, max_examples=200)


@FAST
@given(entries)
def test_entry_round_trip(e: Entry) -> None:
    raw = encode_entry(e)
    assert len(raw) == ENTRY_HEADER_SIZE + len(e.context) + len(e.data)
    assert decode_entry(raw) == e
    assert decode_entry_term(raw) == (e.term, e.index)


@FAST
@given(u64, u64, u64, u64)
def test_state_round_trips(a: int, b: int, c: int, d: int) -> None:
    hs = HardState(a, b, c)
    assert decode_hard_state(encode_hard_state(hs)) == hs
    assert decode_raft_local_state(encode_raft_local_state(hs, d)) == RaftLocalState(hs, d)
    apply = ApplyState(a, b, c)
    assert decode_apply_state(encode_apply_state(apply)) == apply
    ident = StoreIdent(a, b)
    assert decode_store_ident(encode_store_ident(ident)) == ident


@FAST
@given(conf_states, regions, st.sampled_from(list(PeerState)))
def test_cbor_record_round_trips(cs: ConfState, region: Region, state: PeerState) -> None:
    assert decode_conf_state(encode_conf_state(cs)) == cs
    assert decode_region(encode_region(region)) == region
    rls = RegionLocalState(state, region)
    assert decode_region_local_state(encode_region_local_state(rls)) == rls


@FAST
@given(parts)
def test_snapshot_part_round_trip(part: SnapshotHeader | SnapshotData | SnapshotFooter) -> None:
    assert decode_snapshot_part(encode_snapshot_part(part)) == part


def test_key_ranges_round_trip() -> None:
    ranges = [(b"a", b"m"), (b"", b"")]
    assert decode_key_ranges(encode_key_ranges(ranges)) == ranges


# -- strict decoding ------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00" * (ENTRY_HEADER_SIZE - 1),
        struct.pack(">BQQI", 3, 1, 1, 0),  # type bits 3: no such entry type
        struct.pack(">BQQI", 0x04, 1, 1, 0),  # a reserved flag bit
        struct.pack(">BQQI", 0, 1, 1, 5) + b"abc",  # context runs past the end
    ],
)
def test_bad_entries_raise_record_corrupted(raw: bytes) -> None:
    with pytest.raises(RecordCorrupted):
        decode_entry(raw)
    with pytest.raises(RecordCorrupted):
        decode_entry_term(raw)


@pytest.mark.parametrize(
    ("decode", "raw"),
    [
        (decode_hard_state, encode_hard_state(HardState(1, 2, 3))[:-1]),
        (
            decode_hard_state,
            b"\x09" + encode_hard_state(HardState(1, 2, 3))[1:],
        ),  # unknown format tag
        (decode_raft_local_state, encode_raft_local_state(HardState(), 1) + b"\x00"),
        (decode_apply_state, b""),
        (decode_conf_state, encode_conf_state(ConfState()) + b"\x00"),  # trailing bytes
        (decode_conf_state, b"\x85\x80\x80\x80\x80\x01"),  # auto_leave is 1, not a boolean
        (decode_conf_state, b"\x9f"),  # truncated CBOR
        (decode_region, b"\x85\x01\x40\x40\x82\x01\x01\x81\x83\x01\x01\x09"),  # peer role 9
        (decode_region, b"\x85\x20\x40\x40\x82\x01\x01\x80"),  # negative region id
        (decode_region_local_state, b"\x82\x07\x85\x01\x40\x40\x82\x01\x01\x80"),  # peer state 7
        (decode_store_ident, b"\x82\xf5\x01"),  # cluster id is true
        (decode_snapshot_part, b"\x83\x02\x01\x00"),  # unknown version
        (decode_snapshot_part, b"\x83\x01\x07\x00"),  # unknown kind
        (decode_snapshot_part, b"\x84\x01\x01\x01\x81\x41x"),  # odd pair list
        (decode_key_ranges, b"\x81\x81\x41a"),  # a range of one key
    ],
)
def test_bad_records_raise_record_corrupted(decode: Callable[[bytes], object], raw: bytes) -> None:
    with pytest.raises(RecordCorrupted):
        decode(raw)


_SAMPLES: list[tuple[Callable[[bytes], object], bytes]] = [
    (decode_entry, encode_entry(Entry(EntryType.EntryConfChange, 7, 9, b"data", b"ctx"))),
    (decode_raft_local_state, encode_raft_local_state(HardState(3, 1, 2), 4)),
    (decode_conf_state, encode_conf_state(ConfState([1, 2], [3], [4], [5], True))),
    (
        decode_region_local_state,
        encode_region_local_state(
            RegionLocalState(
                PeerState.Applying, Region(7, b"a", b"z", RegionEpoch(2, 3), [Peer(1, 2)])
            )
        ),
    ),
    (
        decode_snapshot_part,
        encode_snapshot_part(SnapshotData(3, [(b"k1", b"v1"), (b"k2", b"v2")])),
    ),
]


@settings(deadline=None, derandomize=True, database=None, max_examples=300)
@given(st.sampled_from(range(len(_SAMPLES))), st.data())
def test_damaged_records_never_raise_anything_else(which: int, data: st.DataObject) -> None:
    decode, raw = _SAMPLES[which]
    mutation = data.draw(st.sampled_from(["truncate", "flip", "append"]))
    if mutation == "truncate":
        damaged = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif mutation == "flip":
        pos = data.draw(st.integers(0, len(raw) - 1))
        damaged = (
            raw[:pos] + bytes([raw[pos] ^ (1 << data.draw(st.integers(0, 7)))]) + raw[pos + 1 :]
        )
    else:
        damaged = raw + data.draw(st.binary(min_size=1, max_size=4))
    try:
        decode(damaged)
    except RecordCorrupted:
        pass  # the only acceptable failure; decoding to another valid record is possible
