# Covers raft-rs harness/tests/integration_cases/test_raft.rs, groups "Configuration changes,
# learners" and "Leader transfer":
#   test_step_config, test_step_ignore_config, test_new_leader_pending_config, test_add_node,
#   test_remove_node, test_remove_node_itself, test_add_learner, test_remove_learner,
#   test_promotable, test_raft_nodes, test_commit_after_remove_node,
#   test_conf_change_check_before_campaign, test_learner_election_timeout,
#   test_learner_promotion, test_learner_log_replication, test_learner_respond_vote,
#   test_transfer_non_member,
#   test_leader_transfer_to_uptodate_node, test_leader_transfer_to_uptodate_node_from_follower,
#   test_leader_transfer_with_check_quorum, test_leader_transfer_to_slow_follower,
#   test_leader_transfer_after_snapshot, test_leader_transfer_to_self,
#   test_leader_transfer_to_non_existing_node, test_leader_transfer_to_learner,
#   test_leader_transfer_timeout, test_leader_transfer_ignore_proposal,
#   test_leader_transfer_receive_higher_term_vote, test_leader_transfer_remove_node,
#   test_leader_transfer_back, test_leader_transfer_second_transfer_to_another_node,
#   test_leader_transfer_second_transfer_to_same_node.
# Skipped: none. Difference from raft-rs: conf-change entry data is encoded with
# multiraft.raft.confchange_codec (not protobuf), so the tests that propose an
# EntryConfChange carry an encoded ConfChange instead of raft-rs's empty protobuf bytes.
"""Membership changes, learners and leader transfer on the Raft-level harness."""

from __future__ import annotations

import pytest

from multiraft.raft.confchange_codec import encode_conf_change
from multiraft.raft.errors import ConfChangeError, ProposalDropped
from multiraft.raft.raft import Raft
from multiraft.raft.storage import GetEntriesContext, MemStorage
from multiraft.raft.testing import (
    Network,
    add_learner,
    add_node,
    conf_change,
    empty_entry,
    new_entry,
    new_message,
    new_message_with_entries,
    new_storage,
    new_test_config,
    new_test_learner_raft,
    new_test_raft,
    new_test_raft_with_config,
    persist,
    remove_node,
)
from multiraft.raft.types import (
    INVALID_ID,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    StateRole,
)

MT = MessageType


def next_ents(r: Raft, s: MemStorage) -> list[Entry]:
    """Persist the unstable tail, return the newly committed entries and mark them applied."""
    unstable = list(r.raft_log.unstable_entries())
    if unstable:
        last = unstable[-1]
        r.raft_log.stable_entries(last.index, last.term)
        s.append(unstable)
        r.on_persist_entries(last.index, last.term)
    ents = r.raft_log.next_entries(None)
    r.commit_apply(r.raft_log.committed)
    return ents or []


def conf_change_entry(cc: ConfChange) -> Entry:
    return Entry(entry_type=EntryType.EntryConfChange, data=encode_conf_change(cc))


def propose_conf_change_msg(from_: int, to: int, cc: ConfChange) -> Message:
    m = new_message(from_, to, MT.MsgPropose, 0)
    m.entries.append(conf_change_entry(cc))
    return m


def voter_ids(r: Raft) -> set[int]:
    return set(r.prs().conf().voters.ids())


def check_leader_transfer_state(r: Raft, state: StateRole, lead: int) -> None:
    assert (r.state, r.leader_id) == (state, lead)
    assert r.lead_transferee is None


# ---------------------------------------------------------------------------
# Configuration changes


def test_step_config() -> None:
    """A leader appends a proposed EntryConfChange to its log."""
    r = new_test_raft(1, [1, 2], 10, 1, new_storage())
    r.become_candidate()
    r.become_leader()
    index = r.raft_log.last_index()
    r.step(propose_conf_change_msg(1, 1, ConfChange()))
    assert r.raft_log.last_index() == index + 1
    assert r.raft_log.term(index + 1) == r.term
    assert r.pending_conf_index == index + 1


def test_step_ignore_config() -> None:
    """A second conf change while one is pending becomes an empty normal entry."""
    r = new_test_raft(1, [1, 2], 10, 1, new_storage())
    r.become_candidate()
    r.become_leader()
    assert not r.has_pending_conf()
    m = propose_conf_change_msg(1, 1, ConfChange())
    r.step(m)
    assert r.has_pending_conf()
    index = r.raft_log.last_index()
    pending_conf_index = r.pending_conf_index
    r.step(propose_conf_change_msg(1, 1, ConfChange()))
    we = empty_entry(1, 3)
    we.entry_type = EntryType.EntryNormal
    entries = r.raft_log.entries(index + 1, None, GetEntriesContext.empty(False))
    assert entries == [we]
    assert r.pending_conf_index == pending_conf_index


@pytest.mark.parametrize(("add_entry", "wpending_index"), [(False, 0), (True, 1)])
def test_new_leader_pending_config(add_entry: bool, wpending_index: int) -> None:
    """A new leader sets pending_conf_index to its last index (any uncommitted tail may be a conf change)."""
    r = new_test_raft(1, [1, 2], 10, 1, new_storage())
    if add_entry:
        r.append_entry([Entry(entry_type=EntryType.EntryNormal)])
        persist(r)
    r.become_candidate()
    r.become_leader()
    assert r.pending_conf_index == wpending_index
    assert r.has_pending_conf() == add_entry


def test_add_node() -> None:
    r = new_test_raft(1, [1], 10, 1, new_storage())
    r.apply_conf_change(add_node(2))
    assert voter_ids(r) == {1, 2}


def test_remove_node() -> None:
    r = new_test_raft(1, [1, 2], 10, 1, new_storage())
    r.apply_conf_change(remove_node(2))
    assert voter_ids(r) == {1}

    # Removing every voter is refused and leaves the configuration alone.
    with pytest.raises(ConfChangeError):
        r.apply_conf_change(remove_node(1))
    assert voter_ids(r) == {1}


def test_remove_node_itself() -> None:
    n1 = new_test_learner_raft(1, [1], [2], 10, 1, new_storage())
    with pytest.raises(ConfChangeError):
        n1.apply_conf_change(remove_node(1))
    assert set(n1.prs().conf().learners) == {2}
    assert voter_ids(n1) == {1}


def test_add_learner() -> None:
    n1 = new_test_raft(1, [1], 10, 1, new_storage())
    n1.apply_conf_change(add_learner(2))
    assert set(n1.prs().conf().learners) == {2}
    assert 2 in n1.prs().conf().learners
    assert voter_ids(n1) == {1}


def test_remove_learner() -> None:
    n1 = new_test_learner_raft(1, [1], [2], 10, 1, new_storage())
    n1.apply_conf_change(remove_node(2))
    assert voter_ids(n1) == {1}
    assert not n1.prs().conf().learners

    with pytest.raises(ConfChangeError):
        n1.apply_conf_change(remove_node(1))
    assert voter_ids(n1) == {1}
    assert not n1.prs().conf().learners


@pytest.mark.parametrize(
    ("peers", "wp"), [([1], True), ([1, 2, 3], True), ([], False), ([2, 3], False)]
)
def test_promotable(peers: list[int], wp: bool) -> None:
    r = new_test_raft(1, peers, 5, 1, new_storage())
    assert r.promotable() == wp


@pytest.mark.parametrize("ids", [[1, 2, 3], [3, 2, 1]])
def test_raft_nodes(ids: list[int]) -> None:
    r = new_test_raft(1, ids, 10, 1, new_storage())
    assert voter_ids(r) == {1, 2, 3}


def test_commit_after_remove_node() -> None:
    """A pending entry commits once applying a removal lowers the quorum."""
    s = new_storage()
    r = new_test_raft(1, [1, 2], 5, 1, s)
    r.become_candidate()
    r.become_leader()

    r.step(propose_conf_change_msg(0, 0, conf_change(ConfChangeType.RemoveNode, 2)))
    # Nothing commits without node 2.
    assert next_ents(r, s) == []
    cc_index = r.raft_log.last_index()

    m = new_message(0, 0, MT.MsgPropose, 0)
    m.entries.append(new_entry(0, 0, b"hello"))
    r.step(m)

    # Node 2 acknowledges the conf change, committing it (and the no-op before it).
    ack = new_message(2, 0, MT.MsgAppendResponse, 0)
    ack.index = cc_index
    r.step(ack)
    ents = next_ents(r, s)
    assert len(ents) == 2
    assert ents[0].entry_type == EntryType.EntryNormal
    assert ents[0].data == b""
    assert ents[1].entry_type == EntryType.EntryConfChange

    # Applying the removal makes node 1 a quorum of one: "hello" commits.
    r.apply_conf_change(remove_node(2))
    ents = next_ents(r, s)
    assert len(ents) == 1
    assert ents[0].entry_type == EntryType.EntryNormal
    assert ents[0].data == b"hello"


def test_conf_change_check_before_campaign() -> None:
    """A node with a committed but unapplied conf change refuses to campaign (MsgHup and MsgTimeoutNow)."""
    nt = Network([None, None, None])
    nt.send([new_message(1, 1, MT.MsgHup, 0)])
    assert nt.raft(1).state == StateRole.Leader

    nt.send([propose_conf_change_msg(1, 1, conf_change(ConfChangeType.RemoveNode, 3))])

    n2 = nt.raft(2)
    n2.reset_randomized_election_timeout()
    for _ in range(n2.randomized_election_timeout()):
        n2.tick()
    # Still a follower: the committed conf change is not applied.
    assert n2.state == StateRole.Follower

    nt.send([new_message(2, 1, MT.MsgTransferLeader, 0)])
    assert nt.raft(1).state == StateRole.Leader
    assert n2.state == StateRole.Follower
    nt.raft(1).abort_leader_transfer()

    committed = n2.raft_log.committed
    n2.commit_apply(committed)
    n2.apply_conf_change(remove_node(3))

    nt.send([new_message(2, 1, MT.MsgTransferLeader, 0)])
    assert nt.raft(1).state == StateRole.Follower
    assert n2.state == StateRole.Leader

    n1 = nt.raft(1)
    n1.commit_apply(committed)
    n1.apply_conf_change(remove_node(3))
    n1.reset_randomized_election_timeout()
    for _ in range(n1.randomized_election_timeout()):
        n1.tick()
    assert n1.state == StateRole.Candidate


# ---------------------------------------------------------------------------
# Learners


def test_learner_election_timeout() -> None:
    """A learner never campaigns, however long it waits."""
    n1 = new_test_learner_raft(1, [1], [2], 10, 1, new_storage())
    n1.become_follower(1, INVALID_ID)
    n2 = new_test_learner_raft(2, [1], [2], 10, 1, new_storage())
    n2.become_follower(1, INVALID_ID)

    timeout = n2.election_timeout()
    n2.set_randomized_election_timeout(timeout)
    for _ in range(timeout):
        n2.tick()
    assert n2.state == StateRole.Follower
    assert n2.term == 1
    assert n2.msgs == []


def test_learner_promotion() -> None:
    """A learner cannot campaign until promoted; once a voter it can win an election."""
    n1 = new_test_learner_raft(1, [1], [2], 10, 1, new_storage())
    n1.become_follower(1, INVALID_ID)
    n2 = new_test_learner_raft(2, [1], [2], 10, 1, new_storage())
    n2.become_follower(1, INVALID_ID)
    network = Network([n1, n2])
    assert n1.state == StateRole.Follower

    timeout = n1.election_timeout()
    n1.set_randomized_election_timeout(timeout)
    for _ in range(timeout):
        n1.tick()
    assert n1.state == StateRole.Leader
    assert n2.state == StateRole.Follower

    heart_beat = new_message(1, 1, MT.MsgBeat, 0)
    network.send([heart_beat])

    n1.apply_conf_change(add_node(2))
    n2.apply_conf_change(add_node(2))
    assert n2.state == StateRole.Follower
    assert n2.promotable()

    timeout = n2.election_timeout()
    n2.set_randomized_election_timeout(timeout)
    for _ in range(timeout):
        n2.tick()

    network.send([new_message(2, 2, MT.MsgBeat, 0)])
    assert n1.state == StateRole.Follower
    assert n2.state == StateRole.Leader


def test_learner_log_replication() -> None:
    """A learner receives and commits entries; the leader tracks its matched index."""
    n1 = new_test_learner_raft(1, [1], [2], 10, 1, new_storage())
    n2 = new_test_learner_raft(2, [1], [2], 10, 1, new_storage())
    network = Network([n1, n2])
    n1.become_follower(1, INVALID_ID)
    n2.become_follower(1, INVALID_ID)

    timeout = n1.election_timeout()
    n1.set_randomized_election_timeout(timeout)
    for _ in range(timeout):
        n1.tick()
    network.send([new_message(1, 1, MT.MsgBeat, 0)])

    assert n1.state == StateRole.Leader
    assert n2.state == StateRole.Follower
    assert not n2.promotable()

    next_committed = n1.raft_log.committed + 1
    network.send([new_message(1, 1, MT.MsgPropose, 1)])
    assert n1.raft_log.committed == next_committed
    assert n2.raft_log.committed == next_committed

    pr = n1.prs().get(2)
    assert pr is not None
    assert pr.matched == n2.raft_log.committed


def test_learner_respond_vote() -> None:
    """Candidates do not ask learners; a node that is a learner in its own config still grants a vote."""
    n1 = new_test_learner_raft(1, [1, 2], [3], 10, 1, new_storage())
    n1.become_follower(1, INVALID_ID)
    n1.reset_randomized_election_timeout()
    n3 = new_test_learner_raft(3, [1, 2], [3], 10, 1, new_storage())
    n3.become_follower(1, INVALID_ID)
    n3.reset_randomized_election_timeout()

    network = Network([n1, None, n3])
    network.isolate(2)

    # 1 cannot win: it asks only 2 (isolated), never the learner 3.
    network.send([new_message(1, 1, MT.MsgHup, 0)])
    assert n1.state == StateRole.Candidate

    # Once 1 sees 3 as a voter, 3 grants the vote and 1 wins.
    n1.apply_conf_change(add_node(3))
    network.send([new_message(1, 1, MT.MsgHup, 0)])
    assert n1.state == StateRole.Leader


def test_transfer_non_member() -> None:
    """MsgTimeoutNow and vote responses to a node outside the configuration do nothing."""
    raft = new_test_raft(1, [2, 3, 4], 5, 1, new_storage())
    raft.step(new_message(2, 1, MT.MsgTimeoutNow, 0))
    raft.step(new_message(2, 1, MT.MsgRequestVoteResponse, 0))
    raft.step(new_message(3, 1, MT.MsgRequestVoteResponse, 0))
    assert raft.state == StateRole.Follower
    assert raft.term == 0
    assert raft.msgs == []


# ---------------------------------------------------------------------------
# Leader transfer


def elected_network() -> Network:
    nt = Network([None, None, None])
    nt.send([new_message(1, 1, MT.MsgHup, 0)])
    assert nt.raft(1).leader_id == 1
    return nt


def test_leader_transfer_to_uptodate_node() -> None:
    nt = elected_network()

    nt.send([new_message(2, 1, MT.MsgTransferLeader, 0)])
    check_leader_transfer_state(nt.raft(1), StateRole.Follower, 2)

    # After some replication, transfer back to 1 (sent to the new leader 2).
    nt.send([new_message(1, 1, MT.MsgPropose, 1)])
    nt.send([new_message(1, 2, MT.MsgTransferLeader, 0)])
    check_leader_transfer_state(nt.raft(1), StateRole.Leader, 1)


def test_leader_transfer_to_uptodate_node_from_follower() -> None:
    """MsgTransferLeader sent to a follower is forwarded to the leader."""
    nt = elected_network()

    nt.send([new_message(2, 2, MT.MsgTransferLeader, 0)])
    check_leader_transfer_state(nt.raft(1), StateRole.Follower, 2)

    nt.send([new_message(1, 1, MT.MsgPropose, 1)])
    nt.send([new_message(1, 1, MT.MsgTransferLeader, 0)])
    check_leader_transfer_state(nt.raft(1), StateRole.Leader, 1)


def test_leader_transfer_with_check_quorum() -> None:
    """The transfer campaign (CampaignTransfer) bypasses the followers' leader lease."""
    nt = Network([None, None, None])
    for i in range(1, 4):
        r = nt.raft(i)
        r.check_quorum = True
        r.set_randomized_election_timeout(r.election_timeout() + i)

    b = nt.raft(2)
    b_election_timeout = b.election_timeout()
    b.set_randomized_election_timeout(b_election_timeout + 1)
    # Let 2's lease expire so that it votes for 1.
    for _ in range(b_election_timeout):
        b.tick()
    nt.send([new_message(1, 1, MT.MsgHup, 0)])
    assert nt.raft(1).leader_id == 1

    nt.send([new_message(2, 1, MT.MsgTransferLeader, 0)])
    check_leader_transfer_state(nt.raft(1), StateRole.Follower, 2)

    nt.send([new_message(1, 1, MT.MsgPropose, 1)])
    nt.send([new_message(1, 2, MT.MsgTransferLeader, 0)])
    check_leader_transfer_state(nt.raft(1), StateRole.Leader, 1)


def test_leader_transfer_to_slow_follower() -> None:
    """The leader catches a lagging transferee up before handing over."""
    nt = elected_network()
    nt.isolate(3)
    nt.send([new_message(1, 1, MT.MsgPropose, 1)])
    nt.recover()
    pr = nt.raft(1).prs().get(3)
    assert pr is not None
    assert pr.matched == 1

    nt.send([new_message(3, 1, MT.MsgTransferLeader, 0)])
    check_leader_transfer_state(nt.raft(1), StateRole.Follower, 3)


def test_leader_transfer_after_snapshot() -> None:
    """A transferee that needs a snapshot gets it, then takes over."""
    nt = elected_network()
    nt.isolate(3)

    nt.send([new_message(1, 1, MT.MsgPropose, 1)])
    leader = nt.raft(1)
    next_ents(leader, nt.storage[1])
    nt.storage[1].commit_to(leader.raft_log.applied)
    nt.storage[1].compact(leader.raft_log.applied)

    nt.recover()
    pr = leader.prs().get(3)
    assert pr is not None
    assert pr.matched == 1

    nt.send([new_message(3, 1, MT.MsgTransferLeader, 0)])
    # A heartbeat response makes the leader send 3 the snapshot.
    nt.send([new_message(3, 1, MT.MsgHeartbeatResponse, 0)])
    check_leader_transfer_state(leader, StateRole.Follower, 3)


def test_leader_transfer_to_self() -> None:
    nt = elected_network()
    nt.send([new_message(1, 1, MT.MsgTransferLeader, 0)])
    check_leader_transfer_state(nt.raft(1), StateRole.Leader, 1)


def test_leader_transfer_to_non_existing_node() -> None:
    nt = elected_network()
    nt.send([new_message(4, 1, MT.MsgTransferLeader, 0)])
    check_leader_transfer_state(nt.raft(1), StateRole.Leader, 1)


def test_leader_transfer_to_learner() -> None:
    s = MemStorage.new_with_conf_state(ConfState(voters=[1], learners=[2]))
    leader = new_test_raft_with_config(new_test_config(1, 10, 1), s)
    s = MemStorage.new_with_conf_state(ConfState(voters=[1], learners=[2]))
    learner = new_test_raft_with_config(new_test_config(2, 10, 1), s)

    nt = Network([leader, learner])
    nt.send([new_message(1, 1, MT.MsgHup, 0)])

    nt.send([new_message(2, 1, MT.MsgTransferLeader, 0)])
    check_leader_transfer_state(nt.raft(1), StateRole.Leader, 1)
    assert learner.state == StateRole.Follower


def test_leader_transfer_timeout() -> None:
    """A pending transfer is aborted after an election timeout."""
    nt = elected_network()
    nt.isolate(3)

    nt.send([new_message(3, 1, MT.MsgTransferLeader, 0)])
    leader = nt.raft(1)
    assert leader.lead_transferee == 3
    heartbeat_timeout = leader.heartbeat_timeout()
    election_timeout = leader.election_timeout()
    for _ in range(heartbeat_timeout):
        leader.tick()
    assert leader.lead_transferee == 3
    for _ in range(election_timeout - heartbeat_timeout):
        leader.tick()
    check_leader_transfer_state(leader, StateRole.Leader, 1)


def test_leader_transfer_ignore_proposal() -> None:
    """Proposals are dropped while a transfer is in progress."""
    nt = elected_network()
    nt.isolate(3)

    nt.send([new_message(3, 1, MT.MsgTransferLeader, 0)])
    leader = nt.raft(1)
    assert leader.lead_transferee == 3

    nt.send([new_message(1, 1, MT.MsgPropose, 1)])
    with pytest.raises(ProposalDropped):
        leader.step(new_message(1, 1, MT.MsgPropose, 1))

    pr = leader.prs().get(1)
    assert pr is not None
    assert pr.matched == 1
    assert leader.raft_log.last_index() == 1


def test_leader_transfer_receive_higher_term_vote() -> None:
    """A higher-term election during a transfer wins, and the transfer is cleared."""
    nt = elected_network()
    nt.isolate(3)

    nt.send([new_message(3, 1, MT.MsgTransferLeader, 0)])
    assert nt.raft(1).lead_transferee == 3

    nt.send([new_message_with_entries(2, 2, MT.MsgHup, [new_entry(1, 2)])])
    check_leader_transfer_state(nt.raft(1), StateRole.Follower, 2)


def test_leader_transfer_remove_node() -> None:
    """Removing the transferee aborts the transfer."""
    nt = elected_network()
    nt.ignore(MT.MsgTimeoutNow)

    nt.send([new_message(3, 1, MT.MsgTransferLeader, 0)])
    leader = nt.raft(1)
    assert leader.lead_transferee == 3

    leader.apply_conf_change(remove_node(3))
    check_leader_transfer_state(leader, StateRole.Leader, 1)


def test_leader_transfer_back() -> None:
    """Transferring to self while a transfer is pending aborts it."""
    nt = elected_network()
    nt.isolate(3)

    nt.send([new_message(3, 1, MT.MsgTransferLeader, 0)])
    assert nt.raft(1).lead_transferee == 3

    nt.send([new_message(1, 1, MT.MsgTransferLeader, 0)])
    check_leader_transfer_state(nt.raft(1), StateRole.Leader, 1)


def test_leader_transfer_second_transfer_to_another_node() -> None:
    """A second target replaces the pending one and succeeds."""
    nt = elected_network()
    nt.isolate(3)

    nt.send([new_message(3, 1, MT.MsgTransferLeader, 0)])
    assert nt.raft(1).lead_transferee == 3

    nt.send([new_message(2, 1, MT.MsgTransferLeader, 0)])
    check_leader_transfer_state(nt.raft(1), StateRole.Follower, 2)


def test_leader_transfer_second_transfer_to_same_node() -> None:
    """Repeating the request for the same target does not extend the timeout."""
    nt = elected_network()
    nt.isolate(3)

    nt.send([new_message(3, 1, MT.MsgTransferLeader, 0)])
    leader = nt.raft(1)
    assert leader.lead_transferee == 3

    heartbeat_timeout = leader.heartbeat_timeout()
    for _ in range(heartbeat_timeout):
        leader.tick()

    nt.send([new_message(3, 1, MT.MsgTransferLeader, 0)])

    election_timeout = leader.election_timeout()
    for _ in range(election_timeout - heartbeat_timeout):
        leader.tick()
    check_leader_transfer_state(leader, StateRole.Leader, 1)
