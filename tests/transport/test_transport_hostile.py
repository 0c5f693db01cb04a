"""Hostile and broken peers (reliability-anchors.md section 7): each costs only its own
connection; the server answers an ErrorNotice where it can, counts the error, and keeps
serving the connections it already had and new ones."""

from __future__ import annotations

import tracemalloc
from dataclasses import dataclass

import pytest
import trio
import trio.testing

from multiraft.transport import RpcConnection, ServerLimits
from multiraft.wire import (
    ErrorCode,
    FrameKind,
    GetResult,
    RaftBatch,
    encode_frame,
    encode_kv_request,
    encode_raft_batch,
)
from tests.transport.transport_support import (
    CID,
    RawClient,
    RecordingHandler,
    envelope,
    get_request,
    new_metrics,
    raw_frame,
    sample,
    serving,
    settle,
)

MAX_FRAME = 64 * 1024
#: A KV_REQUEST payload that is valid CBOR of the wrong shape: ["x", 1, 2].
WRONG_TYPES = bytes.fromhex("8361780102")


@dataclass(frozen=True)
class Hostile:
    name: str
    after_hello: bool  # sent after a proper handshake (else as the very first bytes)
    data: bytes
    half_close: bool = False  # then close our sending side (the stream ends mid-frame)
    notice: bool = True  # the server explains before closing
    expect_in_message: str = ""


def _kv_frame() -> bytes:
    return encode_frame(FrameKind.KV_REQUEST, CID, encode_kv_request(get_request(b"k")))


CASES = [
    Hostile("garbage first", False, b"GET / HTTP/1.1\r\n\r\n" + bytes(range(256)),
            expect_in_message="magic"),
    Hostile("garbage after hello", True, b"\x00\xff" * 300, expect_in_message="magic"),
    Hostile("oversized length prefix", True,
            raw_frame(FrameKind.KV_REQUEST, b"", length=2**32 - 1),
            expect_in_message="exceeds the maximum frame size"),
    Hostile("truncated frame then EOF", True, _kv_frame()[:-3], half_close=True,
            expect_in_message="stream ended inside a frame"),
    Hostile("unknown frame kind", True, raw_frame(99, b"\x80"),
            expect_in_message="unknown frame kind 99"),
    Hostile("CBOR of the wrong types", True, raw_frame(FrameKind.KV_REQUEST, WRONG_TYPES),
            expect_in_message="KvRequest"),
    Hostile("a kind a store does not accept", True, raw_frame(FrameKind.KV_RESPONSE, b"\x80"),
            expect_in_message="KV_RESPONSE"),
    Hostile("bad checksum", True, _kv_frame()[:-1] + b"\x00", expect_in_message="checksum"),
    Hostile("raft batch from a client", True,
            encode_frame(FrameKind.RAFT_BATCH, CID, encode_raft_batch(RaftBatch(9, [envelope()]))),
            expect_in_message="named store 0"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_a_hostile_connection_is_closed_and_the_server_keeps_serving(case: Hostile) -> None:
    metrics, registry = new_metrics()
    handler = RecordingHandler()
    async with serving(handler, metrics=metrics, max_frame_size=MAX_FRAME) as server:
        address = f"127.0.0.1:{server.port}"
        bystander = await RpcConnection.connect(address, cluster_id=CID, timeout=5)

        raw = await RawClient.open(server.port)
        if case.after_hello:
            await raw.handshake()
        await raw.send(case.data)
        if case.half_close:
            await raw.stream.send_eof()
        notice = await raw.expect_notice_then_close()
        assert notice.code == ErrorCode.Protocol
        assert case.expect_in_message in notice.message
        await raw.aclose()

        stats = server.statistics()
        assert stats.connection_errors["protocol"] == 1
        assert sample(registry, "multiraft_transport_connection_errors_total", kind="protocol") == 1
        assert handler.kv_started == [] and handler.batches == []
        # The connection that was already open still works, and so does a new one.
        assert (await bystander.kv(get_request(b"still"), timeout=5)).result == GetResult(b"still")
        async with await RpcConnection.connect(address, cluster_id=CID, timeout=5) as fresh:
            assert (await fresh.kv(get_request(b"new"), timeout=5)).result == GetResult(b"new")
        await bystander.aclose()


async def test_an_oversized_length_prefix_is_refused_without_allocating_it() -> None:
    """A header claiming 1 GiB: refused from the header alone, memory stays flat."""
    async with serving(RecordingHandler(), max_frame_size=MAX_FRAME) as server:
        raw = await RawClient.open(server.port)
        await raw.handshake()
        tracemalloc.start()
        try:
            await raw.send(raw_frame(FrameKind.KV_REQUEST, b"", length=2**30))
            notice = await raw.expect_notice_then_close()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert "1073741824 bytes" in notice.message
        assert peak < 8 * 1024 * 1024  # far below the 1 GiB announced
        await raw.aclose()


async def test_idle_is_allowed_but_a_frame_that_stalls_midway_times_out(
    mock_clock: trio.testing.MockClock,
) -> None:
    """Virtual time: the clock moves only when the test jumps it."""
    limits = ServerLimits(frame_timeout=1, idle_timeout=30)
    async with serving(RecordingHandler(), limits=limits) as server:
        raw = await RawClient.open(server.port)
        await raw.handshake()
        mock_clock.jump(10)  # idle for longer than frame_timeout: fine
        await raw.send(_kv_frame())
        frame = await raw.next_frame()
        assert frame is not None and frame.kind == FrameKind.KV_RESPONSE
        # Half a frame, then nothing: the rest was due within frame_timeout.
        await raw.send(_kv_frame()[:10])
        await settle()  # the server has the half frame and waits for the rest
        mock_clock.jump(1.5)
        await raw.expect_closed()
        assert server.statistics().connection_errors["timeout"] == 1
        await raw.aclose()


async def test_connections_over_the_limit_are_refused_busy() -> None:
    async with serving(RecordingHandler(), limits=ServerLimits(max_connections=1)) as server:
        first = await RpcConnection.connect(f"127.0.0.1:{server.port}", cluster_id=CID, timeout=5)
        raw = await RawClient.open(server.port)
        notice = await raw.expect_notice_then_close()
        assert notice.code == ErrorCode.Busy
        assert server.statistics().connections_refused == 1
        assert (await first.kv(get_request(b"a"), timeout=5)).result == GetResult(b"a")
        await first.aclose()
        await raw.aclose()


async def test_a_client_that_leaves_with_an_error_notice_is_not_an_error() -> None:
    from multiraft.wire import ErrorNotice, encode_error_notice

    async with serving(RecordingHandler()) as server:
        raw = await RawClient.open(server.port)
        await raw.handshake()
        notice = ErrorNotice(ErrorCode.ShuttingDown, "bye")
        await raw.send(encode_frame(FrameKind.ERROR, CID, encode_error_notice(notice)))
        await raw.expect_closed()
        assert sum(server.statistics().connection_errors.values()) == 0
        await raw.aclose()


async def test_many_garbage_connections_at_once() -> None:
    async with serving(RecordingHandler(), max_frame_size=MAX_FRAME) as server:

        async def attack(i: int) -> None:
            raw = await RawClient.open(server.port)
            await raw.send(bytes([i % 256]) * 64)
            await raw.expect_notice_then_close()
            await raw.aclose()

        async with trio.open_nursery() as nursery:
            for i in range(40):
                nursery.start_soon(attack, i + 1)
        assert server.statistics().connection_errors["protocol"] == 40
        async with await RpcConnection.connect(
            f"127.0.0.1:{server.port}", cluster_id=CID, timeout=5
        ) as rpc:
            assert (await rpc.kv(get_request(b"ok"), timeout=5)).result == GetResult(b"ok")
