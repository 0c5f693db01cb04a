# Covers raft-rs tests: none. raft-rs has no Ready-level network harness (its Network persists
# synchronously after every step), so these are new black-box scenarios on ReadyNetwork
# (tests/raft/ready_network.py): persist-before-send, the leader counting itself only once its
# entries are durable, crashes between a Ready and its fsync, exactly-once apply across restarts,
# snapshots to lagging followers, ReadIndex linearizability, and two regressions found by the
# randomized test. They exercise the rules behind raft-rs's test_async_ready_* and
# test_raw_node_restart, whose ports belong with the test_raw_node.rs port.
# Skipped: none.
"""Deterministic tests of the Ready-level harness and of persist-before-send."""

from __future__ import annotations

import pytest

from multiraft.raft import MessageType, Raft, RawNode, StateRole
from multiraft.raft.testing import add_learner, remove_node

try:
    from ready_network import ASYNC, SYNC, ReadyNetwork
except ImportError:  # collected as part of a package
    from tests.raft.ready_network import ASYNC, SYNC, ReadyNetwork

MT = MessageType


def _types(net: ReadyNetwork) -> list[tuple[MessageType, int, int]]:
    return [(m.msg_type, m.from_, m.to) for m in net.in_flight_msgs()]


def _elect(net: ReadyNetwork, id: int = 1) -> None:
    net.campaign(id)
    net.stabilize()
    assert net.raft(id).state == StateRole.Leader
    net.check_invariants()


def _committed(net: ReadyNetwork, id: int) -> int:
    return net.raft(id).raft_log.committed


@pytest.mark.parametrize("mode", [SYNC, ASYNC])
def test_ready_network_elects_and_commits(mode: str) -> None:
    """A 3-node cluster elects node 1 at term 1 and commits proposals (leader's and forwarded)."""
    net = ReadyNetwork(3, mode)
    _elect(net)
    assert net.raft(1).term == 1
    assert [_committed(net, i) for i in net.ids] == [1, 1, 1]
    for d in (b"a", b"b"):
        assert net.propose(1, d)
    # A follower forwards to the leader.
    assert net.propose(3, b"c")
    net.stabilize()
    net.check_invariants()
    assert [_committed(net, i) for i in net.ids] == [4, 4, 4]
    for i in net.ids:
        assert net.applied_data(i) == [b"a", b"b", b"c"]
        assert net.raft(i).raft_log.applied == 4
    assert net.leaders == {1: 1}
    net.assert_converged()


def test_async_votes_wait_for_fsync() -> None:
    """A candidate's requests and a voter's response travel only once their term/vote is durable."""
    net = ReadyNetwork(3, ASYNC)
    net.campaign(1)
    assert net.raft(1).state == StateRole.Candidate
    assert net.in_flight == []  # held: the candidate's term and self-vote are not durable yet
    net.fsync(1)
    assert _types(net) == [(MT.MsgRequestVote, 1, 2), (MT.MsgRequestVote, 1, 3)]
    net.deliver_all()
    assert net.raft(2).vote == 1 and net.raft(3).vote == 1
    # Both voted, but their responses are held until their vote is durable.
    assert net.in_flight == []
    assert net.pending_count(2) == 1 and net.pending_count(3) == 1
    assert net.raft(1).state == StateRole.Candidate
    net.fsync(2)
    assert _types(net) == [(MT.MsgRequestVoteResponse, 2, 1)]
    net.deliver(0)
    assert net.raft(1).state == StateRole.Leader
    # The leader's appends go out at once, before its own fsync.
    assert net.pending_count(1) == 1
    assert sorted(_types(net)) == [(MT.MsgAppend, 1, 2), (MT.MsgAppend, 1, 3)]
    net.check_invariants()


def test_async_append_response_waits_for_follower_fsync() -> None:
    """The leader's commit advances only when a follower's durable ack arrives."""
    net = ReadyNetwork(3, ASYNC)
    net.campaign(1)
    net.fsync(1)
    net.deliver_all()
    net.fsync(2)
    net.fsync(3)
    net.deliver_all()  # votes in; MsgAppend(no-op) out, followers append it (pending)
    assert net.raft(1).state == StateRole.Leader
    assert net.raft(2).raft_log.last_index() == 1 and net.raft(3).raft_log.last_index() == 1
    assert net.in_flight == []  # both MsgAppendResponses are held
    net.fsync(1)
    net.deliver_all()
    assert _committed(net, 1) == 0  # only the leader's own copy is durable
    net.fsync(2)
    assert _types(net) == [(MT.MsgAppendResponse, 2, 1)]
    assert _committed(net, 1) == 0
    net.deliver_all()
    assert _committed(net, 1) == 1
    net.check_invariants()
    net.stabilize()
    assert [_committed(net, i) for i in net.ids] == [1, 1, 1]


def _leader_counts_itself_only_when_durable(net: ReadyNetwork, leader_first: bool) -> None:
    _elect(net)
    net.isolate(3)
    assert net.propose(1, b"x")
    index = net.raft(1).raft_log.last_index()
    assert index == 2 and net.raft(1).raft_log.persisted == 1
    net.deliver_all()  # the MsgAppend reaches 2, which appends (pending); 3 gets nothing
    assert net.raft(2).raft_log.last_index() == index
    assert net.raft(3).raft_log.last_index() == 1
    assert _committed(net, 1) == 1
    if leader_first:
        net.fsync(1)
        assert net.raft(1).raft_log.persisted == index
        assert _committed(net, 1) == 1, "committed with only the leader's durable copy"
        net.fsync(2)
        net.deliver_all()
    else:
        net.fsync(2)
        net.deliver_all()  # 2's durable ack arrives; the leader's own copy is not durable
        assert net.raft(1).prs().get(2).matched == index
        assert _committed(net, 1) == 1, "committed counting the leader's unpersisted entry"
        net.fsync(1)
    assert _committed(net, 1) == index
    net.deliver_all()
    net.fsync_all()
    net.deliver_all()
    assert net.applied_data(1) == [b"x"] and net.applied_data(2) == [b"x"]
    net.check_invariants()


@pytest.mark.parametrize("leader_first", [True, False])
def test_leader_unpersisted_entry_not_counted(leader_first: bool) -> None:
    """With one follower cut off, an entry commits only once both the leader and the live
    follower have made it durable (thesis §10.2.1: the leader counts itself after its fsync)."""
    _leader_counts_itself_only_when_durable(ReadyNetwork(3, ASYNC), leader_first)


def test_leader_unpersisted_entry_check_has_teeth(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scenario above fails against a core that counts the leader at append time."""
    original = Raft.append_entry

    def eager_append_entry(self: Raft, es: list) -> bool:  # type: ignore[type-arg]
        ok = original(self, es)
        if ok and self.state == StateRole.Leader:
            pr = self.prs().get(self.id)
            assert pr is not None
            pr.maybe_update(self.raft_log.last_index())  # bypasses on_persist_entries
        return ok

    monkeypatch.setattr(Raft, "append_entry", eager_append_entry)
    with pytest.raises(AssertionError, match="unpersisted entry"):
        _leader_counts_itself_only_when_durable(ReadyNetwork(3, ASYNC), leader_first=False)


def test_harness_rejects_follower_messages_sent_early(monkeypatch: pytest.MonkeyPatch) -> None:
    """A core that put a follower's replies in ``rd.messages`` is caught by the harness."""
    original = RawNode.ready

    def leaky_ready(self: RawNode):  # type: ignore[no-untyped-def]
        rd = original(self)
        rd.messages, rd.persisted_messages = rd.messages + rd.persisted_messages, []
        return rd

    monkeypatch.setattr(RawNode, "ready", leaky_ready)
    net = ReadyNetwork(3, ASYNC)
    with pytest.raises(AssertionError, match="must wait for persistence"):
        net.campaign(1)


def test_crash_follower_before_fsync() -> None:
    """A follower that crashes before its fsync loses the unpersisted tail, never
    acknowledged it, and catches up after restart."""
    net = ReadyNetwork(3, ASYNC)
    _elect(net)
    assert net.propose(1, b"x") and net.propose(1, b"y")
    net.deliver_all()
    assert net.raft(2).raft_log.last_index() == 3
    assert net.nodes[2].image.last_index() == 1
    net.crash(2)
    assert net.nodes[2].incarnation == 1
    net.restart(2)
    assert net.raft(2).raft_log.last_index() == 1
    assert net.raft(2).raft_log.committed == 1
    acks = [
        e.msg
        for e in net.sent
        if e.src == 2 and e.incarnation == 0 and e.msg.msg_type == MT.MsgAppendResponse
    ]
    assert acks and all(m.index <= 1 for m in acks), "acknowledged entries it never persisted"
    net.fsync(1)
    net.fsync(3)
    net.deliver_all()
    assert _committed(net, 1) == 3  # {1, 3} is a quorum
    net.check_invariants()
    net.stabilize()
    net.tick_all(2)  # heartbeats: the restarted follower is probed and caught up
    net.stabilize()
    net.check_invariants()
    assert [_committed(net, i) for i in net.ids] == [3, 3, 3]
    for i in net.ids:
        assert net.applied_data(i) == [b"x", b"y"]
    net.assert_converged()


def test_crash_voter_before_fsync_forgets_unsent_vote() -> None:
    """A vote that was never durable was never sent, so forgetting it in a crash is safe."""
    net = ReadyNetwork(3, ASYNC)
    net.campaign(1)
    net.fsync(1)
    net.deliver_where(lambda m: m.to == 2)
    assert net.raft(2).vote == 1
    net.crash(2)
    net.restart(2)
    assert (net.raft(2).term, net.raft(2).vote) == (0, 0)
    assert not [e for e in net.sent if e.src == 2 and e.incarnation == 0]
    net.stabilize()
    assert net.raft(1).state == StateRole.Leader  # with 3's vote
    net.check_invariants()


def test_crash_leader_before_own_fsync_keeps_committed_entry() -> None:
    """An entry committed by the followers' durable acks survives the crash of a leader that
    never persisted it (Raft paper §5.4: leader completeness)."""
    net = ReadyNetwork(3, ASYNC)
    _elect(net)
    assert net.propose(1, b"x")
    net.deliver_all()
    net.fsync(2)
    net.fsync(3)
    net.deliver_all()  # acks from 2 and 3: a quorum without the leader
    r1 = net.raft(1)
    assert r1.raft_log.committed == 2 and r1.raft_log.persisted == 1
    assert net.applied_data(1) == []  # the leader applies only what it persisted
    net.fsync(2)
    net.fsync(3)
    assert _committed(net, 2) == 2 and _committed(net, 3) == 2
    net.crash(1)
    assert net.nodes[1].image.last_index() == 1
    assert net.committed[2][0] == 1
    net.campaign(2)
    net.stabilize()
    assert net.raft(2).state == StateRole.Leader and net.raft(2).term == 2
    assert net.raft(2).raft_log.term(2) == 1  # the committed entry is in the new leader's log
    net.check_invariants()
    net.restart(1)
    net.stabilize()
    net.tick_all(2)
    net.stabilize()
    net.check_invariants()
    for i in net.ids:
        assert net.applied_data(i) == [b"x"]
        assert net.raft(i).raft_log.term(2) == 1
    net.assert_converged()


@pytest.mark.parametrize("mode", [SYNC, ASYNC])
def test_restart_with_applied_does_not_reapply(mode: str) -> None:
    """A node restarted with Config.applied = its durable applied index is not handed those
    entries again (the harness asserts every applied index is the previous one plus one)."""
    net = ReadyNetwork(3, mode)
    _elect(net)
    for d in (b"a", b"b", b"c"):
        assert net.propose(1, d)
    net.stabilize()
    assert net.nodes[2].image.applied == 4
    net.crash(2)
    net.restart(2)
    assert net.raft(2).raft_log.applied == 4
    assert net.raft(2).raft_log.committed == 4
    assert not net.node(2).has_ready()
    assert net.applied_data(2) == [b"a", b"b", b"c"]
    assert net.propose(1, b"d")
    net.stabilize()
    for i in net.ids:
        assert net.applied_data(i) == [b"a", b"b", b"c", b"d"]
    net.check_invariants()


def test_restart_reapplies_only_what_was_not_durably_applied() -> None:
    """A crash after applying but before the fsync rolls the state machine back; the
    restarted node is handed exactly the lost entries again, once."""
    net = ReadyNetwork(3, ASYNC)
    _elect(net)
    assert net.propose(1, b"a")
    net.stabilize()
    assert net.propose(1, b"b")
    net.deliver_all()
    net.fsync(1)
    net.fsync(3)
    net.deliver_all()  # committed via {1, 3}; the commit reaches 2 in a MsgAppend
    assert _committed(net, 1) == 3
    net.fsync(2)
    net.deliver_all()
    net.tick(1)  # heartbeat carries commit 3 to node 2
    net.deliver_all()
    assert net.applied_data(2) == [b"a", b"b"] and net.pending_count(2) > 0
    assert net.nodes[2].image.applied == 2
    net.crash(2)
    assert net.applied_data(2) == [b"a"]
    assert net.nodes[2].image.hard_state.commit == 3
    net.restart(2)
    # Config.applied = 2, durable commit 3: the first Ready hands out entry 3, once.
    assert net.raft(2).raft_log.applied == 3
    assert [i for i, _, _ in net.applied_log(2)] == [2, 3]
    net.stabilize()
    net.tick_all(2)
    net.stabilize()
    assert net.applied_data(2) == [b"a", b"b"]
    assert [i for i, _, _ in net.applied_log(2)] == [2, 3]
    net.check_invariants()
    net.assert_converged()


def test_partition_and_heal_converges_with_duplicates_and_reordering() -> None:
    """A minority partition elects nobody; after healing, reordered and duplicated messages
    still leave every log identical."""
    net = ReadyNetwork(5, ASYNC, pre_vote=True, check_quorum=True)
    _elect(net)
    net.cut(1, 4)
    net.cut(1, 5)
    net.cut(2, 4)
    net.cut(2, 5)
    net.cut(3, 4)
    net.cut(3, 5)
    for d in (b"p", b"q"):
        assert net.propose(1, d)
    for _ in range(30):
        net.tick_all()
        net.stabilize()
        net.check_invariants()
    assert net.raft(1).state == StateRole.Leader
    assert net.raft(4).term == 1 and net.raft(5).term == 1  # pre-vote kept the minority quiet
    net.recover()
    assert net.propose(1, b"r")
    for i in range(len(net.in_flight)):
        net.duplicate(i)
    net.in_flight.reverse()
    net.deliver_all()
    net.fsync_all()
    net.check_invariants()
    for _ in range(5):
        net.tick_all()
        net.stabilize()
    net.check_invariants()
    for i in net.ids:
        assert net.applied_data(i) == [b"p", b"q", b"r"]
    net.assert_converged()


def test_stale_message_from_old_incarnation_is_harmless() -> None:
    """A vote request delayed past its sender's crash and restart is stepped safely."""
    net = ReadyNetwork(3, SYNC)
    net.campaign(3)
    delayed = [e for e in net.in_flight if e.msg.to == 1]
    net.in_flight = [e for e in net.in_flight if e.msg.to != 1]
    net.deliver_all()
    assert net.raft(3).state == StateRole.Leader
    net.stabilize()
    net.crash(3)
    net.restart(3)
    net.in_flight.extend(delayed)
    net.deliver_all()
    net.check_invariants()
    assert net.raft(1).term == 1
    assert net.leaders == {1: 3}


def test_snapshot_to_lagging_follower_survives_crash_before_fsync() -> None:
    """A follower behind a compacted leader log gets a snapshot; if it crashes before the
    snapshot is durable it comes back without it and is sent another."""
    net = ReadyNetwork(3, ASYNC)
    _elect(net)
    net.isolate(3)
    for d in (b"a", b"b", b"c"):
        assert net.propose(1, d)
    net.stabilize()
    assert _committed(net, 1) == 4 and net.raft(3).raft_log.last_index() == 1
    for id in (1, 2):
        assert net.compact_bound(id) == 4
        net.compact(id, 4)
        assert net.storage(id).first_index() == 4
    net.recover()
    # Heartbeat; 3's answers (released by its fsyncs) make the leader probe back to
    # index 2, which is compacted: it sends a snapshot. Stop as soon as 3 has it.
    net.tick(1)
    for _ in range(50):
        if net.raft(3).raft_log.first_index() == 5:
            break
        if net.in_flight:
            net.deliver(0)
        else:
            net.fsync(3)
    snaps = net.sent_by(1, MT.MsgSnapshot)
    assert len(snaps) == 1 and snaps[0].snapshot is not None
    assert snaps[0].snapshot.metadata.index == 4
    assert net.raft(3).raft_log.last_index() == 4  # restored, not yet durable
    assert net.applied_data(3) == [b"a", b"b", b"c"]
    assert net.nodes[3].image.last_index() == 1
    net.crash(3)
    net.restart(3)
    assert net.raft(3).raft_log.last_index() == 1
    assert net.applied_data(3) == []
    for _ in range(3):
        net.tick_all()
        net.stabilize()
    assert len(net.sent_by(1, MT.MsgSnapshot)) == 2
    assert net.raft(3).raft_log.first_index() == 5
    assert net.nodes[3].image.base_index == 4
    assert net.applied_data(3) == [b"a", b"b", b"c"]
    assert net.propose(1, b"d")
    net.stabilize()
    for i in net.ids:
        assert net.applied_data(i) == [b"a", b"b", b"c", b"d"]
    net.check_invariants()
    net.assert_converged()


@pytest.mark.parametrize("mode", [SYNC, ASYNC])
def test_read_index_is_linearizable_after_leader_change(mode: str) -> None:
    """A ReadIndex answered by the new leader covers every entry committed before it was asked
    (Raft thesis §6.4); the deposed leader cannot answer."""
    net = ReadyNetwork(3, mode)
    _elect(net)
    assert net.propose(1, b"a")
    net.stabilize()
    net.isolate(1)
    net.campaign(2)
    net.stabilize()
    assert net.raft(2).state == StateRole.Leader
    assert net.propose(2, b"b")
    net.stabilize()
    net.read_index(1, b"stale")  # the old leader cannot confirm its leadership
    net.stabilize()
    net.read_index(3, b"fresh")  # forwarded to the new leader
    net.stabilize()
    assert net.read_answers == [(3, 4, b"fresh")]
    net.check_invariants()


def test_removed_leader_does_not_serve_singleton_read_index() -> None:
    """A leader that removed itself, leaving a single other voter, must not answer ReadIndex
    from its own commit index: that voter may already lead a newer term and have committed
    more (found by the randomized test; raft-rs's is_singleton shortcut assumes the single
    voter is the leader)."""
    net = ReadyNetwork(3, SYNC)
    _elect(net)
    assert net.propose_conf_change(1, remove_node(3))
    net.stabilize()
    assert net.propose_conf_change(1, remove_node(1))
    net.stabilize()
    assert net.nodes[1].conf_state.voters == [2] and net.nodes[2].conf_state.voters == [2]
    assert net.raft(1).state == StateRole.Leader  # raft-rs: no step-down on removal
    net.campaign(2)  # the only voter elects itself at term 2 and commits its no-op
    net.stabilize()
    assert net.raft(2).state == StateRole.Leader and net.raft(2).term == 2
    assert _committed(net, 2) > _committed(net, 1)
    net.read_index(1, b"stale")  # the harness asserts the answer covers node 2's commit
    net.stabilize()
    assert net.read_answers == []
    net.read_index(2, b"fresh")
    assert net.read_answers == [(2, _committed(net, 2), b"fresh")]


def test_single_voter_campaign_with_unpersisted_entries() -> None:
    """A lone voter following a demoted (learner) leader, with an appended but not yet durable
    entry, is asked to campaign (found by the randomized test). raft-rs crashes here
    (become_leader asserts last_index == persisted); we delay the campaign until the entry is
    durable, then it wins."""
    net = ReadyNetwork(3, ASYNC)
    _elect(net)
    assert net.propose_conf_change(1, remove_node(3))
    net.stabilize()
    assert net.propose_conf_change(1, add_learner(1))  # demotes the leader itself
    net.stabilize()
    assert net.nodes[2].conf_state.voters == [2] and net.nodes[2].conf_state.learners == [1]
    assert net.raft(1).state == StateRole.Leader  # raft-rs: no step-down on demotion
    assert net.propose(1, b"x")
    net.deliver_all()
    r2 = net.raft(2)
    assert r2.raft_log.last_index() > r2.raft_log.persisted  # appended, not yet durable
    term = r2.term
    net.campaign(2)
    assert net.raft(2).state == StateRole.Follower and net.raft(2).term == term  # delayed
    net.fsync(2)
    net.campaign(2)
    assert net.raft(2).state == StateRole.Leader
    net.stabilize()
    net.check_invariants()


def test_partial_fsync_commits_only_the_durable_prefix() -> None:
    """on_persist_ready(n) makes only Readies up to n count: with one follower cut off, the
    leader's commit follows exactly the prefix of its own Readies that is durable."""
    net = ReadyNetwork(3, ASYNC)
    _elect(net)
    net.isolate(3)
    assert net.propose(1, b"a")  # one Ready: entry 2
    assert net.propose(1, b"b")  # another Ready: entry 3
    assert net.pending_count(1) == 2
    net.deliver_all()
    net.fsync(2)
    net.deliver_all()
    assert net.raft(1).prs().get(2).matched == 3
    assert _committed(net, 1) == 1
    net.fsync(1, count=1)
    assert net.raft(1).raft_log.persisted == 2
    assert _committed(net, 1) == 2
    assert net.applied_data(1) == [b"a"]
    net.fsync(1)
    assert _committed(net, 1) == 3
    assert net.applied_data(1) == [b"a", b"b"]
    net.check_invariants()
