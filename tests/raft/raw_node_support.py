"""Builders and checks shared by the RawNode tests (raft-rs test_raw_node.rs helpers)."""

from __future__ import annotations

from collections.abc import Sequence

from multiraft.raft.confchange_codec import (
    decode_conf_change,
    decode_conf_change_v2,
)
from multiraft.raft.config import Config
from multiraft.raft.raw_node import RawNode, Ready
from multiraft.raft.storage import MemStorage
from multiraft.raft.testing import (
    new_snapshot,
    new_test_config,
)
from multiraft.raft.types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    MessageType,
    Snapshot,
    SoftState,
)

MT = MessageType


def conf_change(t: ConfChangeType, node_id: int) -> ConfChange:
    return ConfChange(change_type=t, node_id=node_id)


def must_cmp_ready(
    rd: Ready,
    ss: SoftState | None,
    hs: HardState | None,
    entries: Sequence[Entry],
    committed_entries: Sequence[Entry],
    snapshot: Snapshot | None,
    msg_is_empty: bool,
    persisted_msg_is_empty: bool,
    must_sync: bool,
) -> None:
    assert rd.ss == ss
    assert rd.hs == hs
    assert rd.entries == list(entries)
    assert rd.committed_entries == list(committed_entries)
    assert rd.must_sync == must_sync
    assert rd.read_states == []
    assert rd.snapshot == (snapshot if snapshot is not None else Snapshot())
    assert (not rd.messages) == msg_is_empty
    assert (not rd.persisted_messages) == persisted_msg_is_empty


def new_raw_node_with_config(
    peers: Sequence[int], config: Config, storage: MemStorage
) -> RawNode:
    """A RawNode over ``storage``, bootstrapped (if still empty) with snapshot(1, 1, peers)."""
    initialized = storage.initial_state().initialized()
    if initialized and not peers:
        raise ValueError("new_raw_node with empty peers on initialized store")
    if peers and not initialized:
        storage.apply_snapshot(new_snapshot(1, 1, peers))
    return RawNode(config, storage)


def new_raw_node(
    id: int, peers: Sequence[int], election_tick: int, heartbeat_tick: int, storage: MemStorage
) -> RawNode:
    return new_raw_node_with_config(
        peers, new_test_config(id, election_tick, heartbeat_tick), storage
    )


def apply_conf_changes(rn: RawNode, committed: Sequence[Entry]) -> ConfState | None:
    """Apply every conf-change entry in ``committed``; return the last resulting ConfState."""
    cs = None
    for e in committed:
        if e.entry_type == EntryType.EntryConfChange:
            cs = rn.apply_conf_change(decode_conf_change(e.data))
        elif e.entry_type == EntryType.EntryConfChangeV2:
            cs = rn.apply_conf_change(decode_conf_change_v2(e.data))
    return cs


def become_leader_via_ready(rn: RawNode, s: MemStorage) -> None:
    """campaign(), then run Readies until the one announcing this node as leader."""
    rn.campaign()
    while True:
        rd = rn.ready()
        s.append(rd.entries)
        is_leader = rd.ss is not None and rd.ss.leader_id == rn.raft.id
        rn.advance(rd)
        if is_leader:
            return

