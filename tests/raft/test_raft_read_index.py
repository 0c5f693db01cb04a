# Ports of raft-rs harness/tests/integration_cases/test_raft.rs, group "ReadIndex".
#
# Covered raft-rs tests:
#   test_read_only_option_safe, test_read_only_with_learner, test_read_only_option_lease,
#   test_read_only_option_lease_without_check_quorum, test_read_only_for_new_leader,
#   test_advance_commit_index_by_read_index_response, test_raft_frees_read_only_mem,
#   test_read_when_quorum_becomes_less.
# Skipped: none.

from __future__ import annotations

from multiraft.raft.raft import Raft
from multiraft.raft.storage import MemStorage
from multiraft.raft.testing import (
    Network,
    empty_entry,
    new_entry,
    new_message,
    new_message_with_entries,
    new_storage,
    new_test_config,
    new_test_learner_raft,
    new_test_raft,
    new_test_raft_with_config,
    read_messages,
    remove_node,
)
from multiraft.raft.types import (
    ConfState,
    Entry,
    HardState,
    Message,
    MessageType,
    ReadOnlyOption,
    ReadState,
    StateRole,
)

MT = MessageType


def _read_index(id: int, ctx: bytes) -> Message:
    return new_message_with_entries(id, id, MT.MsgReadIndex, [new_entry(0, 0, ctx)])


def _take_read_states(r: Raft) -> list[ReadState]:
    rs, r.read_states = r.read_states, []
    return rs


def _elect_1_with_2_quiet(nt: Network) -> None:
    """Elect node 1 after ticking node 2 up to (not past) its election timeout."""
    b = nt.raft(2)
    timeout = b.election_timeout()
    b.set_randomized_election_timeout(timeout + 1)
    for _ in range(timeout):
        b.tick()
    nt.send([new_message(1, 1, MT.MsgHup)])
    assert nt.raft(1).state == StateRole.Leader


def test_read_only_option_safe() -> None:
    """Raft thesis §6.4: a Safe read index is the commit index at receipt, confirmed by a quorum."""
    a = new_test_raft(1, [1, 2, 3], 10, 1, new_storage())
    b = new_test_raft(2, [1, 2, 3], 10, 1, new_storage())
    c = new_test_raft(3, [1, 2, 3], 10, 1, new_storage())
    nt = Network([a, b, c])
    _elect_1_with_2_quiet(nt)

    tests = [
        (1, 10, 11, [b"ctx1", b"ctx11"], False),
        (2, 10, 21, [b"ctx2", b"ctx22"], False),
        (3, 10, 31, [b"ctx3", b"ctx33"], False),
        (1, 10, 41, [b"ctx4", b"ctx44"], True),
        (2, 10, 51, [b"ctx5", b"ctx55"], True),
        (3, 10, 61, [b"ctx6", b"ctx66"], True),
    ]
    for i, (id, proposals, wri, wctx, pending) in enumerate(tests):
        for _ in range(proposals):
            nt.send([new_message(1, 1, MT.MsgPropose, 1)])

        if pending:
            # Hold back the confirmations so the requests stay queued ...
            nt.ignore(MT.MsgHeartbeatResponse)
            nt.send([_read_index(id, wctx[0]), _read_index(id, wctx[0]), _read_index(id, wctx[1])])
            nt.recover()
            # ... and release them all with one more request.
            nt.send([_read_index(id, wctx[1])])
        else:
            nt.send([_read_index(id, wctx[0]), _read_index(id, wctx[0]), _read_index(id, wctx[1])])

        read_states = _take_read_states(nt.raft(id))
        assert [(rs.index, rs.request_ctx) for rs in read_states] == [(wri, ctx) for ctx in wctx], i


def test_read_only_with_learner() -> None:
    a = new_test_learner_raft(1, [1], [2], 10, 1, new_storage())
    b = new_test_learner_raft(2, [1], [2], 10, 1, new_storage())
    nt = Network([a, b])
    _elect_1_with_2_quiet(nt)
    assert nt.raft(2).state == StateRole.Follower

    tests = [(1, 10, 11, b"ctx1"), (2, 10, 21, b"ctx2"), (1, 10, 31, b"ctx3"), (2, 10, 41, b"ctx4")]
    for i, (id, proposals, wri, wctx) in enumerate(tests):
        for _ in range(proposals):
            nt.send([new_message(1, 1, MT.MsgPropose, 1)])
        nt.send([_read_index(id, wctx)])
        read_states = _take_read_states(nt.raft(id))
        assert read_states, i
        assert read_states[0].index == wri, i
        assert read_states[0].request_ctx == wctx, i


def test_read_only_option_lease() -> None:
    rafts = [new_test_raft(id, [1, 2, 3], 10, 1, new_storage()) for id in (1, 2, 3)]
    for r in rafts:
        r.read_only.option = ReadOnlyOption.LeaseBased
        r.check_quorum = True
    nt = Network(rafts)
    _elect_1_with_2_quiet(nt)

    tests = [
        (1, 10, 11, b"ctx1"),
        (2, 10, 21, b"ctx2"),
        (3, 10, 31, b"ctx3"),
        (1, 10, 41, b"ctx4"),
        (2, 10, 51, b"ctx5"),
        (3, 10, 61, b"ctx6"),
    ]
    for i, (id, proposals, wri, wctx) in enumerate(tests):
        for _ in range(proposals):
            nt.send([new_message(1, 1, MT.MsgPropose, 1)])
        nt.send([_read_index(id, wctx)])
        read_states = _take_read_states(nt.raft(id))
        assert read_states, i
        assert read_states[0].index == wri, i
        assert read_states[0].request_ctx == wctx, i


def test_read_only_option_lease_without_check_quorum() -> None:
    rafts = [new_test_raft(id, [1, 2, 3], 10, 1, new_storage()) for id in (1, 2, 3)]
    for r in rafts:
        # Set directly, bypassing Config.validate's check_quorum requirement.
        r.read_only.option = ReadOnlyOption.LeaseBased
    nt = Network(rafts)
    nt.send([new_message(1, 1, MT.MsgHup)])

    nt.send([_read_index(2, b"ctx1")])
    read_states = nt.raft(2).read_states
    assert read_states
    assert read_states[0].index == 1
    assert read_states[0].request_ctx == b"ctx1"


def test_read_only_for_new_leader() -> None:
    """Raft thesis §6.4: a leader answers reads only after committing an entry of its term."""
    heartbeat_ticks = 1
    peers = []
    for id, committed, applied, compact_index in [(1, 1, 1, 0), (2, 2, 2, 2), (3, 2, 2, 2)]:
        cfg = new_test_config(id, 10, heartbeat_ticks)
        cfg.applied = applied
        storage = MemStorage.new_with_conf_state(ConfState(voters=[1, 2, 3]))
        storage.append([empty_entry(1, 1), empty_entry(1, 2)])
        storage.set_hardstate(HardState(term=1, commit=committed))
        if compact_index != 0:
            storage.compact(compact_index)
        peers.append(new_test_raft_with_config(cfg, storage))
    nt = Network(peers)

    # Keep node 1 from committing an entry of its term once elected.
    nt.ignore(MT.MsgAppend)
    nt.send([new_message(1, 1, MT.MsgHup)])
    assert nt.raft(1).state == StateRole.Leader

    # The read is dropped.
    nt.send([_read_index(1, b"ctx")])
    assert nt.raft(1).read_states == []

    nt.recover()
    for _ in range(heartbeat_ticks):
        nt.raft(1).tick()
    nt.send([new_message(1, 1, MT.MsgPropose, 1)])
    log = nt.raft(1).raft_log
    assert log.committed == 4
    assert log.term(log.committed) == nt.raft(1).term

    # Now the read is answered.
    nt.send([_read_index(1, b"ctx")])
    read_states = _take_read_states(nt.raft(1))
    assert [(rs.index, rs.request_ctx) for rs in read_states] == [(4, b"ctx")]


def test_advance_commit_index_by_read_index_response() -> None:
    tt = Network([None, None, None, None, None])
    tt.send([new_message(1, 1, MT.MsgHup)])

    # Entries that do not commit.
    tt.cut(1, 3)
    tt.cut(1, 4)
    tt.cut(1, 5)
    tt.send([new_message(1, 1, MT.MsgPropose, 1)])
    tt.send([new_message(1, 1, MT.MsgPropose, 1)])

    tt.recover()
    tt.cut(1, 2)

    # They commit on the leader but node 2 does not learn it.
    tt.send([new_message(3, 1, MT.MsgReadIndex, 1)])
    assert tt.raft(1).raft_log.committed == 3
    assert tt.raft(2).raft_log.committed == 1

    tt.recover()
    # LeaseBased: no heartbeat would advance node 2; only the read response can.
    tt.raft(1).read_only.option = ReadOnlyOption.LeaseBased
    tt.send([new_message(2, 1, MT.MsgReadIndex, 1)])
    assert tt.raft(2).raft_log.committed == 3


def test_raft_frees_read_only_mem() -> None:
    """Raft thesis §6.4 steps 2-3: a confirmed read leaves no pending state behind."""
    sm = new_test_raft(1, [1, 2], 5, 1, new_storage())
    sm.become_candidate()
    sm.become_leader()
    sm.raft_log.commit_to(sm.raft_log.last_index())

    ctx = b"ctx"
    sm.step(new_message_with_entries(2, 1, MT.MsgReadIndex, [new_entry(0, 0, ctx)]))
    msgs = read_messages(sm)
    assert len(msgs) == 1
    assert msgs[0].msg_type == MT.MsgHeartbeat
    assert msgs[0].context == ctx
    assert len(sm.read_only.read_index_queue) == 1
    assert len(sm.read_only.pending_read_index) == 1
    assert ctx in sm.read_only.pending_read_index

    m = new_message(2, 1, MT.MsgHeartbeatResponse)
    m.context = ctx
    sm.step(m)
    assert len(sm.read_only.read_index_queue) == 0
    assert len(sm.read_only.pending_read_index) == 0
    assert ctx not in sm.read_only.pending_read_index


def test_read_when_quorum_becomes_less() -> None:
    network = Network([None, None])
    network.send([Message(msg_type=MT.MsgHup, from_=1, to=1)])
    assert network.raft(1).raft_log.committed == 1

    network.dispatch([Message(msg_type=MT.MsgReadIndex, to=1, entries=[Entry(data=b"abcdefg")])])
    # Heartbeats go out; the response from 2 is dropped.
    network.dispatch(network.read_messages())
    heartbeat_responses = network.read_messages()
    assert len(heartbeat_responses) == 1
    assert network.raft(1).read_states == []

    # Removing 2 leaves node 1 a quorum of its own: the read completes.
    network.raft(1).apply_conf_change(remove_node(2))
    assert [(rs.index, rs.request_ctx) for rs in network.raft(1).read_states] == [(1, b"abcdefg")]
