# Ports of raft-rs harness/tests/integration_cases/test_raft.rs, group "Check quorum / lease",
# plus harness/tests/failpoints_cases/mod.rs (the `before_step` failpoint is the `Raft.before_step`
# hook). The election tests of the same raft-rs file are in test_raft_election.py.
#
# Covered raft-rs tests: test_leader_stepdown_when_quorum_active,
#   test_leader_stepdown_when_quorum_lost, test_leader_superseding_with_check_quorum,
#   test_leader_election_with_check_quorum, test_free_stuck_candidate_with_check_quorum,
#   test_non_promotable_voter_with_check_quorum, test_disruptive_follower,
#   test_disruptive_follower_pre_vote, test_switching_check_quorum, test_add_node_check_quorum,
#   test_reject_stale_term_message, test_step_ignore_old_term_msg.
# Skipped: none.

from __future__ import annotations

import pytest

from multiraft.raft.testing import (
    Network,
    add_node,
    hard_state,
    new_message,
    new_test_raft,
    persist,
    read_messages,
    remove_node,
)
from multiraft.raft.types import (
    INVALID_ID,
    Message,
    MessageType,
    StateRole,
)
from tests.raft.election_support import (
    hup,
    three_nodes,
)

MT = MessageType


# ---------------------------------------------------------------------------
# Check quorum / lease


def test_leader_stepdown_when_quorum_active() -> None:
    """Raft thesis §6.2 (check quorum): a leader hearing from a quorum stays leader past the
    election timeout."""
    sm = new_test_raft(1, [1, 2, 3], 5, 1)
    sm.check_quorum = True
    sm.become_candidate()
    sm.become_leader()

    for _ in range(sm.election_timeout() + 1):
        m = new_message(2, 0, MT.MsgHeartbeatResponse)
        m.term = sm.term
        sm.step(m)
        sm.tick()

    assert sm.state == StateRole.Leader


def test_leader_stepdown_when_quorum_lost() -> None:
    """Raft thesis §6.2 (check quorum): a leader that hears from no quorum for an election
    timeout steps down, and stops applying unpersisted entries."""
    sm = new_test_raft(1, [1, 2, 3], 5, 1)
    sm.check_quorum = True
    sm.become_candidate()
    sm.become_leader()
    sm.raft_log.max_apply_unpersisted_log_limit = 100

    for _ in range(sm.election_timeout() + 1):
        sm.tick()

    assert sm.state == StateRole.Follower
    assert sm.raft_log.max_apply_unpersisted_log_limit == 0


def test_leader_superseding_with_check_quorum() -> None:
    """Raft thesis §6.2/§4.2.3: a follower that heard from the leader within the election timeout
    ignores a vote request; after its timeout the candidate wins."""
    a, b, c = three_nodes(check_quorum=True)
    nt = Network([a, b, c])

    b_timeout = b.election_timeout()
    # Keep b from campaigning.
    b.set_randomized_election_timeout(b_timeout + 1)
    for _ in range(b_timeout):
        b.tick()
    hup(nt, 1)

    assert a.state == StateRole.Leader
    assert c.state == StateRole.Follower

    hup(nt, 3)
    # b refused: its election_elapsed had not reached the election timeout.
    assert c.state == StateRole.Candidate

    # Let b's election_elapsed reach the election timeout.
    for _ in range(b_timeout):
        b.tick()
    hup(nt, 3)
    assert c.state == StateRole.Leader


def test_leader_election_with_check_quorum() -> None:
    """Raft thesis §6.2: leadership changes only once the followers' leases have expired."""
    a, b, c = three_nodes(check_quorum=True)
    nt = Network([a, b, c])

    # Pin the randomized timeouts above election_timeout to keep the test deterministic.
    a.set_randomized_election_timeout(a.election_timeout() + 1)
    b.set_randomized_election_timeout(b.election_timeout() + 2)

    # Right after creation, votes are granted regardless of the election timeout.
    hup(nt, 1)
    assert a.state == StateRole.Leader
    assert c.state == StateRole.Follower

    # Becoming leader/follower drew new timeouts; pin them again.
    a.set_randomized_election_timeout(a.election_timeout() + 1)
    b.set_randomized_election_timeout(b.election_timeout() + 2)

    for _ in range(a.election_timeout()):
        a.tick()
    for _ in range(b.election_timeout()):
        b.tick()
    hup(nt, 3)

    assert a.state == StateRole.Follower
    assert c.state == StateRole.Leader


def test_free_stuck_candidate_with_check_quorum() -> None:
    """Raft thesis §6.2: a candidate stuck at a higher term frees itself: its reply to the
    leader's heartbeat makes the leader step down, and it can then win."""
    a, b, c = three_nodes(check_quorum=True)
    nt = Network([a, b, c])

    b_timeout = b.election_timeout()
    b.set_randomized_election_timeout(b_timeout + 1)
    for _ in range(b_timeout):
        b.tick()
    hup(nt, 1)
    nt.isolate(1)
    hup(nt, 3)

    assert b.state == StateRole.Follower
    assert c.state == StateRole.Candidate
    assert c.term == b.term + 1

    # Vote again, for safety.
    hup(nt, 3)
    assert b.state == StateRole.Follower
    assert c.state == StateRole.Candidate
    assert c.term == b.term + 2

    nt.recover()
    msg = new_message(1, 3, MT.MsgHeartbeat)
    msg.term = a.term
    nt.send([msg])

    # The leader is disrupted and adopts the candidate's term.
    assert a.state == StateRole.Follower
    assert c.term == a.term

    # This time the candidate wins.
    hup(nt, 3)
    assert c.state == StateRole.Leader


def test_non_promotable_voter_with_check_quorum() -> None:
    """Raft paper §6 (membership): a node outside the configuration never campaigns, and still
    follows the leader."""
    a = new_test_raft(1, [1, 2], 10, 1)
    b = new_test_raft(2, [1], 10, 1)
    a.check_quorum = True
    b.check_quorum = True
    nt = Network([a, b])

    b_timeout = b.election_timeout()
    b.set_randomized_election_timeout(b_timeout + 1)
    # Remove 2 again to be sure it is not promotable.
    b.apply_conf_change(remove_node(2))
    assert not b.promotable()

    for _ in range(b_timeout):
        b.tick()
    hup(nt, 1)

    assert a.state == StateRole.Leader
    assert b.state == StateRole.Follower
    assert b.leader_id == 1
    assert b.term == a.term


def test_disruptive_follower() -> None:
    """Raft thesis §6.2/§9.6: an isolated follower that times out becomes a higher-term
    candidate; its answer to a delayed heartbeat forces the leader to step down."""
    n1, n2, n3 = three_nodes(check_quorum=True)
    for r in (n1, n2, n3):
        r.become_follower(1, INVALID_ID)

    nt = Network([n1, n2, n3])
    hup(nt, 1)

    assert n1.state == StateRole.Leader
    assert n2.state == StateRole.Follower
    assert n3.state == StateRole.Follower

    # Leader messages to n3 are delayed while its ticks elapse.
    n3.set_randomized_election_timeout(n3.election_timeout() + 2)
    timeout = n3.randomized_election_timeout()
    for _ in range(timeout - 1):
        n3.tick()
    # The last tick fires before any leader message arrives: n3 campaigns.
    n3.tick()

    assert n1.state == StateRole.Leader
    assert n2.state == StateRole.Follower
    assert n3.state == StateRole.Candidate
    assert [n1.term, n2.term, n3.term] == [2, 2, 3]

    # The delayed heartbeat (lower term) reaches n3; n3 answers with its higher term and the
    # leader steps down.
    msg = new_message(1, 3, MT.MsgHeartbeat)
    msg.term = n1.term
    nt.send([msg])

    assert n1.state == StateRole.Follower
    assert n2.state == StateRole.Follower
    assert n3.state == StateRole.Candidate
    assert [n1.term, n2.term, n3.term] == [3, 2, 3]


def test_disruptive_follower_pre_vote() -> None:
    """Raft thesis §9.6: with pre-vote, an isolated follower with a shorter log stays a
    pre-candidate at the current term and does not disturb the leader."""
    n1, n2, n3 = three_nodes(check_quorum=True, pre_vote=True)
    for r in (n1, n2, n3):
        r.become_follower(1, INVALID_ID)

    nt = Network([n1, n2, n3])
    hup(nt, 1)

    assert n1.state == StateRole.Leader
    assert n2.state == StateRole.Follower
    assert n3.state == StateRole.Follower

    nt.isolate(3)
    for _ in range(3):
        nt.send([new_message(1, 1, MT.MsgPropose, 1)])
    nt.recover()
    hup(nt, 3)

    assert n1.state == StateRole.Leader
    assert n2.state == StateRole.Follower
    assert n3.state == StateRole.PreCandidate
    assert [n1.term, n2.term, n3.term] == [2, 2, 2]

    # A delayed leader heartbeat does not make the leader step down.
    msg = new_message(1, 3, MT.MsgHeartbeat)
    msg.term = n1.term
    nt.send([msg])
    assert n1.state == StateRole.Leader


def test_switching_check_quorum() -> None:
    """Raft thesis §6.2: check quorum can be switched off at runtime, and the leader then stays."""
    sm = new_test_raft(1, [1, 2, 3], 5, 1)
    sm.set_check_quorum(True)
    sm.become_candidate()
    sm.become_leader()
    for _ in range(sm.election_timeout() + 1):
        sm.tick()
    assert sm.state != StateRole.Leader

    persist(sm)
    sm.set_check_quorum(False)
    sm.become_candidate()
    sm.become_leader()
    for _ in range(sm.election_timeout() + 1):
        sm.tick()
    assert sm.state == StateRole.Leader


def test_add_node_check_quorum() -> None:
    """Raft thesis §6.2: a newly added node counts as recently active, so the leader survives the
    first quorum check after adding it, and steps down at the next one if it stays silent."""
    r = new_test_raft(1, [1], 10, 1)
    r.check_quorum = True
    r.become_candidate()
    r.become_leader()

    for _ in range(r.election_timeout() - 1):
        r.tick()

    r.apply_conf_change(add_node(2))

    # This tick reaches the election timeout and runs a quorum check.
    r.tick()
    assert r.state == StateRole.Leader

    # Another election timeout without hearing from node 2.
    for _ in range(r.election_timeout()):
        r.tick()
    assert r.state == StateRole.Follower


# ---------------------------------------------------------------------------
# failpoints_cases: stale-term messages never reach the role handlers


class _Recorder:
    def __init__(self) -> None:
        self.seen: list[Message] = []

    def __call__(self, m: Message) -> None:
        self.seen.append(m)
        raise AssertionError(f"before_step reached with {m}")


def test_reject_stale_term_message() -> None:
    """Raft paper §5.1: a request with a stale term is rejected (raft-rs ignores it) before any
    role handler runs."""
    r = new_test_raft(1, [1, 2, 3], 10, 1)
    hook = _Recorder()
    r.before_step = hook
    r.load_state(hard_state(2, 0, 0))

    m = new_message(0, 0, MT.MsgAppend)
    m.term = r.term - 1
    r.step(m)

    assert hook.seen == []
    assert r.term == 2
    assert r.state == StateRole.Follower
    assert read_messages(r) == []

    # Control: a current-term message does reach the hook.
    ok = new_message(2, 1, MT.MsgAppend)
    ok.term = r.term
    with pytest.raises(AssertionError):
        r.step(ok)
    assert hook.seen == [ok]


def test_step_ignore_old_term_msg() -> None:
    """Raft paper §5.1: step ignores a message from an old term and does not pass it on."""
    sm = new_test_raft(1, [1], 10, 1)
    hook = _Recorder()
    sm.before_step = hook
    sm.term = 2

    m = new_message(0, 0, MT.MsgAppend)
    m.term = 1
    sm.step(m)

    assert hook.seen == []
    assert sm.term == 2
    assert sm.raft_log.last_index() == 0


