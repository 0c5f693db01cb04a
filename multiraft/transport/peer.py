"""One outbound raft sender per destination store: a bounded queue, batching, reconnects.

Theory of operation: the store's ready loop calls :meth:`PeerSender.push` for
every envelope (synchronous, no await, no allocation beyond a list append) and
:meth:`PeerSender.flush` once at the end of its round. A flush hands the round's
envelopes to the sender task and wakes it; the task encodes everything flushed
so far into RAFT_BATCH frames (one frame per flush at least, several flushes
coalesced when the task fell behind) and writes them with one ``send_all``.

States::

    IDLE --work--> CONNECTING --ok--> CONNECTED --loss--> IDLE
                       |                                   (reconnect on the next work)
                       +--fail--> BACKOFF --retry_at passed + work--> CONNECTING

Invariants:

* **Bounded.** At most ``queue_size`` envelopes wait (pushed, not yet written);
  a push over it is refused (``queue_full``). In BACKOFF, pushes before
  ``retry_at`` are refused too (``disconnected``): the store reports those peers
  unreachable at once instead of queueing into a void.
* **In order.** One connection, one task and one FIFO per destination, so every
  region's messages to that store arrive in the order they were pushed.
* **Loss is reported.** When a connect attempt fails or the connection breaks,
  every waiting envelope is dropped and ``on_unreachable(store_id, dropped)`` is
  called (the list may be empty: the link broke while idle), so the store can
  call ``RawNode.report_unreachable`` for each (region, peer) and Raft retries.
  Envelopes refused by ``push`` (it returned False) are not reported again.
* **Backoff.** Failed connect attempts space out exponentially (``initial`` x
  ``multiplier``^n, capped at ``maximum``, with jitter); a successful handshake
  resets it. A connection that breaks after working is retried at once.
"""

from __future__ import annotations

import enum
import logging
import math
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import trio

from multiraft.metrics import TransportMetrics
from multiraft.raft.types import MessageType
from multiraft.transport.connection import FramedConnection, connect
from multiraft.transport.errors import (
    ConnectFailed,
    ConnectionLost,
    HandshakeFailed,
    ProtocolError,
    TransportError,
    error_kind,
)
from multiraft.transport.faults import FaultInjector
from multiraft.wire import (
    DEFAULT_MAX_FRAME_SIZE,
    FrameKind,
    Hello,
    RaftBatch,
    RaftEnvelope,
    encode_frame,
    encode_raft_batch,
)

if TYPE_CHECKING:
    from prometheus_client import Counter

__all__ = ["Backoff", "PeerSender", "PeerState", "PeerStatistics", "SenderConfig"]

log = logging.getLogger(__name__)

Resolve = Callable[[int], Awaitable[str]]
OnUnreachable = Callable[[int, list[RaftEnvelope]], None]

#: Envelopes per RAFT_BATCH frame at most (a frame is split further by bytes).
DEFAULT_MAX_BATCH: Final = 4096


class PeerState(enum.Enum):
    IDLE = "idle"  # no connection; connect when there is work
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"  # the last connect attempt failed; wait until retry_at


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays between failed connect attempts: ``initial * multiplier**n``, capped."""

    initial: float = 0.1
    maximum: float = 3.0
    multiplier: float = 2.0
    #: Each delay is scaled by a random factor in ``[1 - jitter, 1]``.
    jitter: float = 0.2

    def next(self, current: float) -> float:
        """The delay after ``current`` (0: the first failure)."""
        return self.initial if current <= 0 else min(current * self.multiplier, self.maximum)


@dataclass(frozen=True, slots=True)
class SenderConfig:
    """What every sender of one :class:`~multiraft.transport.RaftTransport` shares."""

    store_id: int  # ours
    cluster_id: int
    resolve: Resolve
    on_unreachable: OnUnreachable
    queue_size: int
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    max_batch: int = DEFAULT_MAX_BATCH
    connect_timeout: float = 5.0
    send_timeout: float = 10.0
    #: Seconds for a frame from the destination to complete once started.
    frame_timeout: float = 30.0
    backoff: Backoff = Backoff()
    address: str = ""  # ours, for the Hello
    faults: FaultInjector | None = None
    metrics: TransportMetrics | None = None


@dataclass(frozen=True, slots=True)
class PeerStatistics:
    store_id: int
    state: PeerState
    address: str  # last resolved address ("" before the first attempt)
    queued: int  # envelopes pushed and not yet written or dropped
    envelopes_sent: int
    frames_sent: int
    bytes_sent: int
    dropped: int
    connects: int
    reconnects: int  # connections established after a failure
    failures: int  # failed connect attempts and broken connections
    backoff: float  # current delay (0: none)
    retry_at: float  # trio time before which pushes are refused (BACKOFF only)


class _Metrics:
    """Cached metric children, so that the hot path never calls ``labels()``."""

    def __init__(self, m: TransportMetrics) -> None:
        self.m = m
        self._sent: dict[MessageType, Counter] = {}
        self._dropped: dict[str, Counter] = {}

    def sent(self, msg_type: MessageType, n: int) -> None:
        child = self._sent.get(msg_type)
        if child is None:
            child = self._sent[msg_type] = self.m.messages_sent.labels(msg_type.name)
        child.inc(n)

    def dropped(self, reason: str, n: int) -> None:
        child = self._dropped.get(reason)
        if child is None:
            child = self._dropped[reason] = self.m.messages_dropped.labels(reason)
        child.inc(n)


class PeerSender:
    """The outbound raft traffic to one store. See the module docstring.

    Created and run by :class:`~multiraft.transport.RaftTransport`; ``push`` and
    ``flush`` are its hot path, :meth:`run` is the task.
    """

    def __init__(self, cfg: SenderConfig, to_store_id: int, *, rng: random.Random | None = None):
        self.cfg = cfg
        self.store_id = to_store_id
        self.address = ""
        self._rng = rng or random.Random()
        self._metrics = _Metrics(cfg.metrics) if cfg.metrics is not None else None
        self._queue_gauge = (
            cfg.metrics.send_queue_length.labels(str(to_store_id)) if cfg.metrics else None
        )
        self._buf: list[RaftEnvelope] = []  # pushed since the last flush
        self._ready: deque[list[RaftEnvelope]] = deque()  # flushed, not yet taken
        self._sending: list[RaftEnvelope] = []  # taken by the task, being written
        self._queued = 0  # len(_buf) + sizes in _ready + len(_sending)
        self._wake = trio.Event()
        self.state = PeerState.IDLE
        self._retry_at = 0.0
        self._backoff = 0.0
        self._watch_error: TransportError | None = None
        self._failed = False  # a failure since the last successful connect
        self.dropped_by_reason: dict[str, int] = {}
        self.envelopes_sent = 0
        self.frames_sent = 0
        self.bytes_sent = 0
        self.connects = 0
        self.reconnects = 0
        self.failures = 0

    # -- the hot path (sync, called by the store's ready loop) -----------------------------

    def push(self, env: RaftEnvelope) -> bool:
        """Queue ``env`` for the next flush; False: dropped (full, or backing off)."""
        if self._queued >= self.cfg.queue_size:
            self.drop(env, "queue_full")
            return False
        if self.state is PeerState.BACKOFF and trio.current_time() < self._retry_at:
            self.drop(env, "disconnected")
            return False
        self._buf.append(env)
        self._queued += 1
        return True

    def flush(self) -> None:
        """Hand what was pushed since the last flush to the sender task."""
        if self._buf:
            self._ready.append(self._buf)
            self._buf = []
            self._wake.set()

    def drop(self, env: RaftEnvelope, reason: str) -> None:
        """Count one envelope refused before it was queued."""
        self._count_dropped(reason, 1)

    # -- the task --------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect on demand and write frames until cancelled (the transport's shutdown)."""
        try:
            while True:
                await self._wait_for_work()
                conn = await self._connect()
                if conn is not None:
                    await self._pump(conn)
        finally:
            # Shutdown: nothing will be sent any more, and the store is going away too,
            # so the envelopes are counted, not reported.
            dropped = self._take_all()
            if dropped:
                self._count_dropped("shutdown", len(dropped))
            self._set_gauge()

    async def _wait_for_work(self) -> None:
        while not self._ready:
            await self._wake.wait()
            self._wake = trio.Event()

    async def _connect(self) -> FramedConnection | None:
        cfg = self.cfg
        self.state = PeerState.CONNECTING
        reason = "disconnected"
        try:
            try:
                with trio.fail_after(cfg.connect_timeout):
                    self.address = await cfg.resolve(self.store_id)
            except trio.TooSlowError:
                reason = "unresolved"
                raise ConnectFailed(f"resolving store {self.store_id} took longer than "
                                    f"{cfg.connect_timeout}s") from None  # fmt: skip
            except Exception as e:  # the resolver is the store's (placement lookups...)
                reason = "unresolved"
                raise ConnectFailed(f"cannot resolve store {self.store_id}: {e}") from e
            hello = Hello(cfg.store_id, cfg.cluster_id, cfg.address)
            conn = await connect(
                self.address, hello, timeout=cfg.connect_timeout,
                max_frame_size=cfg.max_frame_size, metrics=cfg.metrics,
                name=f"store {self.store_id} at {self.address}",
            )  # fmt: skip
            assert conn.peer is not None
            if conn.peer.store_id != self.store_id:
                await conn.aclose()
                raise HandshakeFailed(
                    f"{self.address} is store {conn.peer.store_id}, not store {self.store_id}"
                )
        except TransportError as e:
            self._on_failure(e, reason, connect_failed=True)
            return None
        self.state = PeerState.CONNECTED
        self._backoff = 0.0
        self.connects += 1
        if self._failed:
            self._failed = False
            self.reconnects += 1
            if cfg.metrics is not None:
                cfg.metrics.reconnects.inc()
            log.info("store %d: reconnected to store %d at %s", cfg.store_id, self.store_id,
                     self.address)  # fmt: skip
        return conn

    async def _pump(self, conn: FramedConnection) -> None:
        """Write flushed envelopes until the connection fails."""
        error: TransportError | None = None
        self._watch_error = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch, conn, nursery.cancel_scope)
                try:
                    while True:
                        await self._wait_for_work()
                        await self._write_ready(conn)
                except TransportError as e:
                    error = e
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await conn.aclose()
        error = error or self._watch_error or ConnectionLost(f"store {self.store_id}: lost")
        self._on_failure(error, "disconnected", connect_failed=False)

    async def _watch(self, conn: FramedConnection, scope: trio.CancelScope) -> None:
        """Notice the destination closing or breaking the connection while we are idle.

        A raft connection carries nothing back but an ErrorNotice before a close, so
        any frame ends it, and the wait between frames has no deadline.
        """
        error: TransportError
        try:
            frame = await conn.receive_frame(timeout=self.cfg.frame_timeout, idle_timeout=math.inf)
            if frame is None:
                error = ConnectionLost(f"store {self.store_id} closed the connection")
            elif frame.kind == FrameKind.ERROR:
                error = ConnectionLost(f"store {self.store_id} closed the connection",
                                       notice=conn.decode_notice(frame))  # fmt: skip
            else:
                error = ProtocolError(f"store {self.store_id} sent a {frame.kind.name} frame "
                                      "on a raft connection")  # fmt: skip
        except TransportError as e:
            error = e
        self._watch_error = error
        scope.cancel()

    async def _write_ready(self, conn: FramedConnection) -> None:
        """Encode everything flushed (up to ``max_batch`` envelopes per frame) and write it."""
        cfg, ready = self.cfg, self._ready
        while ready:
            envs = ready.popleft()
            while ready and len(envs) + len(ready[0]) <= cfg.max_batch:
                envs += ready.popleft()
            self._queued -= len(envs)
            faults = cfg.faults
            if faults is not None and self.store_id in faults.blocked_stores:
                # Blocked after these were queued: a partition loses them silently.
                faults.dropped_outbound += len(envs)
                self._count_dropped("fault_injected", len(envs))
                continue
            frames = self._encode(envs)
            if not frames:
                continue
            if len(frames) == 1:
                data, self._sending = frames[0]
            else:
                data = b"".join(f for f, _ in frames)
                self._sending = [e for _, part in frames for e in part]
            self._queued += len(self._sending)  # still ours until written
            await conn.send_bytes(data, timeout=cfg.send_timeout)
            self._queued -= len(self._sending)
            self._count_sent(frames, len(data))
            self._sending = []
            self._set_gauge()

    def _encode(self, envs: list[RaftEnvelope]) -> list[tuple[bytes, list[RaftEnvelope]]]:
        """The frames carrying ``envs``, each with its envelopes: one frame, or several
        when over the frame size. An envelope that cannot be encoded alone is dropped and
        reported."""
        cfg = self.cfg
        try:
            payload = encode_raft_batch(RaftBatch(cfg.store_id, envs))
        except Exception:
            if len(envs) == 1:
                log.exception("store %d: cannot encode a raft message to store %d",
                              cfg.store_id, self.store_id)  # fmt: skip
                self._lose(envs, "encode_failed")
                return []
            return self._encode_halves(envs)
        if len(payload) <= cfg.max_frame_size:
            return [(encode_frame(FrameKind.RAFT_BATCH, cfg.cluster_id, payload), envs)]
        if len(envs) == 1:
            log.error("store %d: a raft message of %d bytes to store %d exceeds the frame size",
                      cfg.store_id, len(payload), self.store_id)  # fmt: skip
            self._lose(envs, "frame_too_large")
            return []
        return self._encode_halves(envs)

    def _encode_halves(self, envs: list[RaftEnvelope]) -> list[tuple[bytes, list[RaftEnvelope]]]:
        mid = len(envs) // 2
        return self._encode(envs[:mid]) + self._encode(envs[mid:])

    def _lose(self, envs: list[RaftEnvelope], reason: str) -> None:
        """Drop envelopes that were accepted but cannot be sent; tell the store."""
        self._count_dropped(reason, len(envs))
        self._report(list(envs))

    # -- failures --------------------------------------------------------------------------

    def _on_failure(self, error: TransportError, reason: str, *, connect_failed: bool) -> None:
        cfg = self.cfg
        self.failures += 1
        self._failed = True
        dropped = self._take_all()
        if dropped:
            self._count_dropped(reason, len(dropped))
        if cfg.metrics is not None:
            cfg.metrics.connection_errors.labels(error_kind(error)).inc()
        if connect_failed:
            b = cfg.backoff
            self._backoff = b.next(self._backoff)
            delay = self._backoff * self._rng.uniform(1.0 - b.jitter, 1.0)
            self._retry_at = trio.current_time() + delay
            self.state = PeerState.BACKOFF
            log.info("store %d: cannot reach store %d (%s); %d messages dropped, retry in %.2fs",
                     cfg.store_id, self.store_id, error, len(dropped), delay)  # fmt: skip
        else:
            self.state = PeerState.IDLE
            log.info("store %d: connection to store %d lost (%s); %d messages dropped",
                     cfg.store_id, self.store_id, error, len(dropped))  # fmt: skip
        self._set_gauge()
        self._report(dropped)

    def _report(self, dropped: list[RaftEnvelope]) -> None:
        try:
            self.cfg.on_unreachable(self.store_id, dropped)
        except Exception:
            log.exception("store %d: on_unreachable(%d) failed", self.cfg.store_id, self.store_id)

    def _take_all(self) -> list[RaftEnvelope]:
        """Empty the queue: the envelopes being written, flushed, then pushed."""
        out = self._sending
        self._sending = []
        while self._ready:
            out += self._ready.popleft()
        out += self._buf
        self._buf = []
        self._queued = 0
        return out

    # -- accounting ------------------------------------------------------------------------

    def _count_sent(self, frames: list[tuple[bytes, list[RaftEnvelope]]], nbytes: int) -> None:
        self.frames_sent += len(frames)
        self.bytes_sent += nbytes
        m = self._metrics
        for _, envs in frames:
            self.envelopes_sent += len(envs)
            if m is None:
                continue
            m.m.frame_messages.observe(len(envs))
            counts: dict[MessageType, int] = {}
            for env in envs:
                t = env.message.msg_type
                counts[t] = counts.get(t, 0) + 1
            for t, k in counts.items():
                m.sent(t, k)
        if m is not None:
            m.m.frames_sent.inc(len(frames))

    def _count_dropped(self, reason: str, n: int) -> None:
        self.dropped_by_reason[reason] = self.dropped_by_reason.get(reason, 0) + n
        if self._metrics is not None:
            self._metrics.dropped(reason, n)

    def _set_gauge(self) -> None:
        if self._queue_gauge is not None:
            self._queue_gauge.set(self._queued)

    def statistics(self) -> PeerStatistics:
        return PeerStatistics(
            store_id=self.store_id,
            state=self.state,
            address=self.address,
            queued=self._queued,
            envelopes_sent=self.envelopes_sent,
            frames_sent=self.frames_sent,
            bytes_sent=self.bytes_sent,
            dropped=sum(self.dropped_by_reason.values()),
            connects=self.connects,
            reconnects=self.reconnects,
            failures=self.failures,
            backoff=self._backoff,
            retry_at=self._retry_at if self.state is PeerState.BACKOFF else 0.0,
        )
