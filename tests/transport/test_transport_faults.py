"""Fault injection: a blocked store's raft traffic is dropped both ways, and heals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import pytest
import trio

from multiraft.metrics import TransportMetrics
from multiraft.transport import (
    ConnectFailed,
    ConnectionLost,
    FaultInjector,
    RaftTransport,
    RpcConnection,
    StoreServer,
)
from multiraft.wire import (
    AdminOk,
    AdminRequest,
    InjectFaults,
    Internal,
    RaftEnvelope,
    SnapshotAckStatus,
    SnapshotChunk,
)
from regions.region import RegionEpoch
from tests.transport.transport_support import (
    CID,
    RecordingHandler,
    envelope,
    new_metrics,
    sample,
    serving,
    settle,
)


@dataclass
class Store:
    store_id: int
    handler: RecordingHandler
    server: StoreServer
    transport: RaftTransport
    faults: FaultInjector

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"


@asynccontextmanager
async def two_stores(
    metrics: TransportMetrics | None = None,
) -> AsyncIterator[tuple[Store, Store]]:
    """Stores 1 and 2, each with a server, a transport and a fault injector; ``metrics``
    are store 1's."""
    ports: dict[int, int] = {}

    async def resolve(store_id: int) -> str:
        return f"127.0.0.1:{ports[store_id]}"

    def ignore(store_id: int, dropped: list[RaftEnvelope]) -> None:
        pass

    stores = []
    async with AsyncExitStack() as stack:
        nursery = await stack.enter_async_context(trio.open_nursery())
        for sid in (1, 2):
            faults = FaultInjector()
            handler = RecordingHandler()
            m = metrics if sid == 1 else None
            server = await stack.enter_async_context(
                serving(handler, store_id=sid, faults=faults, metrics=m)
            )
            ports[sid] = server.port
            t = RaftTransport(sid, CID, resolve, ignore, faults=faults, metrics=m)
            await nursery.start(t.run)
            stores.append(Store(sid, handler, server, t, faults))
        yield stores[0], stores[1]
        nursery.cancel_scope.cancel()


def send(src: Store, dst: Store, n: int) -> bool:
    ok = src.transport.send(dst.store_id, envelope(n=n, from_store=src.store_id,
                                                   to_store=dst.store_id))  # fmt: skip
    src.transport.flush()
    return ok


async def inject(store: Store, blocked: list[int]) -> None:
    async with await RpcConnection.connect(store.address, cluster_id=CID, timeout=5) as rpc:
        resp = await rpc.admin(AdminRequest(1, 0, RegionEpoch(), InjectFaults(blocked)), timeout=5)
    assert resp.result == AdminOk()


def indexes(store: Store) -> list[int]:
    return [e.message.index for e in store.handler.envelopes]


async def test_blocking_a_store_drops_traffic_both_ways_until_healed() -> None:
    metrics, registry = new_metrics()
    async with two_stores(metrics) as (a, b):
        # Healthy: both directions deliver.
        assert send(a, b, 1) and send(b, a, 1)
        await b.handler.changes.wait_until(lambda: indexes(b) == [1])
        await a.handler.changes.wait_until(lambda: indexes(a) == [1])

        # Store 1 blocks store 2 (one admin command, on store 1 only).
        await inject(a, [2])
        assert a.faults.blocked_stores == {2}
        # a -> b: refused at the sender.
        assert not send(a, b, 2)
        assert a.transport.statistics().dropped_by_reason == {"fault_injected": 1}
        dropped = sample(registry, "multiraft_transport_messages_dropped_total",
                         reason="fault_injected")  # fmt: skip
        assert dropped == 1
        # b -> a: b sends, a drops it on arrival.
        assert send(b, a, 2)
        await settle()
        assert a.faults.dropped_inbound == 1
        assert indexes(a) == [1] and indexes(b) == [1]
        # Snapshots are cut too, both ways.
        with pytest.raises(ConnectFailed):
            await a.transport.send_snapshot(2, one_chunk_snapshot(), timeout=5)
        with pytest.raises(ConnectionLost):
            await b.transport.send_snapshot(1, one_chunk_snapshot(), timeout=5)
        assert a.faults.snapshots_refused == 2
        assert a.handler.snapshots == []

        # Heal: traffic flows again both ways.
        await inject(a, [])
        assert send(a, b, 3) and send(b, a, 3)
        await b.handler.changes.wait_until(lambda: indexes(b) == [1, 3])
        await a.handler.changes.wait_until(lambda: indexes(a) == [1, 3])
        stats = a.faults.statistics()
        assert (stats.dropped_outbound, stats.dropped_inbound) == (1, 1)


async def test_a_partition_is_both_stores_blocking_each_other() -> None:
    async with two_stores() as (a, b):
        await inject(a, [2])
        await inject(b, [1])
        assert not send(a, b, 1)
        assert not send(b, a, 1)
        await inject(a, [])
        # Still cut: b keeps blocking a.
        assert send(a, b, 2)
        await settle()
        assert b.faults.dropped_inbound == 1
        assert indexes(b) == []
        await inject(b, [])
        assert send(a, b, 3)
        await b.handler.changes.wait_until(lambda: indexes(b) == [3])


async def test_inject_faults_is_refused_without_fault_injection() -> None:
    metrics, registry = new_metrics()
    async with serving(RecordingHandler(), metrics=metrics) as server:
        rpc = await RpcConnection.connect(f"127.0.0.1:{server.port}", cluster_id=CID, timeout=5)
        resp = await rpc.admin(AdminRequest(4, 0, RegionEpoch(), InjectFaults([3])), timeout=5)
        await rpc.aclose()
    assert isinstance(resp.result, Internal)
    assert "fault injection is disabled" in resp.result.message
    assert sample(registry, "multiraft_transport_connection_errors_total", kind="protocol") == 0


def test_fault_injector_rules() -> None:
    f = FaultInjector([3])
    assert f.blocks(3) and not f.blocks(1)
    f.set_blocked([1, 2])
    assert f.blocked_stores == {1, 2}
    f.heal()
    assert not f.blocks(1)


async def one_chunk_snapshot() -> AsyncIterator[SnapshotChunk]:
    yield SnapshotChunk(1, 1, 0, b"data", True, envelope())


async def test_snapshot_between_healthy_stores() -> None:
    async with two_stores() as (a, b):
        ack = await a.transport.send_snapshot(2, one_chunk_snapshot(), timeout=5)
        assert ack.status == SnapshotAckStatus.Accepted
        assert [c.data for c in b.handler.snapshots[0]] == [b"data"]
