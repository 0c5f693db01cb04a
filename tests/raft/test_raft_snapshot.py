# Ports of raft-rs snapshot scenarios:
#   harness/tests/integration_cases/test_raft.rs, group "Snapshots":
#     test_restore, test_restore_ignore_snapshot, test_provide_snap, test_ignore_providing_snapshot,
#     test_restore_from_snap_msg, test_slow_node_restore, test_restore_with_learner,
#     test_restore_with_voters_outgoing, test_restore_depromote_voter, test_restore_learner,
#     test_restore_learner_promotion, test_learner_receive_snapshot, test_follower_request_snapshot,
#     test_request_snapshot_unavailable, test_request_snapshot_matched_change,
#     test_request_snapshot_none_replicate, test_request_snapshot_step_down,
#     test_request_snapshot_on_role_change, test_request_snapshot_after_term_change;
#   harness/tests/integration_cases/test_raft_snap.rs (all 7):
#     test_sending_snapshot_set_pending_snapshot, test_pending_snapshot_pause_replication,
#     test_snapshot_failure, test_snapshot_succeed, test_snapshot_abort, test_snapshot_with_min_term,
#     test_request_snapshot.
# Skipped: none.

from __future__ import annotations

import copy

import pytest

from multiraft.raft.errors import RequestSnapshotDropped
from multiraft.raft.raft import Raft
from multiraft.raft.storage import MemStorage
from multiraft.raft.testing import (
    Network,
    new_message,
    new_message_with_entries,
    new_snapshot,
    new_storage,
    new_test_learner_raft,
    new_test_raft,
    new_test_raft_with_prevote,
    persist,
    read_messages,
)
from multiraft.raft.tracker import Progress, ProgressState
from multiraft.raft.types import (
    INVALID_INDEX,
    Entry,
    Message,
    MessageType,
    Snapshot,
    StateRole,
)

MT = MessageType


def _pr(r: Raft, id: int) -> Progress:
    pr = r.prs().get(id)
    assert pr is not None, f"no progress for {id}"
    return pr


def _testing_snap() -> Snapshot:
    return new_snapshot(11, 11, [1, 2])


def _restored_leader() -> Raft:
    """Node 1 of {1, 2}, restored from snapshot (11, 11), then elected at term 12."""
    sm = new_test_raft(1, [1, 2], 10, 1, new_storage())
    sm.restore(_testing_snap())
    persist(sm)
    sm.become_candidate()
    sm.become_leader()
    return sm


# ----------------------------------------------------------------------------
# test_raft.rs "Snapshots"


def test_restore() -> None:
    s = new_snapshot(11, 11, [1, 2, 3])
    sm = new_test_raft(1, [1, 2], 10, 1, new_storage())
    assert sm.restore(s)
    assert sm.raft_log.last_index() == 11
    assert sm.raft_log.term(11) == 11
    assert sorted(sm.prs().conf().voters.ids()) == [1, 2, 3]
    # The same snapshot again is a no-op.
    assert not sm.restore(s)


def test_restore_ignore_snapshot() -> None:
    commit = 1
    sm = new_test_raft(1, [1, 2], 10, 1, new_storage())
    sm.raft_log.append([Entry(term=1, index=i) for i in (1, 2, 3)])
    sm.raft_log.commit_to(commit)

    s = new_snapshot(commit, 1, [1, 2])
    # At the commit index: ignored.
    assert not sm.restore(s)
    assert sm.raft_log.committed == commit

    # Matching (index, term) in the log: ignored, but the commit fast-forwards.
    s.metadata.index = commit + 1
    assert not sm.restore(s)
    assert sm.raft_log.committed == commit + 1
    assert sm.raft_log.last_index() == 3


def test_provide_snap() -> None:
    sm = new_test_raft(1, [1], 10, 1, new_storage())
    sm.restore(new_snapshot(11, 11, [1, 2]))
    persist(sm)
    sm.become_candidate()
    sm.become_leader()

    # Node 2 needs entries that were compacted away.
    _pr(sm, 2).next_idx = sm.raft_log.first_index()
    m = new_message(2, 1, MT.MsgAppendResponse)
    m.index = _pr(sm, 2).next_idx - 1
    m.reject = True
    sm.step(m)

    msgs = read_messages(sm)
    assert [x.msg_type for x in msgs] == [MT.MsgSnapshot]
    assert msgs[0].get_snapshot().metadata.index == 11


def test_ignore_providing_snapshot() -> None:
    sm = new_test_raft(1, [1], 10, 1, new_storage())
    sm.restore(new_snapshot(11, 11, [1, 2]))
    persist(sm)
    sm.become_candidate()
    sm.become_leader()

    # Node 2 needs a snapshot but is not recently active: nothing is sent.
    _pr(sm, 2).next_idx = sm.raft_log.first_index() - 1
    _pr(sm, 2).recent_active = False
    sm.step(new_message(1, 1, MT.MsgPropose, 1))
    assert read_messages(sm) == []


def test_restore_from_snap_msg() -> None:
    sm = new_test_raft(2, [1, 2], 10, 1, new_storage())
    m = new_message(1, 0, MT.MsgSnapshot)
    m.term = 2
    m.snapshot = new_snapshot(11, 11, [1, 2])
    sm.step(m)
    assert sm.leader_id == 1


def test_slow_node_restore() -> None:
    nt = Network([None, None, None])
    nt.send([new_message(1, 1, MT.MsgHup)])

    nt.isolate(3)
    for _ in range(100):
        nt.send([new_message(1, 1, MT.MsgPropose, 1)])
    leader = nt.raft(1)
    _next_ents(leader, nt.storage[1])
    nt.storage[1].commit_to(leader.raft_log.applied)
    nt.storage[1].compact(leader.raft_log.applied)

    nt.recover()
    # Heartbeat until the leader has heard from node 3.
    for _ in range(100):
        nt.send([new_message(1, 1, MT.MsgBeat)])
        if _pr(leader, 3).recent_active:
            break
    assert _pr(leader, 3).recent_active

    # The next proposal triggers a snapshot, the one after commits.
    nt.send([new_message(1, 1, MT.MsgPropose, 1)])
    nt.send([new_message(1, 1, MT.MsgPropose, 1)])
    assert nt.raft(3).raft_log.committed == leader.raft_log.committed
    assert leader.raft_log.committed == 103


def _next_ents(r: Raft, s: MemStorage) -> list[Entry]:
    unstable = list(r.raft_log.unstable_entries())
    if unstable:
        last = unstable[-1]
        r.raft_log.stable_entries(last.index, last.term)
        s.append(unstable)
        r.on_persist_entries(last.index, last.term)
    ents = r.raft_log.next_entries()
    r.commit_apply(r.raft_log.committed)
    return list(ents or [])


def test_restore_with_learner() -> None:
    s = new_snapshot(11, 11, [1, 2])
    s.metadata.conf_state.learners.append(3)

    sm = new_test_learner_raft(3, [1, 2], [3], 10, 1, new_storage())
    assert not sm.promotable()
    assert sm.restore(s)
    assert sm.raft_log.last_index() == 11
    assert sm.raft_log.term(11) == 11
    assert sorted(sm.prs().conf().voters.ids()) == [1, 2]
    assert sorted(sm.prs().conf().learners) == [3]
    for node in s.metadata.conf_state.voters:
        assert sm.prs().get(node) is not None
        assert node not in sm.prs().conf().learners
    for node in s.metadata.conf_state.learners:
        assert sm.prs().get(node) is not None
        assert node in sm.prs().conf().learners
    assert not sm.restore(s)


def test_restore_with_voters_outgoing() -> None:
    s = new_snapshot(11, 11, [2, 3, 4])
    s.metadata.conf_state.voters_outgoing = [1, 2, 3]

    sm = new_test_raft(1, [1, 2], 10, 1, new_storage())
    assert sm.restore(s)
    assert sm.raft_log.last_index() == 11
    assert sm.raft_log.term(11) == 11
    assert sorted(sm.prs().conf().voters.ids()) == [1, 2, 3, 4]
    assert not sm.restore(s)


def test_restore_depromote_voter() -> None:
    s = new_snapshot(11, 11, [1, 2])
    s.metadata.conf_state.learners.append(3)

    sm = new_test_raft(3, [1, 2, 3], 10, 1, new_storage())
    assert sm.promotable()
    assert sm.restore(s)
    assert not sm.promotable()
    assert 3 in sm.prs().conf().learners


def test_restore_learner() -> None:
    s = new_snapshot(11, 11, [1, 2])
    s.metadata.conf_state.learners.append(3)

    sm = new_test_raft(3, [], 10, 1, new_storage())
    # An uninitialized peer cannot be promoted.
    assert not sm.promotable()
    assert sm.restore(s)
    assert not sm.promotable()


def test_restore_learner_promotion() -> None:
    s = new_snapshot(11, 11, [1, 2, 3])
    sm = new_test_learner_raft(3, [1, 2], [3], 10, 1, new_storage())
    assert not sm.promotable()
    assert sm.restore(s)
    assert sm.promotable()


def test_learner_receive_snapshot() -> None:
    s = new_snapshot(11, 11, [1])
    s.metadata.conf_state.learners.append(2)

    n1 = new_test_learner_raft(1, [1], [2], 10, 1, new_storage())
    n2 = new_test_learner_raft(2, [1], [2], 10, 1, new_storage())
    n1.restore(s)
    persist(n1)
    n1.commit_apply(n1.raft_log.committed)

    network = Network([n1, n2])
    timeout = n1.election_timeout()
    n1.set_randomized_election_timeout(timeout)
    for _ in range(timeout):
        n1.tick()
    assert n1.state == StateRole.Leader

    network.send([Message(msg_type=MT.MsgBeat, from_=1, to=1)])
    assert network.raft(2).raft_log.committed == network.raft(1).raft_log.committed
    assert network.raft(2).raft_log.committed >= 11


def _index_term_11(id: int, ids: list[int]) -> Raft:
    store = MemStorage()
    store.apply_snapshot(new_snapshot(11, 11, ids))
    raft = new_test_raft(id, ids, 5, 1, store)
    raft.reset(11)
    return raft


def _testdata_prop() -> Message:
    return new_message_with_entries(1, 1, MT.MsgPropose, [Entry(data=b"testdata")])


def _prepare_request_snapshot() -> tuple[Network, Snapshot]:
    nt = Network([_index_term_11(id, [1, 2, 3]) for id in (1, 2, 3)])
    nt.send([new_message(1, 1, MT.MsgHup)])

    nt.send([_testdata_prop(), _testdata_prop()])
    assert nt.raft(1).raft_log.committed == 14
    assert nt.raft(2).raft_log.committed == 14

    ents = list(nt.raft(1).raft_log.unstable_entries())
    nt.storage[1].append(ents)
    nt.storage[1].commit_to(14)
    nt.raft(1).raft_log.applied = 14

    # Commit one more entry.
    nt.send([_testdata_prop()])
    s = nt.storage[1].snapshot(0, 0)
    return nt, s


def _pop_request_snapshot(nt: Network, request_idx: int) -> Message:
    req_snap = nt.raft(2).msgs.pop()
    assert req_snap.msg_type == MT.MsgAppendResponse
    assert req_snap.reject
    assert req_snap.request_snapshot == request_idx
    return req_snap


def test_follower_request_snapshot() -> None:
    nt, s = _prepare_request_snapshot()

    request_idx = nt.raft(1).raft_log.committed
    assert s.metadata.index < request_idx
    nt.raft(2).request_snapshot()
    req_snap = _pop_request_snapshot(nt, request_idx)
    nt.raft(1).step(req_snap)

    # New proposals do not reach peer 2 while it waits for its snapshot.
    nt.send([_testdata_prop()])
    assert nt.raft(1).raft_log.committed == 16
    assert _pr(nt.raft(1), 2).state == ProgressState.Snapshot
    assert nt.raft(2).raft_log.committed == 15

    # Once the snapshot is reported, replication resumes.
    nt.send([new_message(2, 1, MT.MsgSnapStatus)])
    nt.send([new_message(2, 1, MT.MsgHeartbeatResponse)])
    nt.send([_testdata_prop()])
    assert nt.raft(1).raft_log.committed == 17
    assert nt.raft(2).raft_log.committed == 17


def test_request_snapshot_unavailable() -> None:
    nt, s = _prepare_request_snapshot()

    request_idx = nt.raft(1).raft_log.committed
    assert s.metadata.index < request_idx
    nt.raft(2).request_snapshot()
    req_snap = _pop_request_snapshot(nt, request_idx)

    # SnapshotTemporarilyUnavailable: peer 2 stays in Probe.
    nt.storage[1].trigger_snap_unavailable()
    nt.raft(1).step(copy.deepcopy(req_snap))
    assert _pr(nt.raft(1), 2).state == ProgressState.Probe

    nt.storage[1].trigger_snap_unavailable()
    nt.raft(1).step(copy.deepcopy(req_snap))
    assert _pr(nt.raft(1), 2).state == ProgressState.Probe

    # Available now; the retried request is not stale although reject != next - 1.
    nt.raft(1).step(req_snap)
    assert _pr(nt.raft(1), 2).state == ProgressState.Snapshot


def test_request_snapshot_matched_change() -> None:
    nt, _ = _prepare_request_snapshot()
    # Make the leader's matched greater than the follower's committed.
    nt.raft(2).raft_log.committed -= 1

    nt.raft(2).request_snapshot()
    req_snap = nt.raft(2).msgs.pop()
    # Out of order (index < matched): ignored.
    nt.raft(1).step(req_snap)
    assert _pr(nt.raft(1), 2).state == ProgressState.Replicate

    # The follower answers the next heartbeat with the request again.
    for _ in range(nt.raft(1).heartbeat_timeout()):
        nt.raft(1).tick()
    msg_hb = next(m for m in nt.raft(1).msgs if m.to == 2)
    nt.raft(2).step(msg_hb)
    req_snap = nt.raft(2).msgs.pop()
    assert req_snap.request_snapshot != INVALID_INDEX
    nt.raft(1).step(req_snap)
    assert _pr(nt.raft(1), 2).state == ProgressState.Snapshot


def test_request_snapshot_none_replicate() -> None:
    nt, _ = _prepare_request_snapshot()
    _pr(nt.raft(1), 2).state = ProgressState.Probe

    nt.raft(2).request_snapshot()
    req_snap = nt.raft(2).msgs.pop()
    nt.raft(1).step(req_snap)
    assert _pr(nt.raft(1), 2).pending_request_snapshot != 0


def test_request_snapshot_step_down() -> None:
    nt, _ = _prepare_request_snapshot()

    # Commit a new entry, then a new leader is elected while 2 is isolated.
    nt.isolate(2)
    nt.send([_testdata_prop()])
    nt.send([new_message(3, 3, MT.MsgHup)])
    assert nt.raft(3).state == StateRole.Leader

    nt.recover()
    nt.raft(2).request_snapshot()
    assert nt.raft(2).pending_request_snapshot != INVALID_INDEX
    nt.send([new_message(3, 3, MT.MsgBeat)])
    assert nt.raft(2).pending_request_snapshot == INVALID_INDEX


def test_request_snapshot_on_role_change() -> None:
    nt, _ = _prepare_request_snapshot()
    nt.raft(2).request_snapshot()

    # Becoming follower keeps the pending request.
    nt.raft(2).become_follower(nt.raft(1).term, nt.raft(1).id)
    assert nt.raft(2).pending_request_snapshot != INVALID_INDEX

    # Becoming candidate clears it.
    nt.raft(2).become_candidate()
    assert nt.raft(2).pending_request_snapshot == INVALID_INDEX


def test_request_snapshot_after_term_change() -> None:
    nt, _ = _prepare_request_snapshot()
    nt.raft(2).request_snapshot()
    assert nt.raft(2).pending_request_snapshot != INVALID_INDEX

    nt.raft(2).reset(nt.raft(1).term + 1)
    assert nt.raft(2).pending_request_snapshot == INVALID_INDEX


# ----------------------------------------------------------------------------
# test_raft_snap.rs


def test_sending_snapshot_set_pending_snapshot() -> None:
    sm = _restored_leader()
    # Node 2 needs a snapshot.
    _pr(sm, 2).next_idx = sm.raft_log.first_index()
    m = new_message(2, 1, MT.MsgAppendResponse)
    m.index = _pr(sm, 2).next_idx - 1
    m.reject = True
    sm.step(m)
    assert _pr(sm, 2).pending_snapshot == 11
    assert _pr(sm, 2).state == ProgressState.Snapshot


def test_pending_snapshot_pause_replication() -> None:
    sm = _restored_leader()
    _pr(sm, 2).become_snapshot(11)
    sm.step(new_message(1, 1, MT.MsgPropose, 1))
    assert read_messages(sm) == []


def test_snapshot_failure() -> None:
    sm = _restored_leader()
    _pr(sm, 2).next_idx = 1
    _pr(sm, 2).become_snapshot(11)

    m = new_message(2, 1, MT.MsgSnapStatus)
    m.reject = True
    sm.step(m)
    pr = _pr(sm, 2)
    assert pr.pending_snapshot == 0
    assert pr.next_idx == 1
    assert pr.paused


def test_snapshot_succeed() -> None:
    sm = _restored_leader()
    _pr(sm, 2).next_idx = 1
    _pr(sm, 2).become_snapshot(11)

    m = new_message(2, 1, MT.MsgSnapStatus)
    m.reject = False
    sm.step(m)
    pr = _pr(sm, 2)
    assert pr.pending_snapshot == 0
    assert pr.next_idx == 12
    assert pr.paused


def test_snapshot_abort() -> None:
    sm = _restored_leader()
    _pr(sm, 2).next_idx = 1
    _pr(sm, 2).become_snapshot(11)

    # A successful append response at or past the pending snapshot aborts it.
    m = new_message(2, 1, MT.MsgAppendResponse)
    m.index = 11
    sm.step(m)
    assert _pr(sm, 2).pending_snapshot == 0
    assert _pr(sm, 2).next_idx == 12


@pytest.mark.parametrize("pre_vote", [True, False])
def test_snapshot_with_min_term(pre_vote: bool) -> None:
    s = new_storage()
    s.apply_snapshot(new_snapshot(1, 1, [1, 2]))
    n1 = new_test_raft_with_prevote(1, [1, 2], 10, 1, s, pre_vote)
    n2 = new_test_raft_with_prevote(2, [], 10, 1, new_storage(), pre_vote)
    nt = Network([n1, n2])
    nt.send([new_message(1, 1, MT.MsgHup)])
    # Node 1 wins, then sends node 2 a snapshot and its no-op.
    assert nt.raft(1).state == StateRole.Leader
    assert nt.raft(2).raft_log.first_index() == 2
    assert nt.raft(2).raft_log.last_index() == 2


def test_request_snapshot() -> None:
    sm = new_test_raft(1, [1, 2], 10, 1, new_storage())
    sm.restore(_testing_snap())
    persist(sm)

    # No leader.
    with pytest.raises(RequestSnapshotDropped):
        sm.request_snapshot()

    sm.become_follower(sm.term + 1, 2)
    # The last entry's term is not the current term.
    with pytest.raises(RequestSnapshotDropped):
        sm.request_snapshot()

    sm.become_candidate()
    sm.become_leader()
    # A leader cannot request.
    with pytest.raises(RequestSnapshotDropped):
        sm.request_snapshot()

    # Advance matched.
    m = new_message(2, 1, MT.MsgAppendResponse)
    m.index = 11
    sm.step(m)
    assert _pr(sm, 2).state == ProgressState.Replicate

    request_snapshot_idx = sm.raft_log.committed

    def request(index: int) -> Message:
        m = new_message(2, 1, MT.MsgAppendResponse)
        m.index = index
        m.reject = True
        m.reject_hint = INVALID_INDEX
        m.request_snapshot = request_snapshot_idx
        return m

    # An out-of-order request is ignored.
    sm.step(request(9))
    assert _pr(sm, 2).state == ProgressState.Replicate

    sm.step(request(11))
    pr = _pr(sm, 2)
    assert pr.state == ProgressState.Snapshot
    assert pr.pending_snapshot == 11
    assert pr.next_idx == 12
    assert pr.is_paused()
    snap = sm.msgs.pop()
    assert snap.msg_type == MT.MsgSnapshot
    assert snap.get_snapshot().metadata.index == request_snapshot_idx

    # Append responses do not end the Snapshot state ...
    m = new_message(2, 1, MT.MsgAppendResponse)
    m.index = 11
    sm.step(m)
    pr = _pr(sm, 2)
    assert pr.state == ProgressState.Snapshot
    assert pr.pending_snapshot == 11
    assert pr.next_idx == 12
    assert pr.is_paused()

    # ... a snapshot status report does.
    sm.step(new_message(2, 1, MT.MsgSnapStatus))
    pr = _pr(sm, 2)
    assert pr.state == ProgressState.Probe
    assert pr.pending_snapshot == 0
    assert pr.next_idx == 12
    assert pr.is_paused()
