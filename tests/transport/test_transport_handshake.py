"""The Hello handshake: both ways, cluster id checks, ErrorNotice before closing."""

from __future__ import annotations

from functools import partial

import pytest
import trio
import trio.testing

from multiraft.transport import (
    ConnectFailed,
    FramedConnection,
    HandshakeFailed,
    RpcConnection,
    connect,
    parse_address,
)
from multiraft.wire import ErrorCode, FrameKind, Hello, decode_hello
from tests.transport.transport_support import (
    CID,
    OTHER_CID,
    RawClient,
    RecordingHandler,
    get_request,
    hello_frame,
    new_metrics,
    raw_frame,
    sample,
    serving,
)


async def test_handshake_exchanges_hellos() -> None:
    async with serving(RecordingHandler(), store_id=7) as server:
        address = f"127.0.0.1:{server.port}"
        conn = await connect(address, Hello(3, CID, "127.0.0.1:1"), timeout=5)
        assert conn.peer == Hello(7, CID, address)
        assert conn.cluster_id == CID
        await conn.aclose()
        rpc = await RpcConnection.connect(address, cluster_id=CID, timeout=5)
        assert rpc.peer.store_id == 7
        assert (await rpc.kv(get_request(b"k"), timeout=5)).result.value == b"k"  # type: ignore[union-attr]
        await rpc.aclose()


async def test_client_without_cluster_id_learns_it_from_the_server() -> None:
    async with serving(RecordingHandler()) as server:
        rpc = await RpcConnection.connect(f"127.0.0.1:{server.port}", cluster_id=0, timeout=5)
        assert rpc.cluster_id == CID
        # Frames after the handshake carry the learnt id, so the server accepts them.
        resp = await rpc.kv(get_request(b"a", request_id=99), timeout=5)
        assert resp.request_id == 99
        await rpc.aclose()


async def test_wrong_cluster_id_gets_an_error_notice_and_the_connection_closes() -> None:
    metrics, registry = new_metrics()
    async with serving(RecordingHandler(), metrics=metrics) as server:
        raw = await RawClient.open(server.port, cluster_id=OTHER_CID)
        await raw.send(hello_frame(OTHER_CID))
        notice = await raw.expect_notice_then_close()
        assert notice.code == ErrorCode.WrongCluster
        assert f"{CID:#x}" in notice.message
        await raw.aclose()

        with pytest.raises(HandshakeFailed) as info:
            await RpcConnection.connect(f"127.0.0.1:{server.port}", cluster_id=OTHER_CID, timeout=5)
        assert info.value.notice is not None
        assert info.value.notice.code == ErrorCode.WrongCluster

        assert server.statistics().connection_errors["protocol"] == 2
        errors = sample(registry, "multiraft_transport_connection_errors_total", kind="protocol")
        assert errors == 2
        # ... and the server still serves the right cluster.
        rpc = await RpcConnection.connect(f"127.0.0.1:{server.port}", cluster_id=CID, timeout=5)
        await rpc.aclose()


async def test_wrong_cluster_id_inside_a_hello_with_header_zero_is_refused() -> None:
    async with serving(RecordingHandler()) as server:
        raw = await RawClient.open(server.port, cluster_id=OTHER_CID)
        await raw.send(hello_frame(OTHER_CID, header_cluster_id=0))
        notice = await raw.expect_notice_then_close()
        assert notice.code == ErrorCode.WrongCluster


async def test_first_frame_must_be_a_hello() -> None:
    async with serving(RecordingHandler()) as server:
        raw = await RawClient.open(server.port)
        await raw.send(raw_frame(FrameKind.KV_REQUEST, b"\x80", cluster_id=CID))
        notice = await raw.expect_notice_then_close()
        assert notice.code == ErrorCode.Protocol
        assert "HELLO" in notice.message
        assert server.statistics().connection_errors["protocol"] == 1


async def test_server_hello_carries_store_id_and_address() -> None:
    async with serving(RecordingHandler(), store_id=5) as server:
        raw = await RawClient.open(server.port)
        frame = await raw.handshake()
        assert frame.cluster_id == CID
        assert decode_hello(frame.payload) == Hello(5, CID, f"127.0.0.1:{server.port}")
        await raw.aclose()


async def test_handshake_timeout_when_the_server_never_answers() -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, silent, 0)
        port = listeners[0].socket.getsockname()[1]
        with pytest.raises(HandshakeFailed) as info:
            await connect(f"127.0.0.1:{port}", Hello(0, CID, ""), timeout=0.2)
        assert info.value.timed_out
        nursery.cancel_scope.cancel()


async def test_server_drops_a_client_that_sends_no_hello() -> None:
    from multiraft.transport import ServerLimits

    async with serving(RecordingHandler(), limits=ServerLimits(handshake_timeout=0.1)) as server:
        raw = await RawClient.open(server.port)
        await raw.expect_closed()
        assert server.statistics().connection_errors["timeout"] == 1


async def test_connect_failures() -> None:
    with pytest.raises(ConnectFailed):
        await connect("not-an-address", Hello(0, CID, ""), timeout=1)
    # A port nothing listens on: bind one, close it, connect to it.
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    await listeners[0].aclose()
    with pytest.raises(ConnectFailed):
        await connect(f"127.0.0.1:{port}", Hello(0, CID, ""), timeout=1)


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:20160") == ("127.0.0.1", 20160)
    assert parse_address("[::1]:9") == ("::1", 9)
    assert parse_address("db-1.local:1") == ("db-1.local", 1)
    for bad in ("", "host", ":80", "host:", "host:0", "host:65536", "host:x"):
        with pytest.raises(ValueError):
            parse_address(bad)


async def test_framed_connection_over_a_memory_stream() -> None:
    """The connection is stream-agnostic: both handshakes over an in-memory pair."""
    a, b = trio.testing.memory_stream_pair()
    client = FramedConnection(a, cluster_id=0)
    server = FramedConnection(b, cluster_id=CID)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(server.server_handshake, Hello(2, CID, "s"), timeout=5))
        peer = await client.client_handshake(Hello(0, 0, "c"), timeout=5)
    assert peer == Hello(2, CID, "s")
    assert client.cluster_id == CID
    assert server.peer == Hello(0, 0, "c")
