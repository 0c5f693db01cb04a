"""Snapshot streams: chunks reach on_snapshot in order, the ack comes back to the sender."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from multiraft.raft.types import MessageType
from multiraft.transport import ConnectionLost, RaftTransport, RpcTimeout
from multiraft.wire import (
    ErrorCode,
    RaftEnvelope,
    SnapshotAck,
    SnapshotAckStatus,
    SnapshotChunk,
)
from tests.transport.transport_support import CID, RecordingHandler, envelope, serving


def chunks_of(
    n: int, size: int = 1000, *, snapshot_id: int = 7, seqs: list[int] | None = None
) -> list[SnapshotChunk]:
    head = envelope(region_id=4, msg_type=MessageType.MsgSnapshot)
    seqs = list(range(n)) if seqs is None else seqs
    return [
        SnapshotChunk(
            4,
            snapshot_id,
            seq,
            bytes([seq % 256]) * size,
            i == len(seqs) - 1,
            head if seq == 0 else None,
        )
        for i, seq in enumerate(seqs)
    ]


async def stream(chunks: list[SnapshotChunk]) -> AsyncIterator[SnapshotChunk]:
    for c in chunks:
        yield c


def transport_to(port: int) -> RaftTransport:
    async def resolve(store_id: int) -> str:
        return f"127.0.0.1:{port}"

    def ignore(store_id: int, dropped: list[RaftEnvelope]) -> None:
        pass

    return RaftTransport(1, CID, resolve, ignore)


async def test_send_snapshot_streams_chunks_to_on_snapshot_and_returns_its_ack() -> None:
    handler = RecordingHandler()
    async with serving(handler) as server:
        t = transport_to(server.port)
        sent = chunks_of(20, size=30_000)
        ack = await t.send_snapshot(2, stream(sent), timeout=10)
        assert ack == SnapshotAck(4, 7, 19, SnapshotAckStatus.Accepted)
        assert handler.snapshots == [sent]
        assert handler.snapshots[0][0].envelope is not None
        assert handler.snapshots[0][0].envelope.message.msg_type == MessageType.MsgSnapshot
        stats = t.statistics()
        assert (stats.snapshots_sent, stats.snapshots_failed) == (1, 0)
        assert server.statistics().snapshots == 1


async def test_the_receivers_status_comes_back() -> None:
    handler = RecordingHandler()
    handler.snapshot_status = SnapshotAckStatus.Busy
    async with serving(handler) as server:
        ack = await transport_to(server.port).send_snapshot(2, stream(chunks_of(2)), timeout=10)
        assert ack.status == SnapshotAckStatus.Busy


async def test_an_early_rejection_stops_the_sender() -> None:
    handler = RecordingHandler()
    handler.reject_after_first = True
    produced = 0

    async def many() -> AsyncIterator[SnapshotChunk]:
        nonlocal produced
        for c in chunks_of(2000, size=64 * 1024):  # 128 MB if it were all sent
            produced += 1
            yield c

    async with serving(handler, max_frame_size=1024 * 1024) as server:
        t = transport_to(server.port)
        ack = await t.send_snapshot(2, many(), timeout=10)
        assert ack.status == SnapshotAckStatus.Rejected
        assert produced < 2000
        # The server is fine and takes the next snapshot.
        handler.reject_after_first = False
        ack = await t.send_snapshot(2, stream(chunks_of(3, snapshot_id=8)), timeout=10)
        assert (ack.snapshot_id, ack.status) == (8, SnapshotAckStatus.Accepted)


async def test_a_chunk_out_of_sequence_closes_the_stream() -> None:
    handler = RecordingHandler()
    async with serving(handler) as server:
        t = transport_to(server.port)
        with pytest.raises(ConnectionLost) as info:
            await t.send_snapshot(2, stream(chunks_of(0, seqs=[0, 1, 3])), timeout=10)
        assert info.value.notice is not None
        assert info.value.notice.code == ErrorCode.Protocol
        assert "after chunk 1" in info.value.notice.message
        assert server.statistics().connection_errors["protocol"] == 1
        assert t.statistics().snapshots_failed == 1


async def test_a_snapshot_without_an_ack_times_out() -> None:
    class Stuck(RecordingHandler):
        async def on_snapshot(
            self, first: SnapshotChunk, rest: AsyncIterator[SnapshotChunk]
        ) -> SnapshotAck:
            await trio.sleep_forever()
            raise AssertionError

    async with serving(Stuck()) as server:
        with pytest.raises(RpcTimeout):
            await transport_to(server.port).send_snapshot(2, stream(chunks_of(2)), timeout=0.2)


async def test_a_failing_chunk_source_fails_the_send() -> None:
    async def broken() -> AsyncIterator[SnapshotChunk]:
        yield chunks_of(2)[0]
        raise OSError("snapshot file vanished")

    async with serving(RecordingHandler()) as server:
        with pytest.raises(OSError, match="vanished"):
            await transport_to(server.port).send_snapshot(2, broken(), timeout=5)
