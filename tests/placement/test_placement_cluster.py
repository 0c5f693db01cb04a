"""The placement service's state: stores, bootstrap (exactly once), heartbeats, restarts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry

from multiraft.metrics import PlacementMetrics
from multiraft.placement import Cluster, PlacementFailure
from multiraft.placement.scheduler import SchedulerConfig
from multiraft.wire.placement_messages import (
    DownPeer,
    PlacementErrorCode,
    RegionHeartbeat,
    StoreInfo,
    StoreState,
    StoreStats,
)
from regions.region import Peer, PeerRole, Region, RegionEpoch


@asynccontextmanager
async def opened(path: Path, **kw: Any) -> AsyncIterator[Cluster]:
    cluster = await Cluster.open(path, **kw)
    try:
        yield cluster
    finally:
        cluster.close()


async def add_stores(cluster: Cluster, n: int) -> list[int]:
    ids = []
    for _ in range(n):
        sid = (await cluster.alloc_ids(1)).first
        await cluster.put_store(StoreInfo(sid, f"127.0.0.1:{20000 + sid}"))
        ids.append(sid)
    return ids


async def code(call: Awaitable[Any]) -> PlacementErrorCode:
    with pytest.raises(PlacementFailure) as info:
        await call
    return info.value.code


async def test_bootstrap_happens_once_after_three_stores(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    metrics = PlacementMetrics(registry)
    async with opened(tmp_path, metrics=metrics) as cluster:
        early = RegionHeartbeat(Region(1, peers=[Peer(1, 1)]), Peer(1, 1), 1)
        assert await code(cluster.region_heartbeat(early)) == PlacementErrorCode.NotBootstrapped
        a, b = await add_stores(cluster, 2)
        assert (await cluster.store_heartbeat(StoreStats(a))).bootstrap_regions == []
        assert not cluster.statistics().bootstrapped
        assert cluster.cluster_info().bootstrapped is False
        with pytest.raises(PlacementFailure) as info:
            cluster.get_region(b"k")
        assert info.value.code == PlacementErrorCode.NotBootstrapped

        (c,) = await add_stores(cluster, 1)  # the third store: bootstrap
        assert cluster.bootstrapped
        (d,) = await add_stores(cluster, 1)  # a fourth one joins later: no second region

        # Every store heartbeats concurrently, several times: one region, the same to each.
        replies: dict[int, list[list[Region]]] = {s: [] for s in (a, b, c, d)}

        async def beat(store: int) -> None:
            for _ in range(3):
                reply = await cluster.store_heartbeat(StoreStats(store))
                replies[store].append(reply.bootstrap_regions)

        async with trio.open_nursery() as nursery:
            for s in replies:
                nursery.start_soon(beat, s)
        first = replies[a][0][0]
        assert first.start_key == b"" and first.end_key == b""
        assert first.epoch == RegionEpoch(1, 1)
        assert [(p.store_id, p.role) for p in first.peers] == [
            (s, PeerRole.Voter) for s in (a, b, c)
        ]
        assert len({p.id for p in first.peers} | {first.id}) == 4
        for s in (a, b, c):
            assert replies[s] == [[first]] * 3
        assert replies[d] == [[]] * 3
        assert len(cluster.scan_regions(b"", b"")) == 1
        assert registry.get_sample_value("multiraft_placement_regions") == 1
        assert registry.get_sample_value("multiraft_placement_stores", {"state": "up"}) == 4

        # The leader on store a reports with c's peer still pending: a and b confirmed.
        leader = first.peers[0]
        await cluster.region_heartbeat(
            RegionHeartbeat(first, leader, 6, pending_peers=[first.peers[2]])
        )
        assert (await cluster.store_heartbeat(StoreStats(a))).bootstrap_regions == []
        assert (await cluster.store_heartbeat(StoreStats(b))).bootstrap_regions == []
        assert (await cluster.store_heartbeat(StoreStats(c))).bootstrap_regions == [first]
        assert cluster.statistics().bootstrap_pending_stores == 1

    # A restart keeps the region, the flag and what is still pending.
    async with opened(tmp_path) as cluster:
        assert cluster.bootstrapped
        assert (await cluster.store_heartbeat(StoreStats(c))).bootstrap_regions == [first]
        assert (await cluster.store_heartbeat(StoreStats(a))).bootstrap_regions == []
        route = cluster.get_region(b"anything")
        assert route is not None and route.region == first and route.leader is None
        # c's peer reported down: still behind.
        behind = RegionHeartbeat(first, first.peers[1], 7, down_peers=[DownPeer(first.peers[2], 5)])
        await cluster.region_heartbeat(behind)
        assert (await cluster.store_heartbeat(StoreStats(c))).bootstrap_regions == [first]
        await cluster.region_heartbeat(RegionHeartbeat(first, first.peers[1], 7))
        assert (await cluster.store_heartbeat(StoreStats(c))).bootstrap_regions == []
        assert cluster.statistics().bootstrap_pending_stores == 0
        route = cluster.get_region(b"anything")
        assert route is not None and route.leader == first.peers[1]

    async with opened(tmp_path) as cluster:
        assert cluster.statistics().bootstrap_pending_stores == 0
        assert cluster.statistics().regions == 1


async def test_concurrent_store_registrations_bootstrap_once(tmp_path: Path) -> None:
    async with opened(tmp_path) as cluster:
        ids = [(await cluster.alloc_ids(1)).first for _ in range(6)]
        async with trio.open_nursery() as nursery:
            for sid in ids:
                nursery.start_soon(cluster.put_store, StoreInfo(sid, f"h:{sid}"))
        assert cluster.bootstrapped
        assert cluster.statistics().regions == 1
        [route] = cluster.scan_regions(b"", b"")
        # The first three stores by id among those registered when the third one arrived.
        placed = [p.store_id for p in route.region.peers]
        assert len(placed) == 3 and placed == sorted(placed) and set(placed) <= set(ids)


async def test_a_region_change_moves_the_bootstrap_along(tmp_path: Path) -> None:
    async with opened(tmp_path) as cluster:
        a, _, c = await add_stores(cluster, 3)
        first = (await cluster.store_heartbeat(StoreStats(a))).bootstrap_regions[0]
        # A conf change before anyone confirmed: the bootstrap descriptor is history.
        moved = Region(first.id, b"", b"", RegionEpoch(2, 1), first.peers[:2])
        pending = list(first.peers[:2])
        await cluster.region_heartbeat(
            RegionHeartbeat(moved, first.peers[0], 6, pending_peers=pending)
        )
        assert (await cluster.store_heartbeat(StoreStats(c))).bootstrap_regions == []
        route = cluster.get_region_by_id(first.id)
        assert route is not None and route.region == moved
        stale = RegionHeartbeat(first, first.peers[0], 9)
        assert await code(cluster.region_heartbeat(stale)) == PlacementErrorCode.StaleEpoch
        assert cluster.statistics().stale_heartbeats == 1
    async with opened(tmp_path) as cluster:
        route = cluster.get_region_by_id(first.id)
        assert route is not None and route.region == moved
        assert cluster.get_region_by_id(999) is None


async def test_split_heartbeats_update_routing_and_persist(tmp_path: Path) -> None:
    async with opened(tmp_path) as cluster:
        a, _, _ = await add_stores(cluster, 3)
        first = (await cluster.store_heartbeat(StoreStats(a))).bootstrap_regions[0]
        new_id = (await cluster.alloc_ids(1)).first
        new_peers = [Peer(p.id + 100, p.store_id) for p in first.peers]
        left = Region(new_id, b"", b"m", RegionEpoch(1, 2), new_peers)
        right = Region(first.id, b"m", b"", RegionEpoch(1, 2), first.peers)
        await cluster.region_heartbeat(RegionHeartbeat(left, left.peers[0], 6))
        route = cluster.get_region(b"a")
        assert route is not None and route.region.id == new_id
        assert cluster.get_region(b"x") is None  # the parent was replaced; right not seen yet
        await cluster.region_heartbeat(RegionHeartbeat(right, right.peers[1], 6))
        assert [r.region.id for r in cluster.scan_regions(b"", b"")] == [new_id, first.id]
        assert [r.region.id for r in cluster.scan_regions(b"n", b"")] == [first.id]
        assert cluster.scan_regions(b"z", b"a") == []
    async with opened(tmp_path) as cluster:
        routes = cluster.scan_regions(b"", b"")
        assert [(r.region.id, r.region.start_key) for r in routes] == [
            (new_id, b""),
            (first.id, b"m"),
        ]


async def test_store_rules(tmp_path: Path) -> None:
    async with opened(tmp_path, scheduler=SchedulerConfig(max_replicas=1)) as cluster:
        a, _b = await add_stores(cluster, 2)
        assert cluster.get_store(a).address == f"127.0.0.1:{20000 + a}"
        for bad in (StoreInfo(0, "h:1"), StoreInfo(5, "nope"), StoreInfo(5, "h:1", "bad")):
            assert await code(cluster.put_store(bad)) == PlacementErrorCode.InvalidArgument
        # Another store may not claim a live store's address.
        thief = StoreInfo(a + 1, f"127.0.0.1:{20000 + a}")
        assert await code(cluster.put_store(thief)) == PlacementErrorCode.InvalidArgument
        await cluster.put_store(StoreInfo(a, "127.0.0.1:1", "127.0.0.1:2", version="9"))
        assert cluster.get_store(a) == StoreInfo(a, "127.0.0.1:1", "127.0.0.1:2", version="9")
        # The state a store sends is ignored: only SetStoreState changes it.
        await cluster.put_store(StoreInfo(a, "127.0.0.1:1", state=StoreState.Tombstone))
        assert cluster.get_store(a).state == StoreState.Up
        await cluster.set_store_state(a, StoreState.Offline)  # empty: goes once it reports so
        await cluster.store_heartbeat(StoreStats(a))
        assert cluster.get_store(a).state == StoreState.Tombstone
        revive = cluster.put_store(StoreInfo(a, "127.0.0.1:1"))
        assert await code(revive) == PlacementErrorCode.StoreTombstoned
        beat = cluster.store_heartbeat(StoreStats(a))
        assert await code(beat) == PlacementErrorCode.StoreTombstoned
        unknown = cluster.store_heartbeat(StoreStats(999))
        assert await code(unknown) == PlacementErrorCode.StoreNotFound
        with pytest.raises(PlacementFailure):
            cluster.get_store(999)
        assert await code(cluster.alloc_ids(0)) == PlacementErrorCode.InvalidArgument
    async with opened(tmp_path) as cluster:
        assert cluster.get_all_stores()[0] == StoreInfo(a, "127.0.0.1:1", state=StoreState.Tombstone)


async def test_store_liveness_follows_the_clock(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    registry = CollectorRegistry()
    async with opened(tmp_path, metrics=PlacementMetrics(registry)) as cluster:
        a, _ = await add_stores(cluster, 2)

        def stores(state: str) -> float | None:
            return registry.get_sample_value("multiraft_placement_stores", {"state": state})

        start = trio.current_time()
        await cluster.store_heartbeat(StoreStats(a, region_count=3))
        runtime = cluster.store_runtime(a)
        assert runtime is not None and runtime.stats is not None
        assert runtime.stats.region_count == 3 and runtime.last_heartbeat == start
        await trio.sleep(25)  # mock time
        await cluster.store_heartbeat(StoreStats(a))
        cluster.refresh_metrics()
        assert (stores("up"), stores("disconnected")) == (1, 1)
        await trio.sleep(31 * 60)
        cluster.refresh_metrics()
        assert stores("down") == 2
