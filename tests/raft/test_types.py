"""Types, entry sizes and the conf-change byte form.

Covers raft-rs: test_is_local_msg (errors/raw_node unit tests), the size
semantics the flow-control tests rely on (``compute_size``), and the
ConfChangeV2 helpers enter_joint/leave_joint.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multiraft.raft.confchange_codec import (
    ConfChangeDecodeError,
    decode_conf_change,
    decode_conf_change_v2,
    encode_conf_change,
    encode_conf_change_v2,
)
from multiraft.raft.types import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfChangeV2,
    Entry,
    EntryType,
    MessageType,
    entry_size,
    is_local_msg,
    is_response_msg,
    parse_conf_change,
    stringify_conf_change,
)


def _reference_size(e: Entry) -> int:
    """Protobuf's encoding, byte by byte: a tag, then a varint (or length + bytes)."""

    def varint(v: int) -> int:
        n = 1
        while v >= 0x80:
            v >>= 7
            n += 1
        return n

    size = 0
    for value in (int(e.entry_type), e.term, e.index):
        if value:
            size += 1 + varint(value)
    for blob in (e.data, e.context):
        if blob:
            size += 1 + varint(len(blob)) + len(blob)
    if e.sync_log:
        size += 2
    return size


u64 = st.integers(min_value=0, max_value=2**64 - 1)


@settings(derandomize=True, max_examples=300)
@given(
    st.sampled_from(list(EntryType)),
    u64,
    u64,
    st.binary(max_size=20_000),
    st.binary(max_size=300),
    st.booleans(),
)
def test_entry_size_matches_protobuf(
    t: EntryType, term: int, index: int, data: bytes, ctx: bytes, sync: bool
) -> None:
    e = Entry(t, term, index, data, ctx, sync)
    assert entry_size(e) == _reference_size(e)


def test_entry_size_known_values() -> None:
    assert entry_size(Entry()) == 0
    # 1000 bytes of data: tag + 2-byte length + data, plus term and index.
    assert entry_size(Entry(term=1, index=1, data=b"a" * 1000)) == 2 + 2 + 3 + 1000


@pytest.mark.parametrize(
    ("t", "local", "response"),
    [
        (MessageType.MsgHup, True, False),
        (MessageType.MsgBeat, True, False),
        (MessageType.MsgUnreachable, True, True),
        (MessageType.MsgSnapStatus, True, False),
        (MessageType.MsgCheckQuorum, True, False),
        (MessageType.MsgPropose, False, False),
        (MessageType.MsgAppend, False, False),
        (MessageType.MsgAppendResponse, False, True),
        (MessageType.MsgRequestVote, False, False),
        (MessageType.MsgRequestVoteResponse, False, True),
        (MessageType.MsgSnapshot, False, False),
        (MessageType.MsgHeartbeat, False, False),
        (MessageType.MsgHeartbeatResponse, False, True),
        (MessageType.MsgTransferLeader, False, False),
        (MessageType.MsgTimeoutNow, False, False),
        (MessageType.MsgReadIndex, False, False),
        (MessageType.MsgReadIndexResp, False, False),
        (MessageType.MsgRequestPreVote, False, False),
        (MessageType.MsgRequestPreVoteResponse, False, True),
    ],
)
def test_is_local_msg(t: MessageType, local: bool, response: bool) -> None:
    assert is_local_msg(t) is local
    assert is_response_msg(t) is response


def test_enter_and_leave_joint() -> None:
    simple = ConfChangeV2(changes=parse_conf_change("v2"))
    assert simple.enter_joint() is None and not simple.leave_joint()
    double = ConfChangeV2(changes=parse_conf_change("v2 v3"))
    assert double.enter_joint() is True
    explicit = ConfChangeV2(ConfChangeTransition.Explicit, parse_conf_change("v2"))
    assert explicit.enter_joint() is False
    implicit = ConfChangeV2(ConfChangeTransition.Implicit, parse_conf_change("v2"))
    assert implicit.enter_joint() is True
    assert ConfChangeV2(context=b"ctx").leave_joint()
    assert not ConfChangeV2(ConfChangeTransition.Explicit).leave_joint()


def test_parse_and_stringify_conf_change() -> None:
    ccs = parse_conf_change(" v1  l2 r3 ")
    assert ccs == [
        ConfChangeSingle(ConfChangeType.AddNode, 1),
        ConfChangeSingle(ConfChangeType.AddLearnerNode, 2),
        ConfChangeSingle(ConfChangeType.RemoveNode, 3),
    ]
    assert stringify_conf_change(ccs) == "v1 l2 r3"
    assert parse_conf_change("") == []
    for bad in ("x1", "v", "va"):
        with pytest.raises(ValueError):
            parse_conf_change(bad)


changes = st.lists(
    st.builds(ConfChangeSingle, st.sampled_from(list(ConfChangeType)), u64), max_size=8
)


@settings(derandomize=True, max_examples=200)
@given(st.sampled_from(list(ConfChangeTransition)), changes, st.binary(max_size=40))
def test_conf_change_v2_round_trip(
    t: ConfChangeTransition, ccs: list[ConfChangeSingle], ctx: bytes
) -> None:
    cc = ConfChangeV2(t, ccs, ctx)
    assert decode_conf_change_v2(encode_conf_change_v2(cc)) == cc


@settings(derandomize=True, max_examples=200)
@given(u64, st.sampled_from(list(ConfChangeType)), u64, st.binary(max_size=40))
def test_conf_change_v1_round_trip(id: int, t: ConfChangeType, node: int, ctx: bytes) -> None:
    cc = ConfChange(id, t, node, ctx)
    assert decode_conf_change(encode_conf_change(cc)) == cc


def test_empty_encodings_are_defaults() -> None:
    # The leader's auto-leave entry carries empty data, as with protobuf.
    assert encode_conf_change_v2(ConfChangeV2()) == b""
    assert decode_conf_change_v2(b"") == ConfChangeV2()
    assert decode_conf_change(b"") == ConfChange()


@settings(derandomize=True, max_examples=300)
@given(st.binary(max_size=64))
def test_decoders_raise_only_their_error(data: bytes) -> None:
    for decode in (decode_conf_change, decode_conf_change_v2):
        try:
            decode(data)
        except ConfChangeDecodeError:
            pass


def test_v1_and_v2_are_not_confused() -> None:
    with pytest.raises(ConfChangeDecodeError):
        decode_conf_change_v2(encode_conf_change(ConfChange(node_id=2)))
    with pytest.raises(ConfChangeDecodeError):
        decode_conf_change(encode_conf_change_v2(ConfChangeV2(changes=parse_conf_change("v2"))))
