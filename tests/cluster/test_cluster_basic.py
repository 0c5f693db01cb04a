"""A real cluster (placement + 3 store processes): reads, writes and scans through the client,
the stores' /metrics, and hostile input to a running store."""

from __future__ import annotations

import dataclasses
import itertools
import struct
import urllib.request
import zlib

import pytest
import trio

from multiraft.client import SyncClient
from multiraft.raft import Message, MessageType
from multiraft.transport import HandshakeFailed, connect
from multiraft.wire import (
    MAGIC,
    WIRE_VERSION,
    EpochNotMatch,
    ErrorCode,
    FrameKind,
    Get,
    Hello,
    Put,
    RaftBatch,
    RaftEnvelope,
    RegionNotFound,
)
from multiraft.wire.placement_messages import RegionRoute
from regions.region import Peer, RegionEpoch
from tests.cluster.harness import Cluster, Node, fail_after

pytestmark = pytest.mark.slow


async def test_reads_writes_and_scans(cluster: Cluster) -> None:
    await cluster.start()
    async with cluster.client() as client:
        assert await client.get(b"missing") is None
        await client.put(b"k1", b"v1")
        assert await client.get(b"k1") == b"v1"
        await client.put(b"k1", b"v1b")
        assert await client.get(b"k1") == b"v1b"
        await client.delete(b"k1")
        assert await client.get(b"k1") is None
        assert await client.cas(b"c", None, b"1") == (True, None)
        assert await client.cas(b"c", None, b"2") == (False, b"1")
        assert await client.cas(b"c", b"1", b"2") == (True, b"1")
        assert await client.get(b"c") == b"2"

        # Keys on both sides of every byte boundary a future split could pick.
        pairs = [(bytes([b]) + b"/key%03d" % i, b"value%d" % i)
                 for b in (0x01, 0x41, 0x61, 0x7F, 0xFE) for i in range(20)]  # fmt: skip
        await client.batch_put(pairs)
        expected = sorted([*pairs, (b"c", b"2")])
        got = await client.scan(b"", b"", 1000)
        assert [(k, v) for k, v in got if not k.startswith(b"\x00")] == expected
        # Bounded and limited scans, in key order, whatever regions they cross.
        got = await client.scan(b"A", b"\x7f", 1000)
        assert got == [p for p in expected if b"A" <= p[0] < b"\x7f"]
        got = await client.scan(b"\x01/key010", b"", 7)
        assert got == [p for p in expected if p[0] >= b"\x01/key010"][:7]
        routes = await client.list_regions()
        assert routes, "placement knows no region"
        assert routes[0].region.start_key == b"" and routes[-1].region.end_key == b""
        for left, right in itertools.pairwise(routes):
            assert left.region.end_key == right.region.start_key
        stores = await client.list_stores()
        assert sorted(s.id for s in stores) == sorted(n.store_id for n in cluster.stores)

    # The blocking client, from a worker thread (as a script would use it).
    def script() -> bytes | None:
        with SyncClient(cluster.placement_address, timeout=5.0) as c:
            c.put(b"sync", b"yes")
            return c.get(b"sync")

    assert await trio.to_thread.run_sync(script) == b"yes"

    # Every process serves /metrics (docs/metrics.md), with live figures.
    for node in cluster.nodes:
        url = f"http://{node.spec.metrics_address}/metrics"
        text = await trio.to_thread.run_sync(_fetch, url)
        if node is cluster.placement:
            assert _value(text, "multiraft_placement_stores") == 3, url
        else:
            assert _value(text, "multiraft_raft_ready_rounds_total") > 0, url
            assert "multiraft_store_regions{" in text, url


def _value(text: str, name: str) -> float:
    """The sum of a metric's samples in a Prometheus text page (fails if it has none)."""
    samples = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith((name + " ", name + "{"))]  # fmt: skip
    assert samples, f"no {name} in the page"
    return sum(samples)


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        body: bytes = resp.read()
    return body.decode()


async def _closed_by_server(stream: trio.SocketStream, timeout: float = 10.0) -> bytes:  # noqa: ASYNC109
    """Read until the server closes the connection; what it sent (an ErrorNotice frame, maybe)."""
    got = b""
    with fail_after(timeout, "the store to close a connection that sent bad input"):
        while True:
            try:
                data = await stream.receive_some(65536)
            except trio.BrokenResourceError:  # reset by the server
                return got
            if not data:
                return got
            got += data


async def _raw(node: Node) -> trio.SocketStream:
    host, port = node.address.rsplit(":", 1)
    return await trio.open_tcp_stream(host, int(port))


async def _still_serving(cluster: Cluster, tag: bytes) -> None:
    """Every store process is alive, and a write and a read go through the client."""
    cluster.check_alive()
    async with cluster.client(timeout=10.0) as client:
        await client.put(b"after/" + tag, tag)
        assert await client.get(b"after/" + tag) == tag


async def test_bad_input_to_a_running_store(cluster: Cluster) -> None:
    """reliability-anchors.md §7: garbage, an oversized length prefix, a wrong cluster id, and
    messages for a region the store does not have each cost their own connection at most;
    the store keeps serving everyone else."""
    await cluster.start()
    route = await cluster.route()
    target = cluster.stores[0]

    # 1. Garbage bytes instead of a frame: the connection is closed.
    stream = await _raw(target)
    await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)) * 4)
    await _closed_by_server(stream)
    await stream.aclose()
    await _still_serving(cluster, b"garbage")

    # 2. A well-formed header announcing a 4 GiB payload: refused from the header alone,
    #    without waiting for (or allocating) the body.
    stream = await _raw(target)
    prefix = struct.pack(">2sBBQI", MAGIC, WIRE_VERSION, FrameKind.HELLO, 0, 2**32 - 1)
    header = prefix + zlib.crc32(prefix).to_bytes(4, "big")
    await stream.send_all(header + b"\0" * 100)
    await _closed_by_server(stream, timeout=5.0)
    await stream.aclose()
    await _still_serving(cluster, b"oversized")

    # 3. A Hello from another cluster: refused with an ErrorNotice saying so.
    wrong = cluster.cluster_id ^ 0x5A5A
    with pytest.raises(HandshakeFailed) as info:
        await connect(target.address, Hello(0, wrong, ""), timeout=5.0)
    assert info.value.notice is not None, info.value
    assert info.value.notice.code == ErrorCode.WrongCluster, info.value.notice
    await _still_serving(cluster, b"wrong-cluster")

    # 4. A raft batch, from a store id nobody knows, for a region nobody has: dropped. The
    #    first heartbeat of an unknown region may create a replica only for a range that
    #    overlaps none of the store's regions; this one overlaps the whole key space.
    conn = await connect(target.address, Hello(999, cluster.cluster_id, "127.0.0.1:9"),
                         timeout=5.0)  # fmt: skip
    ghost = 999_999
    batch = RaftBatch(999, [
        RaftEnvelope(ghost, Peer(1001, 999), Peer(1002, target.store_id), RegionEpoch(1, 1),
                     Message(MessageType.MsgHeartbeat, to=1002, from_=1001, term=7)),
        RaftEnvelope(ghost, Peer(1001, 999), Peer(1002, target.store_id), RegionEpoch(1, 1),
                     Message(MessageType.MsgAppend, to=1002, from_=1001, term=7, index=5,
                             log_term=5)),
        RaftEnvelope(route.region.id, Peer(1001, 999), Peer(1002, target.store_id),
                     RegionEpoch(1, 1), Message(MessageType.MsgRequestVote, to=1002,
                                                from_=1001, term=10**6, index=10**6)),
    ])  # fmt: skip
    await conn.send(batch, timeout=5.0)
    await conn.aclose()
    await _still_serving(cluster, b"ghost-batch")
    assert await cluster.region_status(target, ghost) is None, "a ghost region was created"
    # The vote for a real region from a peer that is not a member did not disrupt it: no
    # store moved to the huge term.
    for n in cluster.stores:
        st = await cluster.region_status(n, route.region.id)
        assert st is not None and st.term < 10**6, st

    # 5. KV requests for a region the store does not have, and with a stale epoch.
    ghost_route = RegionRoute(dataclasses.replace(route.region, id=ghost), None)
    resp = await cluster.kv(target, ghost_route, Put(b"x", b"y"), timeout=5.0)
    assert resp.result == RegionNotFound(ghost), resp
    resp = await cluster.kv(target, ghost_route, Get(b"x"), timeout=5.0)
    assert resp.result == RegionNotFound(ghost), resp
    stale = RegionRoute(dataclasses.replace(route.region, epoch=RegionEpoch(0, 0)), None)
    leader, _ = await cluster.leader(route.region.id)  # a follower answers NotLeader first
    resp = await cluster.kv(leader, stale, Put(b"x", b"y"), timeout=5.0)
    assert isinstance(resp.result, EpochNotMatch), resp
    assert [r.id for r in resp.result.current_regions] == [route.region.id]
    await _still_serving(cluster, b"unknown-region")

    # Nothing above wrote anything.
    async with cluster.client() as client:
        assert await client.get(b"x") is None
