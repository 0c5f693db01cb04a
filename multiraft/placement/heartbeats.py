"""Store and region heartbeats: what the service keeps from them, and which ones it accepts.

Theory of operation (PD ``pkg/core/region.go``)
-----------------------------------------------
A **store heartbeat** refreshes the store's statistics and its last-heartbeat
time (``trio.current_time()`` of the service), from which :func:`store_liveness`
tells ``up`` from ``disconnected`` (no heartbeat for a short while: a restart, a
blip) and ``down`` (long enough that, in a later issue, its replicas get
replaced).

A **region heartbeat** comes from a region's leader. :func:`check_region_heartbeat`
accepts it only if it is not stale:

* its epoch is not older than the known one in *either* component (``version``
  grows with splits and merges, ``conf_ver`` with membership changes; they are
  compared separately);
* for the same epoch, its term is not older than the last accepted one (an old
  leader's late report must not overwrite the new leader);
* no region it overlaps has a newer ``version`` (the heartbeat then describes a
  range that has since been split or merged).

An accepted heartbeat replaces the regions it overlaps (they are older: a split
shrank or a merge absorbed them), and its descriptor must be persisted when it is
new or differs from the known one. Leader, term and statistics are kept in memory
only (a restarted service learns them again from the next heartbeats).

Everything here is sync and pure; :mod:`multiraft.placement.cluster` applies it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from multiraft.placement.errors import PlacementFailure
from multiraft.wire.placement_messages import (
    DownPeer,
    PlacementErrorCode,
    RegionHeartbeat,
    StoreInfo,
    StoreState,
    StoreStats,
)
from regions.region import Peer, Region
from regions.region_map import RegionMap

__all__ = [
    "DISCONNECTED_AFTER",
    "DOWN_AFTER",
    "RegionRuntime",
    "RegionUpdate",
    "StoreRuntime",
    "check_region_heartbeat",
    "store_liveness",
]

#: Seconds without a store heartbeat before a store counts as disconnected (PD: 20 s).
DISCONNECTED_AFTER: Final = 20.0
#: Seconds without a store heartbeat before a store counts as down (PD: 30 min).
DOWN_AFTER: Final = 30 * 60.0


@dataclass(slots=True)
class StoreRuntime:
    """A registered store and what its heartbeats said."""

    info: StoreInfo
    #: Service time of the last heartbeat (at startup: the service's start time).
    last_heartbeat: float
    stats: StoreStats | None = None
    heartbeats: int = 0
    #: Offline stores: ``heartbeats`` when the service first saw no replica and no
    #: operator on it (only a later report of 0 regions counts; see ``placement.admin``).
    empty_seen_at: int | None = None


def store_liveness(
    store: StoreRuntime,
    now: float,
    *,
    disconnected_after: float = DISCONNECTED_AFTER,
    down_after: float = DOWN_AFTER,
) -> str:
    """The store's state as a metrics label: ``up``, ``disconnected``, ``down``,
    ``offline`` or ``tombstone`` (:data:`multiraft.metrics.placement.STORE_STATES`)."""
    if store.info.state == StoreState.Tombstone:
        return "tombstone"
    if store.info.state == StoreState.Offline:
        return "offline"
    silent = now - store.last_heartbeat
    if silent >= down_after:
        return "down"
    if silent >= disconnected_after:
        return "disconnected"
    return "up"


@dataclass(slots=True)
class RegionRuntime:
    """What the last accepted heartbeat of a region said besides its descriptor."""

    leader: Peer | None = None
    term: int = 0
    down_peers: list[DownPeer] = field(default_factory=list)
    pending_peers: list[Peer] = field(default_factory=list)
    approximate_size: int = 0
    approximate_keys: int = 0
    last_heartbeat: float | None = None


@dataclass(frozen=True, slots=True)
class RegionUpdate:
    """An accepted region heartbeat, ready to apply."""

    region: Region
    #: The descriptor is new or changed: persist it.
    changed: bool
    #: Other regions it overlaps; they are older and leave the routing table.
    replaced: list[Region]


def _invalid(message: str) -> PlacementFailure:
    return PlacementFailure(PlacementErrorCode.InvalidArgument, message)


def _stale(message: str) -> PlacementFailure:
    return PlacementFailure(PlacementErrorCode.StaleEpoch, message)


def validate_region(region: Region) -> None:
    """A descriptor the service can route.

    Raises:
        PlacementFailure: ``InvalidArgument``: id 0, an empty or reversed range, no peers,
            or a peer id or store used twice.
    """
    if region.id == 0:
        raise _invalid("region id 0 is not a region")
    if region.end_key and region.start_key >= region.end_key:
        raise _invalid(
            f"region {region.id} has an empty range [{region.start_key!r}, {region.end_key!r})"
        )
    if not region.peers:
        raise _invalid(f"region {region.id} has no peers")
    peer_ids = {p.id for p in region.peers}
    stores = {p.store_id for p in region.peers}
    if len(peer_ids) != len(region.peers) or 0 in peer_ids:
        raise _invalid(f"region {region.id} has a peer id that is 0 or used twice")
    if len(stores) != len(region.peers):
        raise _invalid(f"region {region.id} has two peers on one store")


def check_region_heartbeat(
    routes: RegionMap, runtime: Mapping[int, RegionRuntime], hb: RegionHeartbeat
) -> RegionUpdate:
    """Decide whether to accept ``hb`` (see the module docstring); change nothing.

    Raises:
        PlacementFailure: ``StaleEpoch`` for a stale heartbeat, ``InvalidArgument`` for a
            malformed descriptor or a leader that is not one of its peers.
    """
    region = hb.region
    validate_region(region)
    if region.peer_by_id(hb.leader.id) != hb.leader:
        raise _invalid(f"the leader {hb.leader} is not a peer of region {region.id}")
    known = routes.get(region.id)
    if known is not None:
        if region.epoch.is_stale_against(known.epoch):
            raise _stale(
                f"region {region.id} epoch {_epoch(region)} is older than the known {_epoch(known)}"
            )
        last = runtime.get(region.id)
        if region.epoch == known.epoch and last is not None and hb.term < last.term:
            raise _stale(
                f"region {region.id} term {hb.term} is older than the known term {last.term}"
            )
    replaced = []
    for other in routes.overlapping(region.start_key, region.end_key):
        if other.id == region.id:
            continue
        if other.epoch.version > region.epoch.version:
            raise _stale(
                f"region {region.id} (version {region.epoch.version}) overlaps region "
                f"{other.id}, which has the newer version {other.epoch.version}"
            )
        replaced.append(other)
    changed = known is None or not _same_descriptor(known, region)
    return RegionUpdate(region, changed, replaced)


def _same_descriptor(a: Region, b: Region) -> bool:
    return (
        a.start_key == b.start_key
        and a.end_key == b.end_key
        and a.epoch == b.epoch
        and a.peers == b.peers
    )


def _epoch(r: Region) -> str:
    return f"(conf_ver {r.epoch.conf_ver}, version {r.epoch.version})"
