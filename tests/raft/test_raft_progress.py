# Ports of raft-rs harness/tests/integration_cases/test_raft.rs, group "Progress / replication"
# (progress states, probing, flow control, fast log rejection). Commit and proposal tests are in
# test_raft_replication.py.
#
# Covered raft-rs tests:
#   test_progress_committed_index, test_progress_leader, test_progress_resume_by_heartbeat_resp,
#   test_progress_paused, test_progress_flow_control, test_leader_append_response, test_bcast_beat,
#   test_recv_msg_beat, test_leader_increase_next, test_send_append_for_progress_probe,
#   test_send_append_for_progress_replicate, test_send_append_for_progress_snapshot,
#   test_recv_msg_unreachable, test_msg_append_response_wait_reset, test_handle_heartbeat_resp,
#   test_handle_msg_append, test_handle_heartbeat, test_commit, test_batch_msg_append,
#   test_fast_log_rejection, test_log_replication_with_reordered_message.
# Skipped: none.

from __future__ import annotations

import copy

import pytest

from multiraft.raft.storage import MemStorage
from multiraft.raft.testing import (
    SOME_DATA,
    Network,
    add_node,
    empty_entry,
    new_entry,
    new_message,
    new_message_with_entries,
    new_snapshot,
    new_storage,
    new_test_config,
    new_test_raft,
    new_test_raft_with_config,
    new_test_raft_with_logs,
    persist,
    read_messages,
)
from multiraft.raft.tracker import ProgressState
from multiraft.raft.types import (
    INVALID_ID,
    Entry,
    HardState,
    Message,
    MessageType,
    StateRole,
)
from tests.raft.replication_support import (
    _assert_raft_log,
    _commit_noop_entry,
    _committed_indexes,
    _expect_one_message,
    _pr,
    _store,
)

MT = MessageType



# ----------------------------------------------------------------------------
# Progress / replication


def test_progress_committed_index() -> None:
    nt = Network([None, None, None])
    nt.send([new_message(1, 1, MT.MsgHup)])
    assert nt.raft(1).state == StateRole.Leader
    for id in (1, 2, 3):
        _assert_raft_log(nt.raft(id), 1, 0, 1)
    assert _committed_indexes(nt.raft(1)) == (1, 1, 1)

    # Append entries between 1 and 2 only.
    m = new_message_with_entries(1, 1, MT.MsgPropose, [Entry(data=b"testdata")])
    nt.cut(1, 3)
    nt.send([m, copy.deepcopy(m)])
    nt.recover()
    _assert_raft_log(nt.raft(1), 3, 0, 3)
    _assert_raft_log(nt.raft(2), 3, 0, 3)
    _assert_raft_log(nt.raft(3), 1, 0, 1)
    assert _committed_indexes(nt.raft(1)) == (3, 3, 1)

    # A heartbeat round brings 3 up to date and reports its commit.
    nt.send([new_message(1, 1, MT.MsgBeat)])
    for id in (1, 2, 3):
        _assert_raft_log(nt.raft(id), 3, 0, 3)
    assert _committed_indexes(nt.raft(1)) == (3, 3, 3)

    # Node 2 becomes leader.
    nt.send([new_message(2, 2, MT.MsgHup)])
    assert nt.raft(2).state == StateRole.Leader
    for id in (1, 2, 3):
        _assert_raft_log(nt.raft(id), 4, 0, 4)
    assert _committed_indexes(nt.raft(2)) == (4, 4, 4)

    # Rejected appends do not move the committed indexes.
    nt.isolate(2)
    nt.send([new_message(2, 2, MT.MsgPropose, 2)])
    nt.recover()
    nt.dispatch([new_message(2, 2, MT.MsgPropose, 1)])
    msg_append = nt.read_messages()
    assert [(m.msg_type, m.index, m.log_term, m.commit) for m in msg_append] == [
        (MT.MsgAppend, 6, 2, 4),
        (MT.MsgAppend, 6, 2, 4),
    ]
    nt.dispatch(msg_append)
    msg_append_response = nt.read_messages()
    assert all(m.reject and m.reject_hint == 4 for m in msg_append_response)
    assert len(msg_append_response) == 2
    nt.dispatch(msg_append_response)
    msg_append = nt.read_messages()
    assert sorted((m.to, m.index, len(m.entries)) for m in msg_append) == [(1, 4, 3), (3, 4, 3)]
    assert _committed_indexes(nt.raft(2)) == (4, 4, 4)

    nt.send(msg_append)
    assert _committed_indexes(nt.raft(2)) == (7, 7, 7)

    # Node 1 becomes leader again.
    nt.send([new_message(1, 1, MT.MsgHup)])
    assert nt.raft(1).state == StateRole.Leader
    for id in (1, 2, 3):
        _assert_raft_log(nt.raft(id), 8, 0, 8)
    assert _committed_indexes(nt.raft(1)) == (8, 8, 8)

    # A delayed response carrying a smaller commit does not regress committed_index.
    nt.dispatch([new_message(1, 1, MT.MsgPropose, 1), new_message(1, 1, MT.MsgPropose, 1)])
    nt.dispatch(nt.read_messages())
    nt.dispatch(nt.read_messages())
    nt.dispatch(nt.read_messages())
    responses = nt.read_messages()
    assert len(responses) == 4
    assert all(m.msg_type == MT.MsgAppendResponse and m.index == 10 for m in responses)
    fresh = [m for m in responses if m.commit == 10]
    stale = [m for m in responses if m.commit == 9]
    assert sorted(m.from_ for m in fresh) == [2, 3]
    assert sorted(m.from_ for m in stale) == [2, 3]
    nt.send(fresh)
    assert _committed_indexes(nt.raft(1)) == (10, 10, 10)
    nt.send(stale)
    assert _committed_indexes(nt.raft(1)) == (10, 10, 10)


def test_progress_leader() -> None:
    raft = new_test_raft(1, [1, 2], 5, 1, new_storage())
    raft.become_candidate()
    raft.become_leader()
    persist(raft)
    _pr(raft, 2).become_replicate()

    for i in range(5):
        pr = _pr(raft, 1)
        assert pr.state == ProgressState.Replicate
        assert pr.matched == i + 1
        assert pr.next_idx == pr.matched + 1
        raft.step(new_message(1, 1, MT.MsgPropose, 1))
        persist(raft)


def test_progress_resume_by_heartbeat_resp() -> None:
    raft = new_test_raft(1, [1, 2], 5, 1, new_storage())
    raft.become_candidate()
    raft.become_leader()
    _pr(raft, 2).paused = True

    raft.step(new_message(1, 1, MT.MsgBeat))
    assert _pr(raft, 2).paused

    _pr(raft, 2).become_replicate()
    raft.step(new_message(2, 1, MT.MsgHeartbeatResponse))
    assert not _pr(raft, 2).paused


def test_progress_paused() -> None:
    raft = new_test_raft(1, [1, 2], 5, 1, new_storage())
    raft.become_candidate()
    raft.become_leader()
    for _ in range(3):
        raft.step(new_message_with_entries(1, 1, MT.MsgPropose, [Entry(data=b"some_data")]))
    assert len(read_messages(raft)) == 1


def test_progress_flow_control() -> None:
    cfg = new_test_config(1, 5, 1)
    cfg.max_inflight_msgs = 3
    cfg.max_size_per_msg = 2048
    r = new_test_raft_with_config(cfg, _store([1, 2]))
    r.become_candidate()
    r.become_leader()
    read_messages(r)

    # While node 2 probes, propose a bunch of entries.
    _pr(r, 2).become_probe()
    data = b"a" * 1000
    for _ in range(10):
        r.step(new_message_with_entries(1, 1, MT.MsgPropose, [new_entry(0, 0, data)]))

    ms = read_messages(r)
    # One append: the leader's no-op plus the first proposal.
    assert len(ms) == 1
    assert ms[0].msg_type == MT.MsgAppend
    assert [len(e.data) for e in ms[0].entries] == [0, 1000]

    # Acked: replicate state, three messages of two entries each fill the window.
    ack = new_message(2, 1, MT.MsgAppendResponse)
    ack.index = ms[0].entries[1].index
    r.step(ack)
    ms = read_messages(r)
    assert len(ms) == 3
    for m in ms:
        assert m.msg_type == MT.MsgAppend
        assert len(m.entries) == 2

    # Ack all three: the last two messages carry the remaining three entries.
    ack = new_message(2, 1, MT.MsgAppendResponse)
    ack.index = ms[2].entries[1].index
    r.step(ack)
    ms = read_messages(r)
    assert [m.msg_type for m in ms] == [MT.MsgAppend, MT.MsgAppend]
    assert [len(m.entries) for m in ms] == [2, 1]


@pytest.mark.parametrize(
    ("index", "reject", "wmatch", "wnext", "wmsg_num", "windex", "wcommitted"),
    [
        (3, True, 0, 3, 0, 0, 0),  # stale response: no reply
        (2, True, 0, 2, 1, 1, 0),  # denied: decrease next, probe
        (2, False, 2, 4, 2, 2, 2),  # accepted: commit, broadcast the commit index
        (0, False, 0, 3, 0, 0, 0),  # ignores a stale accept
    ],
)
def test_leader_append_response(
    index: int,
    reject: bool,
    wmatch: int,
    wnext: int,
    wmsg_num: int,
    windex: int,
    wcommitted: int,
) -> None:
    """Raft paper §5.3: the leader decrements next on rejection and commits on a quorum."""
    store = _store([1, 2, 3])
    store.append([empty_entry(0, 1), empty_entry(1, 2)])
    sm = new_test_raft(1, [1, 2, 3], 10, 1, store)
    sm.become_candidate()
    sm.become_leader()
    read_messages(sm)

    m = new_message(2, 0, MT.MsgAppendResponse)
    m.index = index
    m.term = sm.term
    m.reject = reject
    m.reject_hint = index
    sm.step(m)

    assert _pr(sm, 2).matched == wmatch
    assert _pr(sm, 2).next_idx == wnext
    msgs = read_messages(sm)
    assert len(msgs) == wmsg_num
    for msg in msgs:
        assert msg.index == windex
        assert msg.commit == wcommitted


def test_bcast_beat() -> None:
    offset = 1000
    store = new_storage()
    store.apply_snapshot(new_snapshot(offset, 1, [1, 2, 3]))
    sm = new_test_raft(1, [1, 2, 3], 10, 1, store)
    sm.term = 1
    sm.become_candidate()
    sm.become_leader()
    for i in range(10):
        sm.append_entry([empty_entry(0, offset + i + 1)])
    persist(sm)

    # A slow follower and an up-to-date one.
    _pr(sm, 2).matched, _pr(sm, 2).next_idx = offset + 5, offset + 6
    last_index = sm.raft_log.last_index()
    _pr(sm, 3).matched, _pr(sm, 3).next_idx = last_index, last_index + 1

    sm.step(new_message(0, 0, MT.MsgBeat))
    msgs = read_messages(sm)
    assert len(msgs) == 2
    want_commit = {
        2: min(sm.raft_log.committed, _pr(sm, 2).matched),
        3: min(sm.raft_log.committed, _pr(sm, 3).matched),
    }
    for m in msgs:
        assert m.msg_type == MT.MsgHeartbeat
        assert m.index == 0
        assert m.log_term == 0
        assert m.to in want_commit
        assert m.commit == want_commit.pop(m.to)
        assert m.entries == []
    assert want_commit == {}

    # Beyond raft-rs: once committed passes the slow follower's match, its
    # heartbeat must carry only what it is known to hold.
    sm.raft_log.commit_to(last_index)
    sm.step(new_message(0, 0, MT.MsgBeat))
    commits = {m.to: m.commit for m in read_messages(sm)}
    assert commits == {2: offset + 5, 3: last_index}


@pytest.mark.parametrize(
    ("state", "w_msg"),
    [(StateRole.Leader, 2), (StateRole.Candidate, 0), (StateRole.Follower, 0)],
)
def test_recv_msg_beat(state: StateRole, w_msg: int) -> None:
    store = _store([1, 2, 3])
    store.append([empty_entry(0, 1), empty_entry(1, 2)])
    sm = new_test_raft(1, [1, 2, 3], 10, 1, store)
    sm.state = state
    sm.step(new_message(1, 1, MT.MsgBeat))
    msgs = read_messages(sm)
    assert len(msgs) == w_msg
    assert all(m.msg_type == MT.MsgHeartbeat for m in msgs)


@pytest.mark.parametrize(
    ("state", "next_idx", "wnext"),
    [
        # Replicate: next advances optimistically (3 previous + no-op + proposal + 1).
        (ProgressState.Replicate, 2, 3 + 1 + 1 + 1),
        # Probe: next stays.
        (ProgressState.Probe, 2, 2),
    ],
)
def test_leader_increase_next(state: ProgressState, next_idx: int, wnext: int) -> None:
    sm = new_test_raft(1, [1, 2], 10, 1, new_storage())
    sm.raft_log.append([empty_entry(1, 1), empty_entry(1, 2), empty_entry(1, 3)])
    persist(sm)
    sm.become_candidate()
    sm.become_leader()
    _pr(sm, 2).state = state
    _pr(sm, 2).next_idx = next_idx
    sm.step(new_message(1, 1, MT.MsgPropose, 1))
    assert _pr(sm, 2).next_idx == wnext


def test_send_append_for_progress_probe() -> None:
    r = new_test_raft(1, [1, 2], 10, 1, new_storage())
    r.become_candidate()
    r.become_leader()
    read_messages(r)
    _pr(r, 2).become_probe()

    for i in range(3):
        if i == 0:
            # Only the first round sends; then the peer is paused.
            r.append_entry([new_entry(0, 0, SOME_DATA)])
            r.send_append(2)
            msgs = read_messages(r)
            assert len(msgs) == 1
            assert msgs[0].index == 0

        assert _pr(r, 2).paused
        for _ in range(10):
            r.append_entry([new_entry(0, 0, SOME_DATA)])
            r.send_append(2)
            assert read_messages(r) == []

        for _ in range(r.heartbeat_timeout()):
            r.step(new_message(1, 1, MT.MsgBeat))
        assert _pr(r, 2).paused
        msgs = read_messages(r)
        assert len(msgs) == 1
        assert msgs[0].msg_type == MT.MsgHeartbeat

    # A heartbeat response lets exactly one more append through.
    r.step(new_message(2, 1, MT.MsgHeartbeatResponse))
    msgs = read_messages(r)
    assert len(msgs) == 1
    assert msgs[0].index == 0
    assert _pr(r, 2).paused


def test_send_append_for_progress_replicate() -> None:
    r = new_test_raft(1, [1, 2], 10, 1, new_storage())
    r.become_candidate()
    r.become_leader()
    read_messages(r)
    _pr(r, 2).become_replicate()
    for _ in range(10):
        r.append_entry([new_entry(0, 0, SOME_DATA)])
        r.send_append(2)
        assert len(read_messages(r)) == 1


def test_send_append_for_progress_snapshot() -> None:
    r = new_test_raft(1, [1, 2], 10, 1, new_storage())
    r.become_candidate()
    r.become_leader()
    read_messages(r)
    _pr(r, 2).become_snapshot(10)
    for _ in range(10):
        r.append_entry([new_entry(0, 0, SOME_DATA)])
        r.send_append(2)
        assert read_messages(r) == []


def test_recv_msg_unreachable() -> None:
    s = new_storage()
    s.append([empty_entry(1, 1), empty_entry(1, 2), empty_entry(1, 3)])
    r = new_test_raft(1, [1, 2], 10, 1, s)
    r.become_candidate()
    r.become_leader()
    read_messages(r)
    pr = _pr(r, 2)
    pr.matched = 3
    pr.become_replicate()
    pr.optimistic_update(5)

    r.step(new_message(2, 1, MT.MsgUnreachable))
    pr = _pr(r, 2)
    assert pr.state == ProgressState.Probe
    assert pr.next_idx == pr.matched + 1


def test_msg_append_response_wait_reset() -> None:
    sm = new_test_raft(1, [1, 2, 3], 5, 1, new_storage())
    sm.become_candidate()
    sm.become_leader()
    persist(sm)
    sm.bcast_append()
    read_messages(sm)

    # Node 2 acks the no-op: committed.
    m = new_message(2, 0, MT.MsgAppendResponse)
    m.index = 1
    sm.step(m)
    assert sm.raft_log.committed == 1
    read_messages(sm)

    # A new proposal goes only to the peers not waiting (node 2).
    m = new_message(1, 0, MT.MsgPropose)
    m.entries = [empty_entry(0, 0)]
    sm.step(m)
    persist(sm)
    msgs = read_messages(sm)
    assert len(msgs) == 1
    assert msgs[0].msg_type == MT.MsgAppend
    assert msgs[0].to == 2
    assert [e.index for e in msgs[0].entries] == [2]

    # Node 3's ack releases its wait and entry 2 follows.
    m = new_message(3, 0, MT.MsgAppendResponse)
    m.index = 1
    sm.step(m)
    msgs = read_messages(sm)
    assert len(msgs) == 1
    assert msgs[0].msg_type == MT.MsgAppend
    assert msgs[0].to == 3
    assert [e.index for e in msgs[0].entries] == [2]


def test_handle_heartbeat_resp() -> None:
    store = new_storage()
    store.append([empty_entry(1, 1), empty_entry(2, 2), empty_entry(3, 3)])
    sm = new_test_raft(1, [1, 2], 5, 1, store)
    sm.become_candidate()
    sm.become_leader()
    sm.raft_log.commit_to(sm.raft_log.last_index())

    # A heartbeat response from a lagging node re-sends MsgAppend, each time.
    sm.step(new_message(2, 0, MT.MsgHeartbeatResponse))
    msgs = read_messages(sm)
    assert [m.msg_type for m in msgs] == [MT.MsgAppend]
    sm.step(new_message(2, 0, MT.MsgHeartbeatResponse))
    msgs = read_messages(sm)
    assert [m.msg_type for m in msgs] == [MT.MsgAppend]

    # Once caught up, heartbeat responses send nothing.
    m = new_message(2, 0, MT.MsgAppendResponse)
    m.index = msgs[0].index + len(msgs[0].entries)
    sm.step(m)
    read_messages(sm)
    sm.step(new_message(2, 0, MT.MsgHeartbeatResponse))
    assert read_messages(sm) == []


def _nm(
    term: int, log_term: int, index: int, commit: int, ents: list[tuple[int, int]] | None
) -> Message:
    m = Message(msg_type=MT.MsgAppend, term=term, log_term=log_term, index=index, commit=commit)
    if ents is not None:
        m.entries = [empty_entry(t, i) for i, t in ents]
    return m


@pytest.mark.parametrize(
    ("m", "w_index", "w_commit", "w_reject"),
    [
        # previous log mismatch / non-existent: reject
        (_nm(2, 3, 2, 3, None), 2, 0, True),
        (_nm(2, 3, 3, 3, None), 2, 0, True),
        # accept, truncating conflicts
        (_nm(2, 1, 1, 1, None), 2, 1, False),
        (_nm(2, 0, 0, 1, [(1, 2)]), 1, 1, False),
        (_nm(2, 2, 2, 3, [(3, 2), (4, 2)]), 4, 3, False),
        (_nm(2, 2, 2, 4, [(3, 2)]), 3, 3, False),
        (_nm(2, 1, 1, 4, [(2, 2)]), 2, 2, False),
        # commit up to the last new entry
        (_nm(1, 1, 1, 3, None), 2, 1, False),
        (_nm(1, 1, 1, 3, [(2, 2)]), 2, 2, False),
        (_nm(2, 2, 2, 3, None), 2, 2, False),
        (_nm(2, 2, 2, 4, None), 2, 2, False),
    ],
)
def test_handle_msg_append(m: Message, w_index: int, w_commit: int, w_reject: bool) -> None:
    """Raft paper §5.3: the AppendEntries consistency check and follower commit rule."""
    sm = new_test_raft_with_logs(
        1, [1], 10, 1, MemStorage(), [empty_entry(1, 1), empty_entry(2, 2)]
    )
    sm.become_follower(2, INVALID_ID)
    sm.handle_append_entries(m)
    assert sm.raft_log.last_index() == w_index
    assert sm.raft_log.committed == w_commit
    msgs = read_messages(sm)
    assert len(msgs) == 1
    assert msgs[0].reject == w_reject


@pytest.mark.parametrize(("m_commit", "w_commit"), [(3, 3), (1, 2)])
def test_handle_heartbeat(m_commit: int, w_commit: int) -> None:
    commit = 2
    m = new_message(2, 1, MT.MsgHeartbeat)
    m.term = 2
    m.commit = m_commit
    store = _store([1, 2])
    store.append([empty_entry(1, 1), empty_entry(2, 2), empty_entry(3, 3)])
    sm = new_test_raft_with_config(new_test_config(1, 5, 1), store)
    sm.become_follower(2, 2)
    sm.raft_log.commit_to(commit)
    sm.handle_heartbeat(m)
    assert sm.raft_log.committed == w_commit
    msgs = read_messages(sm)
    assert [x.msg_type for x in msgs] == [MT.MsgHeartbeatResponse]


@pytest.mark.parametrize(
    ("matches", "logs", "sm_term", "w"),
    [
        # single
        ([1], [empty_entry(1, 1)], 1, 1),
        ([1], [empty_entry(1, 1)], 2, 0),
        ([2], [empty_entry(1, 1), empty_entry(2, 2)], 2, 2),
        ([1], [empty_entry(2, 1)], 2, 1),
        # odd
        ([2, 1, 1], [empty_entry(1, 1), empty_entry(2, 2)], 1, 1),
        ([2, 1, 1], [empty_entry(1, 1), empty_entry(1, 2)], 2, 0),
        ([2, 1, 2], [empty_entry(1, 1), empty_entry(2, 2)], 2, 2),
        ([2, 1, 2], [empty_entry(1, 1), empty_entry(1, 2)], 2, 0),
        # even
        ([2, 1, 1, 1], [empty_entry(1, 1), empty_entry(2, 2)], 1, 1),
        ([2, 1, 1, 1], [empty_entry(1, 1), empty_entry(1, 2)], 2, 0),
        ([2, 1, 1, 2], [empty_entry(1, 1), empty_entry(2, 2)], 1, 1),
        ([2, 1, 1, 2], [empty_entry(1, 1), empty_entry(1, 2)], 2, 0),
        ([2, 1, 2, 2], [empty_entry(1, 1), empty_entry(2, 2)], 2, 2),
        ([2, 1, 2, 2], [empty_entry(1, 1), empty_entry(1, 2)], 2, 0),
    ],
)
def test_commit(matches: list[int], logs: list[Entry], sm_term: int, w: int) -> None:
    """Raft paper §5.4.2: a leader commits the quorum index only if it is of its own term."""
    store = _store([1])
    store.append(logs)
    store.set_hardstate(HardState(term=sm_term))
    sm = new_test_raft_with_config(new_test_config(1, 5, 1), store)
    for j, v in enumerate(matches):
        id = j + 1
        if sm.prs().get(id) is None:
            sm.apply_conf_change(add_node(id))
            pr = _pr(sm, id)
            pr.matched = v
            pr.next_idx = v + 1
    sm.maybe_commit()
    assert sm.raft_log.committed == w


def test_batch_msg_append() -> None:
    storage = new_storage()
    raft = new_test_raft(1, [1, 2, 3], 10, 1, storage)
    raft.become_candidate()
    raft.become_leader()
    raft.set_batch_append(True)
    _commit_noop_entry(raft, storage)
    for _ in range(10):
        raft.step(new_message(1, 1, MT.MsgPropose, 1))
    assert len(raft.msgs) == 2
    for msg in raft.msgs:
        assert len(msg.entries) == 10
        assert msg.index == 1
    # A non-contiguous append is not merged.
    reject = new_message(2, 1, MT.MsgAppendResponse)
    reject.reject = True
    reject.index = 2
    raft.step(reject)
    assert len(raft.msgs) == 3


def _log(terms: list[int]) -> list[Entry]:
    return [empty_entry(t, i) for i, t in enumerate(terms, 1)]


@pytest.mark.parametrize(
    (
        "leader_log",
        "follower_log",
        "reject_hint_term",
        "reject_hint_index",
        "next_append_term",
        "next_append_index",
    ),
    [
        # The leader finds the conflict quickly.
        (_log([1, 2, 2, 4, 4, 4, 4]), _log([1, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3]), 3, 7, 2, 3),
        (_log([1, 2, 2, 3, 4, 4, 4, 5]), _log([1, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3]), 3, 8, 3, 4),
        # The follower finds the conflict quickly.
        (_log([1, 1, 1, 1]), _log([1, 2, 2, 4]), 1, 1, 1, 1),
        # ... with a longer uncommitted tail on the leader
        (_log([1, 1, 1, 1, 1, 1]), _log([1, 2, 2, 4]), 1, 1, 1, 1),
        # ... with a longer uncommitted tail on the follower
        (_log([1, 1, 1, 1]), _log([1, 2, 2, 4, 4, 4]), 1, 1, 1, 1),
        # No conflict at all.
        (_log([1, 1, 1, 4, 5]), _log([1, 1, 1, 4]), 4, 4, 4, 4),
        # The example of the leader-side search.
        (_log([2, 5, 5, 5, 5, 5, 5, 5, 5]), _log([2, 4, 4, 4, 4, 4]), 4, 6, 2, 1),
        # The example of the follower-side search.
        (_log([2, 2, 2, 2, 2]), _log([2, 4, 4, 4, 4, 4, 4, 4]), 2, 1, 2, 1),
    ],
)
def test_fast_log_rejection(
    leader_log: list[Entry],
    follower_log: list[Entry],
    reject_hint_term: int,
    reject_hint_index: int,
    next_append_term: int,
    next_append_index: int,
) -> None:
    """Raft paper §5.3 (optimisation): skip a whole conflicting term per round trip."""
    s1 = _store([1, 2, 3])
    s1.append(leader_log)
    s2 = _store([1, 2, 3])
    s2.append(follower_log)
    n1 = new_test_raft(1, [1, 2, 3], 10, 1, s1)
    n2 = new_test_raft(2, [1, 2, 3], 10, 1, s2)
    n1.become_candidate()
    n1.become_leader()

    n2.step(new_message(2, 2, MT.MsgHeartbeat))
    msgs = read_messages(n2)
    assert [m.msg_type for m in msgs] == [MT.MsgHeartbeatResponse]
    n1.step(msgs[0])

    msgs = read_messages(n1)
    assert [m.msg_type for m in msgs] == [MT.MsgAppend]
    n2.step(msgs[0])

    msgs = read_messages(n2)
    assert [m.msg_type for m in msgs] == [MT.MsgAppendResponse]
    assert msgs[0].reject
    assert msgs[0].reject_hint == reject_hint_index
    assert msgs[0].log_term == reject_hint_term
    n1.step(msgs[0])

    msgs = read_messages(n1)
    assert len(msgs) == 1
    assert msgs[0].log_term == next_append_term
    assert msgs[0].index == next_append_index


def test_log_replication_with_reordered_message() -> None:
    r1 = new_test_raft(1, [1, 2], 10, 1, new_storage())
    r1.become_candidate()
    r1.become_leader()
    read_messages(r1)
    _pr(r1, 2).become_replicate()

    r2 = new_test_raft(2, [1, 2], 10, 1, new_storage())

    # r1 sends two appends.
    r1.append_entry([new_entry(0, 0, SOME_DATA)])
    r1.send_append(2)
    req1 = _expect_one_message(r1)
    r1.append_entry([new_entry(0, 0, SOME_DATA)])
    r1.send_append(2)
    req2 = _expect_one_message(r1)

    # r2 sees the second first and rejects it.
    r2.step(req2)
    resp2 = _expect_one_message(r2)
    assert resp2.reject
    assert resp2.reject_hint == 0
    assert resp2.index == 2

    # r2 accepts the first; r1 records the match.
    r2.step(req1)
    m = _expect_one_message(r2)
    assert not m.reject
    assert m.index == 2
    r1.step(m)
    assert _pr(r1, 2).matched == 2

    # r1 falls back to probing after a transient failure.
    r1.step(new_message(2, 1, MT.MsgUnreachable))
    assert _pr(r1, 2).state == ProgressState.Probe

    # The delayed rejection makes r1 resend from the match index, not from the hint.
    r1.step(resp2)
    m = _expect_one_message(r1)
    assert _pr(r1, 2).matched == m.index

