"""The store-to-store and client-to-store network layer, on trio TCP streams.

* :func:`serve_store` / :class:`StoreServer` (``server.py``): a store's one
  listener; raft batches, snapshot streams, KV and admin requests go to an
  :class:`InboundHandler`.
* :class:`RaftTransport` (``raft_transport.py``): a store's outbound raft
  traffic, one :class:`~multiraft.transport.peer.PeerSender` (bounded queue,
  batching, reconnect with backoff) per destination (``peer.py``), plus
  snapshot streams.
* :class:`RpcConnection` (``rpc.py``): KV and admin requests to one store,
  multiplexed by request id on one connection.
* :class:`FramedConnection` (``connection.py``): one framed stream with the
  Hello handshake; what the others are built on.
* :class:`FaultInjector` (``faults.py``): test-only partitions.
* ``errors.py``: :class:`TransportError` and its family.

Every connection starts with a Hello each way and is refused (with an
ErrorNotice) across clusters; every network wait has a deadline; a bad peer
costs its own connection only.
"""

from multiraft.transport.connection import FramedConnection, connect, open_connection, parse_address
from multiraft.transport.errors import (
    ConnectFailed,
    ConnectionLost,
    ConnectionTimeout,
    HandshakeFailed,
    ProtocolError,
    RpcTimeout,
    TransportError,
)
from multiraft.transport.faults import FaultInjector, FaultStatistics
from multiraft.transport.peer import Backoff, PeerSender, PeerState, PeerStatistics
from multiraft.transport.raft_transport import RaftTransport, TransportStatistics
from multiraft.transport.rpc import RpcConnection, RpcStatistics
from multiraft.transport.server import (
    InboundHandler,
    ServerLimits,
    ServerStatistics,
    StoreServer,
    serve_store,
)

__all__ = [
    "Backoff",
    "ConnectFailed",
    "ConnectionLost",
    "ConnectionTimeout",
    "FaultInjector",
    "FaultStatistics",
    "FramedConnection",
    "HandshakeFailed",
    "InboundHandler",
    "PeerSender",
    "PeerState",
    "PeerStatistics",
    "ProtocolError",
    "RaftTransport",
    "RpcConnection",
    "RpcStatistics",
    "RpcTimeout",
    "ServerLimits",
    "ServerStatistics",
    "StoreServer",
    "TransportError",
    "TransportStatistics",
    "connect",
    "open_connection",
    "parse_address",
    "serve_store",
]
