"""Membership changes on the Region descriptor, and agreement with Raft's own confchange."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multiraft.raft.raw_node import RawNode
from multiraft.raft.storage import MemStorage
from multiraft.raft.testing.util import new_test_config
from multiraft.raft.types import ConfChangeTransition, ConfChangeType, ConfState
from regions.conf_change import (
    ConfChangeKind,
    MembershipError,
    PeerChange,
    add_learner,
    apply_conf_change,
    change_kind,
    demote_voter,
    enter_joint,
    incoming_voters,
    is_joint,
    leave_joint,
    outgoing_voters,
    promote_learner,
    remove_peer,
    to_conf_change_v2,
    to_conf_state,
)
from regions.region import Peer, PeerRole, Region, RegionEpoch

V, L, IV, DV = PeerRole.Voter, PeerRole.Learner, PeerRole.IncomingVoter, PeerRole.DemotingVoter
ADD, REMOVE, ADD_LEARNER = (
    ConfChangeType.AddNode,
    ConfChangeType.RemoveNode,
    ConfChangeType.AddLearnerNode,
)


def region(*peers: Peer) -> Region:
    return Region(1, b"a", b"z", RegionEpoch(conf_ver=5, version=3), list(peers))


def roles(r: Region) -> dict[int, PeerRole]:
    return {p.id: p.role for p in r.peers}


THREE = region(Peer(1, 1), Peer(2, 2), Peer(3, 3))


def test_kind_follows_the_length() -> None:
    assert change_kind([]) == ConfChangeKind.LEAVE_JOINT
    assert change_kind([PeerChange(ADD, Peer(4, 4))]) == ConfChangeKind.SIMPLE
    assert change_kind([PeerChange(ADD, Peer(4, 4))] * 2) == ConfChangeKind.ENTER_JOINT


def test_learner_add_promote_demote_remove() -> None:
    r = add_learner(THREE, Peer(4, 4))
    assert roles(r)[4] == L and r.epoch == RegionEpoch(6, 3)
    r = promote_learner(r, Peer(4, 4))
    assert roles(r)[4] == V and r.epoch.conf_ver == 7
    r = demote_voter(r, Peer(1, 1))
    assert roles(r)[1] == L and r.epoch.conf_ver == 8
    r = remove_peer(r, Peer(1, 1))
    assert sorted(roles(r)) == [2, 3, 4] and r.epoch == RegionEpoch(9, 3)
    assert (r.start_key, r.end_key, r.id) == (b"a", b"z", 1)
    assert roles(THREE) == {1: V, 2: V, 3: V}  # the input is untouched


def test_adding_a_voter_directly_is_a_simple_change() -> None:
    r = apply_conf_change(THREE, [PeerChange(ADD, Peer(4, 4))])
    assert roles(r)[4] == V and not is_joint(r)


def test_joint_move_enter_and_leave() -> None:
    r = add_learner(THREE, Peer(4, 4))
    r = enter_joint(r, promote=[Peer(4, 4)], demote=[Peer(1, 1)])
    assert roles(r) == {1: DV, 2: V, 3: V, 4: IV}
    assert r.epoch.conf_ver == 6 + 2
    assert is_joint(r)
    assert {p.id for p in incoming_voters(r)} == {2, 3, 4}
    assert {p.id for p in outgoing_voters(r)} == {1, 2, 3}
    assert to_conf_state(r) == ConfState(
        voters=[2, 3, 4], learners=[], voters_outgoing=[1, 2, 3], learners_next=[1]
    )
    r = leave_joint(r)
    assert roles(r) == {1: L, 2: V, 3: V, 4: V}
    assert r.epoch.conf_ver == 8 + 2  # two roles changed
    assert outgoing_voters(r) == []
    r = remove_peer(r, Peer(1, 1))
    assert roles(r) == {2: V, 3: V, 4: V}


def test_joint_adds_and_removes_learners_directly() -> None:
    r = region(Peer(1, 1), Peer(2, 2), Peer(5, 5, L))
    r = apply_conf_change(
        r,
        [
            PeerChange(ADD, Peer(6, 6)),
            PeerChange(REMOVE, Peer(5, 5)),
            PeerChange(ADD_LEARNER, Peer(7, 7)),
        ],
    )
    assert roles(r) == {1: V, 2: V, 6: IV, 7: L}
    assert r.epoch.conf_ver == 5 + 3


@pytest.mark.parametrize(
    ("start", "changes", "message"),
    [
        (THREE, [PeerChange(REMOVE, Peer(1, 1))], "demote it"),
        (THREE, [PeerChange(REMOVE, Peer(4, 4))], "has no replica"),
        (THREE, [PeerChange(REMOVE, Peer(9, 1))], "holds peer 1, not 9"),
        (THREE, [PeerChange(ADD, Peer(9, 1))], "holds peer 1, not 9"),
        (THREE, [PeerChange(ADD, Peer(1, 1))], "already a Voter"),
        (
            region(Peer(1, 1), Peer(2, 2, L)),
            [PeerChange(ADD_LEARNER, Peer(2, 2))],
            "already a Learner",
        ),
        (region(Peer(1, 1)), [PeerChange(ADD_LEARNER, Peer(1, 1))], "no voter"),
        (
            THREE,
            [PeerChange(ADD, Peer(4, 4)), PeerChange(ADD_LEARNER, Peer(5, 4))],
            "store appears twice",
        ),
        (
            THREE,
            [PeerChange(ADD, Peer(4, 4)), PeerChange(REMOVE, Peer(1, 1))],
            "demote it",
        ),
        (
            region(Peer(1, 1), Peer(2, 2, L)),
            [PeerChange(ADD_LEARNER, Peer(1, 1)), PeerChange(ADD_LEARNER, Peer(3, 3))],
            "no voter",
        ),
        (THREE, [], "not in a joint"),
        (
            enter_joint(add_learner(THREE, Peer(4, 4)), [Peer(4, 4)], [Peer(1, 1)]),
            [PeerChange(ADD_LEARNER, Peer(5, 5))],
            "leave it before another change",
        ),
    ],
)
def test_refused_changes(start: Region, changes: list[PeerChange], message: str) -> None:
    with pytest.raises(MembershipError, match=message):
        apply_conf_change(start, changes)


def test_enter_joint_needs_two_changes() -> None:
    with pytest.raises(MembershipError, match="at least two"):
        enter_joint(add_learner(THREE, Peer(4, 4)), promote=[Peer(4, 4)])


def test_raft_change_transition() -> None:
    assert to_conf_change_v2([]).transition == ConfChangeTransition.Auto
    simple = to_conf_change_v2([PeerChange(ADD, Peer(4, 4))])
    assert simple.transition == ConfChangeTransition.Auto and simple.enter_joint() is None
    joint = to_conf_change_v2([PeerChange(ADD, Peer(4, 4)), PeerChange(ADD_LEARNER, Peer(1, 1))])
    assert joint.transition == ConfChangeTransition.Explicit
    assert joint.enter_joint() is False  # explicit: never left automatically
    assert [(c.change_type, c.node_id) for c in joint.changes] == [(ADD, 4), (ADD_LEARNER, 1)]


def sorted_state(cs: ConfState) -> tuple[list[int], ...]:
    return (
        sorted(cs.voters),
        sorted(cs.learners),
        sorted(cs.voters_outgoing),
        sorted(cs.learners_next),
    )


change_lists = st.lists(
    st.lists(
        st.tuples(st.sampled_from([ADD, REMOVE, ADD_LEARNER]), st.integers(1, 5)),
        max_size=3,
    ),
    min_size=1,
    max_size=12,
)


@given(change_lists)
@settings(derandomize=True, max_examples=200, deadline=None)
def test_every_accepted_change_agrees_with_raft(
    lists: list[list[tuple[ConfChangeType, int]]],
) -> None:
    """Whatever the descriptor rules accept, Raft's confchange accepts with the same result."""
    r = region(Peer(1, 1), Peer(2, 2), Peer(3, 3))
    node = RawNode(new_test_config(1, 10, 1), MemStorage.new_with_conf_state(to_conf_state(r)))
    accepted = 0
    for raw in lists:
        # Peer ids equal store ids here: one incarnation per store.
        changes = [PeerChange(t, Peer(sid, sid)) for t, sid in raw]
        try:
            new = apply_conf_change(r, changes)
        except MembershipError:
            continue
        accepted += 1
        cs = node.apply_conf_change(to_conf_change_v2(changes))
        assert sorted_state(cs) == sorted_state(to_conf_state(new)), (raw, roles(new))
        assert new.epoch.conf_ver > r.epoch.conf_ver and new.epoch.version == r.epoch.version
        assert incoming_voters(new)  # never without a voter
        r = new
