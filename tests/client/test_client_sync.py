"""SyncClient: the blocking wrapper, in memory and over sockets (a cluster in a thread)."""

from __future__ import annotations

import threading

import pytest

from multiraft.client import ClusterUnavailable, IndeterminateWrite, SyncClient
from multiraft.wire import Put, StaleCommand
from tests.client.fakes import BackgroundCluster, FakeCluster, FakeNetwork, FakePlacement


def test_sync_client_in_memory() -> None:
    cluster = FakeCluster()
    cluster.split(b"m")
    placement, network = FakePlacement(cluster), FakeNetwork(cluster)
    with SyncClient("fake:1", placement=placement, connect_store=network.connect) as c:
        c.put(b"a", b"1")
        c.batch_put([(b"x", b"2"), (b"b", b"3")])
        assert c.get(b"a") == b"1"
        assert c.cas(b"a", b"1", b"9") == (True, b"1")
        assert c.scan() == [(b"a", b"9"), (b"b", b"3"), (b"x", b"2")]
        c.delete(b"x")
        assert c.get(b"x") is None
        assert c.locate(b"z").region.start_key == b"m"
        assert [s.id for s in c.list_stores()] == [1, 2, 3]
        assert len(c.list_regions()) == 2
        assert c.statistics().calls >= 7
        # Errors come back as raised, with their flags.
        cluster.inject(StaleCommand(), op=Put)
        with pytest.raises(IndeterminateWrite) as info:
            c.put(b"a", b"2")
        assert not info.value.definite
    with pytest.raises(RuntimeError):
        c.get(b"a")  # closed
    c.close()  # idempotent


def test_sync_client_from_several_threads_over_sockets() -> None:
    cluster = FakeCluster()
    with BackgroundCluster(cluster) as address, SyncClient(address) as c:
        errors: list[BaseException] = []

        def writer(n: int) -> None:
            try:
                for i in range(20):
                    c.put(b"t%d-%02d" % (n, i), b"v")
            except BaseException as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(c.scan(b"t", b"u", 1000)) == 80


def test_sync_client_unreachable_placement() -> None:
    placement = FakePlacement(FakeCluster())
    placement.unavailable = True
    client = SyncClient("fake:1", placement=placement, timeout=1.0)
    with pytest.raises(ClusterUnavailable):
        client.open()
    with pytest.raises(RuntimeError):
        client.get(b"a")
    with pytest.raises(ValueError):
        SyncClient("not an address")
