"""Bootstrapping the cluster: the first region, and handing it to its stores.

Theory of operation
-------------------
A new cluster has stores but no region. Once ``replicas`` (3) stores in state
``Up`` are registered and the cluster is not bootstrapped, the service creates
the first region: a fresh region id, the whole key space ``[b"", b"")``, epoch
``(conf_ver 1, version 1)``, and one voter on each of the first ``replicas``
stores by store id, each with a fresh peer id (:func:`first_region`). It
persists the region, the bootstrapped flag and a :class:`BootstrapPending`
record (the region id and those stores) in **one** transaction, so a crash
leaves either nothing or all three.

Each of those stores then finds the region in its store heartbeat replies
(:func:`bootstrap_regions_for`) and creates it; a store that already has state
for that region id ignores it, so resending is harmless. The service stops
sending it to a store once a region heartbeat shows that store has the region
(:func:`confirmed_by`): the heartbeat's leader is on that store, or the store's
peer is a voter that is neither pending nor down in the leader's report (a
leader reports a peer as pending until it has matched the log). Once every
store has confirmed, or the region's epoch has moved past (1, 1) (a
membership change or a split: the region no longer is the bootstrap
descriptor), the pending record is deleted.

Pure functions; :mod:`multiraft.placement.cluster` runs them under its lock.
"""

from __future__ import annotations

from collections.abc import Iterable

from multiraft.placement.cluster_meta import BootstrapPending
from multiraft.wire.placement_messages import RegionHeartbeat, StoreInfo, StoreState
from regions.region import Peer, PeerRole, Region, RegionEpoch

__all__ = [
    "BOOTSTRAP_EPOCH",
    "bootstrap_regions_for",
    "choose_stores",
    "confirmed_by",
    "first_region",
]

#: The first region's epoch.
BOOTSTRAP_EPOCH = RegionEpoch(conf_ver=1, version=1)


def choose_stores(stores: Iterable[StoreInfo], replicas: int) -> list[StoreInfo] | None:
    """The first ``replicas`` ``Up`` stores by id, or None while there are fewer."""
    up = sorted((s for s in stores if s.state == StoreState.Up), key=lambda s: s.id)
    return up[:replicas] if len(up) >= replicas else None


def first_region(region_id: int, peer_ids: list[int], stores: list[StoreInfo]) -> Region:
    """The bootstrap region: the whole key space, one voter per store."""
    if len(peer_ids) != len(stores):
        raise ValueError("one peer id per store")
    peers = [Peer(pid, s.id, PeerRole.Voter) for pid, s in zip(peer_ids, stores, strict=True)]
    return Region(region_id, b"", b"", BOOTSTRAP_EPOCH, peers)


def confirmed_by(pending: BootstrapPending, hb: RegionHeartbeat) -> BootstrapPending:
    """What is still pending after ``hb`` (unchanged if ``hb`` is about another region)."""
    region = hb.region
    if region.id != pending.region_id:
        return pending
    if region.epoch != BOOTSTRAP_EPOCH:
        return BootstrapPending(pending.region_id, frozenset())
    behind = {p.id for p in hb.pending_peers} | {d.peer.id for d in hb.down_peers}
    confirmed = {hb.leader.store_id}
    confirmed.update(
        p.store_id for p in region.peers if p.role == PeerRole.Voter and p.id not in behind
    )
    return BootstrapPending(pending.region_id, pending.store_ids - confirmed)


def bootstrap_regions_for(
    pending: BootstrapPending | None, store_id: int, region: Region | None
) -> list[Region]:
    """The regions to put in ``store_id``'s heartbeat reply; ``region`` is the pending
    region's current descriptor (None if it is no longer routed)."""
    if pending is None or store_id not in pending.store_ids or region is None:
        return []
    return [region]
