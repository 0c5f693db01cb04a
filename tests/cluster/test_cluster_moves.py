"""Replicas and leaders moving under load on a real cluster: moves across 5 stores, leader
transfers, a drain, and the replacement of a store that stayed down (issue 5, "Tests", real
processes).

Each test runs :class:`~tests.cluster.workload.Workload` (4 concurrent clients doing
get/put/cas/delete on rotating keys, seeded choices) while the cluster changes, one step at a
time, each step waiting for the operator to end and for more acknowledged operations under a
deadline. Afterwards (``check_workload``) the region table is consistent (placement and every
live store agree, no gap, no overlap), every replica of every region holds the same data as
a linearizable scan, a final read of every key is recorded, and the whole history is
linearizable, so no acknowledged write was lost. Data loaded before the test must be intact.
"""

from __future__ import annotations

import math
import urllib.request

import pytest
import trio

from multiraft.placement.client import PlacementClient
from multiraft.wire.placement_messages import ManualOperator, OperatorInfo, RegionRoute, StoreState
from regions.region import PeerRole
from tests.cluster.conftest import ClusterFactory
from tests.cluster.harness import POLL, Cluster, Node, fail_after, wait_until
from tests.cluster.test_cluster_regions import FAST, MANUAL, dataset, load
from tests.cluster.workload import Workload, check_workload
from tests.support.history import HistoryRecorder

pytestmark = pytest.mark.slow

#: Acknowledged operations the workload must complete in each phase.
PHASE_OPS = 30


def voters(route: RegionRoute) -> list[int]:
    """Store ids of the region's voters."""
    return [p.store_id for p in route.region.peers if p.role == PeerRole.Voter]


async def route_of(cluster: Cluster, region_id: int) -> RegionRoute:
    async with cluster.pd() as pd:
        route = await pd.get_region_by_id(region_id)
    assert route is not None, f"placement lost region {region_id}"
    return route


def check_intact(content: dict[bytes, bytes], data: dict[bytes, bytes]) -> None:
    lost = sorted(k for k, v in data.items() if content.get(k) != v)
    assert not lost, f"{len(lost)} keys loaded before the test changed or vanished: {lost[:5]}"


async def test_move_a_region_across_five_stores_under_load(make_cluster: ClusterFactory) -> None:
    """Four MovePeer operators in a row (off the leader's store, off a follower's, again
    each), so that every one of 5 stores holds a replica at some point, while 4 clients read
    and write the region."""
    cluster = make_cluster(stores=5, store_settings=FAST, placement_settings=MANUAL)
    await cluster.start()
    data = dataset(200)
    await load(cluster, data)
    (route,) = await cluster.wait_region_table()
    region_id = route.region.id
    held = set(voters(route))
    workload = Workload(cluster.placement_address, HistoryRecorder(), seed=11)
    async with trio.open_nursery() as nursery:
        await nursery.start(workload.run)
        await workload.wait_ok(PHASE_OPS, at_least=1.0, what="before the moves")
        for i in range(4):
            route = await route_of(cluster, region_id)
            leader, _ = await cluster.leader(region_id)
            others = [s for s in voters(route) if s != leader.store_id]
            source = leader.store_id if i % 2 == 0 else others[0]
            fresh = [n.store_id for n in cluster.stores if n.store_id not in voters(route)]
            target = min(fresh, key=lambda s: (s in held, s))  # a store new to it first
            await cluster.run_operator(ManualOperator.MovePeer, region_id,
                                       from_store=source, to_store=target)  # fmt: skip
            route = await route_of(cluster, region_id)
            assert target in voters(route) and source not in voters(route), route
            assert len(route.region.peers) == 3, route
            held.add(target)
            await workload.wait_ok(PHASE_OPS, what=f"after move {i + 1} ({source} -> {target})")
        workload.stop()
    assert held == {n.store_id for n in cluster.stores}, held
    content = await check_workload(cluster, workload)
    check_intact(content, data)


async def test_leader_transfers_to_every_store_under_load(make_cluster: ClusterFactory) -> None:
    """TransferLeader operators to each store in turn, twice around, while 4 clients read
    and write: each transfer ends with the target leading at a newer term."""
    cluster = make_cluster(store_settings=FAST, placement_settings=MANUAL)
    await cluster.start()
    (route,) = await cluster.wait_region_table()
    region_id = route.region.id
    workload = Workload(cluster.placement_address, HistoryRecorder(), seed=12)
    transfers = 0
    async with trio.open_nursery() as nursery:
        await nursery.start(workload.run)
        await workload.wait_ok(PHASE_OPS, at_least=1.0, what="before the transfers")
        for target in cluster.stores * 2:
            leader, term = await cluster.leader(region_id)
            if leader is target:
                continue
            await cluster.run_operator(ManualOperator.TransferLeader, region_id,
                                       to_store=target.store_id)  # fmt: skip
            now, _ = await cluster.leader(region_id, newer_than=term)
            assert now is target, (now.name, target.name)
            transfers += 1
            await workload.wait_ok(PHASE_OPS, what=f"with {target.name} leading")
        workload.stop()
    assert transfers >= 4, transfers
    await check_workload(cluster, workload)


async def split_for_workload(cluster: Cluster) -> list[RegionRoute]:
    """Three regions: keys below ``k0100``, the rest up to ``reg/2`` (with the workload's
    slots 0 and 1), and the rest (slots 2 to 4)."""
    (route,) = await cluster.wait_region_table()
    for key in (b"k0100", b"reg/2"):
        await cluster.run_operator(ManualOperator.SplitRegion, route.region.id, split_key=key)
    routes = await cluster.wait_region_table()
    assert len(routes) == 3, routes
    return routes


def replica_count(routes: list[RegionRoute], store_id: int) -> int:
    return sum(1 for r in routes if r.region.peer_on_store(store_id))


async def test_drain_a_store_under_load(make_cluster: ClusterFactory) -> None:
    """Drain (set Offline) the store that leads the workload's region, on 4 stores with 3
    regions: every replica leaves it, leaders included, it becomes a tombstone and its
    process stops; the clients never stop."""
    cluster = make_cluster(stores=4, store_settings=FAST, placement_settings=MANUAL)
    await cluster.start()
    data = dataset(200)
    await load(cluster, data)
    await split_for_workload(cluster)
    async with cluster.client() as client:
        workload_region = (await client.locate(b"reg/3")).region.id
    workload = Workload(cluster.placement_address, HistoryRecorder(), seed=13, slot_major=True)
    async with trio.open_nursery() as nursery:
        await nursery.start(workload.run)
        await workload.wait_ok(PHASE_OPS, at_least=1.0, what="before the drain")
        drained, _ = await cluster.leader(workload_region)
        async with cluster.pd() as pd:
            info = await pd.drain_store(drained.store_id)
            assert info.state == StoreState.Offline, info
            await wait_tombstone(pd, drained)
            await cluster.wait_exit(drained)  # a retired store stops
            await workload.wait_ok(PHASE_OPS, what=f"after {drained.name} was drained")
        workload.stop()
    routes = await cluster.wait_region_table()
    assert replica_count(routes, drained.store_id) == 0, routes
    for r in routes:
        assert len(voters(r)) == 3 and len(r.region.peers) == 3, r
    content = await check_workload(cluster, workload)
    check_intact(content, data)


async def test_a_store_down_too_long_has_its_replicas_replaced(
    make_cluster: ClusterFactory,
) -> None:
    """With scheduling on and a down time of 3 s, kill -9 the store leading the workload's
    region: after 3 s of silence the replica checker replaces each of its replicas on the
    spare store, while the clients keep going; every region ends with 3 voters on live
    stores."""
    # Short operator timeouts: an operator the kill interrupts (the balancers may be moving a
    # region to the 4th store) must give way to the replacement soon.
    placement = {"schedule_enabled": True, "max_store_down_seconds": 3.0,
                 "schedule_interval": 0.5, "operator_step_seconds": 5.0,
                 "operator_snapshot_step_seconds": 10.0}  # fmt: skip
    cluster = make_cluster(stores=4, store_settings=FAST, placement_settings=placement)
    await cluster.start()
    data = dataset(200)
    await load(cluster, data)
    await split_for_workload(cluster)
    async with cluster.client() as client:
        workload_region = (await client.locate(b"reg/3")).region.id
    workload = Workload(cluster.placement_address, HistoryRecorder(), seed=14, slot_major=True)
    async with trio.open_nursery() as nursery:
        await nursery.start(workload.run)
        await workload.wait_ok(PHASE_OPS, at_least=1.0, what="before the kill")
        # The balancers move a region to the 4th store meanwhile. Kill only between their
        # operators: a region left in a joint state whose leader dies, and whose demoting
        # voter then wins the election, never leaves it (the leader refuses to demote
        # itself and no operator transfers the leadership first) -- a bug reported
        # separately, not what this test is about.
        await wait_until(lambda: no_operator_running(cluster), "a pause between operators")
        async with cluster.pd() as pd:  # placement answers at once: no operator starts meanwhile
            route = await route_of(cluster, workload_region)
            assert route.leader is not None, route
            victim = cluster.store(route.leader.store_id)
            had = replica_count(await pd.scan_regions(b"", b""), victim.store_id)
        cluster.kill(victim)
        await workload.wait_ok(PHASE_OPS, what=f"with {victim.name} just killed")
        with fail_after(60, f"the replicas of {victim.name} to be replaced"):
            while True:
                async with cluster.pd() as pd:
                    routes = await pd.scan_regions(b"", b"")
                if replica_count(routes, victim.store_id) == 0 and all(
                    len(voters(r)) == 3 and len(r.region.peers) == 3 for r in routes
                ):
                    break
                await trio.sleep(POLL)
        await workload.wait_ok(PHASE_OPS, what=f"after {victim.name}'s replicas were replaced")
        workload.stop()
    assert had >= 1
    content = await check_workload(cluster, workload)
    check_intact(content, data)


async def test_a_move_promotes_its_learner_only_once_it_caught_up(
    make_cluster: ClusterFactory,
) -> None:
    """MovePeer to a store cut off from the others: the learner is added but cannot catch
    up, so the operator must wait at its first step, as PD does (a pending learner is not
    promoted): promoting it would make a voter of a replica with no data, and one more
    failure would then stop the region. After the heal the move completes and the new
    replica holds the data."""
    cluster = make_cluster(stores=4, store_settings=FAST, placement_settings=MANUAL)
    await cluster.start()
    data = dataset(100)
    await load(cluster, data)
    (route,) = await cluster.wait_region_table()
    region_id = route.region.id
    target = next(n for n in cluster.stores if not route.region.peer_on_store(n.store_id))
    leader, _ = await cluster.leader(region_id)
    source = next(s for s in voters(route) if s != leader.store_id)
    await cluster.partition(target)
    async with cluster.pd() as pd:
        op = await pd.add_operator(ManualOperator.MovePeer, region_id, from_store=source,
                                   to_store=target.store_id)  # fmt: skip
        pending_reports, last_age = 0, math.inf
        with fail_after(20, "3 heartbeats reporting the new learner pending"):
            while pending_reports < 3:
                st = await pd.region_status(region_id)
                assert st is not None and st.operator is not None, st
                assert st.operator.created_at == op.created_at, st.operator
                learner = st.route.region.peer_on_store(target.store_id)
                age = st.heartbeat_age if st.heartbeat_age is not None else math.inf
                if learner is not None and learner in st.pending_peers and age < last_age:
                    pending_reports += 1  # a new heartbeat, with the learner still behind
                last_age = age
                assert st.operator.finished_at is None and st.operator.step_index == 0, (
                    f"the operator went on while its learner had no data: {st.operator}"
                )
                await trio.sleep(POLL)
    await cluster.heal()
    async with cluster.pd() as pd:

        async def ended() -> OperatorInfo | None:
            info = await pd.get_operator(region_id)
            return info if info is not None and info.finished_at is not None else None

        info = await wait_until(ended, "the move to end after the heal")
    assert info.status == "success", info
    content = await cluster.replicas_agree()
    check_intact(content, data)


async def test_a_store_given_back_a_region_it_left_gets_a_working_replica(
    make_cluster: ClusterFactory,
) -> None:
    """A region leaves a store cut off from the others (its peer there is tombstoned by a
    notice after the heal) and comes back to it through the replica checker (a drain of the
    store it had moved to): the new peer must be created and caught up. Peer ids only grow
    (TiKV's rule, by which a store tells a removed peer's late messages from a new peer's),
    so the id the scheduling pass gives the new peer must be larger than the tombstoned
    one's, although the pass reserved its ids before the split made that one."""
    cluster = make_cluster(stores=4, store_settings=FAST,
                           placement_settings={**MANUAL, "schedule_interval": 0.2})  # fmt: skip
    await cluster.start()
    # The scheduling pass has run once (it publishes the store scores) before the split.
    url = f"http://{cluster.placement.spec.metrics_address}/metrics"

    async def scored() -> bool:
        return "multiraft_placement_store_region_score{" in await trio.to_thread.run_sync(
            _fetch, url
        )

    await wait_until(scored, "a first scheduling pass")
    data = dataset(100)
    await load(cluster, data)
    (route,) = await cluster.wait_region_table()
    await cluster.run_operator(ManualOperator.SplitRegion, route.region.id, split_key=b"k0050")
    routes = await cluster.wait_region_table()
    left = routes[0].region
    spare = next(n for n in cluster.stores if not left.peer_on_store(n.store_id))
    leader, _ = await cluster.leader(left.id)
    source = next(s for s in voters(routes[0]) if s != leader.store_id)
    # The source is cut off while its peer is removed, so that it learns of the removal
    # from a tombstone notice after the heal: its tombstone then names its own peer id.
    await cluster.partition(cluster.store(source))
    await cluster.run_operator(ManualOperator.MovePeer, left.id, from_store=source,
                               to_store=spare.store_id)  # fmt: skip
    await cluster.heal()
    await cluster.wait_region_table()  # the source's stale peer is gone (tombstoned)
    async with cluster.pd() as pd:
        await pd.drain_store(spare.store_id)  # the source is the only place left for it
        await wait_tombstone(pd, spare)
    await cluster.wait_exit(spare)
    routes = await cluster.wait_region_table()
    assert routes[0].region.peer_on_store(source) is not None, routes[0]
    content = await cluster.replicas_agree()
    check_intact(content, data)


async def no_operator_running(cluster: Cluster) -> bool:
    async with cluster.pd() as pd:
        return all(op.finished_at is not None for op in await pd.list_operators())


async def wait_tombstone(pd: PlacementClient, node: Node, timeout: float = 60.0) -> None:  # noqa: ASYNC109
    """Poll until placement has retired the drained store ``node``."""

    async def gone() -> bool:
        return (await pd.get_store(node.store_id)).state == StoreState.Tombstone

    await wait_until(gone, f"{node.name} to be drained (a tombstone)", timeout=timeout)


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        body: bytes = resp.read()
    return body.decode()
