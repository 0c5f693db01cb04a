"""Splits on a real cluster: manual splits through placement operators, automatic splits by
the stores' split checkers, and the races of a split or a membership change with a snapshot
or a leader change (issue 5, "Tests", real processes).

After every change the tests wait, under a deadline, for a *consistent region table*
(``Cluster.wait_region_table``): placement's regions cover the key space in order with no
gap and no overlap, and every live store holds exactly the replicas the table puts on it,
each with placement's descriptor. Data checks read every key back through the client, scan
the whole key space, and compare each replica's applied state (a stale scan on the store)
with a linearizable scan (``Cluster.replicas_agree``).
"""

from __future__ import annotations

import bisect
import dataclasses
import random

import pytest
import trio

from multiraft.placement.errors import PlacementRequestError
from multiraft.settings import StoreConfig
from multiraft.wire import AddPeer, AdminOk, SplitRegion, SplitResult, TransferLeader
from multiraft.wire.placement_messages import ManualOperator, RegionRoute
from regions.region import Peer, PeerRole, Region
from tests.cluster.conftest import ClusterFactory
from tests.cluster.harness import Cluster, Node, fail_after

pytestmark = pytest.mark.slow

#: Stores heartbeat often, so that operators advance and placement learns of changes fast.
FAST = {"region_heartbeat_interval": 0.3, "store_heartbeat_interval": 0.5}
#: No scheduling: the tests that drive splits and membership changes by hand would otherwise
#: meet the balancers' operators (a region has one at a time) and the replica checker, which
#: removes a learner it did not ask for.
MANUAL = {"schedule_enabled": False}
#: A split checker that looks often, and a split size of 8 KiB (a region splits at 12 KiB).
AUTO_SPLIT = {"split_check_interval": 0.3, "region_split_size": 8 * 1024}
_MISSING = sorted(set(AUTO_SPLIT) - {f.name for f in dataclasses.fields(StoreConfig)})


def dataset(n: int = 300) -> dict[bytes, bytes]:
    """``n`` keys under ``k``, and a few at both ends of the key space."""
    data = {b"k%04d" % i: b"value-%04d-" % i + b"x" * 40 for i in range(n)}
    data.update({bytes([first]) + b"/edge%02d" % i: b"edge" for first in (0x01, 0xFE)
                 for i in range(10)})  # fmt: skip
    return data


async def load(cluster: Cluster, data: dict[bytes, bytes]) -> None:
    async with cluster.client(timeout=15.0) as client:
        items = sorted(data.items())
        for i in range(0, len(items), 100):
            await client.batch_put(items[i : i + 100])


def boundaries(routes: list[RegionRoute]) -> list[bytes]:
    return [r.region.start_key for r in routes[1:]]


def region_of(routes: list[RegionRoute], key: bytes) -> Region:
    for r in routes:
        g = r.region
        if g.start_key <= key and (not g.end_key or key < g.end_key):
            return g
    raise AssertionError(f"no region holds {key!r}")


async def check_data(
    cluster: Cluster, data: dict[bytes, bytes], routes: list[RegionRoute], *, every: int = 1
) -> None:
    """Every key (every ``every``-th, and those next to each boundary) reads back; full and
    bounded scans are complete and in order; every replica holds the same; a new write
    lands in every region."""
    ordered = sorted(data)
    reads = set(ordered[::every])
    for cut in boundaries(routes):  # the keys on both sides of each boundary
        i = bisect.bisect_left(ordered, cut)
        reads.update(ordered[max(i - 1, 0) : i + 1])
    async with cluster.client(timeout=15.0) as client:
        for key in sorted(reads):
            assert await client.get(key) == data[key], key
        expected = sorted(data.items())
        got = [(k, v) for k, v in await client.scan(b"", b"", 10**6) if k in data]
        assert got == expected
        # Scans that start, end and stop (limit) across region boundaries.
        for cut in boundaries(routes):
            lo, hi = cut[:-1] + bytes([max(cut[-1] - 1, 0)]), cut + b"\xff"
            want = [p for p in expected if lo <= p[0] < hi]
            assert [p for p in await client.scan(lo, hi, 10**6) if p[0] in data] == want
            assert await client.scan(lo, b"", 7) == [p for p in expected if p[0] >= lo][:7]
        for r in routes:
            key = r.region.start_key + b"/new"
            await client.put(key, b"new")
            assert await client.get(key) == b"new"
            data[key] = b"new"
    content = await cluster.replicas_agree()
    assert {k: content.get(k) for k in data} == data


async def split(cluster: Cluster, region_id: int, key: bytes = b"") -> list[RegionRoute]:
    """Split through a placement operator (in the middle without ``key``); the table after."""
    before = await cluster.wait_region_table()
    await cluster.run_operator(ManualOperator.SplitRegion, region_id, split_key=key)
    routes = await cluster.wait_region_table()
    assert len(routes) == len(before) + 1, (boundaries(before), boundaries(routes))
    (new,) = set(boundaries(routes)) - set(boundaries(before))
    old = next(r.region for r in before if r.region.id == region_id)
    assert old.start_key < new and (not old.end_key or new < old.end_key)
    if key:
        assert new == key
    # right_derive: the parent keeps the right part, a new region takes the left.
    right = region_of(routes, new)
    assert right.id == region_id and right.epoch.version == old.epoch.version + 1, right
    left = region_of(routes, old.start_key)
    assert left.id != region_id and left.epoch == right.epoch, left
    assert [p.store_id for p in left.peers] == [p.store_id for p in right.peers]
    return routes


async def test_manual_splits_keep_every_key_and_a_covering_region_table(
    make_cluster: ClusterFactory,
) -> None:
    """Split the first region again and again, at explicit keys and in the middle: after
    each split the table covers the key space and every store agrees; at the end every key
    written before is readable, scans are complete and in order, and each replica holds the
    same data. A split key outside the region is refused without a change."""
    cluster = make_cluster(store_settings=FAST, placement_settings=MANUAL)
    await cluster.start()
    data = dataset()
    await load(cluster, data)
    (route,) = await cluster.wait_region_table()
    first = route.region.id

    routes = await split(cluster, first, b"k0100")
    assert boundaries(routes) == [b"k0100"]
    routes = await split(cluster, first)  # in the middle of [k0100, end), by size
    mid = boundaries(routes)[1]
    right_keys = [k for k in data if k >= b"k0100"]
    below = sum(1 for k in right_keys if k < mid)
    assert len(right_keys) / 4 <= below <= 3 * len(right_keys) / 4, (mid, below)
    routes = await split(cluster, first, b"k0250" if mid < b"k0250" else b"\xfe")
    routes = await split(cluster, region_of(routes, b"").id)  # the first new one, halved
    routes = await split(cluster, region_of(routes, b"").id, b"\x01/edge05")
    assert len(routes) == 6 and routes[-1].region.id == first

    async with cluster.pd() as pd:
        with pytest.raises(PlacementRequestError):
            await pd.add_operator(ManualOperator.SplitRegion, first, split_key=b"\x01")
    assert boundaries(await cluster.wait_region_table()) == boundaries(routes)
    await check_data(cluster, data, routes)


@pytest.mark.skipif(bool(_MISSING), reason=f"StoreConfig has no {', '.join(_MISSING)} yet "
                    "(the split checker's settings)")  # fmt: skip
async def test_regions_split_by_themselves_into_sixteen(make_cluster: ClusterFactory) -> None:
    """With a small split size, write keys in a shuffled order until the stores' split
    checkers have split the one region into at least 16, with no split asked for (and the
    scheduler on, as by default, balancing leaders meanwhile): the table
    covers the key space with no overlap and every store agrees, every key reads back,
    scans are complete and in order, and every replica holds the same data."""
    cluster = make_cluster(store_settings={**FAST, **AUTO_SPLIT})
    await cluster.start()
    order = list(range(6000))
    random.Random(5).shuffle(order)
    data: dict[bytes, bytes] = {}
    async with cluster.client(timeout=15.0) as client:
        with fail_after(120, "16 regions"):
            for i in range(0, len(order), 50):
                batch = [(b"auto/%05d" % n, b"%05d-" % n + b"v" * 150) for n in order[i : i + 50]]
                await client.batch_put(batch)
                data.update(batch)
                if len(await client.list_regions()) >= 16:
                    break
            else:
                raise AssertionError(f"{len(data)} keys written and still fewer than 16 regions")
    routes = await cluster.wait_region_table()
    assert len(routes) >= 16, len(routes)
    async with cluster.pd() as pd:
        asked = [op for op in await pd.list_operators() if op.kind == "split-region"]
    assert not asked, asked
    print(f"{len(routes)} regions after {len(data)} keys")
    await check_data(cluster, data, routes, every=10)


async def add_learner(cluster: Cluster, leader: Node, region_id: int, store: Node) -> Peer:
    """Add a learner on ``store`` through the leader's admin service (applied there when
    this returns); the new peer."""
    async with cluster.pd() as pd:
        peer = Peer((await pd.alloc_ids(1)).first, store.store_id, PeerRole.Learner)
    st = await cluster.region_status(leader, region_id)
    assert st is not None
    await cluster.admin(leader, AddPeer(peer), region_id, st.region.epoch)
    return peer


async def split_now(cluster: Cluster, leader: Node, region_id: int, key: bytes) -> list[Region]:
    """Split through the leader's admin service, for the epoch it has now."""
    st = await cluster.region_status(leader, region_id)
    assert st is not None
    result = await cluster.admin(leader, SplitRegion(key), region_id, st.region.epoch)
    assert isinstance(result, SplitResult), result
    return result.regions


async def test_a_split_while_a_new_learner_waits_for_its_snapshot(
    make_cluster: ClusterFactory,
) -> None:
    """Add a learner to a region with data and split the region before the learner caught
    up: first with the learner's store cut off (no snapshot can reach it before the split),
    then with nothing in the way (the split races the snapshot). Each new region inherits
    the learner; the learner's store ends up with an initialized replica of every region
    it has a peer in, holding the same data as the other replicas."""
    cluster = make_cluster(stores=5, store_settings=FAST, placement_settings=MANUAL)
    await cluster.start()
    data = dataset()
    await load(cluster, data)
    (route,) = await cluster.wait_region_table()
    region_id = route.region.id
    spares = [n for n in cluster.stores if not route.region.peer_on_store(n.store_id)]

    cut_off = spares[0]
    await cluster.partition(cut_off)
    leader, _ = await cluster.leader(region_id)
    await add_learner(cluster, leader, region_id, cut_off)
    regions = await split_now(cluster, leader, region_id, b"k0150")
    assert [g.start_key for g in regions] == [b"", b"k0150"], regions
    for g in regions:
        p = g.peer_on_store(cut_off.store_id)
        assert p is not None and p.role == PeerRole.Learner, g
    await cluster.heal()
    routes = await cluster.wait_region_table()
    assert all(r.region.peer_on_store(cut_off.store_id) for r in routes), routes
    content = await cluster.replicas_agree()
    assert {k: content.get(k) for k in data} == data

    racing = spares[1]
    leader, _ = await cluster.leader(region_id)
    await add_learner(cluster, leader, region_id, racing)
    before = await cluster.region_status(racing, region_id)
    await split_now(cluster, leader, region_id, b"k0225")
    print(f"the learner was {'initialized' if before else 'not initialized'} before the split")
    routes = await cluster.wait_region_table()
    assert len(routes) == 3 and boundaries(routes) == [b"k0150", b"k0225"], routes
    assert [bool(r.region.peer_on_store(racing.store_id)) for r in routes] == [False, True, True]
    content = await cluster.replicas_agree()
    assert {k: content.get(k) for k in data} == data


async def test_a_conf_change_racing_a_leader_change_converges(
    make_cluster: ClusterFactory,
) -> None:
    """Add a learner while the leadership moves: once with a transfer sent at the same time
    (the add may fail; it is retried until it applies), once with a kill -9 of the leader
    as soon as the add is acknowledged (the committed change survives in the new leader).
    Each time, the region converges to one membership that every store and placement
    agree on, and the learner holds the data; the killed store, restarted, rejoins it."""
    cluster = make_cluster(stores=4, store_settings=FAST, placement_settings=MANUAL)
    await cluster.start()
    data = dataset()
    await load(cluster, data)
    (route,) = await cluster.wait_region_table()
    await cluster.run_operator(ManualOperator.SplitRegion, route.region.id, split_key=b"k0150")
    routes = await cluster.wait_region_table()
    spare = next(n for n in cluster.stores if not routes[0].region.peer_on_store(n.store_id))

    # 1. AddPeer and TransferLeader to the leader at once.
    left = routes[0].region.id
    leader, _ = await cluster.leader(left)
    st = await cluster.region_status(leader, left)
    assert st is not None
    other = next(p for p in st.region.peers if p.store_id != leader.store_id)
    async with cluster.pd() as pd:
        learner = Peer((await pd.alloc_ids(1)).first, spare.store_id, PeerRole.Learner)
    answers: dict[str, object] = {}

    async def send(name: str, command: object) -> None:
        answers[name] = await cluster.admin_answer(leader, command, left, st.region.epoch)

    async with trio.open_nursery() as race:
        race.start_soon(send, "add", AddPeer(learner))
        race.start_soon(send, "transfer", TransferLeader(other))
    print("add and transfer answered", answers)
    for _attempt in range(5):
        routes = await cluster.wait_region_table()
        if routes[0].region.peer_on_store(spare.store_id) is not None:
            break
        now, _ = await cluster.leader(left)
        await add_learner(cluster, now, left, spare)
    else:
        raise AssertionError(f"the learner was never added: {routes[0]}")
    if answers["add"] == AdminOk():  # an acknowledged change is never lost
        assert routes[0].region.peer_on_store(spare.store_id) == learner, routes[0]

    # 2. AddPeer, then kill -9 the leader as soon as the add applied there.
    right = routes[1].region.id
    leader, term = await cluster.leader(right)
    learner = await add_learner(cluster, leader, right, spare)
    cluster.kill(leader)
    survivors = [n for n in cluster.stores if n is not leader]
    await cluster.leader(right, among=survivors, newer_than=term)
    routes = await cluster.wait_region_table()
    assert routes[1].region.peer_by_id(learner.id) == learner, routes[1]
    await cluster.restart(leader)
    routes = await cluster.wait_region_table()
    content = await cluster.replicas_agree()
    assert {k: content.get(k) for k in data} == data
