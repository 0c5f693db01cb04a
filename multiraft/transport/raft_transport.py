"""Outbound raft traffic of one store: a sender per destination, and snapshot streams.

Theory of operation: :class:`RaftTransport` owns one
:class:`~multiraft.transport.peer.PeerSender` per destination store, created on
the first envelope for it, and runs their tasks in one nursery (:meth:`run`).
The store's ready loop calls :meth:`send` for each message of a round (sync,
never blocks) and :meth:`flush` at the end of the round, which turns each
destination's envelopes into one RAFT_BATCH frame. See ``peer.py`` for queueing,
ordering, reconnects and what is reported through ``on_unreachable``.

Snapshots travel apart from raft messages (a large snapshot on the raft
connection would delay heartbeats and cause elections): :meth:`send_snapshot`
opens a connection of its own per snapshot, streams the chunks, and returns the
receiver's :class:`~multiraft.wire.SnapshotAck`. At most
``max_concurrent_snapshots`` snapshots are sent at once.

Usage::

    transport = RaftTransport(store_id, cluster_id, resolve, on_unreachable, metrics=m)
    async with trio.open_nursery() as nursery:
        await nursery.start(transport.run)
        ...
        transport.send(to_store_id, envelope)   # per message
        transport.flush()                       # per round
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Final

import trio

from multiraft.metrics import TransportMetrics
from multiraft.transport.connection import FramedConnection, connect
from multiraft.transport.errors import (
    ConnectFailed,
    ConnectionLost,
    HandshakeFailed,
    ProtocolError,
    RpcTimeout,
    TransportError,
)
from multiraft.transport.faults import FaultInjector
from multiraft.transport.peer import (
    DEFAULT_MAX_BATCH,
    Backoff,
    OnUnreachable,
    PeerSender,
    PeerStatistics,
    Resolve,
    SenderConfig,
)
from multiraft.wire import (
    DEFAULT_MAX_FRAME_SIZE,
    HEADER_SIZE,
    FrameKind,
    Hello,
    RaftEnvelope,
    SnapshotAck,
    SnapshotChunk,
    WireError,
    decode_snapshot_ack,
)

__all__ = ["RaftTransport", "TransportStatistics"]

log = logging.getLogger(__name__)

#: TiKV's snapshot send timeout; a snapshot is given at least this long.
DEFAULT_SNAPSHOT_TIMEOUT: Final = 600.0
DEFAULT_MAX_CONCURRENT_SNAPSHOTS: Final = 8


@dataclass(frozen=True, slots=True)
class TransportStatistics:
    envelopes_sent: int
    frames_sent: int
    bytes_sent: int
    envelopes_dropped: int
    dropped_by_reason: Mapping[str, int]
    queued: int  # envelopes waiting, all destinations
    reconnects: int
    snapshots_sent: int  # acknowledged (whatever the ack's status)
    snapshots_failed: int
    peers: Mapping[int, PeerStatistics]


class RaftTransport:
    """The raft traffic a store sends to other stores. See the module docstring.

    Args:
        store_id: our store id (the ``from_store_id`` of every batch).
        cluster_id: the cluster id (non-zero).
        resolve: ``await resolve(store_id) -> "host:port"``; called before every
            connect attempt, so an address change is picked up on reconnect.
        on_unreachable: ``on_unreachable(store_id, dropped_envelopes)``, called from
            the sender task when a connection attempt fails or a connection breaks.
            Must not block.
        queue_size: envelopes that may wait per destination.
        faults: the store's fault injector (test clusters only).
        metrics: the process's transport metrics.
        max_frame_size: the largest payload sent (the receivers' limit).
        max_batch: envelopes per frame at most.
        connect_timeout, send_timeout: deadlines of a connect (+ handshake) and a write.
        backoff: delays between failed connect attempts.
        snapshot_timeout: default deadline of :meth:`send_snapshot`.
        max_concurrent_snapshots: snapshots sent at once; more wait for a slot.
        address: our own address, sent in our Hello.
        rng: randomness for the backoff jitter.
    """

    def __init__(
        self,
        store_id: int,
        cluster_id: int,
        resolve: Resolve,
        on_unreachable: OnUnreachable,
        *,
        queue_size: int = 16384,
        faults: FaultInjector | None = None,
        metrics: TransportMetrics | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_batch: int = DEFAULT_MAX_BATCH,
        connect_timeout: float = 5.0,
        send_timeout: float = 10.0,
        backoff: Backoff | None = None,
        snapshot_timeout: float = DEFAULT_SNAPSHOT_TIMEOUT,
        max_concurrent_snapshots: int = DEFAULT_MAX_CONCURRENT_SNAPSHOTS,
        address: str = "",
        rng: random.Random | None = None,
    ) -> None:
        if cluster_id == 0:
            raise ValueError("a raft transport needs a non-zero cluster id")
        if queue_size < 1:
            raise ValueError(f"queue_size must be positive, got {queue_size}")
        self.store_id = store_id
        self.cluster_id = cluster_id
        self._cfg = SenderConfig(
            store_id=store_id, cluster_id=cluster_id, resolve=resolve,
            on_unreachable=on_unreachable, queue_size=queue_size, max_frame_size=max_frame_size,
            max_batch=max_batch, connect_timeout=connect_timeout, send_timeout=send_timeout,
            backoff=backoff or Backoff(), address=address, faults=faults, metrics=metrics,
        )  # fmt: skip
        self._faults = faults
        self._rng = rng or random.Random()
        self._senders: dict[int, PeerSender] = {}
        self._nursery: trio.Nursery | None = None
        self._closed = False
        self._snapshot_timeout = snapshot_timeout
        self._snapshot_slots = trio.CapacityLimiter(max_concurrent_snapshots)
        self._snapshots_sent = 0
        self._snapshots_failed = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the senders until cancelled. Waiting envelopes are dropped on the way out."""
        if self._nursery is not None or self._closed:
            raise RuntimeError("a RaftTransport runs once")
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for sender in self._senders.values():
                    self._start(sender)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self._closed = True

    def _start(self, sender: PeerSender) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(sender.run, name=f"raft sender to store {sender.store_id}")

    # -- the hot path ----------------------------------------------------------------------

    def send(self, to_store_id: int, env: RaftEnvelope) -> bool:
        """Queue ``env`` for ``to_store_id`` until the next :meth:`flush`. Never blocks.

        Returns:
            False if the envelope was dropped at once: the destination's queue is full,
            it is backing off after failed connects, it is blocked by fault injection,
            or the transport has stopped. The caller reports the peer unreachable.
        """
        sender = self._senders.get(to_store_id)
        if sender is None:
            sender = self._add_sender(to_store_id)
        if self._closed:
            sender.drop(env, "shutdown")
            return False
        faults = self._faults
        if faults is not None and to_store_id in faults.blocked_stores:
            faults.dropped_outbound += 1
            sender.drop(env, "fault_injected")
            return False
        return sender.push(env)

    def flush(self) -> None:
        """End of a round: each destination's envelopes go out as one RAFT_BATCH frame."""
        for sender in self._senders.values():
            sender.flush()

    def _add_sender(self, to_store_id: int) -> PeerSender:
        sender = PeerSender(self._cfg, to_store_id, rng=random.Random(self._rng.random()))
        self._senders[to_store_id] = sender
        if self._nursery is not None:
            self._start(sender)
        return sender

    # -- snapshots -------------------------------------------------------------------------

    async def send_snapshot(
        self,
        to_store_id: int,
        chunks: AsyncIterator[SnapshotChunk],
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> SnapshotAck:
        """Stream one snapshot to ``to_store_id`` on a connection of its own.

        ``chunks`` yields the chunks in order: seq 0 (with the MsgSnapshot envelope)
        up to the one marked ``last``. If the receiver answers before the end (e.g.
        ``Rejected``), sending stops and that ack is returned.

        Returns:
            The receiver's ack (``Accepted``, ``Busy`` or ``Rejected``).

        Raises:
            ConnectFailed: no connection (or the destination is blocked by fault injection).
            HandshakeFailed: the destination refused us.
            ConnectionLost: the connection broke before the ack.
            RpcTimeout: no ack within ``timeout`` (default ``snapshot_timeout``).
            ValueError: a chunk does not fit in a frame.
        """
        timeout = self._snapshot_timeout if timeout is None else timeout
        faults = self._faults
        try:
            if faults is not None and to_store_id in faults.blocked_stores:
                faults.snapshots_refused += 1
                raise ConnectFailed(f"store {to_store_id} is blocked by fault injection")
            try:
                with trio.fail_after(timeout):
                    async with self._snapshot_slots:
                        conn = await self._snapshot_connection(to_store_id)
                        try:
                            ack = await self._stream_snapshot(conn, chunks)
                        finally:
                            with trio.CancelScope(shield=True):
                                await conn.aclose()
            except trio.TooSlowError:
                raise RpcTimeout(
                    f"snapshot to store {to_store_id} not acknowledged within {timeout}s"
                ) from None
        except TransportError as e:
            self._snapshots_failed += 1
            log.info("store %d: snapshot to store %d failed: %s", self.store_id, to_store_id, e)
            raise
        self._snapshots_sent += 1
        return ack

    async def _snapshot_connection(self, to_store_id: int) -> FramedConnection:
        cfg = self._cfg
        try:
            address = await cfg.resolve(to_store_id)
        except Exception as e:
            raise ConnectFailed(f"cannot resolve store {to_store_id}: {e}") from e
        conn = await connect(
            address, Hello(cfg.store_id, cfg.cluster_id, cfg.address),
            timeout=cfg.connect_timeout, max_frame_size=cfg.max_frame_size, metrics=cfg.metrics,
            name=f"store {to_store_id} at {address}",
        )  # fmt: skip
        assert conn.peer is not None
        if conn.peer.store_id != to_store_id:
            await conn.aclose()
            raise HandshakeFailed(f"{address} is store {conn.peer.store_id}, not {to_store_id}")
        return conn

    async def _stream_snapshot(
        self, conn: FramedConnection, chunks: AsyncIterator[SnapshotChunk]
    ) -> SnapshotAck:
        """Send the chunks while a second task waits for the ack (which may come early)."""
        cfg = self._cfg
        ack: SnapshotAck | None = None
        ack_error: TransportError | None = None
        send_error: BaseException | None = None

        async def wait_for_ack(send_scope: trio.CancelScope, done: trio.Event) -> None:
            nonlocal ack, ack_error
            try:
                frame = await conn.receive_frame(timeout=cfg.frame_timeout, idle_timeout=math.inf)
                if frame is None:
                    ack_error = ConnectionLost(f"{conn.name} closed the connection without an ack")
                elif frame.kind == FrameKind.SNAPSHOT_ACK:
                    try:
                        ack = decode_snapshot_ack(frame.payload)
                    except WireError as e:
                        raise ProtocolError(f"bad SNAPSHOT_ACK from {conn.name}: {e}") from e
                elif frame.kind == FrameKind.ERROR:
                    ack_error = ConnectionLost(f"{conn.name} closed the connection",
                                               notice=conn.decode_notice(frame))  # fmt: skip
                else:
                    ack_error = ProtocolError(f"{conn.name} answered a snapshot with "
                                              f"{frame.kind.name}")  # fmt: skip
            except TransportError as e:
                ack_error = e
            send_scope.cancel()  # an early answer (or a broken stream) ends the sending
            done.set()

        async with trio.open_nursery() as nursery:
            send_scope, done = trio.CancelScope(), trio.Event()
            nursery.start_soon(wait_for_ack, send_scope, done)
            with send_scope:
                try:
                    async for chunk in chunks:
                        data = conn.encode(chunk)
                        if len(data) - HEADER_SIZE > cfg.max_frame_size:
                            raise ValueError(
                                f"snapshot chunk {chunk.seq} of {len(data)} bytes does not fit "
                                f"in a frame of {cfg.max_frame_size}"
                            )
                        await conn.send_bytes(data, timeout=cfg.send_timeout)
                        if cfg.metrics is not None:
                            cfg.metrics.frames_sent.inc()
                except TransportError:
                    pass  # the receiver may have answered and closed early: see the ack task
                except Exception as e:  # the chunk source failed, or a chunk is too large
                    send_error = e
                    nursery.cancel_scope.cancel()
            if send_error is None:
                await done.wait()
        if send_error is not None:
            raise send_error
        if ack is None:
            raise ack_error or ConnectionLost(f"{conn.name}: no snapshot ack")
        return ack

    # -- introspection ---------------------------------------------------------------------

    def statistics(self) -> TransportStatistics:
        peers = {sid: s.statistics() for sid, s in self._senders.items()}
        by_reason: dict[str, int] = {}
        for s in self._senders.values():
            for reason, n in s.dropped_by_reason.items():
                by_reason[reason] = by_reason.get(reason, 0) + n
        return TransportStatistics(
            envelopes_sent=sum(p.envelopes_sent for p in peers.values()),
            frames_sent=sum(p.frames_sent for p in peers.values()),
            bytes_sent=sum(p.bytes_sent for p in peers.values()),
            envelopes_dropped=sum(by_reason.values()),
            dropped_by_reason=by_reason,
            queued=sum(p.queued for p in peers.values()),
            reconnects=sum(p.reconnects for p in peers.values()),
            snapshots_sent=self._snapshots_sent,
            snapshots_failed=self._snapshots_failed,
            peers=peers,
        )
