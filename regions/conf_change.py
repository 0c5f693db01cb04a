"""Membership changes applied to a Region descriptor (TiKV ``exec_change_peer[_v2]``).

A change list is a sequence of :class:`PeerChange` (a raft ``ConfChangeType`` and
the peer it is about). Its kind follows from its length, as in TiKV's
``ConfChangeKind::confchange_kind``:

* **0 changes — leave joint.** ``IncomingVoter -> Voter`` and
  ``DemotingVoter -> Learner``; ``conf_ver`` grows by the number of roles
  that changed.
* **1 change — simple.** ``AddNode`` adds a voter or promotes a learner,
  ``AddLearnerNode`` adds a learner or demotes a voter, ``RemoveNode`` removes
  a learner.
* **2 or more — enter joint.** As simple, except that an added or promoted
  voter becomes ``IncomingVoter`` and a demoted voter ``DemotingVoter``;
  learners are added and removed directly.

``conf_ver`` grows by the number of changes (entering or simple). Peers are
matched by **store** (one replica per store), and the peer id must match the
replica on that store.

Validation (raises :class:`MembershipError`, identically on every replica):

* **one pending change:** while the region is in a joint state, only "leave
  joint" applies, and leaving needs a joint state;
* a store appears at most once in a change list;
* adding a peer where the store already has one with another id, or asking
  for the role the peer already has, is refused;
* **Voter -> removed is forbidden** (metapb ``PeerRole``): a voter is demoted to
  a learner first (simply, or inside a joint change), then removed;
* removing a peer that is not there, or whose id does not match, is refused;
* **never remove the last voter:** the incoming configuration (``Voter`` and
  ``IncomingVoter``) must keep at least one voter.

The new descriptor is returned; the input is never modified. The store wires
these descriptors to ``RawNode.apply_conf_change``; :func:`to_conf_change_v2`
builds the raft-level change for the same list, and :func:`to_conf_state` the
Raft membership a descriptor stands for (tests check that Raft's own
``confchange`` reaches the same membership for every list accepted here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from multiraft.raft.types import (
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfChangeV2,
    ConfState,
)
from regions.region import Peer, PeerRole, Region

__all__ = [
    "ConfChangeKind",
    "MembershipError",
    "PeerChange",
    "add_learner",
    "apply_conf_change",
    "change_kind",
    "demote_voter",
    "enter_joint",
    "incoming_voters",
    "is_joint",
    "joint_changes",
    "leave_joint",
    "outgoing_voters",
    "promote_learner",
    "remove_peer",
    "to_conf_change_v2",
    "to_conf_state",
]

_JOINT_ROLES = (PeerRole.IncomingVoter, PeerRole.DemotingVoter)


class MembershipError(ValueError):
    """A membership change that cannot apply to the region as it is."""


class ConfChangeKind(StrEnum):
    SIMPLE = "simple"
    ENTER_JOINT = "enter_joint"
    LEAVE_JOINT = "leave_joint"


@dataclass(frozen=True, slots=True)
class PeerChange:
    """One change of a change list. The peer's ``role`` is ignored: the change decides it."""

    change_type: ConfChangeType
    peer: Peer


def change_kind(changes: Sequence[PeerChange]) -> ConfChangeKind:
    """The kind of a change list: by its length (0: leave, 1: simple, more: enter joint)."""
    if not changes:
        return ConfChangeKind.LEAVE_JOINT
    return ConfChangeKind.SIMPLE if len(changes) == 1 else ConfChangeKind.ENTER_JOINT


def is_joint(region: Region) -> bool:
    """Whether the region's configuration is joint (a peer is Incoming or Demoting)."""
    return any(p.role in _JOINT_ROLES for p in region.peers)


def incoming_voters(region: Region) -> list[Peer]:
    """The voters of the incoming (or only) configuration: Voter and IncomingVoter."""
    return [p for p in region.peers if p.role in (PeerRole.Voter, PeerRole.IncomingVoter)]


def outgoing_voters(region: Region) -> list[Peer]:
    """The voters of the outgoing configuration (empty unless joint): Voter and DemotingVoter."""
    if not is_joint(region):
        return []
    return [p for p in region.peers if p.role in (PeerRole.Voter, PeerRole.DemotingVoter)]


def apply_conf_change(region: Region, changes: Sequence[PeerChange]) -> Region:
    """The region after applying the change list (see the module docstring).

    Raises:
        MembershipError: a change the rules refuse; nothing is applied.
    """
    kind = change_kind(changes)
    if kind == ConfChangeKind.LEAVE_JOINT:
        return leave_joint(region)
    if is_joint(region):
        raise MembershipError(
            f"region {region.id} is in a joint configuration: leave it before another change"
        )
    stores = [c.peer.store_id for c in changes]
    if len(set(stores)) != len(stores):
        raise MembershipError(f"region {region.id}: a store appears twice in one change list")
    peers = list(region.peers)
    joint = kind == ConfChangeKind.ENTER_JOINT
    for c in changes:
        peers = _apply_one(region.id, peers, c, joint=joint)
    if not any(p.role in (PeerRole.Voter, PeerRole.IncomingVoter) for p in peers):
        raise MembershipError(f"region {region.id}: the change would leave no voter")
    epoch = replace(region.epoch, conf_ver=region.epoch.conf_ver + len(changes))
    return Region(region.id, region.start_key, region.end_key, epoch, peers)


def _apply_one(region_id: int, peers: list[Peer], c: PeerChange, *, joint: bool) -> list[Peer]:
    want = c.peer
    i = next((i for i, p in enumerate(peers) if p.store_id == want.store_id), None)
    if i is None:
        match c.change_type:
            case ConfChangeType.AddNode:
                role = PeerRole.IncomingVoter if joint else PeerRole.Voter
                return [*peers, Peer(want.id, want.store_id, role)]
            case ConfChangeType.AddLearnerNode:
                return [*peers, Peer(want.id, want.store_id, PeerRole.Learner)]
            case _:
                raise MembershipError(
                    f"region {region_id}: cannot remove peer {want.id}: store {want.store_id} "
                    "has no replica"
                )
    have = peers[i]
    if have.id != want.id:
        raise MembershipError(
            f"region {region_id}: store {want.store_id} holds peer {have.id}, not {want.id}"
        )
    match c.change_type, have.role:
        case ConfChangeType.AddNode, PeerRole.Learner:
            role = PeerRole.IncomingVoter if joint else PeerRole.Voter
        case ConfChangeType.AddLearnerNode, PeerRole.Voter:
            role = PeerRole.DemotingVoter if joint else PeerRole.Learner
        case ConfChangeType.RemoveNode, PeerRole.Learner:
            return peers[:i] + peers[i + 1 :]
        case ConfChangeType.RemoveNode, PeerRole.Voter:
            raise MembershipError(
                f"region {region_id}: peer {have.id} is a voter: demote it to a learner "
                "before removing it"
            )
        case _:
            raise MembershipError(
                f"region {region_id}: peer {have.id} is already a {have.role.name}; "
                f"{c.change_type.name} does not apply"
            )
    return [*peers[:i], Peer(have.id, have.store_id, role), *peers[i + 1 :]]


def leave_joint(region: Region) -> Region:
    """The region after leaving its joint configuration.

    Raises:
        MembershipError: the region is not in a joint configuration.
    """
    peers = []
    changed = 0
    for p in region.peers:
        if p.role == PeerRole.IncomingVoter:
            p = Peer(p.id, p.store_id, PeerRole.Voter)
            changed += 1
        elif p.role == PeerRole.DemotingVoter:
            p = Peer(p.id, p.store_id, PeerRole.Learner)
            changed += 1
        peers.append(p)
    if not changed:
        raise MembershipError(f"region {region.id} is not in a joint configuration")
    epoch = replace(region.epoch, conf_ver=region.epoch.conf_ver + changed)
    return Region(region.id, region.start_key, region.end_key, epoch, peers)


# -- one-change helpers ----------------------------------------------------------------


def add_learner(region: Region, peer: Peer) -> Region:
    """Add ``peer`` as a learner (simple change)."""
    return apply_conf_change(region, [PeerChange(ConfChangeType.AddLearnerNode, peer)])


def promote_learner(region: Region, peer: Peer) -> Region:
    """Promote the learner ``peer`` to a voter (simple change)."""
    return apply_conf_change(region, [PeerChange(ConfChangeType.AddNode, peer)])


def demote_voter(region: Region, peer: Peer) -> Region:
    """Demote the voter ``peer`` to a learner (simple change)."""
    return apply_conf_change(region, [PeerChange(ConfChangeType.AddLearnerNode, peer)])


def remove_peer(region: Region, peer: Peer) -> Region:
    """Remove the learner ``peer`` (simple change)."""
    return apply_conf_change(region, [PeerChange(ConfChangeType.RemoveNode, peer)])


def enter_joint(
    region: Region, promote: Sequence[Peer] = (), demote: Sequence[Peer] = ()
) -> Region:
    """Enter a joint configuration that promotes ``promote`` and demotes ``demote``.

    Raises:
        MembershipError: fewer than two changes (that would be a simple change),
            or a change the rules refuse.
    """
    changes = joint_changes(promote, demote)
    if len(changes) < 2:
        raise MembershipError(f"region {region.id}: a joint change needs at least two changes")
    return apply_conf_change(region, changes)


def joint_changes(promote: Sequence[Peer] = (), demote: Sequence[Peer] = ()) -> list[PeerChange]:
    """The change list that promotes ``promote`` and demotes ``demote`` (promotions first)."""
    return [PeerChange(ConfChangeType.AddNode, p) for p in promote] + [
        PeerChange(ConfChangeType.AddLearnerNode, p) for p in demote
    ]


def to_conf_change_v2(changes: Sequence[PeerChange], context: bytes = b"") -> ConfChangeV2:
    """The raft-level change for a change list (node ids are peer ids).

    Entering a joint state uses an explicit transition: the store leaves it
    with its own empty change (a separate log entry and its own epoch bump,
    as TiKV does), never automatically.
    """
    transition = (
        ConfChangeTransition.Explicit
        if change_kind(changes) == ConfChangeKind.ENTER_JOINT
        else ConfChangeTransition.Auto
    )
    return ConfChangeV2(
        transition=transition,
        changes=[ConfChangeSingle(c.change_type, c.peer.id) for c in changes],
        context=context,
    )


def to_conf_state(region: Region) -> ConfState:
    """The Raft membership the descriptor stands for (peer ids, sorted).

    A region made by a split starts its Raft group from this; outside a joint
    state it is ``voters`` and ``learners``; inside one, ``voters`` is the
    incoming configuration, ``voters_outgoing`` the outgoing one, and the
    demoting voters are ``learners_next`` (learners once the joint state is left).
    """

    def ids(*roles: PeerRole) -> list[int]:
        return sorted(p.id for p in region.peers if p.role in roles)

    joint = is_joint(region)
    return ConfState(
        voters=ids(PeerRole.Voter, PeerRole.IncomingVoter),
        learners=ids(PeerRole.Learner),
        voters_outgoing=ids(PeerRole.Voter, PeerRole.DemotingVoter) if joint else [],
        learners_next=ids(PeerRole.DemotingVoter),
        auto_leave=False,
    )
