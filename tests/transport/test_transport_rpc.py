"""KV and admin requests over RpcConnection: multiplexing, out-of-order answers, deadlines."""

from __future__ import annotations

import pytest
import trio

from multiraft.transport import ConnectionLost, RpcConnection, RpcTimeout, ServerLimits
from multiraft.wire import (
    AdminOk,
    AdminRequest,
    GetResult,
    Internal,
    KvResponse,
    ServerIsBusy,
    StoreStatus,
)
from regions.region import RegionEpoch
from tests.transport.transport_support import (
    CID,
    RecordingHandler,
    get_request,
    new_metrics,
    sample,
    serving,
)


async def test_many_concurrent_requests_answered_out_of_order() -> None:
    n = 64
    handler = RecordingHandler(auto=False)
    async with serving(handler) as server:
        rpc = await RpcConnection.connect(f"127.0.0.1:{server.port}", cluster_id=CID, timeout=5)
        results: dict[int, KvResponse] = {}

        async def call(i: int) -> None:
            # Every caller uses request id 0: the connection multiplexes by its own ids.
            results[i] = await rpc.kv(get_request(b"key-%03d" % i, request_id=0), timeout=10)

        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(call, i)
            await handler.changes.wait_until(lambda: len(handler.kv_started) == n)
            assert rpc.statistics().calls_in_flight == n
            for i in reversed(range(n)):  # answer in the opposite order
                handler.release(b"key-%03d" % i)
        assert sorted(results) == list(range(n))
        for i, resp in results.items():
            assert resp == KvResponse(0, GetResult(b"key-%03d" % i))
        assert server.statistics().requests_served == n
        await rpc.aclose()


async def test_rpc_timeout_leaves_the_connection_usable() -> None:
    handler = RecordingHandler(auto=False)
    async with serving(handler) as server:
        rpc = await RpcConnection.connect(f"127.0.0.1:{server.port}", cluster_id=CID, timeout=5)
        with pytest.raises(RpcTimeout):
            await rpc.kv(get_request(b"slow"), timeout=0.05)
        assert rpc.statistics().timeouts == 1
        assert not rpc.closed
        handler.release(b"fast")
        resp = await rpc.kv(get_request(b"fast", request_id=3), timeout=5)
        assert resp == KvResponse(3, GetResult(b"fast"))
        # The slow answer still comes, and is discarded.
        handler.release(b"slow")
        with trio.fail_after(5):
            while rpc.statistics().late_responses == 0:
                await rpc.kv(get_request(b"fast"), timeout=5)  # a round trip drains the socket
        await rpc.aclose()


async def test_requests_over_the_limit_get_server_is_busy() -> None:
    handler = RecordingHandler(auto=False)
    limits = ServerLimits(max_inflight_requests=2)
    async with serving(handler, limits=limits) as server:
        rpc = await RpcConnection.connect(f"127.0.0.1:{server.port}", cluster_id=CID, timeout=5)
        answers: list[KvResponse] = []

        async def call(key: bytes) -> None:
            answers.append(await rpc.kv(get_request(key), timeout=10))

        async with trio.open_nursery() as nursery:
            for key in (b"a", b"b"):
                nursery.start_soon(call, key)
            await handler.changes.wait_until(lambda: len(handler.kv_started) == 2)
            resp = await rpc.kv(get_request(b"c"), timeout=5)
            assert isinstance(resp.result, ServerIsBusy)
            handler.release(b"a")
            handler.release(b"b")
        expected = [KvResponse(0, GetResult(b"a")), KvResponse(0, GetResult(b"b"))]
        assert sorted(answers, key=repr) == expected
        stats = server.statistics()
        assert (stats.requests_busy, stats.requests_served, stats.requests_in_flight) == (1, 2, 0)
        await rpc.aclose()


async def test_a_handler_exception_becomes_an_internal_error() -> None:
    async with serving(RecordingHandler()) as server:
        rpc = await RpcConnection.connect(f"127.0.0.1:{server.port}", cluster_id=CID, timeout=5)
        resp = await rpc.kv(get_request(b"boom"), timeout=5)
        assert isinstance(resp.result, Internal)
        assert "handler bug" in resp.result.message
        assert (await rpc.kv(get_request(b"ok"), timeout=5)).result == GetResult(b"ok")
        await rpc.aclose()


async def test_admin_requests() -> None:
    async with (
        serving(RecordingHandler()) as server,
        await RpcConnection.connect(f"127.0.0.1:{server.port}", cluster_id=CID, timeout=5) as rpc,
    ):
        resp = await rpc.admin(AdminRequest(12, 0, RegionEpoch(), StoreStatus()), timeout=5)
        assert resp.request_id == 12
        assert resp.result == AdminOk()


async def test_aclose_fails_waiting_calls_and_later_ones() -> None:
    handler = RecordingHandler(auto=False)
    async with serving(handler) as server:
        rpc = await RpcConnection.connect(f"127.0.0.1:{server.port}", cluster_id=CID, timeout=5)
        failed = trio.Event()

        async def waiting_call() -> None:
            with pytest.raises(ConnectionLost):
                await rpc.kv(get_request(b"never"), timeout=10)
            failed.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiting_call)
            await handler.changes.wait_until(lambda: handler.kv_started == [b"never"])
            await rpc.aclose()
            with trio.fail_after(5):
                await failed.wait()
        assert rpc.closed
        with pytest.raises(ConnectionLost):
            await rpc.kv(get_request(b"x"), timeout=5)
        await rpc.aclose()  # idempotent


async def test_the_store_going_away_fails_pending_calls_with_connection_lost() -> None:
    handler = RecordingHandler(auto=False)
    metrics, registry = new_metrics()
    async with trio.open_nursery() as outer:
        server_scope = trio.CancelScope()

        async def run_server(task_status: trio.TaskStatus[int]) -> None:
            with server_scope:
                async with serving(handler, metrics=metrics) as server:
                    task_status.started(server.port)
                    await trio.sleep_forever()

        port = await outer.start(run_server)
        rpc = await RpcConnection.connect(f"127.0.0.1:{port}", cluster_id=CID, timeout=5)
        lost = trio.Event()

        async def waiting_call() -> None:
            with pytest.raises(ConnectionLost):
                await rpc.kv(get_request(b"pending"), timeout=10)
            lost.set()

        outer.start_soon(waiting_call)
        await handler.changes.wait_until(lambda: handler.kv_started == [b"pending"])
        server_scope.cancel()
        with trio.fail_after(5):
            await lost.wait()
        assert rpc.closed
        assert sample(registry, "multiraft_transport_frames_received_total") >= 2
        await rpc.aclose()
