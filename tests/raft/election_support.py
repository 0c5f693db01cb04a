"""Helpers shared by the election, pre-vote and check-quorum tests (raft-rs test_raft.rs per-file helpers)."""

from __future__ import annotations

from multiraft.raft.config import Config
from multiraft.raft.log import RaftLog
from multiraft.raft.raft import Raft
from multiraft.raft.storage import MemStorage
from multiraft.raft.testing import (
    Network,
    new_message,
    new_storage,
    new_test_raft_with_prevote,
)
from multiraft.raft.types import (
    Entry,
    MessageType,
    StateRole,
)

MT = MessageType


# ---------------------------------------------------------------------------
# Helpers (raft-rs's per-file helpers of test_raft.rs)


def ents_with_config(terms: list[int], pre_vote: bool, id: int, peers: list[int]) -> Raft:
    """A node whose log holds one entry per term in ``terms`` (indexes 1, 2, ...)."""
    store = MemStorage.new_with_conf_state((peers, []))
    for i, term in enumerate(terms, 1):
        store.append([Entry(term=term, index=i)])
    r = new_test_raft_with_prevote(id, peers, 5, 1, store, pre_vote)
    r.reset(terms[-1])
    return r


def voted_with_config(vote: int, term: int, pre_vote: bool, id: int, peers: list[int]) -> Raft:
    """A node that voted for ``vote`` at ``term`` but received no entries."""
    store = MemStorage.new_with_conf_state((peers, []))
    hs = store.mut_hard_state()
    hs.vote = vote
    hs.term = term
    r = new_test_raft_with_prevote(id, peers, 5, 1, store, pre_vote)
    r.reset(term)
    return r


def assert_raft_log(raft_log: RaftLog, committed: int, applied: int, last: int) -> None:
    assert raft_log.committed == committed
    assert raft_log.applied == applied
    assert raft_log.last_index() == last


def prevote_config() -> Config:
    config = Network.default_config()
    config.pre_vote = True
    return config


def hup(nt: Network, id: int) -> None:
    nt.send([new_message(id, id, MT.MsgHup)])


def become(r: Raft, state: StateRole, follower_term: int, follower_lead: int) -> None:
    if state == StateRole.Follower:
        r.become_follower(follower_term, follower_lead)
    elif state == StateRole.PreCandidate:
        r.become_pre_candidate()
    elif state == StateRole.Candidate:
        r.become_candidate()
    else:
        r.become_candidate()
        r.become_leader()


def three_nodes(check_quorum: bool = False, pre_vote: bool = False) -> list[Raft]:
    rs = []
    for id in (1, 2, 3):
        r = new_test_raft_with_prevote(id, [1, 2, 3], 10, 1, new_storage(), pre_vote)
        r.check_quorum = check_quorum
        rs.append(r)
    return rs

