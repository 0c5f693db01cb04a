"""The store's one listener: raft batches, snapshot streams, KV and admin requests.

Theory of operation: :class:`StoreServer` runs ``trio.serve_listeners``; each
accepted connection gets its own task, which does the Hello handshake and then
reads frames until the peer leaves. The frame kind decides what happens:

=============== ==============================================================
RAFT_BATCH      ``handler.on_raft_batch(batch)``, inline (it must not block)
KV_REQUEST      ``await handler.on_kv_request(req)`` in a task of its own;
ADMIN_REQUEST   responses carry the request id and may leave out of order
SNAPSHOT_CHUNK  ``await handler.on_snapshot(first, rest)``: ``rest`` yields the
                following chunks of that stream; the ack goes back as SNAPSHOT_ACK
ERROR           the peer says why it is leaving: close quietly
anything else   a protocol error
=============== ==============================================================

One writer task per connection sends every response, coalescing what is ready
into one write. ``InjectFaults`` admin requests are answered by the server itself
(they configure the transport, not the store).

Invariants:

* **A connection's trouble stays on that connection.** A bad frame or payload, a
  wrong cluster id, a timeout, a reset, even an exception out of the handler,
  ends that connection only (after an :class:`~multiraft.wire.ErrorNotice` when
  the peer broke the protocol) and is counted; the server keeps serving.
* **Bounded everything.** Frames above ``max_frame_size`` are refused from their
  header; at most ``max_inflight_requests`` requests run per connection (more are
  answered ``ServerIsBusy`` at once); at most ``max_connections`` connections;
  every wait has a deadline (``handshake_timeout``, ``idle_timeout`` between
  frames, ``frame_timeout`` within one, ``send_timeout`` per write).
* **Raft batches are checked against the Hello.** Only a connection whose Hello
  named a store may carry raft batches and snapshots, and only that store's.
* When a connection closes, its in-flight request handlers are cancelled.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Final, Protocol, TypeVar

import trio

from multiraft.metrics import TransportMetrics
from multiraft.transport.connection import FramedConnection
from multiraft.transport.errors import (
    ConnectionLost,
    HandshakeFailed,
    ProtocolError,
    TransportError,
    error_kind,
)
from multiraft.transport.faults import FaultInjector, refuse_inject_faults
from multiraft.wire import (
    DEFAULT_MAX_FRAME_SIZE,
    AdminRequest,
    AdminResponse,
    ErrorCode,
    ErrorNotice,
    Frame,
    FrameKind,
    Hello,
    InjectFaults,
    Internal,
    KvRequest,
    KvResponse,
    Payload,
    RaftBatch,
    ServerIsBusy,
    SnapshotAck,
    SnapshotChunk,
)

__all__ = [
    "InboundHandler",
    "ServerLimits",
    "ServerStatistics",
    "StoreServer",
    "serve_store",
]

log = logging.getLogger(__name__)

_P = TypeVar("_P", RaftBatch, KvRequest, AdminRequest, SnapshotChunk)
_KINDS: Final = ("connect", "timeout", "closed", "protocol")


class InboundHandler(Protocol):
    """What a store does with inbound traffic (implemented by the store's KV service)."""

    def on_raft_batch(self, batch: RaftBatch) -> None:
        """Take one batch of raft envelopes. Must not block: enqueue into the store inbox."""

    async def on_kv_request(self, req: KvRequest) -> KvResponse:
        """Serve one client request (errors are answered as values, not raised)."""

    async def on_admin_request(self, req: AdminRequest) -> AdminResponse:
        """Serve one admin request."""

    async def on_snapshot(
        self, first: SnapshotChunk, rest: AsyncIterator[SnapshotChunk]
    ) -> SnapshotAck:
        """Receive a snapshot stream: ``first`` (seq 0, with the MsgSnapshot envelope), then
        ``rest`` in order up to the chunk marked ``last``; answer with an ack. Returning
        before ``rest`` is exhausted is allowed (e.g. ``Rejected``): the remaining chunks
        are discarded."""


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Bounds on what one peer can make the server hold or wait for."""

    max_connections: int = 1024
    #: KV/admin requests handled at once per connection; more get ServerIsBusy.
    max_inflight_requests: int = 256
    handshake_timeout: float = 5.0
    #: Seconds a connection may stay silent between frames.
    idle_timeout: float = 600.0
    #: Seconds for a frame to arrive once its first bytes are in.
    frame_timeout: float = 30.0
    #: Seconds for one write of responses.
    send_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class ServerStatistics:
    connections_accepted: int
    connections_open: int
    connections_refused: int  # over max_connections
    #: Connections ended by an error, by kind (connect/timeout/closed/protocol).
    connection_errors: Mapping[str, int]
    requests_in_flight: int
    requests_served: int
    requests_busy: int  # answered ServerIsBusy (over max_inflight_requests)
    raft_batches: int
    raft_envelopes: int
    snapshots: int


class _Conn:
    """Per-connection state shared by its reader, writer and request tasks."""

    __slots__ = ("conn", "error", "inflight", "out", "peer")

    def __init__(self, conn: FramedConnection, peer: Hello, out: trio.MemorySendChannel[bytes]):
        self.conn = conn
        self.peer = peer
        self.out = out
        self.inflight = 0
        self.error: TransportError | None = None  # why the writer stopped


class _ChunkStream:
    """The chunks after the first of one snapshot stream, read from the connection.

    Checks that they belong to the same snapshot and come in sequence. Any failure
    is kept in ``error`` too, so that a handler that swallows it cannot make the
    server carry on with a broken stream.
    """

    def __init__(self, conn: FramedConnection, first: SnapshotChunk, timeout: float) -> None:
        self._conn = conn
        self._prev = first
        self._timeout = timeout
        self.done = first.last
        self.error: TransportError | None = None
        self.eof = False

    def __aiter__(self) -> _ChunkStream:
        return self

    async def __anext__(self) -> SnapshotChunk:
        if self.done:
            raise StopAsyncIteration
        try:
            chunk = await self._next()
        except TransportError as e:
            self.error = e
            self.done = True
            raise
        self._prev = chunk
        self.done = chunk.last
        return chunk

    async def _next(self) -> SnapshotChunk:
        conn, prev = self._conn, self._prev
        frame = await conn.receive_frame(timeout=self._timeout)
        if frame is None:
            self.eof = True
            raise ConnectionLost(
                f"{conn.name} ended snapshot {prev.snapshot_id} before its last chunk"
            )
        if frame.kind != FrameKind.SNAPSHOT_CHUNK:
            raise ProtocolError(f"{conn.name} sent {frame.kind.name} inside a snapshot stream")
        chunk = _decode_as(conn, frame, SnapshotChunk)
        if (chunk.region_id, chunk.snapshot_id, chunk.seq) != (
            prev.region_id, prev.snapshot_id, prev.seq + 1,
        ):  # fmt: skip
            raise ProtocolError(
                f"{conn.name} sent chunk {chunk.seq} of snapshot {chunk.snapshot_id} (region "
                f"{chunk.region_id}) after chunk {prev.seq} of snapshot {prev.snapshot_id} "
                f"(region {prev.region_id})"
            )
        return chunk

    async def drain(self) -> None:
        """Discard the chunks the handler did not read (until ``last`` or the sender leaves)."""
        while not self.done:
            try:
                await self.__anext__()
            except TransportError:
                if not self.eof:
                    raise
                return


def _decode_as(conn: FramedConnection, frame: Frame, cls: type[_P]) -> _P:
    obj: Payload = conn.decode(frame)
    if not isinstance(obj, cls):  # the codec of each kind returns its one type
        raise ProtocolError(f"{frame.kind.name} decoded as {type(obj).__name__}")
    return obj


class StoreServer:
    """The listener of one store. See the module docstring.

    Args:
        handler: the store's :class:`InboundHandler`.
        cluster_id: this cluster's id (non-zero).
        store_id: this store's id, sent in our Hello.
        host, port: where to listen (port 0: any free port; see :attr:`port`).
        max_frame_size: the largest payload accepted.
        faults: the fault injector when the store runs with fault injection on.
        metrics: the process's transport metrics.
        limits: per-connection bounds.
        advertise_address: the address in our Hello (default ``host:port``).
    """

    def __init__(
        self,
        handler: InboundHandler,
        *,
        cluster_id: int,
        store_id: int,
        host: str = "127.0.0.1",
        port: int = 0,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        faults: FaultInjector | None = None,
        metrics: TransportMetrics | None = None,
        limits: ServerLimits | None = None,
        advertise_address: str | None = None,
    ) -> None:
        if cluster_id == 0:
            raise ValueError("a store server needs a non-zero cluster id")
        self._handler = handler
        self.cluster_id = cluster_id
        self.store_id = store_id
        self.host = host
        #: The bound port, once :meth:`run` has started.
        self.port = port
        self._max_frame_size = max_frame_size
        self._faults = faults
        self._metrics = metrics
        self._limits = limits or ServerLimits()
        self._advertise = advertise_address
        self._hello = Hello(store_id, cluster_id, advertise_address or "")
        self._accepted = 0
        self._open = 0
        self._refused = 0
        self._errors = dict.fromkeys(_KINDS, 0)
        self._inflight = 0
        self._served = 0
        self._busy = 0
        self._batches = 0
        self._envelopes = 0
        self._snapshots = 0

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled; ``task_status.started(bound_port)``."""
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        address = self._advertise or f"{self.host}:{self.port}"
        self._hello = Hello(self.store_id, self.cluster_id, address)
        log.info("store %d listening on %s", self.store_id, address)
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(trio.serve_listeners, self._serve_connection, listeners))
            task_status.started(self.port)

    def statistics(self) -> ServerStatistics:
        return ServerStatistics(
            connections_accepted=self._accepted,
            connections_open=self._open,
            connections_refused=self._refused,
            connection_errors=dict(self._errors),
            requests_in_flight=self._inflight,
            requests_served=self._served,
            requests_busy=self._busy,
            raft_batches=self._batches,
            raft_envelopes=self._envelopes,
            snapshots=self._snapshots,
        )

    # -- one connection --------------------------------------------------------------------

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        self._accepted += 1
        self._open += 1
        conn = FramedConnection(
            stream, cluster_id=self.cluster_id, max_frame_size=self._max_frame_size,
            metrics=self._metrics, name=_remote_name(stream),
        )  # fmt: skip
        try:
            if self._open > self._limits.max_connections:
                self._refused += 1
                await conn.close_with_notice(ErrorNotice(ErrorCode.Busy, "too many connections"))
                return
            try:
                peer = await conn.server_handshake(
                    self._hello, timeout=self._limits.handshake_timeout,
                    on_failure=self._handshake_failed,
                )  # fmt: skip
            except HandshakeFailed:
                return
            if peer.store_id:
                conn.name = f"store {peer.store_id} at {conn.name}"
            await self._serve_frames(conn, peer)
        except Exception:
            # A bug (ours or the handler's) must not take the server down: end this
            # connection, loudly.
            self._count_error("closed")
            log.exception("store %d: connection from %s failed", self.store_id, conn.name)
        finally:
            self._open -= 1
            await conn.aclose()

    async def _serve_frames(self, conn: FramedConnection, peer: Hello) -> None:
        send, receive = trio.open_memory_channel[bytes](self._limits.max_inflight_requests + 16)
        state = _Conn(conn, peer, send)
        error: TransportError | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._write_loop, state, receive, nursery.cancel_scope)
            try:
                await self._read_loop(state, nursery)
            except TransportError as e:
                error = e
            nursery.cancel_scope.cancel()
        error = error or state.error
        if error is None:
            return
        self._count_error(error_kind(error))
        if isinstance(error, ProtocolError):
            log.warning(
                "store %d: closing the connection of %s: %s", self.store_id, conn.name, error
            )
            await conn.close_with_notice(ErrorNotice(ErrorCode.Protocol, str(error)))
        else:
            log.info("store %d: connection of %s ended: %s", self.store_id, conn.name, error)

    async def _read_loop(self, state: _Conn, nursery: trio.Nursery) -> None:
        conn, limits = state.conn, self._limits
        while True:
            frame = await conn.receive_frame(timeout=limits.frame_timeout,
                                             idle_timeout=limits.idle_timeout)  # fmt: skip
            if frame is None:
                return  # the peer closed the connection between frames
            kind = frame.kind
            if kind == FrameKind.RAFT_BATCH:
                self._on_raft_batch(state, _decode_as(conn, frame, RaftBatch))
            elif kind == FrameKind.KV_REQUEST:
                req = _decode_as(conn, frame, KvRequest)
                if state.inflight >= limits.max_inflight_requests:
                    await self._busy_answer(state, KvResponse(req.request_id, self._busy_error()))
                else:
                    self._start_request(state)
                    nursery.start_soon(self._kv_task, state, req)
            elif kind == FrameKind.ADMIN_REQUEST:
                areq = _decode_as(conn, frame, AdminRequest)
                if isinstance(areq.command, InjectFaults):
                    await state.out.send(conn.encode(self._inject_faults(areq)))
                elif state.inflight >= limits.max_inflight_requests:
                    await self._busy_answer(
                        state, AdminResponse(areq.request_id, self._busy_error())
                    )
                else:
                    self._start_request(state)
                    nursery.start_soon(self._admin_task, state, areq)
            elif kind == FrameKind.SNAPSHOT_CHUNK:
                if not await self._receive_snapshot(state, _decode_as(conn, frame, SnapshotChunk)):
                    return
            elif kind == FrameKind.ERROR:
                notice = conn.decode_notice(frame)
                log.info("store %d: %s is closing: %s", self.store_id, conn.name, notice)
                return
            else:
                raise ProtocolError(f"a store does not accept {kind.name} frames")

    def _on_raft_batch(self, state: _Conn, batch: RaftBatch) -> None:
        sender = state.peer.store_id
        if sender == 0 or batch.from_store_id != sender:
            raise ProtocolError(
                f"raft batch from store {batch.from_store_id} on a connection whose Hello "
                f"named store {sender}"
            )
        faults = self._faults
        if faults is not None and sender in faults.blocked_stores:
            faults.dropped_inbound += len(batch.envelopes)
            return
        self._batches += 1
        self._envelopes += len(batch.envelopes)
        self._handler.on_raft_batch(batch)

    # -- requests --------------------------------------------------------------------------

    def _start_request(self, state: _Conn) -> None:
        state.inflight += 1
        self._inflight += 1

    def _busy_error(self) -> ServerIsBusy:
        self._busy += 1
        return ServerIsBusy(
            f"more than {self._limits.max_inflight_requests} requests in flight on this connection"
        )

    async def _busy_answer(self, state: _Conn, resp: KvResponse | AdminResponse) -> None:
        await state.out.send(state.conn.encode(resp))

    def _inject_faults(self, req: AdminRequest) -> AdminResponse:
        if self._faults is None:
            return refuse_inject_faults(req)
        resp = self._faults.handle_admin(req)
        log.warning("store %d: fault injection now blocks stores %s", self.store_id,
                    sorted(self._faults.blocked_stores))  # fmt: skip
        return resp

    async def _kv_task(self, state: _Conn, req: KvRequest) -> None:
        try:
            try:
                resp = await self._handler.on_kv_request(req)
                if not isinstance(resp, KvResponse):
                    raise TypeError(f"on_kv_request returned {type(resp).__name__}")
                if resp.request_id != req.request_id:
                    resp = replace(resp, request_id=req.request_id)
                data = state.conn.encode(resp)
            except Exception as e:
                log.exception("store %d: KV request %d failed", self.store_id, req.request_id)
                data = state.conn.encode(KvResponse(req.request_id, Internal(_describe(e))))
            await state.out.send(data)
        finally:
            self._end_request(state)

    async def _admin_task(self, state: _Conn, req: AdminRequest) -> None:
        try:
            try:
                resp = await self._handler.on_admin_request(req)
                if not isinstance(resp, AdminResponse):
                    raise TypeError(f"on_admin_request returned {type(resp).__name__}")
                if resp.request_id != req.request_id:
                    resp = replace(resp, request_id=req.request_id)
                data = state.conn.encode(resp)
            except Exception as e:
                log.exception("store %d: admin request %d failed", self.store_id, req.request_id)
                data = state.conn.encode(AdminResponse(req.request_id, Internal(_describe(e))))
            await state.out.send(data)
        finally:
            self._end_request(state)

    def _end_request(self, state: _Conn) -> None:
        state.inflight -= 1
        self._inflight -= 1
        self._served += 1

    # -- snapshots -------------------------------------------------------------------------

    async def _receive_snapshot(self, state: _Conn, first: SnapshotChunk) -> bool:
        """Run one snapshot stream through the handler; False: the connection is done."""
        conn, sender = state.conn, state.peer.store_id
        if sender == 0:
            raise ProtocolError("a snapshot on a connection whose Hello named no store")
        if first.seq != 0:
            raise ProtocolError(f"snapshot {first.snapshot_id} starts at chunk {first.seq}, not 0")
        faults = self._faults
        if faults is not None and sender in faults.blocked_stores:
            faults.snapshots_refused += 1
            return False  # a partition: cut the stream without an answer
        rest = _ChunkStream(conn, first, self._limits.frame_timeout)
        ack = await self._handler.on_snapshot(first, rest)
        if rest.error is not None:
            raise rest.error
        self._snapshots += 1
        await state.out.send(conn.encode(ack))
        await rest.drain()
        return not rest.eof

    # -- writing ---------------------------------------------------------------------------

    async def _write_loop(
        self, state: _Conn, receive: trio.MemoryReceiveChannel[bytes], scope: trio.CancelScope
    ) -> None:
        """Send responses, coalescing all that are ready into one write."""
        conn, timeout, metrics = state.conn, self._limits.send_timeout, self._metrics
        try:
            while True:
                data = await receive.receive()
                parts = [data]
                while True:
                    try:
                        parts.append(receive.receive_nowait())
                    except trio.WouldBlock:
                        break
                await conn.send_bytes(data if len(parts) == 1 else b"".join(parts), timeout=timeout)
                if metrics is not None:
                    metrics.frames_sent.inc(len(parts))
        except TransportError as e:
            state.error = e
            scope.cancel()

    def _handshake_failed(self, error: HandshakeFailed) -> None:
        self._count_error(error_kind(error))
        log.warning("store %d: refused a connection: %s", self.store_id, error)

    def _count_error(self, kind: str) -> None:
        self._errors[kind] = self._errors.get(kind, 0) + 1
        if self._metrics is not None:
            self._metrics.connection_errors.labels(kind).inc()


def _remote_name(stream: trio.SocketStream) -> str:
    try:
        host, port, *_ = stream.socket.getpeername()
    except (OSError, ValueError, TypeError):
        return "a peer"
    return f"{host}:{port}"


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


async def serve_store(
    handler: InboundHandler,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    cluster_id: int,
    store_id: int,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    faults: FaultInjector | None = None,
    metrics: TransportMetrics | None = None,
    limits: ServerLimits | None = None,
    advertise_address: str | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve a store's listener until cancelled; ``task_status.started(bound_port)``.

    A convenience over :class:`StoreServer` (use the class to read ``statistics()``)::

        port = await nursery.start(partial(serve_store, handler, port=0,
                                           cluster_id=cid, store_id=1))
    """
    server = StoreServer(
        handler, cluster_id=cluster_id, store_id=store_id, host=host, port=port,
        max_frame_size=max_frame_size, faults=faults, metrics=metrics, limits=limits,
        advertise_address=advertise_address,
    )  # fmt: skip
    await server.run(task_status=task_status)
