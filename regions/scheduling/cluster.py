"""The cluster as the schedulers see it: stores, regions, and per-store statistics.

A :class:`ClusterSnapshot` is an immutable picture the placement service builds
from its heartbeats before each scheduling pass:

* :class:`StoreView`: a store's id, state and weights, and how long it has been
  silent (seconds since its last heartbeat, on the caller's clock);
* :class:`RegionView`: a region's descriptor with what its leader last
  reported: the leader, the approximate size and keys, the peers it sees as
  down (peer id -> seconds) and the peers that are pending (need a snapshot,
  or do not exist yet);
* :class:`StoreStats`: region and leader counts and sizes per store, **computed
  from the regions** (every peer counts for its store, learners included; the
  leader counts for the leader's store), so they can never disagree with them.

Store states use the strings of ``multiraft.placement.heartbeats.store_liveness``
(``up``, ``disconnected``, ``down``, ``offline``, ``tombstone``). Only ``up``
stores receive replicas or leaders; ``offline`` is a store being drained.

Pure data: nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from regions.region import Peer, PeerRole, Region

__all__ = ["ClusterSnapshot", "RegionView", "StoreState", "StoreStats", "StoreView"]


class StoreState(StrEnum):
    UP = "up"
    #: No heartbeat for a short while: schedule nothing onto it, move nothing yet.
    DISCONNECTED = "disconnected"
    #: No heartbeat for long: its replicas are replaced elsewhere.
    DOWN = "down"
    #: Being drained (``store drain``): its replicas move elsewhere.
    OFFLINE = "offline"
    TOMBSTONE = "tombstone"


@dataclass(frozen=True, slots=True)
class StoreView:
    id: int
    state: StoreState = StoreState.UP
    #: Seconds since the store's last heartbeat.
    silent_seconds: float = 0.0
    #: Scores are divided by these (PD ``store weight``); must be > 0.
    leader_weight: float = 1.0
    region_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.leader_weight <= 0 or self.region_weight <= 0:
            raise ValueError(f"store {self.id}: weights must be positive")

    @property
    def is_up(self) -> bool:
        """Whether the store may receive replicas and leaders."""
        return self.state == StoreState.UP

    def is_down(self, max_down_seconds: float) -> bool:
        """Whether the store's replicas count as lost (down, or silent for that long)."""
        return self.state in (StoreState.DOWN, StoreState.TOMBSTONE) or (
            self.silent_seconds >= max_down_seconds
        )


@dataclass(frozen=True, slots=True)
class RegionView:
    region: Region
    leader: Peer | None = None
    approximate_size: int = 0
    approximate_keys: int = 0
    #: Peer id -> seconds the leader has not heard from it.
    down_peers: Mapping[int, float] = field(default_factory=dict)
    #: Ids of peers that need a snapshot (or do not exist yet).
    pending_peers: frozenset[int] = frozenset()

    @property
    def id(self) -> int:
        return self.region.id

    @property
    def leader_store_id(self) -> int | None:
        return None if self.leader is None else self.leader.store_id

    @property
    def size(self) -> int:
        """The size used for scores: the approximate size, at least 1."""
        return max(self.approximate_size, 1)

    def store_ids(self) -> set[int]:
        return {p.store_id for p in self.region.peers}

    def voters(self) -> list[Peer]:
        """The peers with the plain Voter role."""
        return [p for p in self.region.peers if p.role == PeerRole.Voter]

    def learners(self) -> list[Peer]:
        return [p for p in self.region.peers if p.role == PeerRole.Learner]


@dataclass(frozen=True, slots=True)
class StoreStats:
    region_count: int = 0
    leader_count: int = 0
    region_size: int = 0
    leader_size: int = 0

    def __add__(self, other: StoreStats) -> StoreStats:
        return StoreStats(
            self.region_count + other.region_count,
            self.leader_count + other.leader_count,
            self.region_size + other.region_size,
            self.leader_size + other.leader_size,
        )


class ClusterSnapshot:
    """Stores and regions at one moment, with per-store statistics.

    Invariant: ``stats`` has an entry for every store (zero if it holds
    nothing), computed from ``regions``; peers on unknown stores are ignored.
    Iteration orders are by id, so every pass over a snapshot is deterministic.
    """

    __slots__ = ("_by_store", "regions", "stats", "stores")

    def __init__(self, stores: Iterable[StoreView], regions: Iterable[RegionView]) -> None:
        by_id = {s.id: s for s in stores}
        self.stores: Mapping[int, StoreView] = MappingProxyType(dict(sorted(by_id.items())))
        region_map = {r.id: r for r in regions}
        self.regions: Mapping[int, RegionView] = MappingProxyType(dict(sorted(region_map.items())))
        counts = {sid: [0, 0, 0, 0] for sid in self.stores}
        by_store: dict[int, list[RegionView]] = {sid: [] for sid in self.stores}
        for rv in self.regions.values():
            for p in rv.region.peers:
                if p.store_id in counts:
                    c = counts[p.store_id]
                    c[0] += 1
                    c[2] += rv.size
                    by_store[p.store_id].append(rv)
            leader = rv.leader_store_id
            if leader is not None and leader in counts:
                counts[leader][1] += 1
                counts[leader][3] += rv.size
        self.stats: Mapping[int, StoreStats] = MappingProxyType(
            {sid: StoreStats(*c) for sid, c in counts.items()}
        )
        self._by_store = by_store

    def regions_on_store(self, store_id: int) -> list[RegionView]:
        """The regions with a peer on ``store_id``, by region id."""
        return list(self._by_store.get(store_id, ()))

    def up_stores(self) -> list[StoreView]:
        return [s for s in self.stores.values() if s.is_up]
