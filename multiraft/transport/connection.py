"""One framed connection: frames out, verified frames in, and the Hello handshake.

Theory of operation: a :class:`FramedConnection` wraps a trio stream (a TCP
socket, or an in-memory stream in tests) and a sans-IO
:class:`~multiraft.wire.FrameDecoder`. It knows nothing of requests, batches or
stores; the server (``server.py``), the raft senders (``peer.py``) and the RPC
client (``rpc.py``) build on it.

Rules:

* **Every network wait has a deadline.** ``send_bytes``/``receive_frame`` take a
  ``timeout`` and wait under a deadline cancel scope (``fail_after`` without its
  generator wrapper, on the hot path); a wait that passes it raises
  :class:`~multiraft.transport.errors.ConnectionTimeout`. ``receive_frame`` takes
  a second, usually longer ``idle_timeout`` for the wait *between* frames: once
  the first bytes of a frame are in, the rest is due within ``timeout`` (a peer
  that trickles a frame byte by byte cannot hold the connection forever).
  (Deadlines are parameters here, not left to the caller's ``fail_after``,
  hence the ``noqa: ASYNC109`` in this package: each expiry must become the
  right error, and the idle/in-frame split is not a caller's scope.)
* **Bad input never allocates.** Frames are cut by the decoder, which checks a
  header's length against ``max_frame_size`` before it keeps any of the body.
  Any :class:`~multiraft.wire.WireError` becomes a
  :class:`~multiraft.transport.errors.ProtocolError` (the stream cannot be
  resynchronised: close it).
* **Only transport errors leave.** Broken and closed streams become
  ``ConnectionLost``; nothing else escapes for a network failure.
* **One sender and one receiver at a time.** Like the trio stream beneath it, a
  connection must not be sent on by two tasks at once, nor received on by two.

Handshake: the first frame each way is a :class:`~multiraft.wire.Hello`. The
client sends first (with cluster id 0 if it does not know the cluster yet); the
server checks the cluster id in the frame header and in the Hello, and either
answers with its own Hello or with an :class:`~multiraft.wire.ErrorNotice` and
closes. A client that said 0 adopts the cluster id of the server's Hello.

Closing after an error: :meth:`FramedConnection.close_with_notice` sends the
notice, half-closes, and drains what the peer still sends for a moment before
closing, because closing a socket with unread input makes the kernel answer with
a reset that can destroy the notice before the peer reads it. The notice frame
carries the cluster id the *peer* expects when we know it (the one it claimed),
so that a peer of another cluster can still decode why it was refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

import trio

from multiraft.metrics import TransportMetrics
from multiraft.transport.errors import (
    ConnectFailed,
    ConnectionLost,
    ConnectionTimeout,
    HandshakeFailed,
    ProtocolError,
)
from multiraft.wire import (
    DEFAULT_MAX_FRAME_SIZE,
    ErrorCode,
    ErrorNotice,
    Frame,
    FrameDecoder,
    FrameKind,
    Hello,
    Payload,
    WireError,
    WrongClusterId,
    decode_error_notice,
    decode_hello,
    decode_payload,
    encode_error_notice,
    encode_frame,
    encode_payload,
)

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "FramedConnection",
    "connect",
    "open_connection",
    "parse_address",
]

#: Bytes asked of the socket per read: large enough to take many frames per syscall.
RECEIVE_SIZE: Final = 256 * 1024
#: Seconds to open a TCP connection, and to exchange Hellos.
DEFAULT_CONNECT_TIMEOUT: Final = 5.0
DEFAULT_HANDSHAKE_TIMEOUT: Final = 5.0
#: Seconds to write an ErrorNotice before closing; it is best effort.
NOTICE_TIMEOUT: Final = 1.0
#: After a notice, how long and how much to drain from a peer that keeps sending.
LINGER_SECONDS: Final = 1.0
LINGER_BYTES: Final = 256 * 1024


def parse_address(address: str) -> tuple[str, int]:
    """``"host:port"`` (or ``"[v6]:port"``) as ``(host, port)``.

    Raises:
        ValueError: not a host and a port in 1..65535.
    """
    host, sep, port_s = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise ValueError(f"{address!r} is not a host:port address")
    return host, int(port_s)


class FramedConnection:
    """A trio stream carrying multiraft frames. See the module docstring.

    Args:
        stream: the byte stream (usually a ``trio.SocketStream``); owned from now on.
        cluster_id: the cluster this process belongs to; 0 for a client that will
            learn it from the server's Hello.
        max_frame_size: the largest payload accepted from the peer.
        metrics: counts bytes in and out and frames in, when given.
        name: who is on the other side, for error messages (e.g. ``"store 3"``).
    """

    __slots__ = ("_closed", "_decoder", "_metrics", "_stream", "name", "peer")

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        cluster_id: int,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        metrics: TransportMetrics | None = None,
        name: str = "peer",
    ) -> None:
        self._stream = stream
        self._decoder = FrameDecoder(cluster_id, max_frame_size)
        self._metrics = metrics
        self._closed = False
        self.name = name
        #: The peer's Hello, once the handshake is done.
        self.peer: Hello | None = None

    @property
    def stream(self) -> trio.abc.Stream:
        return self._stream

    @property
    def cluster_id(self) -> int:
        """The cluster id frames carry (0 until a client has learnt it)."""
        return self._decoder.cluster_id

    @property
    def closed(self) -> bool:
        return self._closed

    # -- sending ---------------------------------------------------------------------------

    def encode(self, obj: Payload) -> bytes:
        """The frame bytes for one payload object, stamped with our cluster id."""
        kind, payload = encode_payload(obj)
        return encode_frame(kind, self._decoder.cluster_id, payload)

    async def send_bytes(self, data: bytes, *, timeout: float) -> None:  # noqa: ASYNC109
        """Write already encoded frames (one or many, joined) within ``timeout`` seconds.

        Raises:
            ConnectionTimeout: not all written in time (the stream is now unusable).
            ConnectionLost: the stream is broken or closed.
        """
        # A bare CancelScope is fail_after without its generator wrapper: this is the
        # hot path of every frame.
        scope = trio.CancelScope(deadline=trio.current_time() + timeout)
        try:
            with scope:
                await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
            raise ConnectionLost(f"connection to {self.name} broke while sending: {e}") from e
        if scope.cancelled_caught:
            raise ConnectionTimeout(
                f"sending {len(data)} bytes to {self.name} took longer than {timeout}s"
            )
        if self._metrics is not None:
            self._metrics.sent_bytes.inc(len(data))

    async def send(self, obj: Payload, *, timeout: float) -> None:  # noqa: ASYNC109
        """Encode ``obj`` as one frame and write it (see :meth:`send_bytes`)."""
        await self.send_bytes(self.encode(obj), timeout=timeout)

    # -- receiving -------------------------------------------------------------------------

    async def receive_frame(
        self,
        *,
        timeout: float,  # noqa: ASYNC109
        idle_timeout: float | None = None,
    ) -> Frame | None:
        """The next complete frame, or None when the peer closed the stream between frames.

        Args:
            timeout: seconds for a whole frame to arrive once it has started (and for
                the first bytes too, unless ``idle_timeout`` is given).
            idle_timeout: seconds to wait for the first bytes of the next frame
                (``math.inf``: no limit while the connection is idle).

        Raises:
            ProtocolError: a bad frame, or the stream ended inside one.
            ConnectionTimeout: a deadline passed.
            ConnectionLost: the stream is broken or closed.
        """
        dec = self._decoder
        try:
            frame = dec.next_frame()
        except WireError as e:  # poisoned by an earlier error
            raise ProtocolError(f"bad frame from {self.name}: {e}") from e
        if frame is not None:
            return self._got(frame)
        first_wait = timeout
        idle = False
        if idle_timeout is not None and dec.buffered == 0:
            first_wait, idle = idle_timeout, True
        deadline = trio.current_time() + first_wait
        while True:
            data: bytes | bytearray = b""
            scope = trio.CancelScope(deadline=deadline)
            try:
                with scope:
                    data = await self._stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
                raise ConnectionLost(f"connection to {self.name} broke: {e}") from e
            if scope.cancelled_caught:
                what = "waiting for a frame" if dec.buffered == 0 else "inside a frame"
                raise ConnectionTimeout(f"{self.name} sent nothing in time ({what})")
            try:
                if not data:
                    dec.feed_eof()
                    return None
                if self._metrics is not None:
                    self._metrics.received_bytes.inc(len(data))
                dec.feed(data)
                frame = dec.next_frame()
            except WireError as e:
                raise ProtocolError(f"bad frame from {self.name}: {e}") from e
            if frame is not None:
                return self._got(frame)
            if idle and dec.buffered:
                # A frame has started: from now on its rest is due within `timeout`.
                idle = False
                deadline = trio.current_time() + timeout

    def _got(self, frame: Frame) -> Frame:
        if self._metrics is not None:
            self._metrics.frames_received.inc()
        return frame

    def decode(self, frame: Frame) -> Payload:
        """The payload object of ``frame``.

        Raises:
            ProtocolError: the payload does not decode.
        """
        try:
            return decode_payload(frame.kind, frame.payload)
        except WireError as e:
            raise ProtocolError(f"bad {frame.kind.name} payload from {self.name}: {e}") from e

    async def receive(self, *, timeout: float, idle_timeout: float | None = None) -> Payload | None:  # noqa: ASYNC109
        """The next frame's payload object, or None at a clean end of stream."""
        frame = await self.receive_frame(timeout=timeout, idle_timeout=idle_timeout)
        return None if frame is None else self.decode(frame)

    # -- handshake -------------------------------------------------------------------------

    async def client_handshake(self, hello: Hello, *, timeout: float) -> Hello:  # noqa: ASYNC109
        """Send our Hello, read the server's; learn the cluster id if ours is 0.

        Raises:
            HandshakeFailed: refused (``notice`` says why), a bad reply, or too slow.
                The connection is closed.
        """
        try:
            with trio.fail_after(timeout):
                await self.send(hello, timeout=math.inf)
                frame = await self.receive_frame(timeout=math.inf)
                peer = self._check_server_hello(frame)
        except trio.TooSlowError:
            await self.aclose()
            raise HandshakeFailed(
                f"{self.name} did not answer the Hello within {timeout}s", timed_out=True
            ) from None
        except ConnectionLost as e:
            await self.aclose()
            raise HandshakeFailed(f"handshake with {self.name} failed: {e}") from e
        except HandshakeFailed:
            await self.aclose()
            raise
        self.peer = peer
        return peer

    def _check_server_hello(self, frame: Frame | None) -> Hello:
        if frame is None:
            raise HandshakeFailed(f"{self.name} closed the connection instead of answering Hello")
        if frame.kind == FrameKind.ERROR:
            notice = self.decode_notice(frame)
            raise HandshakeFailed(f"{self.name} refused the connection", notice=notice)
        if frame.kind != FrameKind.HELLO:
            raise HandshakeFailed(f"{self.name} answered Hello with a {frame.kind.name} frame")
        try:
            peer = decode_hello(frame.payload)
        except WireError as e:
            raise HandshakeFailed(f"{self.name} sent a bad Hello: {e}") from e
        mine = self._decoder.cluster_id
        if peer.cluster_id == 0 or peer.cluster_id != frame.cluster_id:
            raise HandshakeFailed(
                f"{self.name} sent a Hello with cluster id {peer.cluster_id} in a frame of "
                f"cluster {frame.cluster_id}"
            )
        if mine == 0:
            self._decoder.adopt_cluster_id(peer.cluster_id)
        elif peer.cluster_id != mine:  # the decoder already refuses such frames
            raise HandshakeFailed(f"{self.name} is in cluster {peer.cluster_id}, not {mine}")
        return peer

    def decode_notice(self, frame: Frame) -> ErrorNotice | None:
        """The ErrorNotice in an ERROR frame, or None if even that is malformed."""
        try:
            return decode_error_notice(frame.payload)
        except WireError:
            return None

    async def server_handshake(
        self,
        hello: Hello,
        *,
        timeout: float,  # noqa: ASYNC109
        on_failure: Callable[[HandshakeFailed], None] | None = None,
    ) -> Hello:
        """Read the client's Hello, check its cluster id, answer with ``hello``.

        Args:
            hello: our Hello.
            timeout: seconds for the client's Hello to arrive and ours to be sent.
            on_failure: called with the error before the connection is closed (to count
                it while the peer is still reading our notice).

        Raises:
            HandshakeFailed: the first frame was not an acceptable Hello, or did not come
                in time. The connection is closed, after an ErrorNotice when that helps.
        """
        try:
            peer = await self._receive_client_hello(timeout)
            try:
                await self.send(hello, timeout=timeout)
            except ConnectionLost as e:
                raise HandshakeFailed(f"could not answer the Hello of {self.name}: {e}",
                                      timed_out=isinstance(e, ConnectionTimeout)) from e  # fmt: skip
        except HandshakeFailed as e:
            if on_failure is not None:
                on_failure(e)
            if isinstance(e, _Refused):
                await self.close_with_notice(e.reply, cluster_id=e.reply_cluster_id)
            else:
                await self.aclose()
            raise
        self.peer = peer
        return peer

    async def _receive_client_hello(self, timeout: float) -> Hello:  # noqa: ASYNC109
        mine = self._decoder.cluster_id
        try:
            frame = await self.receive_frame(timeout=timeout)
        except ProtocolError as e:
            cause = e.__cause__
            if isinstance(cause, WrongClusterId):
                msg = f"this is cluster {mine:#x}, the peer is in cluster {cause.got:#x}"
                raise _Refused(f"{self.name}: {msg}", ErrorCode.WrongCluster, msg,
                               cause.got or None) from e  # fmt: skip
            raise _Refused(f"bad first frame from {self.name}: {e}", ErrorCode.Protocol,
                           str(e)) from e  # fmt: skip
        except ConnectionTimeout as e:
            raise HandshakeFailed(f"{self.name} sent no Hello within {timeout}s",
                                  timed_out=True) from e  # fmt: skip
        except ConnectionLost as e:
            raise HandshakeFailed(f"{self.name} left before its Hello: {e}") from e
        if frame is None:
            raise HandshakeFailed(f"{self.name} closed the connection before its Hello")
        if frame.kind != FrameKind.HELLO:
            msg = f"the first frame must be HELLO, got {frame.kind.name}"
            raise _Refused(f"{self.name}: {msg}", ErrorCode.Protocol, msg)
        try:
            peer = decode_hello(frame.payload)
        except WireError as e:
            raise _Refused(f"bad Hello from {self.name}: {e}", ErrorCode.Protocol,
                           f"bad Hello: {e}") from e  # fmt: skip
        if peer.cluster_id not in (0, mine):
            msg = f"this is cluster {mine:#x}, the peer is in cluster {peer.cluster_id:#x}"
            raise _Refused(f"{self.name}: {msg}", ErrorCode.WrongCluster, msg, peer.cluster_id)
        return peer

    # -- closing ---------------------------------------------------------------------------

    async def close_with_notice(
        self, notice: ErrorNotice, *, cluster_id: int | None = None
    ) -> None:
        """Tell the peer why, then close. Best effort: never raises a transport error.

        Args:
            notice: the reason.
            cluster_id: the cluster id to stamp on the notice frame (the one the peer
                expects); default ours. Without any, the notice is not sent.
        """
        cid = cluster_id or self._decoder.cluster_id
        try:
            if cid and not self._closed:
                data = encode_frame(FrameKind.ERROR, cid, encode_error_notice(notice))
                with trio.move_on_after(NOTICE_TIMEOUT):
                    await self._stream.send_all(data)
                    if isinstance(self._stream, trio.abc.HalfCloseableStream):
                        await self._stream.send_eof()
                    with trio.move_on_after(LINGER_SECONDS):
                        drained = 0
                        while drained < LINGER_BYTES:
                            chunk = await self._stream.receive_some(RECEIVE_SIZE)
                            if not chunk:
                                break
                            drained += len(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the peer is gone already: nobody left to tell
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Close the stream (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._stream.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


class _Refused(HandshakeFailed):
    """A refusal for which server_handshake owes the peer ``ErrorNotice(code, reason)``,
    stamped with ``reply_cluster_id`` (the one the peer expects; None: ours)."""

    def __init__(
        self, message: str, code: ErrorCode, reason: str, reply_cluster_id: int | None = None
    ) -> None:
        super().__init__(message)
        self.reply = ErrorNotice(code, reason)
        self.reply_cluster_id = reply_cluster_id


async def open_connection(
    address: str,
    *,
    cluster_id: int,
    timeout: float = DEFAULT_CONNECT_TIMEOUT,  # noqa: ASYNC109
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    metrics: TransportMetrics | None = None,
    name: str | None = None,
) -> FramedConnection:
    """Open a TCP connection to ``address`` (no handshake yet).

    Raises:
        ConnectFailed: a bad address, a refusal, or no connection within ``timeout``.
    """
    try:
        host, port = parse_address(address)
    except ValueError as e:
        raise ConnectFailed(str(e)) from None
    try:
        with trio.fail_after(timeout):
            stream = await trio.open_tcp_stream(host, port)
    except trio.TooSlowError:
        raise ConnectFailed(f"connecting to {address} took longer than {timeout}s") from None
    except OSError as e:
        raise ConnectFailed(f"cannot connect to {address}: {e.strerror or e}") from e
    return FramedConnection(
        stream, cluster_id=cluster_id, max_frame_size=max_frame_size, metrics=metrics,
        name=name or address,
    )  # fmt: skip


async def connect(
    address: str,
    hello: Hello,
    *,
    timeout: float = DEFAULT_CONNECT_TIMEOUT,  # noqa: ASYNC109
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    metrics: TransportMetrics | None = None,
    name: str | None = None,
) -> FramedConnection:
    """Open a connection and do the client handshake, both within ``timeout`` seconds.

    Our cluster id is ``hello.cluster_id`` (0: learn it from the server).

    Raises:
        ConnectFailed: no connection.
        HandshakeFailed: the server refused us or did not answer properly.
    """
    deadline = trio.current_time() + timeout
    conn = await open_connection(
        address, cluster_id=hello.cluster_id, timeout=timeout, max_frame_size=max_frame_size,
        metrics=metrics, name=name,
    )  # fmt: skip
    remaining = max(deadline - trio.current_time(), 0.0)
    await conn.client_handshake(hello, timeout=remaining)
    return conn
