"""The placement service's TCP server: placement requests in, answers out.

Theory of operation: :class:`PlacementServer` runs ``trio.serve_listeners``; each
accepted connection gets its own task, which does the Hello handshake
(:meth:`~multiraft.transport.FramedConnection.server_handshake`: a wrong cluster
id is answered with an ``ErrorNotice(WrongCluster)`` and the connection closes;
cluster id 0 is accepted and the server's Hello tells the client the real one),
then reads ``PLACEMENT_REQUEST`` frames until the peer leaves. Each request runs
in a task of its own (:meth:`Cluster.handle <multiraft.placement.cluster.Cluster.handle>`)
and its ``PLACEMENT_RESPONSE`` carries its ``request_id``; answers may leave out of
order.

Invariants:

* **A connection's trouble stays on that connection.** Garbage, a frame over
  ``max_frame_size`` (refused from its header, before the body is read), a bad
  payload, a frame of another kind, a wrong cluster id, a timeout or a reset end
  that connection only, after an ``ErrorNotice`` when the peer broke the protocol
  or stalled inside a frame;
  even an exception out of a request handler becomes an ``Internal`` error answer.
  The server keeps serving everyone else.
* **Bounded everything.** At most ``max_connections`` connections (more get
  ``ErrorNotice(Busy)``); at most ``max_inflight_requests`` requests per
  connection (then the server stops reading that connection until one finishes:
  TCP back-pressure); every wait has a deadline (``handshake_timeout``,
  ``frame_timeout`` within a frame, ``send_timeout`` per answer, ``idle_timeout``
  between frames).
* **Concurrency-safe.** Requests run concurrently; :class:`~multiraft.placement.
  cluster.Cluster` serialises the changes.
* When a connection closes, its in-flight requests are cancelled (a change that
  was already being persisted still completes: the write runs in a thread).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Final

import trio

from multiraft.placement.cluster import Cluster
from multiraft.placement.errors import PlacementFailure
from multiraft.transport import (
    ConnectionTimeout,
    FramedConnection,
    ProtocolError,
    TransportError,
)
from multiraft.wire import ErrorCode, ErrorNotice, FrameKind, Hello, WireError
from multiraft.wire.placement_codec import decode_placement_request
from multiraft.wire.placement_messages import (
    PlacementError,
    PlacementErrorCode,
    PlacementRequest,
    PlacementResponse,
    PlacementResult,
)

__all__ = ["PlacementServer", "PlacementServerLimits", "PlacementServerStatistics"]

log = logging.getLogger(__name__)

#: Placement requests are small; a client that sends more than this is refused.
DEFAULT_MAX_FRAME_SIZE: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class PlacementServerLimits:
    """Bounds that keep one client from hurting the others."""

    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    max_connections: int = 1024
    max_inflight_requests: int = 64
    handshake_timeout: float = 10.0
    #: Seconds between two frames (stores keep long-lived connections: no limit).
    idle_timeout: float = math.inf
    #: Seconds for a frame to complete once its first bytes arrived.
    frame_timeout: float = 30.0
    send_timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class PlacementServerStatistics:
    active_connections: int
    accepted_connections: int
    refused_connections: int  # over max_connections
    failed_connections: int  # closed for a protocol error, a timeout or a reset
    requests: int
    error_answers: int  # PlacementError answers (stale heartbeats, unknown stores...)
    internal_errors: int  # exceptions out of a handler


class PlacementServer:
    """Serves one :class:`~multiraft.placement.cluster.Cluster` over TCP.

    Args:
        cluster: the state and request handling.
        advertise: the address put in the server's Hello.
        limits: see :class:`PlacementServerLimits`.

    Example::

        server = PlacementServer(cluster, advertise="10.0.0.5:2379")
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(server.serve, "0.0.0.0", 2379)
    """

    def __init__(
        self,
        cluster: Cluster,
        *,
        advertise: str = "",
        limits: PlacementServerLimits | None = None,
    ) -> None:
        self._cluster = cluster
        self._advertise = advertise
        self._limits = limits if limits is not None else PlacementServerLimits()
        self._active = 0
        self._accepted = 0
        self._refused = 0
        self._failed = 0
        self._requests = 0
        self._error_answers = 0
        self._internal_errors = 0

    async def serve(
        self,
        host: str,
        port: int,
        *,
        task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port`` (0: any free port) and serve until cancelled.

        ``nursery.start`` returns the listeners (read the bound port from them).
        """
        listeners = await trio.open_tcp_listeners(port, host=host)
        await self.serve_listeners(listeners, task_status=task_status)

    async def serve_listeners(
        self,
        listeners: list[trio.SocketListener],
        *,
        task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve on already bound listeners until cancelled."""
        await trio.serve_listeners(self._handle, listeners, task_status=task_status)

    def statistics(self) -> PlacementServerStatistics:
        return PlacementServerStatistics(
            active_connections=self._active,
            accepted_connections=self._accepted,
            refused_connections=self._refused,
            failed_connections=self._failed,
            requests=self._requests,
            error_answers=self._error_answers,
            internal_errors=self._internal_errors,
        )

    # -- one connection ----------------------------------------------------------------------

    async def _handle(self, stream: trio.SocketStream) -> None:
        """The ``serve_listeners`` handler: no exception may escape (it would stop the server)."""
        try:
            name = _peer_name(stream)
        except OSError:
            name = "client"
        conn = FramedConnection(
            stream,
            cluster_id=self._cluster.cluster_id,
            max_frame_size=self._limits.max_frame_size,
            name=name,
        )
        self._accepted += 1
        if self._active >= self._limits.max_connections:
            self._refused += 1
            await conn.close_with_notice(ErrorNotice(ErrorCode.Busy, "too many connections"))
            return
        self._active += 1
        try:
            await self._serve_connection(conn)
        except TransportError as e:
            self._failed += 1
            log.info("placement connection from %s closed: %s", name, e)
        except Exception:
            self._failed += 1
            log.exception("placement connection from %s failed", name)
        finally:
            self._active -= 1
            await conn.aclose()

    async def _serve_connection(self, conn: FramedConnection) -> None:
        lim = self._limits
        hello = Hello(0, self._cluster.cluster_id, self._advertise)
        await conn.server_handshake(hello, timeout=lim.handshake_timeout)
        slots = trio.Semaphore(lim.max_inflight_requests)
        send_lock = trio.Lock()
        lost: list[TransportError] = []
        error: TransportError | None = None
        async with trio.open_nursery() as nursery:
            try:
                while True:
                    frame = await conn.receive_frame(
                        timeout=lim.frame_timeout, idle_timeout=lim.idle_timeout
                    )
                    if frame is None or frame.kind == FrameKind.ERROR:
                        break  # the client left (an ERROR frame says why): answer what is running
                    if frame.kind != FrameKind.PLACEMENT_REQUEST:
                        raise ProtocolError(
                            f"a {frame.kind.name} frame has no business on a placement connection"
                        )
                    try:
                        request = decode_placement_request(frame.payload)
                    except WireError as e:
                        raise ProtocolError(f"bad placement request from {conn.name}: {e}") from e
                    await slots.acquire()
                    nursery.start_soon(self._answer, conn, request, slots, send_lock, lost)
            except TransportError as e:
                error = e
                nursery.cancel_scope.cancel()  # the in-flight requests go with the connection
        if isinstance(error, ProtocolError | ConnectionTimeout):
            # Outside the cancelled nursery, so that the notice can be written.
            await conn.close_with_notice(ErrorNotice(ErrorCode.Protocol, str(error)))
        if error is None and lost:
            error = lost[0]
        if error is not None:
            raise error

    async def _answer(
        self,
        conn: FramedConnection,
        request: PlacementRequest,
        slots: trio.Semaphore,
        send_lock: trio.Lock,
        lost: list[TransportError],
    ) -> None:
        try:
            self._requests += 1
            result = await self._result(request)
            data = conn.encode(PlacementResponse(request.request_id, result))
            async with send_lock:
                await conn.send_bytes(data, timeout=self._limits.send_timeout)
        except TransportError as e:
            # The connection is gone or stuck: stop reading it and close it.
            lost.append(e)
            await conn.aclose()
        finally:
            slots.release()

    async def _result(self, request: PlacementRequest) -> PlacementResult | PlacementError:
        try:
            return await self._cluster.handle(request.body)
        except PlacementFailure as f:
            self._error_answers += 1
            return PlacementError(f.code, f.message)
        except Exception as e:
            self._internal_errors += 1
            log.exception("placement request %s failed", type(request.body).__name__)
            return PlacementError(
                PlacementErrorCode.Internal, f"internal error: {type(e).__name__}: {e}"
            )


def _peer_name(stream: trio.SocketStream) -> str:
    addr = stream.socket.getpeername()
    return f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)
