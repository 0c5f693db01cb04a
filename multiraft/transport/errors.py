"""The transport's errors: every way talking to another process can fail.

Hierarchy (``kind`` is the ``multiraft_transport_connection_errors_total`` label)::

    TransportError
    ├── ConnectFailed        no connection: bad or unknown address, refused, connect
    │                        timeout, or the destination is blocked by fault injection  (connect)
    ├── HandshakeFailed      connected, but the Hello exchange failed: another cluster,
    │                        a bad first frame, a timeout                      (protocol/timeout)
    ├── ConnectionLost       an established connection is gone; calls on it fail  (closed)
    │   ├── ConnectionTimeout    a network wait passed its deadline              (timeout)
    │   └── ProtocolError        the peer broke the protocol: a bad frame or payload,
    │                            or a frame of a kind that has no business here  (protocol)
    └── RpcTimeout           one call got no answer in time; the connection stays up  (timeout)

``notice`` carries the :class:`~multiraft.wire.ErrorNotice` the peer sent before
closing, when it sent one: it says *why* (``WrongCluster``, ``Protocol``, ``Busy``...).

Bad bytes from the network surface here as :class:`ProtocolError` with the
:class:`~multiraft.wire.WireError` as ``__cause__``; no other exception type leaves
the transport for a network failure.
"""

from __future__ import annotations

from typing import ClassVar

from multiraft.wire import ErrorNotice

__all__ = [
    "ConnectFailed",
    "ConnectionLost",
    "ConnectionTimeout",
    "HandshakeFailed",
    "ProtocolError",
    "RpcTimeout",
    "TransportError",
]


class TransportError(Exception):
    """Base of every transport failure."""

    #: The ``kind`` label of ``multiraft_transport_connection_errors_total`` for this error.
    kind: ClassVar[str] = "closed"

    def __init__(self, message: str, *, notice: ErrorNotice | None = None) -> None:
        if notice is not None:
            message = f"{message} (peer said {notice.code.name}: {notice.message})"
        super().__init__(message)
        #: Why the peer closed the connection, if it said so before closing.
        self.notice = notice


class ConnectFailed(TransportError):
    """No connection could be opened (address unknown or unparsable, refused, timed out)."""

    kind: ClassVar[str] = "connect"


class HandshakeFailed(TransportError):
    """The connection opened but the Hello exchange did not complete.

    ``timed_out`` tells a slow peer from a refusing one (another cluster, a bad reply).
    """

    kind: ClassVar[str] = "protocol"

    def __init__(
        self, message: str, *, notice: ErrorNotice | None = None, timed_out: bool = False
    ) -> None:
        super().__init__(message, notice=notice)
        self.timed_out = timed_out

    @property
    def error_kind(self) -> str:
        return "timeout" if self.timed_out else "protocol"


class ConnectionLost(TransportError):
    """An established connection broke or was closed; everything waiting on it fails."""

    kind: ClassVar[str] = "closed"


class ConnectionTimeout(ConnectionLost):
    """A send or receive on an established connection passed its deadline.

    The stream is in an unknown state afterwards (a frame may be half written or half
    read), so the connection is closed: a timeout is a kind of loss.
    """

    kind: ClassVar[str] = "timeout"


class ProtocolError(ConnectionLost):
    """The peer broke the protocol; the frame stream cannot be trusted, so it is closed."""

    kind: ClassVar[str] = "protocol"


class RpcTimeout(TransportError):
    """A request got no response within its deadline.

    The connection stays open: the late response, if it comes, is discarded. Whether
    the request took effect is unknown (a write may still commit).
    """

    kind: ClassVar[str] = "timeout"


def error_kind(exc: BaseException) -> str:
    """The connection-error ``kind`` label for ``exc`` (``closed`` for unknown errors)."""
    if isinstance(exc, HandshakeFailed):
        return exc.error_kind
    if isinstance(exc, TransportError):
        return exc.kind
    return "closed"
