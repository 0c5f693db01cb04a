"""Draining stores, tombstones, status reports and balance metrics of the placement service.

An in-process :class:`Cluster` with a hand-moved clock, played against by
:class:`~tests.placement.fake_stores.FakeStores`, which report regions and execute the
steps they are given. Every scheduling pass and heartbeat round is called explicitly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from multiraft.metrics.placement import PlacementMetrics
from multiraft.placement.cluster import Cluster
from multiraft.placement.cluster_meta import ClusterMeta
from multiraft.placement.errors import PlacementFailure
from multiraft.placement.scheduler import SchedulerConfig
from multiraft.wire.placement_messages import (
    AddOperator,
    ManualOperator,
    PlacementErrorCode,
    RegionHeartbeat,
    StoreInfo,
    StoreState,
    StoreStats,
)
from regions.region import Peer, PeerRole
from regions.scheduling import AddLearner
from tests.placement.fake_stores import ClusterApi, FakeStores

Code = PlacementErrorCode


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def cluster_of(
    tmp_path: Path, stores: int = 4, *, metrics: PlacementMetrics | None = None, **config: Any
) -> AsyncIterator[tuple[Cluster, FakeStores, Clock]]:
    """A bootstrapped cluster of ``stores`` fake stores (scheduling disabled by default)."""
    clock = Clock()
    meta = ClusterMeta.open(tmp_path, sync=False)
    cluster = Cluster(meta, bootstrap_replicas=3, clock=clock, metrics=metrics,
                      scheduler=SchedulerConfig(**{"enabled": False, **config}))  # fmt: skip
    try:
        fake = FakeStores(ClusterApi(cluster))
        await fake.bootstrap(stores)
        yield cluster, fake, clock
    finally:
        cluster.close()


async def code(call: Awaitable[Any]) -> Code:
    with pytest.raises(PlacementFailure) as info:
        await call
    return info.value.code


async def drive(
    cluster: Cluster, fake: FakeStores, clock: Clock, until: Callable[[], bool], rounds: int = 60
) -> int:
    """Scheduling passes and heartbeat rounds, one second apart, until ``until()``;
    the rounds it took."""
    for n in range(rounds):
        if until():
            return n
        clock.now += 1.0
        await cluster.schedule_tick()
        await fake.round()
    raise AssertionError("the cluster did not get there")


async def split(cluster: Cluster, fake: FakeStores, rid: int, key: bytes) -> None:
    await cluster.add_operator(AddOperator(ManualOperator.SplitRegion, rid, split_key=key))
    await fake.round()  # the leader gets the step and splits
    await fake.round()  # its next report shows the new version: the operator succeeded
    op = cluster.operators.get(rid)
    assert op is not None and op.status == "success"


async def test_drain_moves_every_replica_off_then_tombstones(tmp_path: Path) -> None:
    async with cluster_of(tmp_path) as (cluster, fake, clock):
        [rid] = fake.regions
        await split(cluster, fake, rid, b"g")
        await split(cluster, fake, rid, b"p")
        assert len(fake.regions) == 3
        assert await cluster.schedule_tick() == []  # scheduling is off: nothing by itself
        leader = fake.leaders[rid]  # leads all three regions
        info = await cluster.set_store_state(leader, StoreState.Offline)
        assert info.state == StoreState.Offline
        assert cluster.store_statuses(leader)[0].liveness == "offline"

        def drained() -> bool:
            return all(r.peer_on_store(leader) is None for r in fake.regions.values())

        await drive(cluster, fake, clock, drained)
        for r in fake.regions.values():
            assert [p.role for p in r.peers] == [PeerRole.Voter] * 3
            assert fake.leaders[r.id] != leader
        await drive(cluster, fake, clock, lambda: leader in fake.tombstoned)
        assert cluster.get_store(leader).state == StoreState.Tombstone
        assert all(f.status == "success" for f in cluster.operators.history())
        # A tombstone never comes back, by any door.
        assert await code(cluster.store_heartbeat(StoreStats(leader))) == Code.StoreTombstoned
        again = cluster.put_store(StoreInfo(leader, f"127.0.0.1:{30000 + leader}"))
        assert await code(again) == Code.StoreTombstoned
        assert await code(cluster.set_store_state(leader, StoreState.Up)) == Code.StoreTombstoned
        # A late report from a leader on the removed store is refused too.
        ghost = RegionHeartbeat(fake.regions[rid], Peer(777, leader), 99)
        assert await code(cluster.region_heartbeat(ghost)) == Code.StoreTombstoned
    with ClusterMeta.open(tmp_path, sync=False) as meta:
        assert meta.load().stores[leader].state == StoreState.Tombstone


async def test_tombstone_waits_for_a_report_made_after_the_store_emptied(tmp_path: Path) -> None:
    async with cluster_of(tmp_path) as (cluster, fake, clock):
        [rid] = fake.regions
        follower = fake.regions[rid].peers[1].store_id
        await cluster.set_store_state(follower, StoreState.Offline)

        def moved() -> bool:
            return fake.regions[rid].peer_on_store(follower) is None

        await drive(cluster, fake, clock, moved)
        await fake.round()  # the leader reports the removal; the store reports 0 regions
        assert cluster.store_statuses(follower)[0].region_count == 0
        # That report came in the round in which placement first saw the store empty (it
        # may have been made before the removal reached placement): it does not count.
        assert cluster.get_store(follower).state == StoreState.Offline
        await cluster.store_heartbeat(StoreStats(follower, region_count=1))  # not empty yet
        assert cluster.get_store(follower).state == StoreState.Offline
        await cluster.store_heartbeat(StoreStats(follower, region_count=0))
        assert cluster.get_store(follower).state == StoreState.Tombstone


async def test_drain_is_refused_when_too_few_stores_would_stay_up(tmp_path: Path) -> None:
    async with cluster_of(tmp_path, stores=4, max_store_down_seconds=60.0) as (
        cluster, fake, clock,
    ):  # fmt: skip
        a, b, c, d = fake.stores
        fake.silent.add(d)
        clock.now = 100.0  # d is down: only a, b and c are up
        for s in (a, b, c):
            await cluster.store_heartbeat(StoreStats(s))
        with pytest.raises(PlacementFailure) as err:
            await cluster.set_store_state(a, StoreState.Offline)
        assert err.value.code == Code.InvalidArgument
        assert "only 2 other store(s) are up" in err.value.message
        assert cluster.get_store(a).state == StoreState.Up
        assert await code(cluster.set_store_state(999, StoreState.Offline)) == Code.StoreNotFound
        assert await code(cluster.set_store_state(a, StoreState.Tombstone)) == Code.InvalidArgument
        # The down store itself may be drained: three stores stay up.
        await cluster.set_store_state(d, StoreState.Offline)
        assert cluster.get_store(d).state in (StoreState.Offline, StoreState.Tombstone)


async def test_cancel_and_restart_keep_the_recorded_state(tmp_path: Path) -> None:
    async with cluster_of(tmp_path) as (cluster, fake, clock):
        [rid] = fake.regions
        s = fake.regions[rid].peers[2].store_id
        await cluster.set_store_state(s, StoreState.Offline)
        # A restarting store registers again as Up: the drain must survive that.
        await cluster.put_store(StoreInfo(s, f"127.0.0.1:{30000 + s}", state=StoreState.Up))
        assert cluster.get_store(s).state == StoreState.Offline
        assert (await cluster.set_store_state(s, StoreState.Offline)).state == StoreState.Offline
    async with cluster_of(tmp_path / "again") as (cluster, fake, clock):
        [rid] = fake.regions
        s = fake.regions[rid].peers[2].store_id
        await cluster.set_store_state(s, StoreState.Offline)
        await cluster.set_store_state(s, StoreState.Up)  # cancelled before any pass
        clock.now += 1
        assert await cluster.schedule_tick() == []
        assert fake.regions[rid].peer_on_store(s) is not None
    with ClusterMeta.open(tmp_path, sync=False) as meta:
        state = meta.load()
        assert [i.state for i in state.stores.values()].count(StoreState.Offline) == 1


async def test_a_down_store_being_drained_needs_no_report(tmp_path: Path) -> None:
    async with cluster_of(tmp_path, max_store_down_seconds=30.0) as (cluster, fake, clock):
        [rid] = fake.regions
        dead = fake.regions[rid].peers[1].store_id
        fake.silent.add(dead)
        runtime = cluster.store_runtime(dead)
        assert runtime is not None
        reports = runtime.heartbeats
        await cluster.set_store_state(dead, StoreState.Offline)
        await drive(cluster, fake, clock,
                    lambda: cluster.get_store(dead).state == StoreState.Tombstone)  # fmt: skip
        assert fake.regions[rid].peer_on_store(dead) is None
        assert clock.now >= 30.0  # only once silent for the down time
        assert runtime.heartbeats == reports  # it never reported being empty


async def test_manual_operators_check_their_stores(tmp_path: Path) -> None:
    async with cluster_of(tmp_path, stores=5) as (cluster, fake, _clock):
        [rid] = fake.regions
        region = fake.regions[rid]
        src = region.peers[1].store_id
        spare = [s for s in fake.stores if region.peer_on_store(s) is None]

        def move(a: int, b: int) -> Awaitable[Any]:
            return cluster.add_operator(AddOperator(ManualOperator.MovePeer, rid, a, b))

        assert await code(move(src, 999)) == Code.StoreNotFound
        assert await code(move(999, spare[0])) == Code.StoreNotFound
        assert await code(move(src, src)) == Code.InvalidArgument
        await cluster.set_store_state(spare[1], StoreState.Offline)
        with pytest.raises(PlacementFailure, match="offline"):
            await move(src, spare[1])
        transfer = AddOperator(ManualOperator.TransferLeader, rid, to_store=spare[0])
        with pytest.raises(PlacementFailure, match="no peer on store"):
            await cluster.add_operator(transfer)
        await cluster.add_operator(AddOperator(ManualOperator.TransferLeader, rid, to_store=src))
        with pytest.raises(PlacementFailure, match="already has a running operator"):
            await move(src, spare[0])


async def test_status_reports_and_balance_metrics(tmp_path: Path) -> None:
    registry = CollectorRegistry()

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(f"multiraft_placement_{name}", labels)

    metrics = PlacementMetrics(registry)
    async with cluster_of(tmp_path, metrics=metrics) as (cluster, fake, clock):
        [rid] = fake.regions
        leader = fake.leaders[rid]
        spare = next(s for s in fake.stores if fake.regions[rid].peer_on_store(s) is None)
        clock.now = 5.0
        await cluster.schedule_tick()
        by_id = {st.info.id: st for st in cluster.store_statuses()}
        assert (by_id[leader].region_count, by_id[leader].leader_count) == (1, 1)
        assert (by_id[spare].region_count, by_id[spare].region_score) == (0, 0.0)
        assert by_id[leader].leader_score == 1.0 and by_id[leader].region_score > 0
        assert by_id[leader].heartbeat_age == 5.0 and by_id[leader].liveness == "up"
        assert by_id[leader].stats is not None and by_id[leader].stats.region_count == 1
        assert sample("store_regions", store=str(leader)) == 1.0
        assert sample("store_leaders", store=str(leader)) == 1.0
        assert sample("store_regions", store=str(spare)) == 0.0
        assert sample("store_leader_score", store=str(leader)) == 1.0
        assert sample("unhealthy_regions", kind="miss_peer") == 0.0
        assert sample("unhealthy_regions", kind="no_leader") == 0.0

        st = cluster.region_status(rid)
        assert st is not None and st.route.region == fake.regions[rid]
        assert st.route.leader == fake.leader_peer(rid) and st.heartbeat_age == 5.0
        assert st.operator is None and cluster.region_status(4242) is None
        await cluster.add_operator(AddOperator(ManualOperator.TransferLeader, rid,
                                               to_store=fake.regions[rid].peers[1].store_id))  # fmt: skip
        st = cluster.region_status(rid)
        assert st is not None and st.operator is not None and st.operator.status == "running"

        follower = fake.regions[rid].peers[2].store_id
        await cluster.set_store_state(follower, StoreState.Offline)
        assert sample("stores", state="offline") == 1.0
        await drive(cluster, fake, clock, lambda: follower in fake.tombstoned)
        await cluster.schedule_tick()
        assert sample("stores", state="tombstone") == 1.0
        assert sample("store_regions", store=str(follower)) is None  # forgotten
        assert sample("store_regions", store=str(spare)) == 1.0
        assert sample("operators_total", type="move-peer", result="success") == 1.0


async def test_a_store_an_operator_still_targets_is_not_retired(tmp_path: Path) -> None:
    async with cluster_of(tmp_path) as (cluster, fake, _clock):
        [rid] = fake.regions
        region = fake.regions[rid]
        spare = next(s for s in fake.stores if region.peer_on_store(s) is None)
        src = region.peers[1].store_id
        # A move onto the empty store is under way: its learner may appear there any time.
        await cluster.add_operator(AddOperator(ManualOperator.MovePeer, rid, src, spare))
        await cluster.set_store_state(spare, StoreState.Offline)
        for _ in range(2):
            await cluster.store_heartbeat(StoreStats(spare))
        assert cluster.get_store(spare).state == StoreState.Offline
        cluster.cancel_operator(rid)
        for _ in range(2):  # seen empty and idle, then a report made after that
            await cluster.store_heartbeat(StoreStats(spare))
        assert cluster.get_store(spare).state == StoreState.Tombstone


async def test_scheduled_peers_get_ids_newer_than_any_handed_out(tmp_path: Path) -> None:
    """Peer ids only grow: the ids the scheduling pass keeps ready must not be older than an
    id a store or a manual operator got since (a store drops messages for a peer id below
    one it tombstoned)."""
    async with cluster_of(tmp_path) as (cluster, fake, clock):
        [rid] = fake.regions
        clock.now += 1
        await cluster.schedule_tick()  # fills the pass's id pool
        newest = (await cluster.alloc_ids(3)).first + 2  # e.g. a store asking ids for a split
        await cluster.set_store_state(fake.regions[rid].peers[1].store_id, StoreState.Offline)
        clock.now += 1
        [op] = await cluster.schedule_tick()
        step = op.steps[0]
        assert isinstance(step, AddLearner)
        assert step.peer.id > newest
