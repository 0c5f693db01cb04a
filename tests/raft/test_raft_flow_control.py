# Ports of raft-rs harness/tests/integration_cases/test_raft_flow_control.rs (all 5):
#   test_msg_app_flow_control_full, test_msg_app_flow_control_move_forward,
#   test_msg_app_flow_control_recv_heartbeat, test_msg_app_flow_control_with_freeing_resources,
#   test_disable_progress.
# Skipped: none.

from __future__ import annotations

from multiraft.raft.raft import Raft
from multiraft.raft.testing import new_message, new_storage, new_test_raft, read_messages
from multiraft.raft.tracker import Progress
from multiraft.raft.types import Message, MessageType

MT = MessageType


def _pr(r: Raft, id: int) -> Progress:
    pr = r.prs().get(id)
    assert pr is not None, f"no progress for {id}"
    return pr


def _replicating_leader(peers: list[int]) -> Raft:
    r = new_test_raft(1, peers, 5, 1, new_storage())
    r.become_candidate()
    r.become_leader()
    _pr(r, 2).become_replicate()
    return r


def _propose(r: Raft) -> list[Message]:
    r.step(new_message(1, 1, MT.MsgPropose, 1))
    return read_messages(r)


def _fill_window(r: Raft) -> None:
    for i in range(r.max_inflight):
        assert len(_propose(r)) == 1, i


def test_msg_app_flow_control_full() -> None:
    r = _replicating_leader([1, 2])
    _fill_window(r)
    assert _pr(r, 2).ins.full()
    # A full window sends nothing more.
    for i in range(10):
        assert _propose(r) == [], i


def test_msg_app_flow_control_move_forward() -> None:
    r = _replicating_leader([1, 2])
    _fill_window(r)

    # Index 1 is the no-op and 2 the first proposal: start from 2.
    for tt in range(2, r.max_inflight):
        m = new_message(2, 1, MT.MsgAppendResponse)
        m.index = tt
        r.step(m)
        read_messages(r)

        # One slot was freed: exactly one more append fills it again.
        assert len(_propose(r)) == 1, tt
        assert _pr(r, 2).ins.full()

        # Stale responses free nothing.
        for i in range(tt):
            m = new_message(2, 1, MT.MsgAppendResponse)
            m.index = i
            r.step(m)
            assert _pr(r, 2).ins.full(), (tt, i)


def test_msg_app_flow_control_recv_heartbeat() -> None:
    r = _replicating_leader([1, 2])
    _fill_window(r)

    for tt in range(1, 5):
        assert _pr(r, 2).ins.full(), tt
        # Each heartbeat response frees one slot of the full window.
        for i in range(tt):
            r.step(new_message(2, 1, MT.MsgHeartbeatResponse))
            read_messages(r)
            assert not _pr(r, 2).ins.full(), (tt, i)

        # One slot ...
        assert len(_propose(r)) == 1, tt
        # ... and just one.
        for i in range(10):
            assert _propose(r) == [], (tt, i)

        # Clear the pending messages.
        r.step(new_message(2, 1, MT.MsgHeartbeatResponse))
        read_messages(r)


def test_msg_app_flow_control_with_freeing_resources() -> None:
    r = new_test_raft(1, [1, 2, 3], 5, 1, new_storage())
    r.become_candidate()
    r.become_leader()
    for _, pr in r.prs().iter():
        assert not pr.ins.buffer_is_allocated()
    for i in (1, 2, 3):
        _pr(r, i).become_replicate()

    r.step(new_message(1, 1, MT.MsgPropose, 1))
    for id, pr in r.prs().iter():
        if id != 1:
            assert pr.ins.buffer_is_allocated()
            assert pr.ins.count() == 1

    resp = new_message(2, 1, MT.MsgAppendResponse)
    resp.index = r.raft_log.last_index()
    r.step(resp)
    assert _pr(r, 2).ins.count() == 0

    r.step(new_message(1, 1, MT.MsgPropose, 1))
    assert _pr(r, 2).ins.count() == 1
    assert _pr(r, 3).ins.count() == 2

    resp = new_message(2, 1, MT.MsgAppendResponse)
    resp.index = r.raft_log.last_index()
    r.step(resp)
    assert _pr(r, 2).ins.count() == 0
    assert _pr(r, 3).ins.count() == 2
    # Two allocated windows of 256 u64 slots.
    assert r.inflight_buffers_size() == 4096

    r.maybe_free_inflight_buffers()
    assert not _pr(r, 2).ins.buffer_is_allocated()
    assert _pr(r, 2).ins.count() == 0
    assert _pr(r, 3).ins.buffer_is_allocated()
    assert r.inflight_buffers_size() == 2048


def test_disable_progress() -> None:
    r = _replicating_leader([1, 2])

    # Disable progress 2; freeing slots on it must not fail.
    r.adjust_max_inflight_msgs(2, 0)
    r.step(new_message(2, 1, MT.MsgHeartbeatResponse))
    assert _pr(r, 2).ins.full()
    assert _pr(r, 2).ins.count() == 0
    assert read_messages(r) == []

    # Re-enabled: the next heartbeat response lets an append through.
    r.adjust_max_inflight_msgs(2, 10)
    r.step(new_message(2, 1, MT.MsgHeartbeatResponse))
    msgs = read_messages(r)
    assert [m.msg_type for m in msgs] == [MT.MsgAppend]
