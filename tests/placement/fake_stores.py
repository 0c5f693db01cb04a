"""Fake stores for placement tests: they report regions and execute the steps they are given.

:class:`FakeStores` plays every store of a small cluster against a placement service
(an in-process :class:`~multiraft.placement.cluster.Cluster`, or a real service through
:class:`~multiraft.placement.client.PlacementClient`; see :class:`ClusterApi` and
:class:`ClientApi`). One :meth:`FakeStores.round` is what the real stores do over one
heartbeat interval: each region's leader sends a region heartbeat and executes the step
in the reply at once, with the same pure functions a store applies
(``apply_conf_change``, ``apply_batch_split``; split ids come from placement's
allocator, an empty split key means the range's middle), then every live store sends a
store heartbeat with its replica and leader counts. Nothing is random; the order is by
region id and store id.

Hooks for failure cases: ``frozen`` regions receive steps but never execute them (an
operator on them stays running until it times out or is cancelled), and ``on_step`` sees
every step first and may handle it itself (return True) — to cancel the operator, or to
change the region under it so that it goes stale.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import trio

from multiraft.placement.client import PlacementClient
from multiraft.placement.cluster import Cluster
from multiraft.placement.errors import PlacementFailure, PlacementRequestError
from multiraft.wire.placement_messages import (
    Ids,
    PlacementErrorCode,
    RegionHeartbeat,
    StoreInfo,
    StoreStats,
)
from regions.conf_change import apply_conf_change
from regions.keyspace import middle_key
from regions.region import Peer, PeerRole, Region
from regions.scheduling import SplitRegion, Step, TransferLeader
from regions.split import apply_batch_split


class PlacementApi(Protocol):
    async def alloc_ids(self, count: int) -> Ids: ...
    async def put_store(self, info: StoreInfo) -> None: ...
    async def store_heartbeat(self, stats: StoreStats) -> list[Region]: ...
    async def region_heartbeat(self, region: Region, leader: Peer, term: int) -> Step | None: ...


class Tombstoned(Exception):
    """The service answered StoreTombstoned."""


class ClusterApi:
    """An in-process :class:`Cluster` as a :class:`PlacementApi`."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    async def alloc_ids(self, count: int) -> Ids:
        return await self.cluster.alloc_ids(count)

    async def put_store(self, info: StoreInfo) -> None:
        await self.cluster.put_store(info)

    async def store_heartbeat(self, stats: StoreStats) -> list[Region]:
        try:
            return (await self.cluster.store_heartbeat(stats)).bootstrap_regions
        except PlacementFailure as e:
            if e.code == PlacementErrorCode.StoreTombstoned:
                raise Tombstoned(e.message) from None
            raise

    async def region_heartbeat(self, region: Region, leader: Peer, term: int) -> Step | None:
        return await self.cluster.region_heartbeat(RegionHeartbeat(region, leader, term))


class ClientApi:
    """A placement service reached through a :class:`PlacementClient`."""

    def __init__(self, client: PlacementClient) -> None:
        self.client = client

    async def alloc_ids(self, count: int) -> Ids:
        return await self.client.alloc_ids(count)

    async def put_store(self, info: StoreInfo) -> None:
        await self.client.put_store(info)

    async def store_heartbeat(self, stats: StoreStats) -> list[Region]:
        try:
            return (await self.client.store_heartbeat(stats)).bootstrap_regions
        except PlacementRequestError as e:
            if e.code == PlacementErrorCode.StoreTombstoned:
                raise Tombstoned(e.message) from None
            raise

    async def region_heartbeat(self, region: Region, leader: Peer, term: int) -> Step | None:
        return (await self.client.region_heartbeat(region, leader, term)).operator_step


@dataclass
class FakeStores:
    """The stores of a small cluster (see the module docstring)."""

    pd: PlacementApi
    stores: list[int] = field(default_factory=list)
    regions: dict[int, Region] = field(default_factory=dict)
    #: region id -> the store of its leader
    leaders: dict[int, int] = field(default_factory=dict)
    terms: dict[int, int] = field(default_factory=dict)
    #: Stores that no longer heartbeat (killed), and stores placement removed.
    silent: set[int] = field(default_factory=set)
    tombstoned: set[int] = field(default_factory=set)
    #: Regions whose steps are received but never executed.
    frozen: set[int] = field(default_factory=set)
    #: Sees every step first; returns True when it handled the step itself.
    on_step: Callable[[int, Step], Awaitable[bool]] | None = None
    #: Every (region id, step) received, in order.
    steps_seen: list[tuple[int, Step]] = field(default_factory=list)

    async def bootstrap(self, n: int) -> list[int]:
        """Register ``n`` stores and take the first region placement bootstraps."""
        for _ in range(n):
            sid = (await self.pd.alloc_ids(1)).first
            await self.pd.put_store(StoreInfo(sid, f"127.0.0.1:{30000 + sid}", version="test"))
            self.stores.append(sid)
        for sid in self.stores:
            for region in await self.pd.store_heartbeat(StoreStats(sid)):
                self.regions.setdefault(region.id, region)
                self.leaders.setdefault(region.id, region.peers[0].store_id)
                self.terms.setdefault(region.id, 1)
        assert self.regions, "placement bootstrapped no region"
        await self.round()
        return list(self.stores)

    def leader_peer(self, rid: int) -> Peer:
        peer = self.regions[rid].peer_on_store(self.leaders[rid])
        assert peer is not None
        return peer

    def counts(self, sid: int) -> tuple[int, int]:
        """(replicas, leaders) on store ``sid``."""
        replicas = sum(r.peer_on_store(sid) is not None for r in self.regions.values())
        leaders = sum(1 for rid in self.regions if self.leaders[rid] == sid)
        return replicas, leaders

    async def round(self) -> None:
        """One heartbeat interval of every store (see the module docstring)."""
        for rid in sorted(self.regions):
            if self.leaders[rid] in self.silent:
                continue
            region = self.regions[rid]
            step = await self.pd.region_heartbeat(region, self.leader_peer(rid), self.terms[rid])
            if step is None:
                continue
            self.steps_seen.append((rid, step))
            if self.on_step is not None and await self.on_step(rid, step):
                continue
            if rid not in self.frozen:
                await self.execute(rid, step)
        for sid in self.stores:
            if sid in self.silent or sid in self.tombstoned:
                continue
            replicas, leaders = self.counts(sid)
            try:
                await self.pd.store_heartbeat(StoreStats(sid, replicas, leaders))
            except Tombstoned:
                self.tombstoned.add(sid)

    async def run(self, interval: float) -> None:
        """Rounds every ``interval`` seconds, as the stores' heartbeat timers would."""
        while True:
            await self.round()
            await trio.sleep(interval)

    async def execute(self, rid: int, step: Step) -> None:
        """Apply ``step`` to region ``rid`` as every replica would."""
        region = self.regions[rid]
        assert step.epoch == region.epoch, f"step {step} made for another epoch"
        if isinstance(step, TransferLeader):
            target = region.peer_on_store(step.to_store)
            assert target is not None and target.role in (PeerRole.Voter, PeerRole.IncomingVoter)
            self.leaders[rid] = step.to_store
            self.terms[rid] += 1
        elif isinstance(step, SplitRegion):
            await self.split(rid, list(step.keys))
        else:
            changes = step.conf_changes()
            assert changes is not None
            new = apply_conf_change(region, changes)
            assert new.peer_on_store(self.leaders[rid]) is not None, "the leader was removed"
            self.regions[rid] = new

    async def split(self, rid: int, keys: list[bytes]) -> None:
        region = self.regions[rid]
        if not keys:
            middle = middle_key(region.start_key, region.end_key)
            assert middle is not None
            keys = [middle]
        per = len(region.peers)
        ids = list((await self.pd.alloc_ids(len(keys) * (1 + per))).range())
        new_ids = ids[: len(keys)]
        peer_ids = [ids[len(keys) + i * per : len(keys) + (i + 1) * per] for i in range(len(keys))]
        for r in apply_batch_split(region, keys, new_ids, peer_ids):
            self.regions[r.id] = r
            self.leaders.setdefault(r.id, self.leaders[rid])
            self.terms.setdefault(r.id, 1)
