# Ports of raft-rs harness/tests/integration_cases/test_raft.rs: the pre-vote election scenarios
# (thesis §9.6). The other election tests are in test_raft_election.py.
#
# Covered raft-rs tests: test_node_with_smaller_term_can_complete_election,
#   test_prevote_migration_can_complete_election,
#   test_prevote_migration_with_free_stuck_pre_candidate, test_prevote_with_split_vote,
#   test_prevote_with_check_quorum.
# Skipped: none.

from __future__ import annotations

from multiraft.raft.raft import Raft
from multiraft.raft.storage import MemStorage
from multiraft.raft.testing import (
    Network,
    new_message,
    new_storage,
    new_test_config,
    new_test_raft_with_config,
    new_test_raft_with_prevote,
)
from multiraft.raft.types import (
    INVALID_ID,
    MessageType,
    StateRole,
)
from tests.raft.election_support import (
    hup,
    prevote_config,
    three_nodes,
)

MT = MessageType


def test_node_with_smaller_term_can_complete_election() -> None:
    """Thesis §9.6: with pre-vote, a node rejoining at a smaller term does not block an election
    after the leader is partitioned away."""
    n1, n2, n3 = three_nodes(pre_vote=True)
    for r in (n1, n2, n3):
        r.become_follower(1, INVALID_ID)

    # Isolate node 3.
    nt = Network([n1, n2, n3], prevote_config())
    nt.cut(1, 3)
    nt.cut(2, 3)

    hup(nt, 1)
    assert nt.raft(1).state == StateRole.Leader
    assert nt.raft(2).state == StateRole.Follower

    hup(nt, 3)
    assert nt.raft(3).state == StateRole.PreCandidate

    hup(nt, 2)

    assert [nt.raft(i).term for i in (1, 2, 3)] == [3, 3, 1]
    assert nt.raft(1).state == StateRole.Follower
    assert nt.raft(2).state == StateRole.Leader
    assert nt.raft(3).state == StateRole.PreCandidate

    # Heal, then cut off the leader 2, as if it crashed.
    nt.recover()
    nt.cut(2, 1)
    nt.cut(2, 3)

    hup(nt, 3)
    hup(nt, 1)

    assert StateRole.Leader in (nt.raft(1).state, nt.raft(3).state)


def new_prevote_migration_cluster() -> Network:
    """n1 leader at term 2, n2 follower at term 2, n3 a partitioned candidate at term 4 with a
    shorter log. n3 starts without pre-vote (a rolling upgrade) and has it enabled at the end."""
    n1 = new_test_raft_with_prevote(1, [1, 2, 3], 10, 1, new_storage(), True)
    n2 = new_test_raft_with_prevote(2, [1, 2, 3], 10, 1, new_storage(), True)
    n3 = new_test_raft_with_prevote(3, [1, 2, 3], 10, 1, new_storage(), False)
    for r in (n1, n2, n3):
        r.become_follower(1, INVALID_ID)

    nt = Network([n1, n2, n3])
    hup(nt, 1)

    nt.isolate(3)
    nt.send([new_message(1, 1, MT.MsgPropose, 1)])
    hup(nt, 3)
    hup(nt, 3)

    assert nt.raft(1).state == StateRole.Leader
    assert nt.raft(2).state == StateRole.Follower
    assert nt.raft(3).state == StateRole.Candidate
    assert [nt.raft(i).term for i in (1, 2, 3)] == [2, 2, 4]

    nt.raft(3).pre_vote = True
    nt.recover()
    return nt


def test_prevote_migration_can_complete_election() -> None:
    """Thesis §9.6: in a mixed pre-vote cluster a stale higher-term candidate and a follower
    still elect a leader once the old leader is gone."""
    nt = new_prevote_migration_cluster()

    # The leader goes down.
    nt.isolate(1)

    hup(nt, 3)
    hup(nt, 2)
    assert nt.raft(2).state == StateRole.Follower
    assert nt.raft(3).state == StateRole.PreCandidate

    hup(nt, 3)
    hup(nt, 2)

    assert nt.raft(2).state == StateRole.Leader or nt.raft(3).state == StateRole.Follower
    # The concrete outcome of this deterministic run: node 2 wins at node 3's term + 1.
    assert nt.raft(2).state == StateRole.Leader
    assert nt.raft(3).state == StateRole.Follower
    assert nt.raft(2).term == nt.raft(3).term == 5


def test_prevote_migration_with_free_stuck_pre_candidate() -> None:
    """Thesis §9.6 / §6.2: a stuck pre-candidate with a higher term is freed when its answer to
    the leader's heartbeat makes the leader step down."""
    nt = new_prevote_migration_cluster()

    hup(nt, 3)
    assert nt.raft(1).state == StateRole.Leader
    assert nt.raft(2).state == StateRole.Follower
    assert nt.raft(3).state == StateRole.PreCandidate

    # Pre-vote again, for safety.
    hup(nt, 3)
    assert nt.raft(1).state == StateRole.Leader
    assert nt.raft(2).state == StateRole.Follower
    assert nt.raft(3).state == StateRole.PreCandidate

    to_send = new_message(1, 3, MT.MsgHeartbeat)
    to_send.term = nt.raft(1).term
    nt.send([to_send])

    # The leader is disrupted, so the stuck node is freed.
    assert nt.raft(1).state == StateRole.Follower
    assert nt.raft(3).term == nt.raft(1).term


def test_prevote_with_split_vote() -> None:
    """Thesis §9.6: after a split vote, the next round elects a leader."""
    rs = three_nodes(pre_vote=True)
    for r in rs:
        r.become_follower(1, INVALID_ID)
    nt = Network(rs)
    hup(nt, 1)

    # The leader goes down; both followers campaign at once.
    nt.isolate(1)
    nt.send([new_message(2, 2, MT.MsgHup), new_message(3, 3, MT.MsgHup)])

    assert nt.raft(2).term == 3
    assert nt.raft(3).term == 3
    assert nt.raft(2).state == StateRole.Candidate
    assert nt.raft(3).state == StateRole.Candidate

    # Node 2 times out first.
    hup(nt, 2)

    assert nt.raft(2).term == 4
    assert nt.raft(3).term == 4
    assert nt.raft(2).state == StateRole.Leader
    assert nt.raft(3).state == StateRole.Follower


def test_prevote_with_check_quorum() -> None:
    """Thesis §9.6 and §6.2: a pre-candidate still grants pre-votes once its own election timeout
    passed, so it does not block another node's election."""

    def bootstrap(id: int) -> Raft:
        cfg = new_test_config(id, 10, 1)
        cfg.pre_vote = True
        cfg.check_quorum = True
        store = MemStorage.new_with_conf_state(([1, 2, 3], []))
        r = new_test_raft_with_config(cfg, store)
        r.become_follower(1, INVALID_ID)
        return r

    nt = Network([bootstrap(1), bootstrap(2), bootstrap(3)])
    hup(nt, 1)

    # Isolate node 3, which knows the leader.
    nt.cut(1, 3)
    nt.cut(2, 3)
    assert nt.raft(1).state == StateRole.Leader
    assert nt.raft(2).state == StateRole.Follower

    hup(nt, 3)
    assert nt.raft(3).state == StateRole.PreCandidate

    # Two leader transfers raise the term by 2, so node 2 ignores node 3's stale pre-votes.
    nt.send([new_message(2, 1, MT.MsgTransferLeader)])
    nt.send([new_message(1, 2, MT.MsgTransferLeader)])

    assert [nt.raft(i).term for i in (1, 2, 3)] == [4, 4, 2]
    assert nt.raft(1).state == StateRole.Leader
    assert nt.raft(2).state == StateRole.Follower
    assert nt.raft(3).state == StateRole.PreCandidate

    # Heal, then cut off leader 1, as if it crashed.
    nt.recover()
    nt.cut(1, 2)
    nt.cut(1, 3)

    # Node 3 must not ignore node 2's pre-vote once its own timeout has passed.
    r3 = nt.raft(3)
    for _ in range(r3.randomized_election_timeout()):
        r3.tick()
    hup(nt, 2)

    assert nt.raft(2).state == StateRole.Leader
    assert nt.raft(3).state == StateRole.Follower

