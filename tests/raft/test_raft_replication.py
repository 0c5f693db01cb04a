# Ports of raft-rs harness/tests/integration_cases/test_raft.rs, groups "Commit / replication" and
# "Misc" (uncommitted size, config, group commit). Progress-state tests are in test_raft_progress.py.
#
# Covered raft-rs tests:
#   test_log_replication, test_single_node_commit, test_cannot_commit_without_new_term_entry,
#   test_commit_without_new_term_entry, test_proposal, test_proposal_by_proxy,
#   test_advance_commit_index_by_direct_vote_request,
#   test_advance_commit_index_by_prevote_request (raft-rs name for "by direct prevote request"),
#   test_advance_commit_index_by_direct_vote_response,
#   test_advance_commit_index_by_prevote_response (raft-rs name for "by direct prevote response"),
#   test_uncommitted_entries_size_limit, test_uncommitted_entry_after_leader_election,
#   test_uncommitted_state_advance_ready_from_last_term, test_new_raft_with_bad_config_errors,
#   test_group_commit, test_group_commit_consistent.
# Skipped: none.

from __future__ import annotations

import copy

import pytest

from multiraft.raft.confchange_codec import encode_conf_change, encode_conf_change_v2
from multiraft.raft.config import Config
from multiraft.raft.errors import ConfigInvalid, ProposalDropped
from multiraft.raft.raft import Raft
from multiraft.raft.testing import (
    NOP_STEPPER,
    BlackHole,
    Network,
    add_node,
    conf_change,
    conf_change_v2,
    empty_entry,
    new_message,
    new_message_with_entries,
    new_storage,
    new_test_config,
    new_test_learner_raft,
    new_test_raft_with_config,
    new_test_raft_with_prevote,
)
from multiraft.raft.types import (
    INVALID_ID,
    ConfChange,
    ConfChangeTransition,
    ConfChangeType,
    ConfChangeV2,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    StateRole,
    new_conf_change_single,
)
from tests.raft.replication_support import (
    _assert_raft_log,
    _next_ents,
    _pr,
    _store,
)

MT = MessageType


# ----------------------------------------------------------------------------
# Commit / replication


@pytest.mark.parametrize(
    ("msgs", "wcommitted"),
    [
        ([new_message(1, 1, MT.MsgPropose, 1)], 2),
        (
            [
                new_message(1, 1, MT.MsgPropose, 1),
                new_message(1, 2, MT.MsgHup),
                new_message(1, 2, MT.MsgPropose, 1),
            ],
            4,
        ),
    ],
)
def test_log_replication(msgs: list[Message], wcommitted: int) -> None:
    """Raft paper §5.3: proposals are replicated and applied identically on every node."""
    network = Network([None, None, None])
    network.send([new_message(1, 1, MT.MsgHup)])
    for m in msgs:
        network.send([copy.deepcopy(m)])

    proposals = [m for m in msgs if m.msg_type == MT.MsgPropose]
    for j, x in network.peers.items():
        assert isinstance(x, Raft)
        assert x.raft_log.committed == wcommitted, j
        ents = [e for e in _next_ents(x, network.storage[j]) if e.data]
        assert len(ents) == len(proposals)
        for e, m in zip(ents, proposals):
            assert e.data == m.entries[0].data


def test_single_node_commit() -> None:
    tt = Network([None])
    tt.send([new_message(1, 1, MT.MsgHup)])
    tt.send([new_message(1, 1, MT.MsgPropose, 1)])
    tt.send([new_message(1, 1, MT.MsgPropose, 1)])
    assert tt.raft(1).raft_log.committed == 3


def test_cannot_commit_without_new_term_entry() -> None:
    """Raft paper §5.4.2: entries of a previous term are not committed by counting replicas."""
    tt = Network([None, None, None, None, None])
    tt.send([new_message(1, 1, MT.MsgHup)])
    tt.cut(1, 3)
    tt.cut(1, 4)
    tt.cut(1, 5)
    tt.send([new_message(1, 1, MT.MsgPropose, 1)])
    tt.send([new_message(1, 1, MT.MsgPropose, 1)])
    assert tt.raft(1).raft_log.committed == 1

    tt.recover()
    # Keep the new leader's no-op from being replicated.
    tt.ignore(MT.MsgAppend)
    tt.send([new_message(2, 2, MT.MsgHup)])
    assert tt.raft(2).raft_log.committed == 1

    tt.recover()
    tt.send([new_message(2, 2, MT.MsgBeat)])
    tt.send([new_message(2, 2, MT.MsgPropose, 1)])
    assert tt.raft(2).raft_log.committed == 5


def test_commit_without_new_term_entry() -> None:
    """Raft paper §5.4.2: the new leader's no-op commits the previous terms' entries."""
    tt = Network([None, None, None, None, None])
    tt.send([new_message(1, 1, MT.MsgHup)])
    tt.cut(1, 3)
    tt.cut(1, 4)
    tt.cut(1, 5)
    tt.send([new_message(1, 1, MT.MsgPropose, 1)])
    tt.send([new_message(1, 1, MT.MsgPropose, 1)])
    assert tt.raft(1).raft_log.committed == 1

    tt.recover()
    tt.send([new_message(2, 2, MT.MsgHup)])
    assert tt.raft(1).raft_log.committed == 4


@pytest.mark.parametrize(
    ("peers", "success"),
    [
        ([None, None, None], True),
        ([None, None, NOP_STEPPER], True),
        ([None, NOP_STEPPER, NOP_STEPPER], False),
        ([None, NOP_STEPPER, NOP_STEPPER, None], False),
        ([None, NOP_STEPPER, NOP_STEPPER, None, None], True),
    ],
)
def test_proposal(peers: list[Raft | BlackHole | None], success: bool) -> None:
    """Raft paper §5.3: a proposal commits iff a quorum is reachable."""
    nw = Network(peers)
    nw.send([new_message(1, 1, MT.MsgHup)])
    nw.send([new_message(1, 1, MT.MsgPropose, 1)])

    want = (2, 0, 2) if success else (0, 0, 0)
    rafts = [p for p in nw.peers.values() if isinstance(p, Raft)]
    assert rafts
    for r in rafts:
        _assert_raft_log(r, *want)
    assert nw.raft(1).term == 1


@pytest.mark.parametrize("peers", [[None, None, None], [None, None, NOP_STEPPER]])
def test_proposal_by_proxy(peers: list[Raft | BlackHole | None]) -> None:
    tt = Network(peers)
    tt.send([new_message(1, 1, MT.MsgHup)])
    # Propose through a follower.
    tt.send([new_message(2, 2, MT.MsgPropose, 1)])
    for p in tt.peers.values():
        if isinstance(p, Raft):
            _assert_raft_log(p, 2, 0, 2)
    assert tt.raft(1).term == 1


def _conf_change_entry(cc: ConfChange | ConfChangeV2) -> Entry:
    if isinstance(cc, ConfChange):
        return Entry(entry_type=EntryType.EntryConfChange, data=encode_conf_change(cc))
    return Entry(entry_type=EntryType.EntryConfChangeV2, data=encode_conf_change_v2(cc))


def _tick_election(r: Raft) -> None:
    for _ in range(r.randomized_election_timeout()):
        r.tick()


def _advance_commit_index_by_vote_request(use_prevote: bool) -> None:
    cases: list[ConfChange | ConfChangeV2] = [
        conf_change(ConfChangeType.AddNode, 4),
        conf_change_v2(
            [
                new_conf_change_single(3, ConfChangeType.AddLearnerNode),
                new_conf_change_single(4, ConfChangeType.AddNode),
            ]
        ),
    ]
    for i, cc in enumerate(cases):
        peers = [
            new_test_learner_raft(id, [1, 2, 3], [4], 10, 1, pre_vote=use_prevote)
            for id in range(1, 5)
        ]
        nt = Network(peers)
        nt.send([new_message(1, 1, MT.MsgHup)])

        # Propose the conf change but keep it uncommitted.
        nt.ignore(MT.MsgAppendResponse)
        nt.send([new_message_with_entries(1, 1, MT.MsgPropose, [_conf_change_entry(cc)])])
        cc_index = nt.raft(1).raft_log.last_index()

        # Node 4 gets a longer log than the other voters.
        nt.recover()
        nt.cut(1, 2)
        nt.cut(1, 3)
        nt.send([new_message(1, 1, MT.MsgPropose, 1)])

        # Commit the conf change without node 4 learning it.
        nt.recover()
        nt.cut(1, 4)
        nt.ignore(MT.MsgAppend)
        msg = new_message(2, 1, MT.MsgAppendResponse)
        msg.index = nt.raft(2).raft_log.last_index()
        nt.send([msg, new_message(1, 1, MT.MsgBeat)])

        # The leader goes down.
        nt.recover()
        nt.isolate(1)

        p4 = nt.raft(4)
        assert p4.raft_log.committed < cc_index, i
        # Node 4 still thinks it is a learner: it cannot campaign.
        _tick_election(p4)
        assert p4.state == StateRole.Follower, i

        p2 = nt.raft(2)
        assert p2.raft_log.committed >= cc_index, i
        p2.apply_conf_change(cc.as_v2())
        p2.commit_apply(cc_index)

        # Node 2 now needs node 4's vote, which it will not get.
        _tick_election(p2)
        want = StateRole.PreCandidate if use_prevote else StateRole.Candidate
        assert p2.state == want, i
        nt.filter_and_send(nt.read_messages())
        assert nt.raft(2).state != StateRole.Leader, i

        # But the vote request carried the commit index to node 4.
        p4 = nt.raft(4)
        assert p4.raft_log.committed >= cc_index, i
        p4.apply_conf_change(cc.as_v2())
        p4.commit_apply(cc_index)

        # Node 4 is a voter now and wins.
        _tick_election(p4)
        nt.filter_and_send(nt.read_messages())
        assert nt.raft(4).state == StateRole.Leader, i


def test_advance_commit_index_by_direct_vote_request() -> None:
    _advance_commit_index_by_vote_request(False)


def test_advance_commit_index_by_prevote_request() -> None:
    _advance_commit_index_by_vote_request(True)


def _advance_commit_index_by_vote_response(use_prevote: bool) -> None:
    cases: list[ConfChange | ConfChangeV2] = [
        conf_change(ConfChangeType.RemoveNode, 4),
        # explicit leave-joint
        conf_change_v2([]),
    ]
    enter_joint = conf_change_v2(
        [
            new_conf_change_single(3, ConfChangeType.AddNode),
            new_conf_change_single(4, ConfChangeType.AddLearnerNode),
        ]
    )
    enter_joint.transition = ConfChangeTransition.Explicit
    for i, cc in enumerate(cases):
        peers = [
            new_test_raft_with_prevote(id, [1, 2, 3, 4], 10, 1, new_storage(), use_prevote)
            for id in range(1, 5)
        ]
        nt = Network(peers)
        if cc.as_v1() is None:
            for p in nt.peers.values():
                assert isinstance(p, Raft)
                p.apply_conf_change(enter_joint)

        nt.send([new_message(1, 1, MT.MsgHup)])

        # Propose the conf change but keep it uncommitted.
        nt.ignore(MT.MsgAppendResponse)
        nt.send([new_message_with_entries(1, 1, MT.MsgPropose, [_conf_change_entry(cc)])])
        cc_index = nt.raft(1).raft_log.last_index()

        # Node 4 gets a longer log than the other voters.
        nt.recover()
        nt.cut(1, 2)
        nt.cut(1, 3)
        nt.send([new_message(1, 1, MT.MsgPropose, 1)])

        # A delayed response commits the conf change.
        msg = new_message(2, 1, MT.MsgAppendResponse)
        msg.index = nt.raft(2).raft_log.last_index()
        nt.send([msg, new_message(1, 1, MT.MsgBeat)])

        # The leader goes down.
        nt.recover()
        nt.isolate(1)

        p4 = nt.raft(4)
        assert p4.raft_log.committed >= cc_index, i
        p4.apply_conf_change(cc.as_v2())
        p4.commit_apply(cc_index)
        # Node 4 is no longer a voter: it cannot campaign.
        _tick_election(p4)
        assert p4.state == StateRole.Follower, i

        p2 = nt.raft(2)
        assert p2.raft_log.committed < cc_index, i

        # Node 2 needs node 4's vote, and node 4 rejects it.
        _tick_election(p2)
        want = StateRole.PreCandidate if use_prevote else StateRole.Candidate
        assert p2.state == want, i
        nt.filter_and_send(nt.read_messages())
        p2 = nt.raft(2)
        # The rejection carried the commit index: node 2 sees an unapplied
        # conf change and steps down.
        assert p2.state == StateRole.Follower, i
        assert p2.raft_log.committed >= cc_index, i
        p2.apply_conf_change(cc.as_v2())
        p2.commit_apply(cc_index)

        # Now only node 3's vote is needed.
        _tick_election(p2)
        nt.filter_and_send(nt.read_messages())
        assert nt.raft(2).state == StateRole.Leader, i


def test_advance_commit_index_by_direct_vote_response() -> None:
    _advance_commit_index_by_vote_response(False)


def test_advance_commit_index_by_prevote_response() -> None:
    _advance_commit_index_by_vote_response(True)


# ----------------------------------------------------------------------------
# Uncommitted size, config, group commit


def test_uncommitted_entries_size_limit() -> None:
    config = Config(id=1, max_uncommitted_size=12)
    nt = Network([None, None, None], config)
    data = b"hello world!"

    def prop(payload: bytes) -> Message:
        return new_message_with_entries(1, 1, MT.MsgPropose, [Entry(data=payload)])

    nt.send([new_message(1, 1, MT.MsgHup)])
    nt.dispatch([prop(data)])
    # Over the limit: dropped.
    with pytest.raises(ProposalDropped):
        nt.dispatch([prop(data)])
    # Empty entries are always accepted.
    nt.dispatch([prop(b"")])

    # After the reduction, a proposal is accepted again.
    nt.raft(1).reduce_uncommitted_size([Entry(data=data, index=3)])
    assert nt.raft(1).uncommitted_size() == 0

    # With nothing uncommitted, even an oversized proposal is accepted...
    nt.dispatch([prop(b"hello world and raft")])
    # ... but not a second one.
    with pytest.raises(ProposalDropped):
        nt.dispatch([prop(b"hello world and raft")])
    nt.dispatch([prop(b"")])


def test_uncommitted_entry_after_leader_election() -> None:
    config = Config(id=1, max_uncommitted_size=12)
    nt = Network([None, None, None, None, None], config)
    nt.send([new_message(1, 1, MT.MsgHup)])

    # An uncommitted entry on nodes 1 and 2.
    nt.cut(1, 3)
    nt.cut(1, 4)
    nt.cut(1, 5)
    nt.send([new_message_with_entries(1, 1, MT.MsgPropose, [Entry(data=b"hello world!")])])

    nt.isolate(1)
    nt.ignore(MT.MsgAppend)
    nt.send([new_message(2, 2, MT.MsgHup)])

    # The new leader starts counting from zero (a soft limit).
    assert nt.raft(2).state == StateRole.Leader
    assert nt.raft(2).raft_log.last_index() == 3
    assert nt.raft(2).uncommitted_size() == 0


def test_uncommitted_state_advance_ready_from_last_term() -> None:
    config = Config(id=1, max_uncommitted_size=12)
    nt = Network([None, None, None, None, None], config)
    data = b"hello world!"

    nt.send([new_message(1, 1, MT.MsgHup)])
    nt.send([new_message_with_entries(1, 1, MT.MsgPropose, [Entry(data=data)])])
    nt.send([new_message_with_entries(1, 1, MT.MsgPropose, [Entry(data=data)])])

    nt.send([new_message(2, 2, MT.MsgHup)])
    assert nt.raft(2).state == StateRole.Leader

    nt.isolate(2)
    nt.send([new_message_with_entries(2, 2, MT.MsgPropose, [Entry(data=data)])])
    assert nt.raft(2).uncommitted_size() == len(data)

    # Entries of the previous term, advanced from an older Ready, were never counted.
    nt.raft(2).reduce_uncommitted_size([Entry(data=data, index=1), Entry(data=data, index=2)])
    assert nt.raft(2).uncommitted_size() == len(data)


def test_new_raft_with_bad_config_errors() -> None:
    invalid_config = new_test_config(INVALID_ID, 1, 1)
    with pytest.raises(ConfigInvalid):
        Raft(invalid_config, _store([1, 2]))


@pytest.mark.parametrize(
    ("matches", "group_ids", "g_w", "q_w"),
    [
        # single
        ([1], [0], 1, 1),
        ([1], [1], 1, 1),
        # odd
        ([2, 2, 1], [1, 2, 1], 2, 2),
        ([2, 2, 1], [1, 1, 2], 1, 2),
        ([2, 2, 1], [1, 0, 1], 1, 2),
        ([2, 2, 1], [0, 0, 0], 1, 2),
        # even
        ([4, 2, 1, 3], [0, 0, 0, 0], 1, 2),
        ([4, 2, 1, 3], [1, 0, 0, 0], 1, 2),
        ([4, 2, 1, 3], [0, 1, 0, 2], 2, 2),
        ([4, 2, 1, 3], [0, 2, 1, 0], 1, 2),
        ([4, 2, 1, 3], [1, 1, 1, 1], 2, 2),
        ([4, 2, 1, 3], [1, 1, 2, 1], 1, 2),
        ([4, 2, 1, 3], [1, 2, 1, 1], 2, 2),
        ([4, 2, 1, 3], [4, 3, 2, 1], 2, 2),
    ],
)
def test_group_commit(matches: list[int], group_ids: list[int], g_w: int, q_w: int) -> None:
    store = _store([1])
    store.append([empty_entry(1, i) for i in range(min(matches), max(matches) + 1)])
    store.set_hardstate(HardState(term=1))
    sm = new_test_raft_with_config(new_test_config(1, 5, 1), store)

    groups = []
    for j, (m, g) in enumerate(zip(matches, group_ids)):
        id = j + 1
        if sm.prs().get(id) is None:
            sm.apply_conf_change(add_node(id))
            pr = _pr(sm, id)
            pr.matched = m
            pr.next_idx = m + 1
        if g != 0:
            groups.append((id, g))

    sm.enable_group_commit(True)
    sm.assign_commit_groups(groups)
    # Only a leader commits.
    assert sm.raft_log.committed == 0
    sm.state = StateRole.Leader
    sm.assign_commit_groups(groups)
    assert sm.raft_log.committed == g_w
    sm.enable_group_commit(False)
    assert sm.raft_log.committed == q_w


_L = StateRole.Leader
_F = StateRole.Follower


@pytest.mark.parametrize(
    ("matches", "group_ids", "committed", "applied", "role", "exp"),
    [
        # A single node does not use group commit.
        ([8], [0], 8, 6, _L, False),
        ([8], [1], 8, 5, _L, None),
        ([8], [1], 8, 6, _F, None),
        # Not committed in the current term: unknown.
        ([8, 2, 0], [1, 2, 1], 2, 2, _L, None),
        ([8, 2, 6], [1, 1, 2], 6, 6, _L, True),
        # Not applied in the current term: unknown (maybe a pending conf change).
        ([8, 2, 6], [1, 1, 2], 6, 5, _L, None),
        # Without groups, or with one group: false.
        ([8, 6, 6], [0, 0, 0], 6, 6, _L, False),
        ([8, 6, 6], [1, 1, 1], 6, 6, _L, False),
        ([8, 6, 6], [1, 1, 0], 6, 6, _L, False),
        # Only a leader knows.
        ([8, 2, 6], [1, 1, 2], 6, 6, _F, None),
        ([8, 2, 6], [1, 1, 2], 6, 6, StateRole.Candidate, None),
        ([8, 2, 6], [1, 1, 2], 6, 6, StateRole.PreCandidate, None),
    ],
)
def test_group_commit_consistent(
    matches: list[int],
    group_ids: list[int],
    committed: int,
    applied: int,
    role: StateRole,
    exp: bool | None,
) -> None:
    logs = [empty_entry(1, i) for i in range(1, 6)] + [empty_entry(2, i) for i in range(6, 9)]
    store = _store([1])
    store.append(logs)
    store.set_hardstate(HardState(term=2, commit=committed))
    cfg = new_test_config(1, 5, 1)
    cfg.applied = applied
    sm = new_test_raft_with_config(cfg, store)
    sm.state = role

    groups = []
    for j, (m, g) in enumerate(zip(matches, group_ids)):
        id = j + 1
        if sm.prs().get(id) is None:
            sm.apply_conf_change(add_node(id))
            pr = _pr(sm, id)
            pr.matched = m
            pr.next_idx = m + 1
        if g != 0:
            groups.append((id, g))
    sm.assign_commit_groups(groups)
    if exp is True:
        # Without group commit enabled the answer is false.
        assert sm.check_group_commit_consistent() is False
    sm.enable_group_commit(True)
    assert sm.check_group_commit_consistent() == exp
