"""The client side of KV and admin requests to one store, multiplexed on one connection.

Theory of operation: :meth:`RpcConnection.connect` opens a connection, does the
Hello handshake, and starts one background task that owns the stream: it writes
the frames callers queue (coalescing whatever is ready into one write) and reads
responses, handing each to the caller waiting for its ``request_id``. Callers
never touch the stream, so a caller that gives up (deadline, cancellation) never
leaves a frame half written; its late response is simply discarded.

Request ids are the connection's own (a counter): the caller's ``request_id`` is
replaced on the wire and restored in the response it gets back, so callers need
not coordinate ids.

Errors: a call that gets no answer within its ``timeout`` raises
:class:`~multiraft.transport.errors.RpcTimeout` (the connection stays up). When the
connection breaks or the store closes it (the ``ErrorNotice`` is attached), every
waiting call and every later one raises
:class:`~multiraft.transport.errors.ConnectionLost`: make a new connection.

The background task is a trio *system task* (``connect`` is a plain classmethod,
so there is no caller nursery to put it in); :meth:`aclose` cancels it and waits
for it, and it ends with the ``trio.run`` that started it at the latest. Use the
connection as an async context manager, or call :meth:`aclose`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Final, TypeVar

import trio

from multiraft.transport.connection import FramedConnection, connect
from multiraft.transport.errors import ConnectionLost, ProtocolError, RpcTimeout, TransportError
from multiraft.wire import (
    DEFAULT_MAX_FRAME_SIZE,
    AdminRequest,
    AdminResponse,
    FrameKind,
    Hello,
    KvRequest,
    KvResponse,
)

__all__ = ["RpcConnection", "RpcStatistics"]

#: Requests queued for the writer at most; a caller over it waits (under its deadline).
MAX_QUEUED: Final = 1024
#: Seconds for one write, and for a response frame to complete once started.
SEND_TIMEOUT: Final = 30.0
FRAME_TIMEOUT: Final = 30.0

_Resp = TypeVar("_Resp", KvResponse, AdminResponse)


@dataclass(frozen=True, slots=True)
class RpcStatistics:
    address: str
    cluster_id: int
    store_id: int  # from the store's Hello
    calls_in_flight: int
    calls: int
    timeouts: int
    late_responses: int  # answers to calls that had already given up
    closed: bool


class _Call:
    __slots__ = ("done", "kind", "response")

    def __init__(self, kind: FrameKind) -> None:
        self.kind = kind  # the response kind expected
        self.done = trio.Event()
        self.response: KvResponse | AdminResponse | None = None


class RpcConnection:
    """KV and admin requests to one store over one multiplexed connection.

    Example::

        async with await RpcConnection.connect("127.0.0.1:20160", timeout=5) as rpc:
            resp = await rpc.kv(KvRequest(0, region_id, epoch, Get(b"k")), timeout=2)
    """

    def __init__(self, conn: FramedConnection, address: str) -> None:
        """Use :meth:`connect`."""
        self._conn = conn
        self.address = address
        assert conn.peer is not None
        #: The store's Hello (its store id and address).
        self.peer: Hello = conn.peer
        self._calls: dict[int, _Call] = {}
        self._next_id = 1
        self._out_send, self._out_receive = trio.open_memory_channel[bytes](MAX_QUEUED)
        self._error: ConnectionLost | None = None
        self._scope = trio.CancelScope()
        self._finished = trio.Event()
        self._n_calls = 0
        self._timeouts = 0
        self._late = 0
        self._write_error: TransportError | None = None

    @classmethod
    async def connect(cls, address: str, *, cluster_id: int = 0, timeout: float,  # noqa: ASYNC109
                      max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> RpcConnection:  # fmt: skip
        """Connect to the store at ``address`` and shake hands, within ``timeout`` seconds.

        ``cluster_id`` 0 accepts whatever cluster the store is in (see :attr:`cluster_id`).

        Raises:
            ConnectFailed: no connection.
            HandshakeFailed: refused (wrong cluster: see ``notice``) or no proper answer.
        """
        conn = await connect(address, Hello(0, cluster_id, ""), timeout=timeout,
                             max_frame_size=max_frame_size, name=address)  # fmt: skip
        self = cls(conn, address)
        trio.lowlevel.spawn_system_task(self._run, name=f"rpc connection to {address}")
        return self

    @property
    def cluster_id(self) -> int:
        """The store's cluster id (learnt from its Hello when we connected with 0)."""
        return self._conn.cluster_id

    @property
    def closed(self) -> bool:
        return self._error is not None

    # -- calls -----------------------------------------------------------------------------

    async def kv(self, req: KvRequest, *, timeout: float) -> KvResponse:  # noqa: ASYNC109
        """Send a KV request and wait for its response.

        Raises:
            RpcTimeout: no response within ``timeout`` seconds.
            ConnectionLost: the connection is (or became) unusable.
        """
        call = _Call(FrameKind.KV_RESPONSE)
        rid = self._register(call)
        resp = await self._call(rid, call, replace(req, request_id=rid), timeout)
        assert isinstance(resp, KvResponse)
        return replace(resp, request_id=req.request_id)

    async def admin(self, req: AdminRequest, *, timeout: float) -> AdminResponse:  # noqa: ASYNC109
        """Send an admin request and wait for its response (errors as for :meth:`kv`)."""
        call = _Call(FrameKind.ADMIN_RESPONSE)
        rid = self._register(call)
        resp = await self._call(rid, call, replace(req, request_id=rid), timeout)
        assert isinstance(resp, AdminResponse)
        return replace(resp, request_id=req.request_id)

    def _register(self, call: _Call) -> int:
        if self._error is not None:
            raise _copy(self._error) from self._error
        rid = self._next_id
        self._next_id += 1
        self._calls[rid] = call
        self._n_calls += 1
        return rid

    async def _call(
        self,
        rid: int,
        call: _Call,
        req: KvRequest | AdminRequest,
        timeout: float,  # noqa: ASYNC109
    ) -> KvResponse | AdminResponse:
        try:
            with trio.fail_after(timeout):
                try:
                    await self._out_send.send(self._conn.encode(req))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass  # the connection ended: call.done is (or will be) set
                await call.done.wait()
        except trio.TooSlowError:
            self._timeouts += 1
            raise RpcTimeout(
                f"no response from {self.address} to request {rid} within {timeout}s"
            ) from None
        finally:
            self._calls.pop(rid, None)
        if call.response is None:
            err = self._error or ConnectionLost(f"connection to {self.address} closed")
            raise _copy(err) from err
        return call.response

    # -- the background task ---------------------------------------------------------------

    async def _run(self) -> None:
        error: TransportError | None = None
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write_loop, nursery.cancel_scope)
                    try:
                        await self._read_loop()
                    except TransportError as e:
                        error = e
                    nursery.cancel_scope.cancel()
                error = error or self._write_error
        except Exception as e:  # a bug: fail the calls rather than crash trio.run
            error = ConnectionLost(f"rpc connection to {self.address} failed: {e!r}")
        finally:
            self._fail_all(error or ConnectionLost(f"connection to {self.address} closed"))
            with trio.CancelScope(shield=True):
                await self._conn.aclose()
            self._finished.set()

    async def _write_loop(self, scope: trio.CancelScope) -> None:
        receive = self._out_receive
        try:
            while True:
                data = await receive.receive()
                parts = [data]
                while True:
                    try:
                        parts.append(receive.receive_nowait())
                    except trio.WouldBlock:
                        break
                await self._conn.send_bytes(data if len(parts) == 1 else b"".join(parts),
                                            timeout=SEND_TIMEOUT)  # fmt: skip
        except TransportError as e:
            self._write_error = e
            scope.cancel()

    async def _read_loop(self) -> None:
        conn = self._conn
        while True:
            # Idle waits are unbounded: callers bound their own waits, and the store
            # closes connections idle for too long (we then see the end of stream).
            frame = await conn.receive_frame(timeout=FRAME_TIMEOUT, idle_timeout=math.inf)
            if frame is None:
                raise ConnectionLost(f"{self.address} closed the connection")
            kind = frame.kind
            if kind == FrameKind.KV_RESPONSE or kind == FrameKind.ADMIN_RESPONSE:
                resp = conn.decode(frame)
                assert isinstance(resp, KvResponse | AdminResponse)
                call = self._calls.get(resp.request_id)
                if call is None:
                    self._late += 1
                    continue
                if call.kind != kind:
                    raise ProtocolError(
                        f"{self.address} answered request {resp.request_id} with {kind.name}"
                    )
                call.response = resp
                call.done.set()
            elif kind == FrameKind.ERROR:
                raise ConnectionLost(f"{self.address} closed the connection",
                                     notice=conn.decode_notice(frame))  # fmt: skip
            else:
                raise ProtocolError(f"{self.address} sent a {kind.name} frame to a client")

    def _fail_all(self, error: TransportError) -> None:
        if self._error is None:
            self._error = error if isinstance(error, ConnectionLost) else _copy(error)
        self._out_send.close()
        for call in self._calls.values():
            call.done.set()

    # -- closing ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the connection; waiting calls fail with ConnectionLost. Idempotent."""
        if self._error is None:
            self._error = ConnectionLost(f"connection to {self.address} closed by aclose()")
        self._scope.cancel()
        await self._finished.wait()

    async def __aenter__(self) -> RpcConnection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def statistics(self) -> RpcStatistics:
        return RpcStatistics(
            address=self.address,
            cluster_id=self.cluster_id,
            store_id=self.peer.store_id,
            calls_in_flight=len(self._calls),
            calls=self._n_calls,
            timeouts=self._timeouts,
            late_responses=self._late,
            closed=self.closed,
        )


def _copy(error: TransportError) -> ConnectionLost:
    """A fresh ConnectionLost saying what ``error`` says (one per failing caller)."""
    lost = ConnectionLost(str(error))
    lost.notice = error.notice
    return lost
