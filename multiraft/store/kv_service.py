"""The store's InboundHandler: raft batches, client and admin requests, snapshot streams.

Theory of operation
-------------------
The transport's server calls these methods, one task per request. None of them
touches a replica's RawNode: each checks what it can alone (op shape, key
sizes, entry size), encodes a write's Raft command (so the ready loop only
appends bytes), posts an item to the ready loop's inbox and waits for its
:class:`~multiraft.store.proposals.Waiter`, under ``request_timeout``:

* a full inbox answers ``ServerIsBusy`` at once;
* a request still unanswered at the deadline gets ``Timeout`` (the outcome of
  a write is then unknown) and its waiter is abandoned, so the loop's late
  answer is dropped rather than delivered twice.

Status requests (RegionStatus, StoreStatus) only read the replicas' state, which
is consistent whenever this task runs (the loop never yields in the middle of
mutating a replica's bookkeeping other than its own snapshot install).

Every KV request is counted once in ``multiraft_kv_requests_total{op,result}``
with its latency, and in flight in ``multiraft_kv_requests_in_progress``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from typing import Final

import trio

from multiraft.metrics import StoreServerMetrics
from multiraft.raft.types import ConfChangeType
from multiraft.storage import keys
from multiraft.store.inbox import AdminItem, KvItem, SnapshotItem
from multiraft.store.proposals import Answer, Waiter
from multiraft.store.ready_loop import ReadyLoop
from multiraft.store.snapshots import SnapshotReceiver
from multiraft.store.step_exec import SplitOutcome, StepExecutor
from multiraft.transport.faults import FaultInjector, refuse_inject_faults
from multiraft.wire.command_codec import CmdHeader, RaftCmd, encode_cmd
from multiraft.wire.messages import (
    AddPeer,
    AdminOk,
    AdminRequest,
    AdminResponse,
    BatchPut,
    Cas,
    Delete,
    EpochNotMatch,
    Get,
    InjectFaults,
    Internal,
    KeyNotInRegion,
    KvRequest,
    KvResponse,
    NotLeader,
    PromoteLearner,
    Put,
    RaftBatch,
    RegionNotFound,
    RegionStatus,
    RegionStatusResult,
    RequestError,
    Scan,
    ServerIsBusy,
    SnapshotAck,
    SnapshotAckStatus,
    SnapshotChunk,
    SplitRegion,
    SplitResult,
    StaleCommand,
    StoreStatus,
    StoreStatusResult,
    Timeout,
    TransferLeader,
)
from regions.conf_change import PeerChange
from regions.region import PeerRole

__all__ = ["KvService"]

log = logging.getLogger(__name__)

_OPS: Final[dict[type, str]] = {
    Get: "get", Put: "put", Delete: "delete", Scan: "scan", Cas: "cas", BatchPut: "batch_put",
}  # fmt: skip
_WRITES: Final = (Put, Delete, Cas, BatchPut)
#: Backoff suggested to clients when the inbox is full.
BUSY_BACKOFF_MS: Final = 50


def kv_result_label(answer: Answer) -> str:
    """The ``result`` label of ``multiraft_kv_requests_total``."""
    match answer:
        case NotLeader():
            return "not_leader"
        case EpochNotMatch():
            return "epoch_not_match"
        case RegionNotFound():
            return "region_not_found"
        case KeyNotInRegion():
            return "key_not_in_region"
        case ServerIsBusy():
            return "busy"
        case Timeout():
            return "timeout"
        case StaleCommand():
            return "stale_command"
        case Internal():
            return "error"
    return "ok"


def _bad_key(req: KvRequest) -> bytes | None:
    """A key LMDB cannot store (empty or over 511 bytes), if the request has one."""
    op = req.op
    if isinstance(op, BatchPut):
        ks = [k for k, _ in op.pairs]
    elif isinstance(op, Scan):
        return None
    else:
        ks = [op.key]
    for k in ks:
        if not 0 < len(k) <= keys.MAX_DATA_KEY_SIZE:
            return k
    return None


def _admin_error(answer: Answer) -> AdminOk | RequestError:
    return answer if isinstance(answer, RequestError) else AdminOk()


class KvService:
    """Implements :class:`multiraft.transport.InboundHandler` for one store."""

    def __init__(
        self,
        loop: ReadyLoop,
        *,
        address: Callable[[], str],
        request_timeout: float = 10.0,
        max_entry_bytes: int = 8 << 20,
        max_snapshot_bytes: int = 1 << 30,
        max_receiving_snapshots: int = 4,
        faults: FaultInjector | None = None,
        metrics: StoreServerMetrics | None = None,
        steps: StepExecutor | None = None,
    ) -> None:
        self._loop = loop
        self._steps = steps
        self._inbox = loop.inbox
        self._address = address
        self._timeout = request_timeout
        self._max_entry = max_entry_bytes
        # The writer is looked up at each use: tests swap the loop's writer after construction.
        self.snapshot_receiver = SnapshotReceiver(
            loop.engine, lambda: loop.writer, limit=max_receiving_snapshots,
            max_bytes=max_snapshot_bytes, metrics=metrics.raft if metrics is not None else None,
        )  # fmt: skip
        self._faults = faults
        self._metrics = metrics
        self.dropped_batches = 0

    # -- raft traffic -----------------------------------------------------------------

    def on_raft_batch(self, batch: RaftBatch) -> None:
        if not self._inbox.put_raft_batch(batch):
            self.dropped_batches += 1
            if self._metrics is not None:
                for env in batch.envelopes:
                    self._metrics.raft.messages_dropped.labels(
                        env.message.msg_type.name, "inbox_full"
                    ).inc()

    async def on_snapshot(
        self, first: SnapshotChunk, rest: AsyncIterator[SnapshotChunk]
    ) -> SnapshotAck:
        rx = self.snapshot_receiver
        got = await rx.receive(first, rest)
        if isinstance(got, SnapshotAck):
            log.info("region %d: refused a snapshot: %s %s", first.region_id, got.status.name,
                     got.reason)  # fmt: skip
            return got
        staged = got.staged
        waiter: Waiter[SnapshotAck] = Waiter()
        self._inbox.put(SnapshotItem(got, waiter))
        del got  # the loop's item (and then the replica) holds the stream from here on
        with trio.move_on_after(self._timeout):
            ack = await waiter.wait()
            if ack.status != SnapshotAckStatus.Accepted:
                await rx.discard(staged)  # the loop did not keep it: nothing will apply it
            return dataclasses.replace(ack, snapshot_id=first.snapshot_id)
        # The loop may still take the item later; if it drops it, the receiver's finalizer
        # deletes the staging.
        waiter.abandon()
        return SnapshotAck(first.region_id, first.snapshot_id, len(staged) - 1,
                           SnapshotAckStatus.Busy, "the store did not take the snapshot in time")  # fmt: skip

    # -- client requests --------------------------------------------------------------

    async def on_kv_request(self, req: KvRequest) -> KvResponse:
        op = _OPS.get(type(req.op), "get")
        m = self._metrics
        t0 = trio.current_time()
        if m is not None:
            m.kv.requests_in_progress.inc()
        try:
            answer = await self._serve(req, t0)
        finally:
            if m is not None:
                m.kv.requests_in_progress.dec()
        if m is not None:
            m.kv.requests.labels(op, kv_result_label(answer)).inc()
            m.kv.request_duration.labels(op).observe(max(trio.current_time() - t0, 0.0))
        return KvResponse(req.request_id, answer)

    async def _serve(self, req: KvRequest, t0: float) -> Answer:
        item = KvItem(req, Waiter(), t0)
        if isinstance(req.op, _WRITES):
            bad = _bad_key(req)
            if bad is not None:
                return Internal(f"keys must be 1..{keys.MAX_DATA_KEY_SIZE} bytes, got {len(bad)}")
            cmd = RaftCmd(CmdHeader(req.region_id, req.epoch, req.request_id), [req.op])
            data = encode_cmd(cmd)
            if len(data) > self._max_entry:
                return Internal(
                    f"request of {len(data)} bytes exceeds the {self._max_entry} byte limit"
                )
            item.cmd, item.data = cmd, data
        if not self._inbox.put_request(item):
            return ServerIsBusy("the store's request queue is full", BUSY_BACKOFF_MS)
        return await self._wait(item.waiter, Timeout())

    async def _wait(self, waiter: Waiter[Answer], on_timeout: Answer) -> Answer:
        try:
            with trio.move_on_after(self._timeout):
                return await waiter.wait()
            return on_timeout
        finally:
            if not waiter.answered:
                waiter.abandon()

    # -- admin ------------------------------------------------------------------------

    async def on_admin_request(self, req: AdminRequest) -> AdminResponse:
        cmd = req.command
        if isinstance(cmd, InjectFaults):
            return self._faults.handle_admin(req) if self._faults else refuse_inject_faults(req)
        if isinstance(cmd, StoreStatus):
            return AdminResponse(req.request_id, self.store_status())
        if isinstance(cmd, RegionStatus):
            return AdminResponse(req.request_id, self.region_status(req.region_id))
        if isinstance(cmd, TransferLeader):
            waiter: Waiter[AdminResponse] = Waiter()
            if not self._inbox.put_request(AdminItem(req, waiter)):
                return AdminResponse(
                    req.request_id, ServerIsBusy("request queue full", BUSY_BACKOFF_MS)
                )
            with trio.move_on_after(self._timeout):
                return await waiter.wait()
            waiter.abandon()
            return AdminResponse(req.request_id, Timeout())
        if self._steps is None:
            return AdminResponse(req.request_id, Internal(f"{type(cmd).__name__} is not served here"))
        if isinstance(cmd, SplitRegion):
            got = await self._steps.split(req.region_id, req.epoch,
                                          [cmd.split_key] if cmd.split_key else [])  # fmt: skip
            if isinstance(got, SplitOutcome):
                return AdminResponse(req.request_id, SplitResult(got.regions))
            return AdminResponse(req.request_id, _admin_error(got))
        change: ConfChangeType
        if isinstance(cmd, AddPeer):
            learner = cmd.peer.role == PeerRole.Learner
            change = ConfChangeType.AddLearnerNode if learner else ConfChangeType.AddNode
        elif isinstance(cmd, PromoteLearner):
            change = ConfChangeType.AddNode
        else:
            change = ConfChangeType.RemoveNode
        answer = await self._steps.change_peers(
            req.region_id, req.epoch, [PeerChange(change, cmd.peer)]
        )
        return AdminResponse(req.request_id, _admin_error(answer))

    def store_status(self) -> StoreStatusResult:
        router = self._loop.router
        leaders = sum(1 for r in router if r.is_leader())
        try:
            used = self._loop.engine.size()
        except Exception:  # a closed engine during shutdown
            used = 0
        return StoreStatusResult(self._loop.store_id, self._address(), len(router), leaders, used)

    def region_status(self, region_id: int) -> RegionStatusResult | RegionNotFound:
        r = self._loop.router.get(region_id)
        if r is None or not r.initialized:
            return RegionNotFound(region_id)
        raft = r.raw_node.raft
        return RegionStatusResult(r.region_copy(), r.leader_peer(), raft.term,
                                  raft.raft_log.committed, r.applied_index,
                                  raft.raft_log.last_index())  # fmt: skip
