"""The placement service over real TCP on 127.0.0.1: the client, restarts, and hostile peers."""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from prometheus_client import CollectorRegistry

from multiraft.placement import (
    PlacementClient,
    PlacementEndpoints,
    PlacementErrorCode,
    PlacementRequestError,
    PlacementServerLimits,
    PlacementUnavailable,
    StoreInfo,
    StoreStats,
    WrongCluster,
    run_placement,
)
from multiraft.settings import PlacementConfig
from multiraft.wire import (
    MAGIC,
    WIRE_VERSION,
    ErrorCode,
    ErrorNotice,
    FrameDecoder,
    FrameKind,
    Hello,
    decode_payload,
    encode_frame,
    encode_payload,
)
from multiraft.wire.placement_messages import GetClusterInfo, PlacementRequest
from regions.region import Peer, Region, RegionEpoch

TIMEOUT = 10.0


@asynccontextmanager
async def placement(
    data_dir: Path,
    listen: str = "127.0.0.1:0",
    *,
    registry: CollectorRegistry | None = None,
    limits: PlacementServerLimits | None = None,
) -> AsyncIterator[PlacementEndpoints]:
    """A running service in a nursery of its own; stopped (cancelled) on exit."""
    config = PlacementConfig(listen=listen, metrics_listen="127.0.0.1:0", data_dir=data_dir)
    async with trio.open_nursery() as nursery:
        endpoints: PlacementEndpoints = await nursery.start(
            lambda task_status: run_placement(
                config,
                registry=registry or CollectorRegistry(),
                limits=limits,
                task_status=task_status,
            )
        )
        yield endpoints
        nursery.cancel_scope.cancel()


async def register(pd: PlacementClient, n: int) -> list[int]:
    ids = []
    for i in range(n):
        sid = (await pd.alloc_ids(1)).first
        await pd.put_store(StoreInfo(sid, f"127.0.0.1:{21000 + i}", f"127.0.0.1:{22000 + i}"))
        ids.append(sid)
    return ids


async def http_get(address: str, path: str) -> bytes:
    host, port = address.rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        out = b""
        while chunk := await stream.receive_some(65536):
            out += chunk
    return out


async def test_every_client_call_against_a_real_service(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    with trio.fail_after(TIMEOUT):
        async with placement(tmp_path, registry=registry) as ep, PlacementClient(ep.address) as pd:
            assert pd.cluster_id == 0
            info = await pd.cluster_info()
            assert info.cluster_id == ep.cluster_id == pd.cluster_id and not info.bootstrapped
            with pytest.raises(PlacementRequestError) as err:
                await pd.get_region(b"k")
            assert err.value.code == PlacementErrorCode.NotBootstrapped
            with pytest.raises(PlacementRequestError) as err:
                await pd.get_store(12345)
            assert err.value.code == PlacementErrorCode.StoreNotFound

            a, b, c = await register(pd, 3)
            assert [s.id for s in await pd.get_all_stores()] == [a, b, c]
            assert (await pd.get_store(b)).metrics_address == "127.0.0.1:22001"
            assert (await pd.cluster_info()).bootstrapped
            ids = await pd.alloc_ids(5)
            assert ids.count == 5 and ids.first > c

            [first] = (await pd.store_heartbeat(StoreStats(a, region_count=0))).bootstrap_regions
            assert [p.store_id for p in first.peers] == [a, b, c]
            route = await pd.get_region(b"any key")
            assert route is not None and route.region == first and route.leader is None
            assert await pd.get_region_by_id(first.id) == route
            assert await pd.get_region_by_id(first.id + 1000) is None

            await pd.region_heartbeat(first, first.peers[1], 6, approximate_size=1 << 20)
            route = await pd.get_region(b"")
            assert route is not None and route.leader == first.peers[1]
            with pytest.raises(PlacementRequestError) as err:
                await pd.region_heartbeat(first, first.peers[0], 5)  # an older term
            assert err.value.code == PlacementErrorCode.StaleEpoch

            # A split, reported by both halves.
            left = Region(ids.first, b"", b"m", RegionEpoch(1, 2), [Peer(ids.first + 1, a)])
            right = Region(first.id, b"m", b"", RegionEpoch(1, 2), first.peers)
            await pd.region_heartbeat(left, left.peers[0], 6)
            await pd.region_heartbeat(right, right.peers[0], 6)
            routes = await pd.scan_regions(b"", b"")
            assert [(r.region.id, r.region.start_key) for r in routes] == [
                (left.id, b""),
                (first.id, b"m"),
            ]
            assert [r.region.id for r in await pd.scan_regions(b"", b"", 1)] == [left.id]
            route = await pd.get_region(b"m")
            assert route is not None and route.region == right

            # /metrics serves the placement gauges.
            body = await http_get(ep.metrics_address, "/metrics")
            assert b"200 OK" in body.split(b"\r\n", 1)[0]
            assert b"multiraft_placement_regions 2.0" in body
            assert b'multiraft_placement_stores{state="up"} 3.0' in body
            assert b'multiraft_placement_heartbeats_total{kind="region"} 3.0' in body


async def test_a_restart_over_the_same_data_dir_keeps_everything(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with placement(tmp_path) as ep, PlacementClient(ep.address) as pd:
            stores = await register(pd, 3)
            [first] = (await pd.store_heartbeat(StoreStats(stores[0]))).bootstrap_regions
            await pd.region_heartbeat(first, first.peers[0], 6, pending_peers=[first.peers[2]])
            last_id = (await pd.alloc_ids(3)).first + 2
            cluster_id = pd.cluster_id
            port = ep.port

        # Same port, new service over the same directory: the same client object reconnects.
        pd = PlacementClient(ep.address, cluster_id=cluster_id)
        async with placement(tmp_path, f"127.0.0.1:{port}") as ep2, pd:
            assert ep2.cluster_id == cluster_id
            assert (await pd.cluster_info()).bootstrapped
            assert [s.id for s in await pd.get_all_stores()] == stores
            route = await pd.get_region(b"k")
            assert route is not None and route.region == first
            assert (await pd.alloc_ids(1)).first > last_id  # never reused
            # Store c still has not confirmed the first region: it still gets it.
            reply = await pd.store_heartbeat(StoreStats(stores[2]))
            assert reply.bootstrap_regions == [first]
            assert (await pd.store_heartbeat(StoreStats(stores[0]))).bootstrap_regions == []
            # A stale report is still stale after the restart (epochs are persisted).
            await pd.region_heartbeat(
                Region(first.id, b"", b"", RegionEpoch(2, 1), first.peers), first.peers[0], 7
            )
            with pytest.raises(PlacementRequestError) as err:
                await pd.region_heartbeat(first, first.peers[0], 9)
            assert err.value.code == PlacementErrorCode.StaleEpoch

        # A client that outlives the service is told so, within its deadline.
        with pytest.raises(PlacementUnavailable, match=ep.address):
            await PlacementClient(ep.address, timeout=0.3).cluster_info()


async def test_concurrent_clients_get_distinct_ids(tmp_path: Path) -> None:
    got: list[range] = []
    with trio.fail_after(TIMEOUT):
        async with placement(tmp_path) as ep:

            async def worker(shared: PlacementClient) -> None:
                async with PlacementClient(ep.address) as own:
                    for i in range(10):
                        pd = own if i % 2 else shared
                        ids = await pd.alloc_ids(i + 1)
                        got.append(ids.range())

            async with PlacementClient(ep.address) as shared, trio.open_nursery() as nursery:
                for _ in range(8):
                    nursery.start_soon(worker, shared)
    flat = [i for r in got for i in r]
    assert len(flat) == len(set(flat)) == 8 * sum(range(1, 11))


async def test_wrong_cluster_and_unreachable_clients_fail_clearly(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with placement(tmp_path) as ep:
            wrong = PlacementClient(ep.address, cluster_id=ep.cluster_id ^ 1)
            with pytest.raises(WrongCluster, match="not in cluster"):
                await wrong.cluster_info()
            async with PlacementClient(ep.address) as pd:
                assert (await pd.cluster_info()).cluster_id == ep.cluster_id
        with socket.socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            free = s.getsockname()[1]
        pd = PlacementClient(f"127.0.0.1:{free}", timeout=0.3)
        with pytest.raises(PlacementUnavailable, match=f"127.0.0.1:{free}"):
            await pd.alloc_ids(1)
        await pd.aclose()
        with pytest.raises(PlacementUnavailable, match="closed"):
            await pd.alloc_ids(1)
    with pytest.raises(ValueError):
        PlacementClient("no port")


# -- hostile peers ----------------------------------------------------------------------------


async def exchange(address: str, data: bytes, cluster_id: int) -> list[object]:
    """Send ``data`` on a fresh connection; return what the service sends until it closes."""
    host, port = address.rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    got = b""
    async with stream:
        try:
            await stream.send_all(data)
            await stream.send_eof()  # we are done: a well-behaved service answers, then closes
        except trio.BrokenResourceError:
            pass  # closed on us mid-send: what it said is still readable
        try:
            while chunk := await stream.receive_some(65536):
                got += chunk
        except trio.BrokenResourceError:
            pass
    dec = FrameDecoder(cluster_id)
    dec.feed(got)
    dec.feed_eof()
    return [decode_payload(f.kind, f.payload) for f in dec]


def hello(cluster_id: int) -> bytes:
    kind, payload = encode_payload(Hello(0, cluster_id, ""))
    return encode_frame(kind, cluster_id, payload)


async def test_bad_input_closes_only_that_connection(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with placement(tmp_path) as ep, PlacementClient(ep.address) as pd:
            cid = (await pd.cluster_info()).cluster_id
            oversized = struct.pack(">2sBBQII", MAGIC, WIRE_VERSION, FrameKind.PLACEMENT_REQUEST,
                                    cid, 2**32 - 1, 0)  # fmt: skip
            kv_frame = encode_frame(FrameKind.KV_REQUEST, cid, b"\x80")
            bad_payload = encode_frame(FrameKind.PLACEMENT_REQUEST, cid, b"\x83\x01\x63\x00")
            cases = [
                (b"GET / HTTP/1.1\r\n\r\n" + bytes(range(256)), cid, ErrorCode.Protocol),
                (hello(0) + oversized, cid, ErrorCode.Protocol),
                (hello(cid) + oversized + b"\x00" * 1000, cid, ErrorCode.Protocol),
                (hello(cid ^ 1), cid ^ 1, ErrorCode.WrongCluster),
                (encode_frame(FrameKind.PLACEMENT_REQUEST, cid, b""), cid, ErrorCode.Protocol),
                (hello(0) + kv_frame, cid, ErrorCode.Protocol),
                (hello(0) + bad_payload, cid, ErrorCode.Protocol),
            ]
            for data, expect_cid, code in cases:
                frames = await exchange(ep.address, data, expect_cid)
                notices = [f for f in frames if isinstance(f, ErrorNotice)]
                assert [n.code for n in notices] == [code], (data[:40], frames)
                # ...and the service still answers everyone else, on their old connection.
                assert (await pd.cluster_info()).cluster_id == cid
                async with PlacementClient(ep.address) as fresh:
                    assert (await fresh.alloc_ids(1)).count == 1

            # A well-behaved raw connection gets its Hello and its answer, in order.
            kind, payload = encode_payload(PlacementRequest(77, GetClusterInfo()))
            frames = await exchange(ep.address, hello(0) + encode_frame(kind, cid, payload), cid)
            assert isinstance(frames[0], Hello) and frames[0].cluster_id == cid
            assert frames[0].address == ep.address
            assert getattr(frames[1], "request_id", None) == 77


async def test_a_trickled_frame_times_out_alone(tmp_path: Path) -> None:
    limits = PlacementServerLimits(frame_timeout=0.2, handshake_timeout=0.5)
    with trio.fail_after(TIMEOUT):
        async with placement(tmp_path, limits=limits) as ep, PlacementClient(ep.address) as pd:
            cid = (await pd.cluster_info()).cluster_id
            host, port = ep.address.rsplit(":", 1)
            stream = await trio.open_tcp_stream(host, int(port))
            async with stream:
                request = encode_frame(FrameKind.PLACEMENT_REQUEST, cid, b"\x82\x01\x01")
                await stream.send_all(hello(cid) + request[:21])  # the header and one byte
                # The service closes the stuck connection by itself (after its notice).
                data = b""
                while chunk := await stream.receive_some(65536):
                    data += chunk
            dec = FrameDecoder(cid)
            dec.feed(data)
            assert [f.kind for f in dec] == [FrameKind.HELLO, FrameKind.ERROR]
            assert (await pd.alloc_ids(1)).count == 1
