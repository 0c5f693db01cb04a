"""Region snapshots in the store: the leader's producer and sender, the receiver's checks.

Theory of operation
-------------------
Snapshots travel out of band (multiraft-design §3.3): a ``MsgSnapshot`` never
goes through the raft message stream; its metadata rides on the first chunk of
a snapshot stream.

**Leader.** When Raft wants to send a snapshot it asks the region's
``RaftStorage``, whose producer (:func:`disk_snapshot_producer`) answers at once
with *metadata only*: the region's committed apply state on disk (index, term,
conf state). The ready loop pulls the resulting MsgSnapshot out of
``rd.messages`` and hands it to :class:`SnapshotSender`, which streams
:func:`multiraft.storage.snapshot.generate` (one LMDB read transaction, chunks
read in worker threads) through ``transport.send_snapshot``. Apply may have
moved on between the two reads, so the message's metadata is rewritten from
the generated header before the first chunk leaves: the receiver always gets
metadata that describes the data it gets (a higher index is fine for Raft:
it is committed, and the follower's progress catches up from wherever the
snapshot lands). The ack becomes ``report_snapshot(Finish)``, anything else
``report_snapshot(Failure)``, posted back to the loop.

**Follower.** :func:`receive_snapshot` collects a stream (bounded in bytes) and
checks that it is one region's snapshot whose header matches the MsgSnapshot
it carries. The ready loop then checks the snapshot against the replica
(index past the applied index, epoch not stale, no overlap with another
initialized region: multiraft-design §11.7), keeps the parts on the replica
and steps the message. If Raft accepts it, the next Ready carries the
snapshot and the loop installs it with :func:`multiraft.storage.snapshot.apply`
before persisting anything else of that Ready.

NB: received snapshots are held in memory until applied; regions are bounded
by the split size, but a streaming receiver that stages straight to LMDB is
the next step (issue 5 sends snapshots to new replicas routinely).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import trio

from multiraft.metrics.raft import RaftMetrics
from multiraft.raft import MessageType, Snapshot, SnapshotMetadata, SnapshotStatus
from multiraft.raft.errors import SnapshotTemporarilyUnavailable
from multiraft.storage.engine import Engine
from multiraft.storage.raft_storage import RaftStorage, SnapshotProducer
from multiraft.storage.snapshot import SnapshotError, generate, read_header
from multiraft.wire.messages import RaftEnvelope, SnapshotAck, SnapshotAckStatus, SnapshotChunk
from multiraft.wire.records import RecordCorrupted, SnapshotHeader, decode_snapshot_part

__all__ = [
    "ReceivedStream",
    "SnapshotSender",
    "SnapshotTransport",
    "disk_snapshot_producer",
    "receive_snapshot",
]

log = logging.getLogger(__name__)

#: ``report(region_id, to_peer_id, status)``: post a snapshot outcome to the ready loop.
Report = Callable[[int, int, SnapshotStatus], None]


class SnapshotTransport(Protocol):
    async def send_snapshot(
        self, to_store_id: int, chunks: AsyncIterator[SnapshotChunk]
    ) -> SnapshotAck: ...


def disk_snapshot_producer(engine: Engine) -> SnapshotProducer:
    """A RaftStorage snapshot producer: metadata of the region's durable applied state."""

    def produce(storage: RaftStorage, request_index: int, to: int) -> Snapshot:
        try:
            with engine.read() as txn:
                header = read_header(txn, engine.dbs, storage.region_id)
        except (SnapshotError, RecordCorrupted) as exc:
            log.warning("region %d: no snapshot for peer %d: %s", storage.region_id, to, exc)
            raise SnapshotTemporarilyUnavailable() from None
        if header.index < request_index or header.index == 0:
            raise SnapshotTemporarilyUnavailable()
        md = SnapshotMetadata(header.conf_state, header.index, header.term)
        return Snapshot(data=b"", metadata=md)

    return produce


def _next_part(gen: Iterator[bytes]) -> bytes | None:
    return next(gen, None)


class SnapshotSender:
    """Streams the leader's snapshots, at most ``limit`` at once, from its own nursery."""

    def __init__(
        self,
        engine: Engine,
        transport: SnapshotTransport,
        report: Report,
        *,
        limit: int = 4,
        metrics: RaftMetrics | None = None,
        chunk_bytes: int = 1 << 20,
    ) -> None:
        self._engine = engine
        self._transport = transport
        self._report = report
        self._sem = trio.Semaphore(limit)
        self._metrics = metrics
        self._chunk_bytes = chunk_bytes
        self._ids = itertools.count(1)
        self._nursery: trio.Nursery | None = None
        self.in_flight = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the sending tasks until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def start(self, to_store_id: int, env: RaftEnvelope) -> None:
        """Send ``env`` (a MsgSnapshot) and its data; the outcome is reported later."""
        if self._nursery is None:
            self._report(env.region_id, env.to_peer.id, SnapshotStatus.Failure)
            return
        self.in_flight += 1
        self._nursery.start_soon(self._send, to_store_id, env)

    async def _send(self, to_store_id: int, env: RaftEnvelope) -> None:
        status = SnapshotStatus.Failure
        size = 0
        try:
            async with self._sem:
                status, size = await self._stream(to_store_id, env)
        except Exception as exc:  # any failure is reported to Raft, which retries
            log.warning(
                "region %d: snapshot to store %d failed: %s", env.region_id, to_store_id, exc
            )
        finally:
            self.in_flight -= 1
            if self._metrics is not None:
                ok = status == SnapshotStatus.Finish
                self._metrics.snapshots_generated.labels("ok" if ok else "failed").inc()
                self._metrics.snapshot_generated_bytes.inc(size)
            self._report(env.region_id, env.to_peer.id, status)

    async def _stream(self, to_store_id: int, env: RaftEnvelope) -> tuple[SnapshotStatus, int]:
        gen = generate(self._engine, env.region_id, chunk_bytes=self._chunk_bytes)
        try:
            first = await trio.to_thread.run_sync(_next_part, gen)
            if first is None:
                return SnapshotStatus.Failure, 0
            header = decode_snapshot_part(first)
            assert isinstance(header, SnapshotHeader)
            md = SnapshotMetadata(header.conf_state, header.index, header.term)
            env.message.snapshot = Snapshot(data=b"", metadata=md)
            sid = next(self._ids)
            sent = [len(first)]

            async def chunks() -> AsyncIterator[SnapshotChunk]:
                yield SnapshotChunk(env.region_id, sid, 0, first, False, env)
                seq = 1
                part = await trio.to_thread.run_sync(_next_part, gen)
                while part is not None:
                    following = await trio.to_thread.run_sync(_next_part, gen)
                    sent[0] += len(part)
                    yield SnapshotChunk(env.region_id, sid, seq, part, following is None)
                    seq += 1
                    part = following

            ack = await self._transport.send_snapshot(to_store_id, chunks())
            ok = ack.status == SnapshotAckStatus.Accepted
            if not ok:
                log.info("region %d: snapshot refused by store %d: %s %s", env.region_id,
                         to_store_id, ack.status.name, ack.reason)  # fmt: skip
            return (SnapshotStatus.Finish if ok else SnapshotStatus.Failure), sent[0]
        finally:
            await trio.to_thread.run_sync(getattr(gen, "close"))  # noqa: B009


@dataclass(slots=True)
class ReceivedStream:
    """A complete, self-consistent snapshot stream, ready for the ready loop's checks."""

    envelope: RaftEnvelope
    header: SnapshotHeader
    parts: list[bytes]


async def receive_snapshot(
    first: SnapshotChunk, rest: AsyncIterator[SnapshotChunk], *, max_bytes: int
) -> ReceivedStream | SnapshotAck:
    """Collect one snapshot stream; a Rejected ack if it is not a usable snapshot."""

    def reject(reason: str) -> SnapshotAck:
        return SnapshotAck(first.region_id, first.snapshot_id, first.seq,
                           SnapshotAckStatus.Rejected, reason)  # fmt: skip

    env = first.envelope
    if first.seq != 0 or env is None or env.message.msg_type != MessageType.MsgSnapshot:
        return reject("a snapshot stream must start with the MsgSnapshot envelope")
    if env.region_id != first.region_id or env.message.snapshot is None:
        return reject("the envelope is for another region")
    parts = [first.data]
    total = len(first.data)
    last = first.last
    async for chunk in rest:
        total += len(chunk.data)
        if total > max_bytes:
            return reject(f"snapshot larger than {max_bytes} bytes")
        parts.append(chunk.data)
        last = chunk.last
        if last:
            break
    if not last:
        return reject("the stream ended before its last chunk")
    try:
        header = decode_snapshot_part(parts[0])
    except RecordCorrupted as exc:
        return reject(f"bad snapshot header: {exc}")
    md = env.message.snapshot.metadata
    if not isinstance(header, SnapshotHeader) or header.region_id != env.region_id:
        return reject("the first part is not this region's snapshot header")
    if (header.index, header.term) != (md.index, md.term):
        return reject(f"header at {header.index}/{header.term}, message at {md.index}/{md.term}")
    return ReceivedStream(env, header, parts)


#: What the loop awaits to install a snapshot: ``apply(region_id, parts) -> header``.
ApplyFn = Callable[[int, list[bytes]], Awaitable[SnapshotHeader]]
