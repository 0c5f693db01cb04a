"""The client over real sockets and the real wire protocol: the real PlacementClient and
RpcConnection against the real PlacementServer and StoreServer, serving a fake cluster."""

from __future__ import annotations

import random

import pytest
import trio

from multiraft.client import Client, ClusterUnavailable, IndeterminateWrite
from multiraft.wire import Put, StaleCommand
from tests.client.fakes import CLUSTER_ID, FakeCluster, populate, serve_fake_cluster


async def start(
    nursery: trio.Nursery, cluster: FakeCluster, skip_stores: frozenset[int] = frozenset()
) -> str:
    address: str = await nursery.start(lambda task_status: serve_fake_cluster(
        cluster, skip_stores=skip_stores, task_status=task_status))  # fmt: skip
    return address


async def test_reads_and_writes_across_regions(nursery: trio.Nursery) -> None:
    cluster = FakeCluster()
    cluster.split(b"g")
    cluster.split(b"p")
    address = await start(nursery, cluster)
    async with Client(address, rng=random.Random(1)) as c:
        assert c.cluster_id == CLUSTER_ID
        await c.put(b"apple", b"1")
        await c.put(b"kiwi", b"2")
        await c.batch_put([(b"zebra", b"3"), (b"hat", b"4"), (b"banana", b"5")])
        assert await c.get(b"kiwi") == b"2"
        assert await c.cas(b"kiwi", b"2", b"22") == (True, b"2")
        assert await c.scan() == [
            (b"apple", b"1"), (b"banana", b"5"), (b"hat", b"4"), (b"kiwi", b"22"),
            (b"zebra", b"3"),
        ]  # fmt: skip
        assert await c.scan(b"b", b"q", 2) == [(b"banana", b"5"), (b"hat", b"4")]
        await c.delete(b"apple")
        assert await c.get(b"apple") is None
        stores = await c.list_stores()
        assert [s.id for s in stores] == [1, 2, 3]
        routes = await c.list_regions()
        assert [r.region.start_key for r in routes] == [b"", b"g", b"p"]
        assert c.statistics().connections == 1  # every leader is on store 1


async def test_redirects_and_epoch_changes_over_the_wire(nursery: trio.Nursery) -> None:
    cluster = FakeCluster()
    populate(cluster, [b"a", b"m", b"z"])
    address = await start(nursery, cluster)
    async with Client(address, rng=random.Random(2)) as c:
        assert await c.get(b"m") == b"v-m"
        cluster.freeze_placement()
        cluster.split(b"k")  # EpochNotMatch carries the new regions
        cluster.set_all_leaders(2)  # NotLeader carries the hint
        assert await c.scan() == [(b"a", b"v-a"), (b"m", b"v-m"), (b"z", b"v-z")]
        await c.put(b"q", b"new")
    assert cluster.data[b"q"] == b"new"
    assert cluster.ops_to()[-1] == "2:Put"


async def test_stale_command_over_the_wire_is_indeterminate(nursery: trio.Nursery) -> None:
    cluster = FakeCluster()
    address = await start(nursery, cluster)
    async with Client(address) as c:
        cluster.inject(StaleCommand(), op=Put)
        with pytest.raises(IndeterminateWrite):
            await c.put(b"a", b"1")


async def test_a_store_that_is_down(nursery: trio.Nursery) -> None:
    cluster = FakeCluster()
    cluster.freeze_placement()
    cluster.set_all_leaders(2)
    address = await start(nursery, cluster, skip_stores=frozenset({1}))
    async with Client(address, rng=random.Random(3)) as c:
        # Placement says store 1 leads; it refuses connections; store 2 answers.
        await c.put(b"a", b"1")
    assert cluster.ops_to() == ["2:Put"]


async def test_unreachable_placement() -> None:
    # A port that was just free: refused at once.
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(ClusterUnavailable) as info:
        async with Client(f"127.0.0.1:{port}", timeout=0.5):
            pass
    assert f"127.0.0.1:{port}" in str(info.value)
    with pytest.raises(ValueError):
        Client("no-port-here")
