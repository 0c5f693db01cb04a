"""Property tests: every type the wire carries decodes back to an equal value.

Each codec pair is checked on random valid instances (hypothesis, derandomized
so that CI runs are repeatable), and every frame payload type also through the
whole path: ``encode_payload`` -> ``encode_frame`` -> ``FrameDecoder`` ->
``decode_payload``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multiraft.raft.types import Entry, EntryType, Message, MessageType
from multiraft.wire import (
    FrameDecoder,
    FrameKind,
    RaftBatch,
    RaftEnvelope,
    decode_admin_request,
    decode_admin_response,
    decode_conf_state,
    decode_entry,
    decode_envelope,
    decode_error_notice,
    decode_hard_state,
    decode_hello,
    decode_kv_request,
    decode_kv_response,
    decode_message,
    decode_payload,
    decode_raft_batch,
    decode_snapshot,
    decode_snapshot_ack,
    decode_snapshot_chunk,
    encode_admin_request,
    encode_admin_response,
    encode_conf_state,
    encode_entry,
    encode_envelope,
    encode_error_notice,
    encode_frame,
    encode_hard_state,
    encode_hello,
    encode_kv_request,
    encode_kv_response,
    encode_message,
    encode_payload,
    encode_raft_batch,
    encode_snapshot,
    encode_snapshot_ack,
    encode_snapshot_chunk,
)
from regions.region import Peer, RegionEpoch
from tests.wire import wire_strategies as ws

Case = tuple[str, st.SearchStrategy[Any], Callable[[Any], bytes], Callable[[bytes], Any], int]
#: (name, strategy, encoder, decoder, examples): fewer examples for the big nested types,
#: whose every example already holds several messages, entries and peers.
CASES: list[Case] = [
    ("entry", ws.any_entries, encode_entry, decode_entry, 100),
    ("hard_state", ws.hard_states, encode_hard_state, decode_hard_state, 100),
    ("conf_state", ws.conf_states, encode_conf_state, decode_conf_state, 100),
    ("snapshot", ws.snapshots, encode_snapshot, decode_snapshot, 100),
    ("message", ws.messages, encode_message, decode_message, 100),
    ("envelope", ws.envelopes, encode_envelope, decode_envelope, 60),
    ("raft_batch", ws.raft_batches, encode_raft_batch, decode_raft_batch, 50),
    ("kv_request", ws.kv_requests, encode_kv_request, decode_kv_request, 100),
    ("kv_response", ws.kv_responses, encode_kv_response, decode_kv_response, 100),
    ("admin_request", ws.admin_requests, encode_admin_request, decode_admin_request, 100),
    ("admin_response", ws.admin_responses, encode_admin_response, decode_admin_response, 80),
    ("snapshot_chunk", ws.snapshot_chunks, encode_snapshot_chunk, decode_snapshot_chunk, 60),
    ("snapshot_ack", ws.snapshot_acks, encode_snapshot_ack, decode_snapshot_ack, 100),
    ("hello", ws.hellos, encode_hello, decode_hello, 100),
    ("error_notice", ws.error_notices, encode_error_notice, decode_error_notice, 100),
]


@pytest.mark.parametrize(
    ("name", "strategy", "encode", "decode", "examples"), CASES, ids=[c[0] for c in CASES]
)
def test_codec_round_trips(
    name: str,
    strategy: st.SearchStrategy[Any],
    encode: Callable[[Any], bytes],
    decode: Callable[[bytes], Any],
    examples: int,
) -> None:
    @settings(derandomize=True, max_examples=examples, deadline=None, database=None)
    @given(strategy)
    def check(obj: Any) -> None:
        payload = encode(obj)
        back = decode(payload)
        assert back == obj
        assert type(back) is type(obj)
        assert encode(back) == payload  # canonical: one value, one encoding

    check()


@settings(derandomize=True, max_examples=100, deadline=None, database=None)
@given(ws.payloads, st.integers(1, 2**64 - 1))
def test_every_payload_round_trips_through_frames(obj: Any, cluster_id: int) -> None:
    kind, payload = encode_payload(obj)
    dec = FrameDecoder(cluster_id)
    dec.feed(encode_frame(kind, cluster_id, payload))
    frame = dec.next_frame()
    assert frame is not None and frame.kind is kind and frame.cluster_id == cluster_id
    assert decode_payload(frame.kind, frame.payload) == obj
    assert dec.next_frame() is None


def test_every_message_type_round_trips() -> None:
    for t in MessageType:
        m = Message(t, to=2, from_=1, term=3)
        assert decode_message(encode_message(m)) == m


def test_enums_come_back_as_members() -> None:
    e = Entry(EntryType.EntryConfChangeV2, 1, 2, b"cc")
    m = Message(MessageType.MsgAppend, 2, 1, entries=[e])
    back = decode_message(encode_message(m))
    assert back.msg_type is MessageType.MsgAppend
    assert back.entries[0].entry_type is EntryType.EntryConfChangeV2


def test_short_and_full_entry_forms_both_round_trip() -> None:
    plain = [Entry(term=1, index=i, data=b"d%d" % i) for i in range(1, 5)]
    mixed = [*plain, Entry(term=1, index=5, context=b"ctx")]
    for ents in (plain, mixed, [Entry(sync_log=True)], []):
        m = Message(MessageType.MsgAppend, 2, 1, entries=ents)
        assert decode_message(encode_message(m)) == m
    # The short form is really shorter: three items per entry instead of six.
    assert len(encode_message(Message(entries=plain))) < len(
        encode_message(
            Message(entries=[*plain[:3], Entry(term=1, index=4, data=b"d4", sync_log=True)])
        )
    )


def test_snapshot_none_and_empty_snapshot_are_distinct() -> None:
    from multiraft.raft.types import Snapshot

    a = Message(MessageType.MsgSnapshot, 2, 1, snapshot=None)
    b = Message(MessageType.MsgSnapshot, 2, 1, snapshot=Snapshot())
    assert decode_message(encode_message(a)).snapshot is None
    assert decode_message(encode_message(b)).snapshot == Snapshot()


def test_decoded_peers_and_epochs_are_interned_but_equal() -> None:
    env = RaftEnvelope(
        1, Peer(1, 1), Peer(2, 2), RegionEpoch(3, 4), Message(MessageType.MsgHeartbeat)
    )
    batch = RaftBatch(1, [env, env])
    back = decode_raft_batch(encode_raft_batch(batch))
    assert back == batch
    assert back.envelopes[0].from_peer is back.envelopes[1].from_peer


def test_frame_kind_of_each_payload() -> None:
    kinds = {encode_payload(ex)[0] for ex in _one_of_each()}
    assert kinds == set(FrameKind)


def _one_of_each() -> list[Any]:
    from multiraft.wire import (
        AdminOk,
        AdminRequest,
        AdminResponse,
        ErrorCode,
        ErrorNotice,
        Get,
        Hello,
        KvRequest,
        KvResponse,
        RegionStatus,
        SnapshotAck,
        SnapshotAckStatus,
        SnapshotChunk,
        WriteOk,
    )
    from multiraft.wire.placement_messages import (
        GetClusterInfo,
        Ok,
        PlacementRequest,
        PlacementResponse,
    )

    ep = RegionEpoch()
    return [
        RaftBatch(1, []),
        KvRequest(1, 1, ep, Get(b"k")),
        KvResponse(1, WriteOk()),
        AdminRequest(1, 1, ep, RegionStatus()),
        AdminResponse(1, AdminOk()),
        SnapshotChunk(1, 1, 0, b"", True),
        SnapshotAck(1, 1, 0, SnapshotAckStatus.Accepted),
        ErrorNotice(ErrorCode.Protocol, "bye"),
        Hello(1, 0, "127.0.0.1:20160"),
        PlacementRequest(1, GetClusterInfo()),
        PlacementResponse(1, Ok()),
    ]


def test_encode_payload_refuses_other_types() -> None:
    with pytest.raises(TypeError):
        encode_payload(Message())  # type: ignore[arg-type]
