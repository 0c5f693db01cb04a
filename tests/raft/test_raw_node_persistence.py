# Covers raft-rs harness/tests/integration_cases/test_raw_node.rs, its apply and persistence
# scenarios: test_raw_node_with_async_apply, test_raw_node_entries_after_snapshot,
#   test_raw_node_overwrite_entries, test_async_ready_leader, test_async_ready_follower,
#   test_async_ready_become_leader, test_async_ready_multiple_snapshot,
#   test_committed_entries_pagination, test_committed_entries_pagination_after_restart,
#   test_disable_proposal_forwarding. The rest of that file is in test_raw_node.py.
# Skipped: none. test_raw_node_with_async_apply draws its proposal counts from a seeded RNG.
# Own additions: test_learner_campaign_is_a_no_op, test_ready_message_list_follows_role,
# test_must_sync_false_on_commit_only_hard_state_change,
# test_advance_append_leaves_ready_hard_state_alone.
"""RawNode: apply progress, asynchronous persistence, pagination, and the Ready rules by role."""

from __future__ import annotations

import random

import pytest

from multiraft.raft.config import Config
from multiraft.raft.errors import ProposalDropped
from multiraft.raft.raw_node import RawNode
from multiraft.raft.storage import GetEntriesContext, MemStorage
from multiraft.raft.testing import (
    Network,
    hard_state,
    new_entry,
    new_message,
    new_message_with_entries,
    new_snapshot,
    new_storage,
    new_test_config,
    new_test_raft_with_config,
    soft_state,
)
from multiraft.raft.types import (
    NO_LIMIT,
    ConfState,
    Entry,
    MessageType,
    Snapshot,
    SnapshotMetadata,
    StateRole,
    entry_size,
)
from tests.raft.raw_node_support import (
    must_cmp_ready,
    new_raw_node,
    new_raw_node_with_config,
)

MT = MessageType


# Apply and persistence


def test_raw_node_with_async_apply() -> None:
    """advance_apply_to a smaller index never re-delivers committed entries."""
    rng = random.Random(0xA5C)
    s = new_storage()
    s.apply_snapshot(new_snapshot(1, 1, [1]))
    raw_node = new_raw_node(1, [1], 10, 1, s)
    raw_node.campaign()
    rd = raw_node.ready()
    assert rd.ss is not None and rd.ss.leader_id == raw_node.raft.leader_id
    s.append(rd.entries)
    raw_node.advance(rd)

    last_index = raw_node.raft.raft_log.last_index()
    data = b"hello world!"
    for _ in range(1, 10):
        cnt = rng.randrange(10) + 1
        for _ in range(cnt):
            raw_node.propose(b"", data)

        rd = raw_node.ready()
        entries = list(rd.entries)
        assert entries[0].index == last_index + 1
        assert entries[-1].index == last_index + cnt
        must_cmp_ready(rd, None, None, entries, [], None, True, True, True)

        s.append(entries)
        light = raw_node.advance_append(rd)
        assert light.committed_entries == entries
        assert light.commit_index == last_index + cnt

        raw_node.advance_apply_to(last_index + 1)
        assert not raw_node.has_ready()
        last_index += cnt


def test_raw_node_entries_after_snapshot() -> None:
    """A follower's committed entries come only after persistence; a Ready with a snapshot has none."""
    s = new_storage()
    s.apply_snapshot(new_snapshot(1, 1, [1, 2]))
    raw_node = new_raw_node(1, [1, 2], 10, 1, s)

    entries = [new_entry(2, i, b"hello") for i in range(2, 20)]
    append_msg = new_message_with_entries(2, 1, MT.MsgAppend, entries)
    append_msg.term = 2
    append_msg.index = 1
    append_msg.log_term = 1
    append_msg.commit = 5
    raw_node.step(append_msg)

    rd = raw_node.ready()
    must_cmp_ready(
        rd, soft_state(2, StateRole.Follower), hard_state(2, 5, 0), entries, [], None,
        True, False, True,
    )
    assert rd.hs is not None
    s.set_hardstate(rd.hs)
    s.append(rd.entries)
    light = raw_node.advance(rd)
    assert light.commit_index is None
    assert light.committed_entries == entries[:4]
    assert light.messages == []

    snapshot = new_snapshot(10, 3, [1, 2])
    snapshot_msg = new_message(2, 1, MT.MsgSnapshot, 0)
    snapshot_msg.term = 3
    snapshot_msg.snapshot = snapshot
    raw_node.step(snapshot_msg)

    entries = [new_entry(3, i, b"hello") for i in range(11, 14)]
    append_msg = new_message_with_entries(2, 1, MT.MsgAppend, entries)
    append_msg.term = 3
    append_msg.index = 10
    append_msg.log_term = 3
    append_msg.commit = 12
    raw_node.step(append_msg)

    rd = raw_node.ready()
    must_cmp_ready(rd, None, hard_state(3, 12, 0), entries, [], snapshot, True, False, True)
    assert rd.persisted_messages[0].msg_type == MT.MsgAppendResponse
    assert rd.hs is not None
    s.set_hardstate(rd.hs)
    s.apply_snapshot(rd.snapshot)
    s.append(rd.entries)

    light = raw_node.advance(rd)
    assert light.commit_index is None
    assert light.committed_entries == entries[:2]
    assert light.messages == []


def test_raw_node_overwrite_entries() -> None:
    """After a new leader overwrites the follower's tail, committed entries come from the persisted, current log."""
    s = new_storage()
    s.apply_snapshot(new_snapshot(1, 1, [1, 2, 3]))
    raw_node = new_raw_node(1, [1, 2, 3], 10, 1, s)

    entries = [new_entry(2, i, b"hello") for i in (2, 3, 4)]
    append_msg = new_message_with_entries(2, 1, MT.MsgAppend, entries)
    append_msg.term = 2
    append_msg.index = 1
    append_msg.log_term = 1
    append_msg.commit = 1
    raw_node.step(append_msg)

    rd = raw_node.ready()
    must_cmp_ready(
        rd, soft_state(2, StateRole.Follower), hard_state(2, 1, 0), entries, [], None,
        True, False, True,
    )
    assert rd.persisted_messages[0].msg_type == MT.MsgAppendResponse
    assert rd.hs is not None
    s.set_hardstate(rd.hs)
    s.append(rd.entries)
    light = raw_node.advance(rd)
    assert light.commit_index is None
    assert light.committed_entries == []
    assert light.messages == []

    entries_2 = [new_entry(3, i, b"hello") for i in (4, 5, 6)]
    append_msg = new_message_with_entries(3, 1, MT.MsgAppend, entries_2)
    append_msg.term = 3
    append_msg.index = 3
    append_msg.log_term = 2
    append_msg.commit = 5
    raw_node.step(append_msg)

    rd = raw_node.ready()
    must_cmp_ready(
        rd, soft_state(3, StateRole.Follower), hard_state(3, 5, 0), entries_2, entries[:2],
        None, True, False, True,
    )
    assert rd.persisted_messages[0].msg_type == MT.MsgAppendResponse
    assert rd.hs is not None
    s.set_hardstate(rd.hs)
    s.append(rd.entries)
    light = raw_node.advance(rd)
    assert light.commit_index is None
    assert light.committed_entries == entries_2[:2]
    assert light.messages == []


def test_async_ready_leader() -> None:
    """Leader messages go out before persistence; on_persist_ready releases commits only for
    persisted Readies."""
    s = new_storage()
    s.apply_snapshot(new_snapshot(1, 1, [1, 2, 3]))
    raw_node = new_raw_node(1, [1, 2, 3], 10, 1, s)
    raw_node.raft.become_candidate()
    raw_node.raft.become_leader()
    rd = raw_node.ready()
    assert rd.ss is not None and rd.ss.leader_id == raw_node.raft.leader_id
    s.append(rd.entries)
    raw_node.advance(rd)

    assert raw_node.raft.term == 2
    first_index = raw_node.raft.raft_log.last_index()
    data = b"hello world!"

    pr2 = raw_node.raft.mut_prs().get_mut(2)
    assert pr2 is not None
    pr2.matched = 1
    pr2.become_replicate()
    for i in range(10):
        for _ in range(10):
            raw_node.propose(b"", data)
        rd = raw_node.ready()
        assert rd.number == i + 2
        entries = list(rd.entries)
        assert entries[0].index == first_index + i * 10 + 1
        assert entries[-1].index == first_index + i * 10 + 10
        # A leader's messages may be sent at once.
        must_cmp_ready(rd, None, None, entries, [], None, False, True, True)
        assert all(m.msg_type == MT.MsgAppend for m in rd.messages)
        s.append(entries)
        raw_node.advance_append_async(rd)

    # Readies 2..11 are unpersisted; persist up to 4. Two of three have nothing acked yet.
    raw_node.on_persist_ready(4)
    assert not raw_node.has_ready()

    append_response = new_message(2, 1, MT.MsgAppendResponse, 0)
    append_response.term = 2
    append_response.index = first_index + 100
    raw_node.step(append_response)

    # Commit follows the leader's own persisted index.
    rd = raw_node.ready()
    assert rd.hs == hard_state(2, first_index + 30, 1)
    assert rd.committed_entries[0].index == first_index
    assert rd.committed_entries[-1].index == first_index + 30
    assert rd.messages
    assert rd.hs is not None
    s.set_hardstate(rd.hs)
    raw_node.advance_append_async(rd)

    raw_node.on_persist_ready(8)
    rd = raw_node.ready()
    assert rd.hs == hard_state(2, first_index + 70, 1)
    assert rd.committed_entries[0].index == first_index + 31
    assert rd.committed_entries[-1].index == first_index + 70
    assert rd.messages
    assert rd.persisted_messages == []
    assert rd.hs is not None
    s.set_hardstate(rd.hs)

    light = raw_node.advance_append(rd)
    assert light.commit_index == first_index + 100
    assert light.committed_entries[0].index == first_index + 71
    assert light.committed_entries[-1].index == first_index + 100
    assert light.messages

    # Both followers ack before the leader has persisted.
    first_index += 100
    for _ in range(10):
        raw_node.propose(b"", data)
    rd = raw_node.ready()
    assert rd.number == 14
    entries = list(rd.entries)
    assert entries[0].index == first_index + 1
    assert entries[-1].index == first_index + 10
    must_cmp_ready(rd, None, None, entries, [], None, False, True, True)
    assert all(m.msg_type == MT.MsgAppend for m in rd.messages)
    s.append(entries)
    raw_node.advance_append_async(rd)

    append_response = new_message(2, 1, MT.MsgAppendResponse, 0)
    append_response.term = 2
    append_response.index = first_index + 9
    raw_node.step(append_response)
    append_response = new_message(3, 1, MT.MsgAppendResponse, 0)
    append_response.term = 2
    append_response.index = first_index + 10
    raw_node.step(append_response)

    rd = raw_node.ready()
    must_cmp_ready(
        rd, None, hard_state(2, first_index + 9, 1), [], [], None, False, True, False
    )
    for m in rd.messages:
        assert m.msg_type == MT.MsgAppend
        assert m.commit == first_index + 9

    light = raw_node.advance_append(rd)
    assert light.commit_index == first_index + 10
    assert light.committed_entries[0].index == first_index + 1
    assert light.committed_entries[-1].index == first_index + 10
    assert light.messages


def test_async_ready_follower() -> None:
    """A follower's replies are persisted messages; committed entries are bounded by
    on_persist_ready; a persisted snapshot updates ``persisted``."""
    s = new_storage()
    s.apply_snapshot(new_snapshot(1, 1, [1, 2]))
    raw_node = new_raw_node(1, [1, 2], 10, 1, s)
    first_index = 1
    rd_number = 0
    for cnt in range(3):
        for i in range(10):
            entries = [new_entry(2, first_index + i * 3 + k, b"hello") for k in (1, 2, 3)]
            append_msg = new_message_with_entries(2, 1, MT.MsgAppend, entries)
            append_msg.term = 2
            append_msg.index = first_index + i * 3
            append_msg.log_term = 1 if cnt == 0 and i == 0 else 2
            append_msg.commit = first_index + i * 3 + 3
            raw_node.step(append_msg)

            rd = raw_node.ready()
            assert rd.number == rd_number + i + 1
            assert rd.hs == hard_state(2, first_index + i * 3 + 3, 0)
            assert rd.entries == entries
            assert rd.committed_entries == []
            assert rd.messages == []
            assert rd.persisted_messages[0].msg_type == MT.MsgAppendResponse
            assert rd.hs is not None
            s.set_hardstate(rd.hs)
            s.append(rd.entries)
            raw_node.advance_append_async(rd)

        raw_node.on_persist_ready(rd_number + 4)
        rd = raw_node.ready()
        assert rd.hs is None
        assert rd.committed_entries[0].index == first_index + 1
        assert rd.committed_entries[-1].index == first_index + 3 * 3 + 3
        assert rd.messages == []
        assert rd.persisted_messages == []

        light = raw_node.advance_append(rd)
        assert light.commit_index is None
        assert light.committed_entries[0].index == first_index + 3 * 3 + 4
        assert light.committed_entries[-1].index == first_index + 10 * 3
        assert light.messages == []

        first_index += 10 * 3
        rd_number += 11

    snapshot = new_snapshot(first_index + 5, 2, [1, 2])
    snapshot_msg = new_message(2, 1, MT.MsgSnapshot, 0)
    snapshot_msg.term = 2
    snapshot_msg.snapshot = snapshot
    raw_node.step(snapshot_msg)

    rd = raw_node.ready()
    assert rd.number == rd_number + 1
    must_cmp_ready(
        rd, None, hard_state(2, first_index + 5, 0), [], [], snapshot, True, False, True
    )
    assert rd.hs is not None
    s.set_hardstate(rd.hs)
    s.apply_snapshot(snapshot)
    s.append(rd.entries)
    raw_node.advance_append_async(rd)

    entries = [new_entry(2, first_index + 5 + i, b"hello") for i in range(1, 10)]
    append_msg = new_message_with_entries(2, 1, MT.MsgAppend, entries)
    append_msg.term = 2
    append_msg.index = first_index + 5
    append_msg.log_term = 2
    append_msg.commit = first_index + 5 + 3
    raw_node.step(append_msg)

    rd = raw_node.ready()
    assert rd.number == rd_number + 2
    must_cmp_ready(
        rd, None, hard_state(2, first_index + 5 + 3, 0), entries, [], None, True, False, True
    )
    assert rd.hs is not None
    s.set_hardstate(rd.hs)
    s.append(rd.entries)
    raw_node.advance_append_async(rd)

    raw_node.on_persist_ready(rd_number + 1)
    assert raw_node.raft.raft_log.persisted == first_index + 5
    raw_node.advance_apply_to(first_index + 5)

    raw_node.on_persist_ready(rd_number + 2)
    rd = raw_node.ready()
    must_cmp_ready(rd, None, None, [], entries[:3], None, True, True, False)


def test_async_ready_become_leader() -> None:
    """A candidate's votes are persisted messages; after winning, MsgAppends are plain messages."""
    s = new_storage()
    s.apply_snapshot(new_snapshot(5, 5, [1, 2, 3]))
    raw_node = new_raw_node(1, [1, 2, 3], 10, 1, s)
    for _ in range(1, raw_node.raft.election_timeout() * 2):
        raw_node.raft.tick_election()
    rd = raw_node.ready()
    assert rd.number == 1
    must_cmp_ready(
        rd, soft_state(0, StateRole.Candidate), hard_state(6, 5, 1), [], [], None,
        True, False, True,
    )
    assert rd.hs is not None
    s.set_hardstate(rd.hs)
    assert all(m.msg_type == MT.MsgRequestVote for m in rd.persisted_messages)
    raw_node.advance_append(rd)

    # 1 already voted for itself: it rejects 2 and 3.
    for number, voter in ((2, 2), (3, 3)):
        vote_request = new_message(voter, 1, MT.MsgRequestVote, 0)
        vote_request.term = 6
        vote_request.log_term = 4
        vote_request.index = 4
        raw_node.step(vote_request)
        rd = raw_node.ready()
        assert rd.number == number
        must_cmp_ready(rd, None, None, [], [], None, True, False, False)
        assert rd.persisted_messages[0].msg_type == MT.MsgRequestVoteResponse
        assert rd.persisted_messages[0].reject
        raw_node.advance_append_async(rd)

    vote_response = new_message(2, 1, MT.MsgRequestVoteResponse, 0)
    vote_response.term = 6
    vote_response.reject = False
    raw_node.step(vote_response)

    rd = raw_node.ready()
    assert rd.number == 4
    assert len(rd.entries) == 1
    must_cmp_ready(
        rd, soft_state(1, StateRole.Leader), None, rd.entries, [], None, False, True, True
    )
    assert len(rd.messages) == 2
    assert all(m.msg_type == MT.MsgAppend for m in rd.messages)
    s.append(rd.entries)

    light = raw_node.advance_append(rd)
    assert light.commit_index is None
    assert light.committed_entries == []
    assert light.messages == []


def test_async_ready_multiple_snapshot() -> None:
    """A second snapshot arriving before the first is persisted: persisted follows Ready 1,
    the next Ready carries the second snapshot."""
    s = new_storage()
    s.apply_snapshot(new_snapshot(1, 1, [1, 2]))
    raw_node = new_raw_node(1, [1, 2], 10, 1, s)

    snapshot = new_snapshot(10, 2, [1, 2])
    snapshot_msg = new_message(2, 1, MT.MsgSnapshot, 0)
    snapshot_msg.term = 2
    snapshot_msg.snapshot = snapshot
    raw_node.step(snapshot_msg)

    entries = [new_entry(2, i, b"hello") for i in range(11, 14)]
    append_msg = new_message_with_entries(2, 1, MT.MsgAppend, entries)
    append_msg.term = 2
    append_msg.index = 10
    append_msg.log_term = 2
    append_msg.commit = 12
    raw_node.step(append_msg)

    rd = raw_node.ready()
    assert rd.number == 1
    must_cmp_ready(
        rd, soft_state(2, StateRole.Follower), hard_state(2, 12, 0), entries, [], snapshot,
        True, False, True,
    )
    assert rd.hs is not None
    s.set_hardstate(rd.hs)
    s.apply_snapshot(rd.snapshot)
    s.append(rd.entries)
    raw_node.advance_append_async(rd)

    snapshot = new_snapshot(20, 1, [1, 2])
    snapshot_msg = new_message(2, 1, MT.MsgSnapshot, 0)
    snapshot_msg.term = 2
    snapshot_msg.snapshot = snapshot
    raw_node.step(snapshot_msg)

    raw_node.on_persist_ready(1)
    assert raw_node.raft.raft_log.persisted == 13
    raw_node.advance_apply_to(10)

    rd = raw_node.ready()
    assert rd.number == 2
    must_cmp_ready(rd, None, hard_state(2, 20, 0), [], [], snapshot, True, False, True)
    assert rd.hs is not None
    s.set_hardstate(rd.hs)
    s.apply_snapshot(rd.snapshot)

    light = raw_node.advance_append(rd)
    assert light.commit_index is None
    assert light.committed_entries == []
    assert light.messages == []
    raw_node.advance_apply_to(20)
    assert raw_node.raft.raft_log.applied == 20


def test_committed_entries_pagination() -> None:
    """Unpersisted committed entries are withheld; max_committed_size_per_ready = 0 pages one entry."""
    s = new_storage()
    raw_node = new_raw_node(1, [1, 2, 3], 10, 1, s)

    entries = [new_entry(1, i) for i in range(2, 10)]
    msg = new_message_with_entries(3, 1, MT.MsgAppend, entries)
    msg.term = 1
    msg.index = 1
    msg.log_term = 1
    msg.commit = 9
    raw_node.step(msg)

    rd = raw_node.ready()
    assert rd.committed_entries == []
    assert raw_node.has_ready()

    assert rd.entries
    raw_node.store.append(rd.entries)

    raw_node.raft.set_max_committed_size_per_ready(0)
    light = raw_node.advance(rd)
    assert len(light.committed_entries) == 1

    assert raw_node.has_ready()
    raw_node.raft.set_max_committed_size_per_ready(NO_LIMIT)
    rd = raw_node.ready()
    assert len(rd.committed_entries) == 7
    assert [e.index for e in rd.committed_entries] == list(range(3, 10))

    assert not raw_node.has_ready()


class IgnoreSizeHintMemStorage(MemStorage):
    """A MemStorage whose ``entries`` ignores the size limit."""

    __slots__ = ()

    def entries(
        self, low: int, high: int, max_size: int | None, context: GetEntriesContext
    ) -> list[Entry]:
        return super().entries(low, high, NO_LIMIT, context)


def test_committed_entries_pagination_after_restart() -> None:
    """A storage ignoring the size hint never makes the node skip a committed entry."""
    s = IgnoreSizeHintMemStorage()
    s.apply_snapshot(new_snapshot(1, 1, [1, 2, 3]))

    entries = []
    size = 0
    for i in range(2, 11):
        e = new_entry(1, i, b"test data")
        size += entry_size(e)
        entries.append(e)
    s.append(entries)
    s.mut_hard_state().commit = 10
    s.append([new_entry(1, 11, b"boom")])

    raw_node = RawNode(new_test_config(1, 10, 1), s)
    raw_node.raft.set_max_committed_size_per_ready(size - 1)

    highest_applied = 1
    while highest_applied != 11:
        rd = raw_node.ready()
        committed = rd.committed_entries
        assert committed
        assert committed[0].index == highest_applied + 1
        highest_applied = committed[-1].index
        raw_node.raft.raft_log.commit_to(11)


def test_disable_proposal_forwarding() -> None:
    """A follower with disable_proposal_forwarding drops proposals instead of forwarding them."""

    def cfg(id: int, disable: bool) -> Config:
        return Config(
            id=id, heartbeat_tick=1, election_tick=10, disable_proposal_forwarding=disable
        )

    def store() -> MemStorage:
        return MemStorage.new_with_conf_state(ConfState([1, 2, 3]))

    n1 = new_test_raft_with_config(cfg(1, False), store())
    n2 = new_test_raft_with_config(cfg(2, False), store())
    n3 = new_test_raft_with_config(cfg(3, True), store())
    network = Network([n1, n2, n3])

    network.send([new_message(1, 1, MT.MsgHup, 0)])

    n2.step(new_message(2, 2, MT.MsgPropose, 1))
    assert len(n2.msgs) == 1
    assert n2.msgs[0].msg_type == MT.MsgPropose
    assert n2.msgs[0].to == 1

    with pytest.raises(ProposalDropped):
        n3.step(new_message(3, 3, MT.MsgPropose, 1))
    assert n3.msgs == []


# ---------------------------------------------------------------------------
# Our own RawNode tests


def test_learner_campaign_is_a_no_op() -> None:
    """campaign() on a learner leaves it a follower at the same term and sends nothing."""
    s = new_storage()
    s.apply_snapshot(
        Snapshot(
            metadata=SnapshotMetadata(
                conf_state=ConfState(voters=[1], learners=[2]), index=1, term=1
            )
        )
    )
    raw_node = RawNode(new_test_config(2, 10, 1), s)
    rd = raw_node.ready()
    raw_node.advance(rd)
    term = raw_node.raft.term
    assert not raw_node.raft.promotable()

    raw_node.campaign()

    assert raw_node.raft.state == StateRole.Follower
    assert raw_node.raft.term == term
    assert raw_node.raft.vote == 0
    assert raw_node.raft.msgs == []
    assert not raw_node.has_ready()


def _node_in_role(role: StateRole) -> RawNode:
    """A fresh 3-voter node (snapshot 1/1) driven into ``role``, with messages queued."""
    config = new_test_config(1, 10, 1)
    config.pre_vote = role == StateRole.PreCandidate
    raw_node = new_raw_node_with_config([1, 2, 3], config, new_storage())
    if role == StateRole.Follower:
        heartbeat = new_message(2, 1, MT.MsgHeartbeat, 0)
        heartbeat.term = 2
        raw_node.step(heartbeat)
    elif role in (StateRole.Candidate, StateRole.PreCandidate):
        raw_node.campaign()
    else:
        raw_node.campaign()
        rd = raw_node.ready()
        raw_node.store.append(rd.entries)
        assert rd.hs is not None
        raw_node.store.set_hardstate(rd.hs)
        raw_node.advance(rd)
        grant = new_message(2, 1, MT.MsgRequestVoteResponse, 0)
        grant.term = raw_node.raft.term
        raw_node.step(grant)
    assert raw_node.raft.state == role
    assert raw_node.raft.msgs
    return raw_node


@pytest.mark.parametrize("role", list(StateRole), ids=lambda r: r.name)
def test_ready_message_list_follows_role(role: StateRole) -> None:
    """ready() puts queued messages in persisted_messages exactly when the node is not leader."""
    raw_node = _node_in_role(role)
    queued = list(raw_node.raft.msgs)
    rd = raw_node.ready()
    if role == StateRole.Leader:
        assert rd.messages == queued
        assert rd.persisted_messages == []
    else:
        assert rd.messages == []
        assert rd.persisted_messages == queued
    assert raw_node.raft.msgs == []


def test_must_sync_false_on_commit_only_hard_state_change() -> None:
    """A Ready whose hard state differs only in commit (no entries, no snapshot) needs no fsync."""
    s = new_storage()
    raw_node = new_raw_node(1, [1, 2], 10, 1, s)

    append_msg = new_message_with_entries(2, 1, MT.MsgAppend, [new_entry(2, 2, b"a")])
    append_msg.term = 2
    append_msg.index = 1
    append_msg.log_term = 1
    append_msg.commit = 1
    raw_node.step(append_msg)
    rd = raw_node.ready()
    assert rd.must_sync
    assert rd.hs == hard_state(2, 1, 0)
    assert rd.hs is not None
    s.set_hardstate(rd.hs)
    s.append(rd.entries)
    raw_node.advance(rd)

    heartbeat = new_message(2, 1, MT.MsgHeartbeat, 0)
    heartbeat.term = 2
    heartbeat.commit = 2
    raw_node.step(heartbeat)
    rd = raw_node.ready()
    assert rd.hs == hard_state(2, 2, 0)
    assert rd.entries == []
    assert rd.snapshot == Snapshot()
    assert not rd.must_sync
    assert rd.committed_entries == [new_entry(2, 2, b"a")]


def test_advance_append_leaves_ready_hard_state_alone() -> None:
    """The HardState handed out in a Ready belongs to the application: advancing the node
    (which may raise the commit index) must not change it behind the application's back."""
    s = new_storage()
    raw_node = new_raw_node(1, [1], 10, 1, s)
    raw_node.campaign()
    rd = raw_node.ready()
    assert rd.hs == hard_state(2, 1, 1)
    hs = rd.hs
    s.set_hardstate(hs)
    s.append(rd.entries)
    light = raw_node.advance_append(rd)
    assert light.commit_index == 2
    assert hs == hard_state(2, 1, 1)
    assert s.hard_state() == hard_state(2, 1, 1)
