"""Shared pieces of the transport tests: a recording handler, envelopes, servers, raw sockets.

Synchronisation rule of these tests: wait on an event or a condition under
``trio.fail_after``, never on a guessed sleep. :class:`Changes` turns "something
happened" callbacks into a condition the test can wait on.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio
import trio.testing
from prometheus_client import CollectorRegistry

from multiraft.metrics import TransportMetrics
from multiraft.raft.types import Entry, Message, MessageType
from multiraft.transport import FaultInjector, ServerLimits, StoreServer
from multiraft.wire import (
    HEADER_SIZE,
    MAGIC,
    WIRE_VERSION,
    AdminOk,
    AdminRequest,
    AdminResponse,
    ErrorNotice,
    Frame,
    FrameDecoder,
    FrameKind,
    Get,
    GetResult,
    Hello,
    KvRequest,
    KvResponse,
    RaftBatch,
    RaftEnvelope,
    SnapshotAck,
    SnapshotAckStatus,
    SnapshotChunk,
    decode_error_notice,
    encode_frame,
    encode_hello,
)
from regions.region import Peer, RegionEpoch

CID = 0xC1A5_7E12_0000_0042
OTHER_CID = 0x0BAD_0000_0000_0001
WAIT = 10.0  # generous deadline for conditions that normally hold within milliseconds


class Changes:
    """A condition variable for single-task-at-a-time code: ``notify()`` wakes waiters."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = trio.Event()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        with trio.fail_after(WAIT):
            while not predicate():
                await self._event.wait()


async def settle() -> None:
    """Wait until every task is blocked and no I/O is ready: what was sent on loopback has
    been received and handled (loopback delivers inside the sending syscall)."""
    with trio.fail_after(WAIT):
        await trio.testing.wait_all_tasks_blocked()


def envelope(
    region_id: int = 1,
    n: int = 0,
    *,
    from_store: int = 1,
    to_store: int = 2,
    msg_type: MessageType = MessageType.MsgAppend,
    data: bytes = b"",
) -> RaftEnvelope:
    """A raft envelope whose ``message.index`` is ``n`` (to check order)."""
    entries = [Entry(term=3, index=n, data=data)] if data else []
    msg = Message(msg_type, to=region_id * 10 + to_store, from_=region_id * 10 + from_store,
                  term=3, index=n, entries=entries)  # fmt: skip
    return RaftEnvelope(region_id, Peer(region_id * 10 + from_store, from_store),
                        Peer(region_id * 10 + to_store, to_store), RegionEpoch(1, 1), msg)  # fmt: skip


def get_request(key: bytes, request_id: int = 0) -> KvRequest:
    return KvRequest(request_id, 1, RegionEpoch(1, 1), Get(key))


class RecordingHandler:
    """An InboundHandler that records raft batches and answers requests on cue.

    KV ``Get(key)`` answers ``GetResult(key)`` once ``release(key)`` was called (at
    once when ``auto``); a key starting with ``b"boom"`` raises instead.
    """

    def __init__(self, *, auto: bool = True) -> None:
        self.auto = auto
        self.batches: list[RaftBatch] = []
        self.changes = Changes()
        self._gates: dict[bytes, trio.Event] = {}
        self.kv_started: list[bytes] = []
        self.snapshots: list[list[SnapshotChunk]] = []
        self.snapshot_status = SnapshotAckStatus.Accepted
        self.reject_after_first = False

    # raft
    def on_raft_batch(self, batch: RaftBatch) -> None:
        self.batches.append(batch)
        self.changes.notify()

    @property
    def envelopes(self) -> list[RaftEnvelope]:
        return [e for b in self.batches for e in b.envelopes]

    # requests
    def release(self, key: bytes) -> None:
        self._gate(key).set()

    def _gate(self, key: bytes) -> trio.Event:
        return self._gates.setdefault(key, trio.Event())

    async def on_kv_request(self, req: KvRequest) -> KvResponse:
        assert isinstance(req.op, Get)
        key = req.op.key
        self.kv_started.append(key)
        self.changes.notify()
        if key.startswith(b"boom"):
            raise RuntimeError("handler bug")
        if not self.auto:
            await self._gate(key).wait()
        return KvResponse(req.request_id, GetResult(key))

    async def on_admin_request(self, req: AdminRequest) -> AdminResponse:
        return AdminResponse(req.request_id, AdminOk())

    # snapshots
    async def on_snapshot(
        self, first: SnapshotChunk, rest: AsyncIterator[SnapshotChunk]
    ) -> SnapshotAck:
        chunks = [first]
        self.snapshots.append(chunks)
        if self.reject_after_first:
            self.changes.notify()
            return SnapshotAck(first.region_id, first.snapshot_id, 0, SnapshotAckStatus.Rejected,
                               "stale")  # fmt: skip
        async for chunk in rest:
            chunks.append(chunk)
        self.changes.notify()
        return SnapshotAck(first.region_id, first.snapshot_id, chunks[-1].seq, self.snapshot_status)


def new_metrics() -> tuple[TransportMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return TransportMetrics(registry), registry


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


@asynccontextmanager
async def serving(
    handler: Any,
    *,
    store_id: int = 2,
    port: int = 0,
    limits: ServerLimits | None = None,
    faults: FaultInjector | None = None,
    metrics: TransportMetrics | None = None,
    max_frame_size: int = 1024 * 1024,
) -> AsyncIterator[StoreServer]:
    """A store server on 127.0.0.1 for the duration of the block (``server.port``)."""
    server = StoreServer(
        handler, cluster_id=CID, store_id=store_id, port=port, limits=limits, faults=faults,
        metrics=metrics, max_frame_size=max_frame_size,
    )  # fmt: skip
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        yield server
        nursery.cancel_scope.cancel()


# -- raw sockets: speaking the protocol by hand ---------------------------------------------


def hello_frame(cluster_id: int = CID, *, header_cluster_id: int | None = None,
                store_id: int = 0) -> bytes:  # fmt: skip
    hcid = cluster_id if header_cluster_id is None else header_cluster_id
    return encode_frame(FrameKind.HELLO, hcid, encode_hello(Hello(store_id, cluster_id, "")))


def raw_frame(
    kind: int, payload: bytes, *, cluster_id: int = CID, length: int | None = None
) -> bytes:
    """A frame built by hand: any kind byte, any declared length, a correct crc."""
    n = len(payload) if length is None else length
    prefix = struct.pack(">2sBBQI", MAGIC, WIRE_VERSION, kind, cluster_id, n)
    crc = zlib.crc32(payload, zlib.crc32(prefix))
    return prefix + crc.to_bytes(4, "big") + payload


assert len(raw_frame(1, b"")) == HEADER_SIZE


class RawClient:
    """A TCP client that sends bytes as given and reads frames back with its own decoder."""

    def __init__(self, stream: trio.SocketStream, cluster_id: int) -> None:
        self.stream = stream
        self.decoder = FrameDecoder(cluster_id)

    @classmethod
    async def open(cls, port: int, cluster_id: int = CID) -> RawClient:
        return cls(await trio.open_tcp_stream("127.0.0.1", port), cluster_id)

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def handshake(self, store_id: int = 0) -> Frame:
        await self.send(hello_frame(store_id=store_id))
        frame = await self.next_frame()
        assert frame is not None and frame.kind == FrameKind.HELLO
        return frame

    async def next_frame(self) -> Frame | None:
        """The next frame, or None once the server closed the connection."""
        with trio.fail_after(WAIT):
            while (frame := self.decoder.next_frame()) is None:
                try:
                    data = await self.stream.receive_some()
                except trio.BrokenResourceError:
                    return None  # a reset: closed too
                if not data:
                    return None
                self.decoder.feed(data)
            return frame

    async def expect_notice_then_close(self) -> ErrorNotice:
        """Read the ErrorNotice the server sends before closing, then the close itself."""
        frame = await self.next_frame()
        assert frame is not None, "the server closed without an ErrorNotice"
        assert frame.kind == FrameKind.ERROR, frame
        notice = decode_error_notice(frame.payload)
        await self.expect_closed()
        return notice

    async def expect_closed(self) -> None:
        assert await self.next_frame() is None

    async def aclose(self) -> None:
        await self.stream.aclose()
