"""Metrics of the store-to-store transport: frames, bytes, queues, connections.

Subsystem ``transport``; emitted by ``multiraft.transport``. The raft subsystem counts messages
as the store hands them over; these count what reaches (or fails to reach) a socket. One frame
carries many regions' messages, so ``frame_messages`` shows how well batching works.

The only id-like label is ``to_store`` on the queue gauge: stores are few (tens), so it is
bounded; a transport that forgets a store (tombstoned) calls ``forget_store``.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry

from multiraft.metrics._common import COUNT_BUCKETS, MetricFactory, each
from multiraft.metrics.raft import WIRE_MESSAGE_TYPES

#: Why the transport dropped an outgoing raft message (the store then reports the peer
#: unreachable, and Raft retries).
DROP_REASONS: Final = (
    "queue_full",  # the destination's bounded send queue was full
    "disconnected",  # no connection and the reconnect backoff has not elapsed
    "unresolved",  # no address known for the destination store
    "frame_too_large",  # the encoded message alone exceeds the maximum frame size
    "encode_failed",  # the codec refused the message
    "shutdown",  # the transport is closing
    "fault_injected",  # test-only fault injection blocks the destination
)

#: Kinds of connection failure.
CONNECTION_ERROR_KINDS: Final = (
    "connect",  # open_tcp_stream failed (refused, unreachable)
    "timeout",  # connect, send or handshake exceeded its deadline
    "closed",  # the peer closed or reset the connection
    "protocol",  # a bad frame: wrong version or cluster id, oversized length, undecodable
)


class TransportMetrics:
    """The ``multiraft_transport_*`` metrics of one store process.

    Args:
        registry: the process's registry (tests: a fresh ``CollectorRegistry()``).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        f = MetricFactory(registry, "transport")

        #: Raft messages written to a connection, by MessageType name.
        self.messages_sent = f.counter(
            "messages_sent",
            "Raft messages written to a connection, by message type.",
            ["type"],
            initial=each(*WIRE_MESSAGE_TYPES),
        )
        #: Outgoing raft messages dropped, by reason.
        self.messages_dropped = f.counter(
            "messages_dropped",
            "Outgoing raft messages dropped by the transport, by reason.",
            ["reason"],
            initial=each(*DROP_REASONS),
        )
        #: Bytes written to connections (frame headers included).
        self.sent_bytes = f.counter("sent", "Bytes written to connections.", unit="bytes")
        #: Bytes read from connections.
        self.received_bytes = f.counter("received", "Bytes read from connections.", unit="bytes")
        #: Frames written.
        self.frames_sent = f.counter("frames_sent", "Frames written to connections.")
        #: Frames read and decoded.
        self.frames_received = f.counter("frames_received", "Frames read from connections.")
        #: Raft messages per sent frame.
        self.frame_messages = f.histogram(
            "frame_messages",
            "Raft messages carried by one sent frame (batching efficiency).",
            buckets=COUNT_BUCKETS,
        )
        #: Messages waiting in the send queue of each destination store.
        self.send_queue_length = f.gauge(
            "send_queue_length",
            "Messages waiting in the send queue to a destination store.",
            ["to_store"],
        )
        #: Connection failures, by kind.
        self.connection_errors = f.counter(
            "connection_errors",
            "Connection failures, by kind (connect, timeout, closed, protocol).",
            ["kind"],
            initial=each(*CONNECTION_ERROR_KINDS),
        )
        #: Successful reconnections after a failure.
        self.reconnects = f.counter(
            "reconnects", "Connections re-established to a store after a failure."
        )

    def forget_store(self, store_id: int) -> None:
        """Drop the per-destination series of a store that left the cluster."""
        try:
            self.send_queue_length.remove(str(store_id))
        except KeyError:
            pass  # never had a queue: nothing to forget
