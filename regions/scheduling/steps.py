"""The steps of an operator: one membership change, leader transfer or split each.

Every step carries **the region epoch it was made for** (``epoch``): the store
proposes it with that epoch, so a step sent twice, or after the region changed,
fails with EpochNotMatch instead of doing something unintended.

A step says when its effect is visible in a region heartbeat
(:meth:`Step.is_finished`). The conditions tolerate reports that skip states: a
learner that was added and already promoted still counts as added; a demoted
voter that was already removed still counts as demoted. The operator pairs
this with an epoch check (see :mod:`regions.scheduling.operators`), which is
what makes the tolerance safe.

==================  ===============================  ==========================================
Step                Proposes                         Finished when
==================  ===============================  ==========================================
AddLearner          ChangePeer AddLearnerNode        the peer id is in the region (any role)
PromoteLearner      ChangePeer AddNode               the peer is a Voter
DemoteVoter         ChangePeer AddLearnerNode        the peer is a Learner, or gone
JointEnter          ChangePeerV2 (2+ changes)        promoted are Incoming/Voter, demoted are
                                                     Demoting/Learner/gone
JointLeave          ChangePeerV2 (no change)         not joint; promoted Voter; demoted Learner/gone
TransferLeader      (not a log entry)                the leader is on the target store
RemovePeer          ChangePeer RemoveNode            the peer id is gone
SplitRegion         ask for split ids, BatchSplit    the region's version grew
==================  ===============================  ==========================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from multiraft.raft.types import ConfChangeType
from regions.conf_change import PeerChange, is_joint, joint_changes
from regions.keyspace import format_key
from regions.region import Peer, PeerRole, Region, RegionEpoch
from regions.scheduling.cluster import StoreStats

__all__ = [
    "AddLearner",
    "DemoteVoter",
    "JointEnter",
    "JointLeave",
    "PromoteLearner",
    "RemovePeer",
    "SplitRegion",
    "Step",
    "TransferLeader",
]


class Step:
    """One step of an operator, made for ``epoch``. Subclasses are frozen dataclasses."""

    __slots__ = ()
    epoch: RegionEpoch
    #: A slow step waits for a snapshot and gets the slow timeout.
    slow: ClassVar[bool] = False

    def is_finished(self, region: Region, leader: Peer | None) -> bool:
        """Whether ``region`` (and its ``leader``) show this step's effect."""
        raise NotImplementedError

    def conf_changes(self) -> list[PeerChange] | None:
        """The membership change list this step proposes; None if it is no membership change."""
        return None

    def influence(self, region_size: int) -> dict[int, StoreStats]:
        """How this step changes the per-store statistics when it completes."""
        return {}

    def store_ids(self) -> tuple[int, ...]:
        """The stores this step puts work on."""
        return ()

    def describe(self) -> str:
        raise NotImplementedError


def _role_of(region: Region, peer_id: int) -> PeerRole | None:
    p = region.peer_by_id(peer_id)
    return None if p is None else p.role


@dataclass(frozen=True, slots=True)
class AddLearner(Step):
    epoch: RegionEpoch
    peer: Peer
    slow: ClassVar[bool] = True

    def is_finished(self, region: Region, leader: Peer | None) -> bool:
        return _role_of(region, self.peer.id) is not None

    def conf_changes(self) -> list[PeerChange]:
        return [PeerChange(ConfChangeType.AddLearnerNode, self.peer)]

    def influence(self, region_size: int) -> dict[int, StoreStats]:
        return {self.peer.store_id: StoreStats(region_count=1, region_size=region_size)}

    def store_ids(self) -> tuple[int, ...]:
        return (self.peer.store_id,)

    def describe(self) -> str:
        return f"add learner peer {self.peer.id} on store {self.peer.store_id}"


@dataclass(frozen=True, slots=True)
class PromoteLearner(Step):
    epoch: RegionEpoch
    peer: Peer

    def is_finished(self, region: Region, leader: Peer | None) -> bool:
        return _role_of(region, self.peer.id) == PeerRole.Voter

    def conf_changes(self) -> list[PeerChange]:
        return [PeerChange(ConfChangeType.AddNode, self.peer)]

    def store_ids(self) -> tuple[int, ...]:
        return (self.peer.store_id,)

    def describe(self) -> str:
        return f"promote learner peer {self.peer.id} on store {self.peer.store_id} to voter"


@dataclass(frozen=True, slots=True)
class DemoteVoter(Step):
    epoch: RegionEpoch
    peer: Peer

    def is_finished(self, region: Region, leader: Peer | None) -> bool:
        return _role_of(region, self.peer.id) in (PeerRole.Learner, None)

    def conf_changes(self) -> list[PeerChange]:
        return [PeerChange(ConfChangeType.AddLearnerNode, self.peer)]

    def store_ids(self) -> tuple[int, ...]:
        return (self.peer.store_id,)

    def describe(self) -> str:
        return f"demote voter peer {self.peer.id} on store {self.peer.store_id} to learner"


@dataclass(frozen=True, slots=True)
class JointEnter(Step):
    """ChangePeerV2 that enters a joint configuration."""

    epoch: RegionEpoch
    promote: tuple[Peer, ...]
    demote: tuple[Peer, ...]

    def is_finished(self, region: Region, leader: Peer | None) -> bool:
        incoming = (PeerRole.IncomingVoter, PeerRole.Voter)
        outgoing = (PeerRole.DemotingVoter, PeerRole.Learner, None)
        return all(_role_of(region, p.id) in incoming for p in self.promote) and all(
            _role_of(region, p.id) in outgoing for p in self.demote
        )

    def conf_changes(self) -> list[PeerChange]:
        return joint_changes(self.promote, self.demote)

    def store_ids(self) -> tuple[int, ...]:
        return tuple(p.store_id for p in (*self.promote, *self.demote))

    def describe(self) -> str:
        ups = ", ".join(f"peer {p.id} on store {p.store_id}" for p in self.promote)
        downs = ", ".join(f"peer {p.id} on store {p.store_id}" for p in self.demote)
        return f"enter joint: promote [{ups}], demote [{downs}]"


@dataclass(frozen=True, slots=True)
class JointLeave(Step):
    """The empty ChangePeerV2 that leaves the joint configuration."""

    epoch: RegionEpoch
    promote: tuple[Peer, ...]
    demote: tuple[Peer, ...]

    def is_finished(self, region: Region, leader: Peer | None) -> bool:
        return (
            not is_joint(region)
            and all(_role_of(region, p.id) == PeerRole.Voter for p in self.promote)
            and all(_role_of(region, p.id) in (PeerRole.Learner, None) for p in self.demote)
        )

    def conf_changes(self) -> list[PeerChange]:
        return []

    def store_ids(self) -> tuple[int, ...]:
        return tuple(p.store_id for p in (*self.promote, *self.demote))

    def describe(self) -> str:
        return "leave joint"


@dataclass(frozen=True, slots=True)
class TransferLeader(Step):
    epoch: RegionEpoch
    from_store: int
    to_store: int

    def is_finished(self, region: Region, leader: Peer | None) -> bool:
        return leader is not None and leader.store_id == self.to_store

    def influence(self, region_size: int) -> dict[int, StoreStats]:
        return {
            self.from_store: StoreStats(leader_count=-1, leader_size=-region_size),
            self.to_store: StoreStats(leader_count=1, leader_size=region_size),
        }

    def store_ids(self) -> tuple[int, ...]:
        return (self.from_store, self.to_store)

    def describe(self) -> str:
        return f"transfer leader from store {self.from_store} to store {self.to_store}"


@dataclass(frozen=True, slots=True)
class RemovePeer(Step):
    epoch: RegionEpoch
    peer: Peer

    def is_finished(self, region: Region, leader: Peer | None) -> bool:
        return _role_of(region, self.peer.id) is None

    def conf_changes(self) -> list[PeerChange]:
        return [PeerChange(ConfChangeType.RemoveNode, self.peer)]

    def influence(self, region_size: int) -> dict[int, StoreStats]:
        return {self.peer.store_id: StoreStats(region_count=-1, region_size=-region_size)}

    def store_ids(self) -> tuple[int, ...]:
        return (self.peer.store_id,)

    def describe(self) -> str:
        return f"remove peer {self.peer.id} on store {self.peer.store_id}"


@dataclass(frozen=True, slots=True)
class SplitRegion(Step):
    """Split at ``keys``; no keys: the store picks the half-split key."""

    epoch: RegionEpoch
    keys: tuple[bytes, ...] = ()

    def is_finished(self, region: Region, leader: Peer | None) -> bool:
        return region.epoch.version > self.epoch.version

    def describe(self) -> str:
        if not self.keys:
            return "split region in half"
        return "split region at " + ", ".join(format_key(k) for k in self.keys)
