"""Region snapshots in the store: the leader's producer and sender, the follower's receiver.

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

**Follower.** :class:`SnapshotReceiver` takes each incoming stream (at most
``limit`` at once; more are answered ``Busy``, which the sender reports to
Raft as a failure, and Raft retries later). It checks the first chunk against
the MsgSnapshot it carries. Then it stages the stream into LMDB as it arrives
(:mod:`multiraft.storage.staging`): every few MiB of chunks are checked and
written in one transaction through the store's ``StorageWriter``, so staging
takes turns with the ready loop's commits. It never holds more than those
few MiB, whatever the snapshot's size. A bad, oversized or broken stream gets
``Rejected`` and its staging is deleted. A complete stream is a
:class:`ReceivedStream` whose ``staged`` handle goes to the ready loop. The
loop checks the snapshot against the replica (index past the applied index,
epoch not stale, no overlap with another initialized region:
multiraft-design §11.7), keeps the handle on the replica and steps the
message. If Raft accepts it, the next Ready carries the snapshot and the loop
installs it with :func:`multiraft.storage.snapshot.apply_staged` before it
persists anything else of that Ready.

**Staged data does not outlive its use.** The handle is consumed exactly once, by the
apply or by :meth:`SnapshotReceiver.discard` (``KvService.on_snapshot``
calls it when the loop refuses the stream). A handle dropped without being
consumed is caught by a ``weakref.finalize`` and its staging is deleted:
Raft ignored the snapshot, a newer one replaced it, or the loop answered
after the sender stopped waiting. The deletion is done by
:meth:`SnapshotReceiver.run` if it runs, otherwise at the next receive.
Whatever a crash leaves is deleted by startup recovery.
"""

from __future__ import annotations

import itertools
import logging
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

import trio

from multiraft.metrics.raft import RaftMetrics
from multiraft.raft import MessageType, Snapshot, SnapshotMetadata, SnapshotStatus
from multiraft.raft.errors import SnapshotTemporarilyUnavailable
from multiraft.storage.engine import Engine
from multiraft.storage.raft_storage import RaftStorage, SnapshotProducer
from multiraft.storage.snapshot import SnapshotError, generate, read_header
from multiraft.storage.staging import (
    DEFAULT_STAGE_TXN_BYTES,
    SnapshotStager,
    StagedSnapshot,
    delete_stream,
    next_snapshot_id,
)
from multiraft.wire.messages import RaftEnvelope, SnapshotAck, SnapshotAckStatus, SnapshotChunk
from multiraft.wire.records import RecordCorrupted, SnapshotHeader, decode_snapshot_part

__all__ = [
    "ReceivedStream",
    "ReceiverStatistics",
    "SnapshotReceiver",
    "SnapshotSender",
    "SnapshotTransport",
    "SnapshotWriter",
    "disk_snapshot_producer",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

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


# ----------------------------------------------------------------------
# Receiving


@dataclass(slots=True)
class ReceivedStream:
    """A complete snapshot stream, checked and staged, ready for the ready loop's checks."""

    envelope: RaftEnvelope
    header: SnapshotHeader
    staged: StagedSnapshot

    @property
    def parts(self) -> StagedSnapshot:
        """The staged stream under the ready loop's name for it (``len()``: chunks received)."""
        return self.staged


class SnapshotWriter(Protocol):
    """What the receiver needs of the store's ``StorageWriter``: its write slot."""

    async def run(self, fn: Callable[..., T], *args: object) -> T: ...


@dataclass(frozen=True, slots=True)
class ReceiverStatistics:
    receiving: int  # streams being received now
    staged_bytes: int  # of streams being received or waiting to be applied
    received: int  # complete streams handed on
    rejected: int  # bad, too large or incomplete streams
    busy: int  # refused: over the limit
    failed: int  # the stream broke or was cancelled
    deleted: int  # streams whose staging was deleted (refused, failed or abandoned)


class SnapshotReceiver:
    """Stages incoming snapshot streams into LMDB, at most ``limit`` at once.

    Args:
        engine: the store's engine (its ``snap_staging`` sub-database).
        writer: returns the store's writer; every staging transaction goes through
            its slot, so staging interleaves with the ready loop's commits.
        limit: streams received at once; more are answered ``Busy``.
        max_bytes: largest stream accepted.
        txn_bytes: chunk bytes buffered before a staging transaction.
    """

    def __init__(
        self,
        engine: Engine,
        writer: Callable[[], SnapshotWriter],
        *,
        limit: int = 4,
        max_bytes: int = 1 << 30,
        txn_bytes: int = DEFAULT_STAGE_TXN_BYTES,
        metrics: RaftMetrics | None = None,
    ) -> None:
        self._engine = engine
        self._writer = writer
        self.limit = limit
        self.max_bytes = max_bytes
        self.txn_bytes = txn_bytes
        self._metrics = metrics
        self._next_id = 0  # 0: not read from disk yet
        self.receiving = 0
        # Handles are consumed and finalized in any thread (an apply runs in the writer's).
        # Re-entrant: a garbage collection inside a locked block may run a finalizer that
        # takes the lock again in the same thread.
        self._lock = threading.RLock()
        self._staged_bytes = 0
        self._orphans: list[tuple[int, int]] = []  # (region id, snap id) to delete
        self._token: trio.lowlevel.TrioToken | None = None
        self._wake = trio.Event()
        self._counts = dict.fromkeys(("received", "rejected", "busy", "failed", "deleted"), 0)

    # -- receiving ---------------------------------------------------------------------

    async def receive(
        self, first: SnapshotChunk, rest: AsyncIterator[SnapshotChunk]
    ) -> ReceivedStream | SnapshotAck:
        """Stage one stream; a Rejected or Busy ack if it is not a usable snapshot now.

        Raises whatever ``rest`` raises (a broken stream); its staging is deleted.
        """
        env = first.envelope
        if first.seq != 0 or env is None or env.message.msg_type != MessageType.MsgSnapshot:
            return self._refused(first, 0, "a snapshot stream must start with the MsgSnapshot "
                                 "envelope")  # fmt: skip
        if env.region_id != first.region_id or env.message.snapshot is None:
            return self._refused(first, 0, "the envelope is for another region")
        if self.receiving >= self.limit:
            self._count("busy")
            return SnapshotAck(first.region_id, first.snapshot_id, 0, SnapshotAckStatus.Busy,
                               f"already receiving {self.receiving} snapshots")  # fmt: skip
        # Counted before the first await, so concurrent receives cannot overshoot the limit.
        self.receiving += 1
        if self._metrics is not None:
            self._metrics.snapshots_receiving.inc()
        self._token = trio.lowlevel.current_trio_token()
        try:
            await self.collect()
            return await self._receive(first, rest, env)
        finally:
            self.receiving -= 1
            if self._metrics is not None:
                self._metrics.snapshots_receiving.dec()

    async def _receive(
        self, first: SnapshotChunk, rest: AsyncIterator[SnapshotChunk], env: RaftEnvelope
    ) -> ReceivedStream | SnapshotAck:
        assert env.message.snapshot is not None
        md = env.message.snapshot.metadata
        try:
            header = decode_snapshot_part(first.data)
        except RecordCorrupted as exc:
            return self._refused(first, 0, f"bad snapshot header: {exc}")
        if not isinstance(header, SnapshotHeader) or header.region_id != env.region_id:
            return self._refused(first, 0, "the first part is not this region's snapshot header")
        if (header.index, header.term) != (md.index, md.term):
            return self._refused(first, 0, f"header at {header.index}/{header.term}, message at "
                                 f"{md.index}/{md.term}")  # fmt: skip
        stager = SnapshotStager(env.region_id, self._allocate_id())
        done = False
        try:
            got = await self._stage(stager, first, rest)
            done = isinstance(got, StagedSnapshot)
        except BaseException:
            self._count("failed")
            raise
        finally:
            if not done:
                self._abandon(stager.region_id, stager.snapshot_id, stager.staged_bytes)
        if isinstance(got, SnapshotAck):
            await self.collect()  # the sender learns of the refusal once nothing is left
            return got
        self._track(got)
        self._count("received")
        return ReceivedStream(env, header, got)

    async def _stage(
        self, stager: SnapshotStager, first: SnapshotChunk, rest: AsyncIterator[SnapshotChunk]
    ) -> StagedSnapshot | SnapshotAck:
        """Receive and stage the stream; memory: at most ``txn_bytes`` plus one chunk."""
        parts = [first.data]
        pending = total = len(first.data)
        seq, last = 0, first.last
        if not last:
            async for chunk in rest:
                seq = chunk.seq
                total += len(chunk.data)
                if total > self.max_bytes:
                    return self._refused(first, seq, f"snapshot larger than {self.max_bytes} bytes")
                parts.append(chunk.data)
                pending += len(chunk.data)
                last = chunk.last
                if pending >= self.txn_bytes and not last:
                    ack = await self._flush(stager, parts, first, seq)
                    if ack is not None:
                        return ack
                    parts, pending = [], 0
                if last:
                    break
        if not last:
            return self._refused(first, seq, "the stream ended before its last chunk")
        ack = await self._flush(stager, parts, first, seq)
        if ack is not None:
            return ack
        try:
            return stager.finish()
        except SnapshotError as exc:
            return self._refused(first, seq, str(exc))

    async def _flush(
        self, stager: SnapshotStager, parts: list[bytes], first: SnapshotChunk, seq: int
    ) -> SnapshotAck | None:
        """Check and write ``parts`` in one transaction in the writer's slot; an ack if bad."""
        try:
            n = await self._writer().run(stager.stage, self._engine, parts)
        except SnapshotError as exc:
            return self._refused(first, seq, str(exc))
        self._add_staged(n)
        return None

    def _refused(self, first: SnapshotChunk, seq: int, reason: str) -> SnapshotAck:
        self._count("rejected")
        return SnapshotAck(first.region_id, first.snapshot_id, seq, SnapshotAckStatus.Rejected,
                           reason)  # fmt: skip

    def _allocate_id(self) -> int:
        if not self._next_id:
            # Past any stream on disk (recovery normally leaves none): ids never collide.
            self._next_id = next_snapshot_id(self._engine)
        sid = self._next_id
        self._next_id += 1
        return sid

    # -- the staged streams' lifetime --------------------------------------------------

    def _track(self, staged: StagedSnapshot) -> None:
        """Delete ``staged`` if it is dropped unconsumed (rejected, superseded, ignored by Raft)."""
        size = staged.total_bytes
        fin = weakref.finalize(staged, self._abandon, staged.region_id, staged.snapshot_id, size)
        fin.atexit = False  # at interpreter exit there is no loop left; recovery cleans up

        def consumed() -> None:
            fin.detach()
            self._add_staged(-size)

        staged.on_consume = consumed

    async def discard(self, staged: StagedSnapshot) -> None:
        """Delete a staged stream nobody will apply (the loop refused it)."""
        try:
            staged.consume()  # its bytes leave the gauge here
        except SnapshotError:
            return  # applied or discarded already
        self._abandon(staged.region_id, staged.snapshot_id, 0)
        await self.collect()

    def _abandon(self, region_id: int, snapshot_id: int, size: int) -> None:
        """Queue a stream's staging for deletion; ``size`` bytes leave the staged gauge now.

        Any thread: a finalizer may run anywhere.
        """
        self._add_staged(-size)
        with self._lock:
            self._orphans.append((region_id, snapshot_id))
        token = self._token
        if token is not None:
            try:
                token.run_sync_soon(self._wake_up)
            except trio.RunFinishedError:
                pass  # the store is gone; startup recovery deletes the staging

    def _wake_up(self) -> None:
        self._wake.set()

    async def collect(self) -> int:
        """Delete the staging of every abandoned stream queued so far; how many were deleted."""
        n = 0
        while True:
            with self._lock:
                if not self._orphans:
                    return n
                rid, sid = self._orphans.pop()
            try:
                await self._writer().run(delete_stream, self._engine, rid, sid)
            except Exception as exc:  # a failed delete waits for startup recovery
                log.warning("region %d: staged snapshot %d not deleted: %s", rid, sid, exc)
                continue
            self._count("deleted")
            n += 1

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Delete abandoned staging as soon as it is queued, until cancelled.

        Optional: without it, each :meth:`receive` deletes what was queued before it.
        """
        self._token = trio.lowlevel.current_trio_token()
        task_status.started()
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            await self.collect()

    def _add_staged(self, n: int) -> None:
        with self._lock:  # the gauge is set under the lock so that updates never reorder
            self._staged_bytes += n
            if self._metrics is not None:
                self._metrics.snapshot_staged_bytes.set(self._staged_bytes)

    def _count(self, result: str) -> None:
        self._counts[result] += 1
        if self._metrics is not None and result != "deleted":
            label = "ok" if result == "received" else result
            self._metrics.snapshots_received.labels(label).inc()

    def statistics(self) -> ReceiverStatistics:
        c = self._counts
        return ReceiverStatistics(self.receiving, self._staged_bytes, c["received"],
                                  c["rejected"], c["busy"], c["failed"], c["deleted"])  # fmt: skip
