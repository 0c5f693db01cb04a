"""Region, RegionEpoch and Peer: the descriptor of one shard of the key space.

A region owns the half-open key range ``[start_key, end_key)``; an empty
``end_key`` means "to the end of the key space" (an empty ``start_key`` is
simply the smallest key). It is replicated by one Raft group whose members are
``peers``; peer ids are unique in the whole cluster and never reused.

The epoch versions the descriptor. ``conf_ver`` grows with every membership
change, ``version`` with every split or merge. The two are compared
separately: a request made for an older epoch is stale (EpochNotMatch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class PeerRole(IntEnum):
    """A replica's role. Incoming/Demoting exist only inside a joint configuration."""

    Voter = 0
    Learner = 1
    IncomingVoter = 2
    DemotingVoter = 3


@dataclass(slots=True, frozen=True, order=True)
class RegionEpoch:
    conf_ver: int = 1
    version: int = 1

    def is_stale_against(self, current: RegionEpoch) -> bool:
        """True if either component is older than ``current``'s."""
        return self.conf_ver < current.conf_ver or self.version < current.version


@dataclass(slots=True, frozen=True)
class Peer:
    id: int
    store_id: int
    role: PeerRole = PeerRole.Voter

    @property
    def is_learner(self) -> bool:
        return self.role == PeerRole.Learner


@dataclass(slots=True)
class Region:
    """Invariant: ``start_key < end_key`` unless ``end_key`` is empty (unbounded)."""

    id: int
    start_key: bytes = b""
    end_key: bytes = b""
    epoch: RegionEpoch = field(default_factory=RegionEpoch)
    peers: list[Peer] = field(default_factory=list)

    def contains(self, key: bytes) -> bool:
        return self.start_key <= key and (not self.end_key or key < self.end_key)

    def peer_on_store(self, store_id: int) -> Peer | None:
        for p in self.peers:
            if p.store_id == store_id:
                return p
        return None

    def peer_by_id(self, peer_id: int) -> Peer | None:
        for p in self.peers:
            if p.id == peer_id:
                return p
        return None

    def voter_ids(self) -> list[int]:
        return [p.id for p in self.peers if p.role != PeerRole.Learner]

    def learner_ids(self) -> list[int]:
        return [p.id for p in self.peers if p.role == PeerRole.Learner]
