"""Snapshot streams: chunks reach on_snapshot in order, the ack comes back to the sender."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from multiraft.raft.types import Message, MessageType, Snapshot, SnapshotMetadata
from multiraft.storage import Engine, StorageWriter
from multiraft.storage.snapshot import generate
from multiraft.store.snapshots import ReceivedStream, SnapshotReceiver
from multiraft.transport import ConnectionLost, RaftTransport, RpcTimeout
from multiraft.wire import (
    ErrorCode,
    RaftEnvelope,
    SnapshotAck,
    SnapshotAckStatus,
    SnapshotChunk,
)
from multiraft.wire.records import SnapshotHeader, decode_snapshot_part
from regions.region import Peer
from tests.storage.test_lmdb_snapshot import make_source
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


# -- a store's receiver behind the server: staging, the receive limit, broken streams ----------


class StagingHandler(RecordingHandler):
    """on_snapshot stages through a SnapshotReceiver (as KvService does) and accepts."""

    def __init__(self, rx: SnapshotReceiver) -> None:
        super().__init__()
        self.rx = rx
        self.received: list[ReceivedStream] = []
        self.finished = 0

    async def on_snapshot(
        self, first: SnapshotChunk, rest: AsyncIterator[SnapshotChunk]
    ) -> SnapshotAck:
        self.changes.notify()  # waiters re-check once this task blocks inside receive()
        try:
            got = await self.rx.receive(first, rest)
        finally:
            self.finished += 1
            self.changes.notify()
        if isinstance(got, SnapshotAck):
            return got
        self.received.append(got)
        return SnapshotAck(first.region_id, first.snapshot_id, len(got.parts) - 1,
                           SnapshotAckStatus.Accepted)  # fmt: skip


def region7_chunks(parts: list[bytes], snapshot_id: int) -> list[SnapshotChunk]:
    header = decode_snapshot_part(parts[0])
    assert isinstance(header, SnapshotHeader)
    md = SnapshotMetadata(header.conf_state, header.index, header.term)
    msg = Message(MessageType.MsgSnapshot, to=71, from_=72, term=header.term,
                  snapshot=Snapshot(metadata=md))  # fmt: skip
    env = RaftEnvelope(7, Peer(72, 1), Peer(71, 2), header.region.epoch, msg)
    return [SnapshotChunk(7, snapshot_id, i, p, i == len(parts) - 1, env if i == 0 else None)
            for i, p in enumerate(parts)]  # fmt: skip


def staging_entries(engine: Engine) -> int:
    with engine.read() as txn:
        entries: int = txn.stat(engine.dbs.snap_staging)["entries"]
    return entries


@pytest.fixture
def region7_parts(tmp_path: Path) -> list[bytes]:
    with make_source(tmp_path / "src", 3000) as src:
        parts = list(generate(src, 7, chunk_bytes=2048))
    assert len(parts) > 12
    return parts


async def test_a_store_over_its_receive_limit_answers_busy(
    tmp_path: Path, region7_parts: list[bytes]
) -> None:
    with Engine.open(tmp_path / "dst", sync=False) as dst:
        writer = StorageWriter(dst)
        rx = SnapshotReceiver(dst, lambda: writer, limit=1, txn_bytes=4096)
        handler = StagingHandler(rx)
        release = trio.Event()
        held = region7_chunks(region7_parts, 1)

        async def holding() -> AsyncIterator[SnapshotChunk]:
            yield held[0]
            await release.wait()
            for c in held[1:]:
                yield c

        acks: list[SnapshotAck] = []
        async with serving(handler) as server, trio.open_nursery() as nursery:
            t = transport_to(server.port)

            async def send_held() -> None:
                acks.append(await t.send_snapshot(2, holding(), timeout=10))

            nursery.start_soon(send_held)
            await handler.changes.wait_until(lambda: rx.receiving == 1)
            busy = await t.send_snapshot(2, stream(region7_chunks(region7_parts, 2)), timeout=10)
            assert (busy.status, busy.snapshot_id) == (SnapshotAckStatus.Busy, 2)
            release.set()
        assert [a.status for a in acks] == [SnapshotAckStatus.Accepted]
        (got,) = handler.received
        assert len(got.staged) == len(region7_parts)
        assert staging_entries(dst) == len(region7_parts)


async def test_a_stream_cut_by_the_sender_leaves_no_staging(
    tmp_path: Path, region7_parts: list[bytes]
) -> None:
    with Engine.open(tmp_path / "dst", sync=False) as dst:
        writer = StorageWriter(dst)
        rx = SnapshotReceiver(dst, lambda: writer, txn_bytes=4096)
        chunks = region7_chunks(region7_parts, 1)

        async def failing() -> AsyncIterator[SnapshotChunk]:
            for c in chunks[:10]:
                yield c
            raise OSError("the snapshot source failed")

        handler = StagingHandler(rx)
        async with serving(handler) as server:
            with pytest.raises(OSError, match="source failed"):
                await transport_to(server.port).send_snapshot(2, failing(), timeout=10)
            await handler.changes.wait_until(lambda: handler.finished == 1)
            assert rx.receiving == 0 and rx.statistics().failed == 1
            assert staging_entries(dst) > 0  # staged before the connection went
            assert await rx.collect() == 1
            assert staging_entries(dst) == 0
