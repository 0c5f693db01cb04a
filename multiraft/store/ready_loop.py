"""The ready round: one trio task drives every replica of the store, one fsync per round.

Theory of operation
-------------------
Everything that happens to a store arrives in the :class:`~multiraft.store.inbox.Inbox`.
One task, :meth:`ReadyLoop.run`, repeats the round below for as long as there is
work; a round costs one inbox swap, one write transaction and one flush of the
transport, whatever the number of regions and messages in it.

1. **Drain** the inbox: run the due ticks on every replica; step each raft
   envelope into its replica (creating one when ``peer_create`` allows);
   collect stale peers (multiraft-design §2.3): a sender that a newer
   membership (conf_ver) leaves out gets an ``is_tombstone`` notice after the
   commit; a replica told so by a newer membership, or addressed under a
   larger peer id of this store, is tombstoned in this round's batch;
   check each client request (region, leader, epoch, keys) and either answer
   it at once (errors, lease and stale reads) or queue it on its replica.
   A replica is *dirty* only if something reached it.
2. For each dirty replica: propose all its queued writes with ONE
   ``propose_batch``; issue ONE ``read_index`` for all its queued
   linearizable reads; then, if it ``has_ready()``, take the Ready:
   leader ``messages`` go to the transport now (a MsgSnapshot goes to the
   snapshot sender instead); a snapshot is installed; entries and hard state
   are staged into the round's ONE :class:`~multiraft.storage.WriteBatch`;
   ``committed_entries`` are applied into the same batch (``apply.py``);
   ``read_states`` are matched to their read batches; ``persisted_messages``
   are kept aside; ``advance_append_async(rd)``.
3. **Commit** the batch: one LMDB write transaction, one fsync, in a worker
   thread (``StorageWriter``), while the event loop keeps receiving. If leader
   messages are waiting, the transport is flushed just before, so followers
   write in parallel with our fsync.
4. After the commit: ``on_persist_ready(rd.number)`` for each Ready; send the
   held ``persisted_messages``; answer the proposals whose apply is now
   durable; ``advance_apply_to(applied)``; serve the read batches whose index
   is applied; ``transport.flush()``. A replica that has more work now
   (a leader whose commit advanced) stays dirty, and the next round starts
   at once.

Invariants:

* **Persist before send.** Nothing in ``persisted_messages`` (votes, append
  responses: everything a non-leader says) leaves before the commit of the
  batch holding the state it promises.
* **Durable before acknowledged.** A proposal is answered only after the batch
  holding its apply committed; apply and the applied index commit together.
* **One owner.** Only this task calls a RawNode, and never between a
  ``ready()`` and its ``advance_append_async()`` except through this code; the
  only await in that span is a snapshot install, which touches only its own
  replica. Everything the round must defer (unreachable reports) waits for step 4.
* Each waiter is answered exactly once (``Waiter``); a replica that is
  destroyed fails everything it holds with RegionNotFound.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable
from typing import Protocol

import lmdb
import trio

from multiraft.metrics import StoreServerMetrics
from multiraft.raft import (
    Message,
    MessageType,
    ProposalDropped,
    RaftError,
    Ready,
    SnapshotStatus,
    StateRole,
)
from multiraft.storage.engine import Engine, Txn
from multiraft.storage.write_batch import StorageWriter, WriteBatch
from multiraft.store.admin_propose import propose_admin_cmd
from multiraft.store.apply import ApplyContext, apply_entries, result_label
from multiraft.store.cleanup import RangeCleaner
from multiraft.store.inbox import (
    AdminItem,
    AdminProposeItem,
    BootstrapItem,
    Inbox,
    Item,
    KvItem,
    SnapshotItem,
    SnapshotReportItem,
    UnreachableItem,
)
from multiraft.store.lifecycle import (
    StoreFatal,
    bootstrap_replica,
    finish_destroy,
    install_snapshot,
    stage_destroy,
)
from multiraft.store.peer_create import check_create, create_replica, is_initial_msg
from multiraft.store.proposals import PendingWrite, Proposal
from multiraft.store.reads import ReadBatch, ReadRequest, execute_read
from multiraft.store.replica import RaftSettings, ReceivedSnapshot, Replica
from multiraft.store.round_stats import RoundStats, inc
from multiraft.store.router import Router
from multiraft.store.snapshots import SnapshotSender, disk_snapshot_producer
from multiraft.store.split_exec import SplitInstaller
from multiraft.wire.messages import (
    AdminOk,
    AdminResponse,
    Internal,
    RaftBatch,
    RaftEnvelope,
    ReadMode,
    RegionNotFound,
    SnapshotAck,
    SnapshotAckStatus,
    StaleCommand,
    TransferLeader,
)
from regions.local_state import PeerState
from regions.region import PeerRole, Region

__all__ = ["RaftTransportLike", "ReadyLoop", "StoreFatal"]

log = logging.getLogger(__name__)


def _gc_notice(r: Replica, env: RaftEnvelope) -> RaftEnvelope:
    """The reply telling ``env``'s removed sender to destroy itself (TiKV ``handle_stale_msg``):
    ``is_tombstone`` with our region epoch, and an empty raft message that is never stepped."""
    region = r.region
    m = Message(msg_type=MessageType.MsgHup, to=env.from_peer.id, from_=r.peer.id)
    return RaftEnvelope(region.id, r.peer, env.from_peer, region.epoch, m, True,
                        region.start_key, region.end_key)  # fmt: skip


class CompactionListener(Protocol):
    """Told, after the commit, of the log compactions applied in a round (``log_gc``)."""

    def on_compactions(self, compactions: list[tuple[Replica, int]]) -> None: ...


class RaftTransportLike(Protocol):
    """What the loop needs of the outbound transport (``multiraft.transport.RaftTransport``)."""

    def send(self, to_store_id: int, env: RaftEnvelope) -> bool: ...
    def flush(self) -> None: ...


class ReadyLoop:
    """The store's ready loop and the replicas it owns (through ``router``)."""

    def __init__(
        self,
        *,
        store_id: int,
        engine: Engine,
        writer: StorageWriter,
        router: Router,
        transport: RaftTransportLike,
        settings: RaftSettings,
        inbox: Inbox,
        snapshots: SnapshotSender | None = None,
        metrics: StoreServerMetrics | None = None,
        lease_reads: bool = True,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.store_id = store_id
        self.engine = engine
        self.writer = writer
        self.router = router
        self.transport = transport
        self.settings = settings
        self.inbox = inbox
        self.snapshots = snapshots
        self.metrics = metrics
        self.lease_reads = lease_reads
        self.clock = clock
        self.producer = disk_snapshot_producer(engine)
        self.splits = SplitInstaller(store_id=store_id, engine=engine, router=router,
                                     settings=settings, producer=self.producer)  # fmt: skip
        #: Log compaction (``multiraft.store.log_gc.LogGc``), told of applied CompactLogs.
        self.log_gc: CompactionListener | None = None
        #: Deletes the data of destroyed peers and of split regions not created here.
        self.cleaner: RangeCleaner | None = None
        #: Regions a split did not create here (their data on this store belongs to no one).
        self._orphaned: list[Region] = []
        self.dirty: dict[int, Replica] = {}
        self._ctx_ids = itertools.count(1)
        self._read_txn: Txn | None = None
        #: Regions whose leader should report to placement soon (leader changes).
        self.heartbeat_wanted: set[int] = set()
        self.heartbeat_event = trio.Event()
        self.rounds = 0
        #: Test hook: called after each round's commit returned, before anything is sent.
        self.after_commit: Callable[[], None] | None = None

    # ------------------------------------------------------------------
    # The loop

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run rounds until cancelled. A failing round (storage, Raft invariant) ends the loop."""
        task_status.started()
        while True:
            if not self.dirty:
                await self.inbox.wait()
            else:
                await trio.lowlevel.checkpoint()
            await self.run_round()

    async def run_round(self) -> None:
        """One round: drain, ready, commit, then send, answer and advance."""
        t0 = self.clock()
        rs = RoundStats()
        batch = WriteBatch()
        ctx = ApplyContext(self.engine, batch, on_split=self._on_split)
        readies: list[tuple[Replica, Ready]] = []
        try:
            items, ticks = self.inbox.take()
            if ticks:
                self._tick(ticks)
            for item in items:
                self._dispatch(item, batch, rs, t0)
            self._serve_immediate(rs)
            dirty, self.dirty = self.dirty, {}
            apply_t = 0.0
            for r in dirty.values():
                if r.destroyed:
                    continue
                self._propose(r, rs, t0)
                self._issue_reads(r, t0)
                if not r.raw_node.has_ready():
                    continue
                rd = r.raw_node.ready()
                apply_t += await self._handle_ready(r, rd, batch, ctx, rs, t0)
                readies.append((r, rd))
            for r in ctx.removed:
                stage_destroy(r, batch)
        finally:
            ctx.close()
            self._close_read_txn()
        if rs.leader_messages:
            # Followers persist in parallel with our fsync (Raft thesis §10.2.1); the leader
            # counts itself only once on_persist_ready runs after the commit.
            self.transport.flush()
        await self.writer.commit(batch)
        if self.after_commit is not None:
            self.after_commit()
        self._after_commit(readies, ctx, rs)
        self.transport.flush()
        self.rounds += 1
        if self.metrics is not None:
            rs.publish(self.metrics, batch, ctx, duration=self.clock() - t0,
                       apply_seconds=apply_t, dirty=len(dirty))  # fmt: skip

    # ------------------------------------------------------------------
    # Step 1: drain

    def _tick(self, n: int) -> None:
        for r in self.router:
            node = r.raw_node
            for _ in range(n):
                node.tick()
            if node.has_ready():
                self.dirty[r.region_id] = r

    def _dispatch(self, item: Item, batch: WriteBatch, rs: RoundStats, now: float) -> None:
        match item:
            case RaftBatch():
                for env in item.envelopes:
                    self._on_envelope(env, batch, rs)
            case KvItem():
                self._on_kv(item, rs, now)
            case UnreachableItem(_, envelopes):
                for env in envelopes:
                    r = self.router.get(env.region_id)
                    if r is not None and not r.destroyed:
                        r.raw_node.report_unreachable(env.to_peer.id)
                        if env.message.msg_type == MessageType.MsgSnapshot:
                            r.raw_node.report_snapshot(env.to_peer.id, SnapshotStatus.Failure)
                        self.dirty[r.region_id] = r
            case SnapshotReportItem(region_id, peer_id, status):
                r = self.router.get(region_id)
                if r is not None and not r.destroyed:
                    r.raw_node.report_snapshot(peer_id, status)
                    self.dirty[r.region_id] = r
            case SnapshotItem():
                item.waiter.set(self._on_snapshot(item))
            case BootstrapItem(region):
                r = bootstrap_replica(region, store_id=self.store_id, engine=self.engine,
                                      router=self.router, settings=self.settings,
                                      producer=self.producer, batch=batch)  # fmt: skip
                if r is not None:
                    self.dirty[r.region_id] = r
            case AdminItem():
                item.waiter.set(self._on_admin(item))
            case AdminProposeItem(cmd, waiter):
                r = self.router.get(cmd.header.region_id)
                if r is None:
                    waiter.set(RegionNotFound(cmd.header.region_id))
                    return
                err = propose_admin_cmd(r, cmd, waiter, now)
                if err is not None:
                    waiter.set(err)
                else:
                    self.dirty[r.region_id] = r

    def _on_envelope(self, env: RaftEnvelope, batch: WriteBatch, rs: RoundStats) -> None:
        m = env.message
        r = self.router.get(env.region_id)
        if r is None:
            reason = check_create(env, store_id=self.store_id, router=self.router)
            if reason is not None:
                if reason == "region_overlap" and self._splitting_into(env):
                    self.splits.stash.put(env)  # replayed once our split creates the region
                rs.drop(m.msg_type, reason)
                return
            r = create_replica(env, engine=self.engine, settings=self.settings,
                               router=self.router, batch=batch, producer=self.producer)  # fmt: skip
            log.info(
                "store %d: created peer %d of region %d", self.store_id, r.peer.id, r.region_id
            )
        if env.to_peer.store_id != self.store_id:
            rs.drop(m.msg_type, "mismatch_store")
            return
        if r.destroyed:
            rs.drop(m.msg_type, "region_tombstone")  # tombstoned this round, still routed
            return
        if env.is_tombstone:
            self._on_gc_notice(r, env, batch, rs)
            return
        # Stale peer GC (multiraft-design §2.2-2.3), TiKV's order: a removed sender first,
        # then the target peer id.
        region = r.region
        if r.initialized and region.peer_by_id(env.from_peer.id) is None:
            if env.region_epoch.conf_ver < region.epoch.conf_ver:
                # Our membership is newer and leaves the sender out: it was removed (a
                # committed, applied change), so tell it to destroy itself. One notice per
                # message it sends; it stops sending once destroyed.
                rs.gc_notices.append(_gc_notice(r, env))
                rs.drop(m.msg_type, "stale_peer")
                return
            if env.region_epoch.is_stale_against(region.epoch):
                rs.drop(m.msg_type, "stale_peer")
                return
        if env.to_peer.id < r.peer.id:
            rs.drop(m.msg_type, "stale_peer")  # for a peer of ours that was replaced
            return
        if env.to_peer.id > r.peer.id:
            # Peer ids only grow: this store was given a new peer of the region, so ours was
            # removed. Destroy it; the next initial message creates the new one (peer_create).
            # The sender applied that removal and re-add, so its conf_ver is newer than ours;
            # a message that does not show it (stale, or from a non-member) is dropped.
            if env.region_epoch.conf_ver <= region.epoch.conf_ver:
                rs.drop(m.msg_type, "stale_epoch")
                return
            if r.peer_state != PeerState.Normal:
                rs.drop(m.msg_type, "applying_snapshot")
                return
            self._destroy(r, batch, rs, f"a message for its newer peer {env.to_peer.id}")
            rs.drop(m.msg_type, "region_tombstone")
            return
        if r.peer_state != PeerState.Normal:
            rs.drop(m.msg_type, "applying_snapshot")
            return
        if m.msg_type == MessageType.MsgSnapshot:
            rs.drop(m.msg_type, "step_failed")  # snapshots arrive as streams, never inline
            return
        r.remember_peer(env.from_peer)
        try:
            r.raw_node.step(m)
        except RaftError:
            rs.drop(m.msg_type, "step_failed")
            return
        rs.received[m.msg_type] = rs.received.get(m.msg_type, 0) + 1
        self.dirty[r.region_id] = r

    def _splitting_into(self, env: RaftEnvelope) -> bool:
        """Whether ``env`` is the first message of a region our regions will split into:
        an initial message whose range only overlaps local regions of an older version."""
        if not is_initial_msg(env.message):
            return False
        version = env.region_epoch.version
        router = self.router
        ids = router.overlapping(env.start_key, env.end_key)
        return bool(ids) and all(
            (o := router.get(i)) is not None and o.region.epoch.version < version for i in ids
        )

    def _on_split(self, parent: Replica, regions: list[Region], batch: WriteBatch) -> None:
        """The split hook of apply: create the new regions' replicas (``split_exec``)."""
        created, skipped = self.splits.install(parent, regions, batch)
        self._orphaned.extend(skipped)
        for r in created:
            self.dirty[r.region_id] = r  # next round, once their initial state is durable
            env = self.splits.stash.take(r.region_id)
            if env is not None:
                self.splits.replayed += 1
                self.inbox.put(RaftBatch(env.from_peer.store_id, [env]))
        if parent.is_leader():
            self.heartbeat_wanted.add(parent.region_id)
            self.heartbeat_event.set()

    def _on_gc_notice(
        self, r: Replica, env: RaftEnvelope, batch: WriteBatch, rs: RoundStats
    ) -> None:
        """An ``is_tombstone`` notice: destroy ``r`` only if it is the peer addressed and the
        notice's membership (conf_ver) is newer than ours; any other notice is harmless."""
        t = env.message.msg_type
        if env.to_peer.id != r.peer.id:
            rs.drop(t, "stale_peer")  # meant for another (older or newer) peer of ours
            return
        if env.region_epoch.conf_ver <= r.region.epoch.conf_ver:
            rs.drop(t, "stale_epoch")  # not newer than what we applied: a stale notice
            return
        if r.peer_state != PeerState.Normal:
            rs.drop(t, "applying_snapshot")
            return
        self._destroy(r, batch, rs, f"a tombstone notice from peer {env.from_peer.id}")
        rs.drop(t, "region_tombstone")

    def _destroy(self, r: Replica, batch: WriteBatch, rs: RoundStats, why: str) -> None:
        """Tombstone a stale replica in this round's batch; it leaves the router after the
        commit (``finish_destroy``), its waiters answered RegionNotFound."""
        stage_destroy(r, batch)
        rs.destroyed.append(r)
        log.info("store %d: destroying stale peer %d of region %d (epoch %s): %s",
                 self.store_id, r.peer.id, r.region_id, r.region.epoch, why)  # fmt: skip

    def _on_kv(self, item: KvItem, rs: RoundStats, now: float) -> None:
        req = item.req
        r = self.router.get(req.region_id)
        if r is None:
            item.waiter.set(RegionNotFound(req.region_id))
            return
        if item.cmd is not None:  # a write
            err = r.check_request(req, need_leader=True)
            if err is not None:
                inc(rs.proposals, result_label(err))
                item.waiter.set(err)
                return
            r.pending_writes.append(PendingWrite(item.cmd, item.data, item.waiter, item.received))
            self.dirty[r.region_id] = r
            return
        mode = req.read_mode
        err = r.check_request(req, need_leader=mode != ReadMode.Stale)
        if err is not None:
            item.waiter.set(err)
            return
        read = ReadRequest(req, item.waiter, item.received)
        if mode == ReadMode.Stale:
            read.kind = "stale"
            rs.immediate.append((r, read))
        elif mode == ReadMode.Lease and self.lease_reads and self._lease_ok(r, now):
            read.kind = "lease"
            rs.immediate.append((r, read))
        else:
            r.pending_reads.append(read)
            self.dirty[r.region_id] = r

    def _lease_ok(self, r: Replica, now: float) -> bool:
        raft = r.raw_node.raft
        return (
            r.lease.valid(now)
            and r.applied_term == raft.term
            and raft.state == StateRole.Leader
            # A split this leader proposed may be committed but not applied here: a new
            # region elsewhere may already serve part of our range (multiraft-design §11.8).
            and r.applied_index >= r.split_index
        )

    def _on_admin(self, item: AdminItem) -> AdminResponse:
        req = item.req
        r = self.router.get(req.region_id)
        if r is None or not r.initialized or r.destroyed:
            return AdminResponse(req.request_id, RegionNotFound(req.region_id))
        cmd = req.command
        if isinstance(cmd, TransferLeader):
            if not r.is_leader():
                return AdminResponse(req.request_id, r.not_leader())
            target = r.region.peer_by_id(cmd.peer.id)
            if target is None:
                return AdminResponse(
                    req.request_id, Internal(f"peer {cmd.peer.id} is not in the region")
                )
            if target.role != PeerRole.Voter:
                # TiKV's pre-check: a learner (or a voter on its way in or out) cannot lead.
                return AdminResponse(req.request_id, Internal(
                    f"peer {cmd.peer.id} is a {target.role.name}: only a voter can lead"))  # fmt: skip
            r.lease.suspect()
            r.raw_node.transfer_leader(cmd.peer.id)
            self.dirty[r.region_id] = r
            return AdminResponse(req.request_id, AdminOk())
        # TODO(issue 5): split and membership changes.
        return AdminResponse(req.request_id, Internal(f"{type(cmd).__name__} is not supported yet"))

    def _on_snapshot(self, item: SnapshotItem) -> SnapshotAck:
        st = item.stream
        env, header = st.envelope, st.header

        def ack(status: SnapshotAckStatus, reason: str = "") -> SnapshotAck:
            return SnapshotAck(env.region_id, 0, len(st.staged) - 1, status, reason)

        r = self.router.get(env.region_id)
        if r is None or r.destroyed:
            return ack(SnapshotAckStatus.Rejected, "no replica of the region here")
        if env.to_peer.id != r.peer.id or r.peer_state != PeerState.Normal:
            return ack(SnapshotAckStatus.Rejected, "stale peer or snapshot in progress")
        if header.index <= r.applied_index:
            return ack(SnapshotAckStatus.Rejected, f"index {header.index} already applied")
        region = header.region
        if r.initialized and region.epoch.is_stale_against(r.region.epoch):
            return ack(SnapshotAckStatus.Rejected, "stale epoch")
        if self.router.overlapping(region.start_key, region.end_key, exclude=r.region_id):
            return ack(SnapshotAckStatus.Rejected, "overlaps another region here")
        if r.pending_snapshot is not None:
            # Raft may keep the first one: the data kept must be the snapshot Raft installs.
            return ack(SnapshotAckStatus.Rejected, "another snapshot is pending for this replica")
        r.pending_snapshot = ReceivedSnapshot(header.index, header.term, region, st.staged)
        r.remember_peer(env.from_peer)
        try:
            r.raw_node.step(env.message)
        except RaftError as exc:
            r.pending_snapshot = None
            return ack(SnapshotAckStatus.Rejected, str(exc))
        self.dirty[r.region_id] = r
        return ack(SnapshotAckStatus.Accepted)

    def _serve_immediate(self, rs: RoundStats) -> None:
        for r, read in rs.immediate:
            self._serve(r, read, rs)

    def _serve(self, r: Replica, read: ReadRequest, rs: RoundStats) -> None:
        if self._read_txn is None:
            self._read_txn = self.engine.begin_read()
        try:
            answer = execute_read(self._read_txn, self.engine.dbs.data, r.region, read.req)
        except lmdb.Error as exc:  # a read must never take the loop down
            log.error("region %d: read failed: %s", r.region_id, exc)
            answer = Internal(f"read failed: {exc}")
        read.waiter.set(answer)
        inc(rs.reads, read.kind)

    def _close_read_txn(self) -> None:
        if self._read_txn is not None:
            txn, self._read_txn = self._read_txn, None
            self.engine.end_read(txn)

    # ------------------------------------------------------------------
    # Step 2: propose, read, ready

    def _propose(self, r: Replica, rs: RoundStats, now: float) -> None:
        writes = r.pending_writes
        if not writes:
            return
        r.pending_writes = []
        if not r.is_leader():
            inc(rs.proposals, "not_leader", len(writes))
            err = r.not_leader()
            for w in writes:
                w.waiter.set(err)
            return
        raft = r.raw_node.raft
        before = raft.raft_log.last_index()
        try:
            r.raw_node.propose_batch([w.data for w in writes])
        except ProposalDropped:
            inc(rs.proposals, "dropped", len(writes))
            err = r.not_leader()
            for w in writes:
                w.waiter.set(err)
            return
        if raft.raft_log.last_index() != before + len(writes):
            raise StoreFatal(f"region {r.region_id}: propose_batch appended an unexpected count")
        term = raft.term
        for i, w in enumerate(writes, before + 1):
            r.proposals.push(Proposal(i, term, w.cmd, w.waiter, now))

    def _issue_reads(self, r: Replica, now: float) -> None:
        if not r.pending_reads:
            return
        raft = r.raw_node.raft
        if raft.state != StateRole.Leader:
            err = r.not_leader()
            for read in r.pending_reads:
                read.waiter.set(err)
            r.pending_reads = []
            return
        if not raft.commit_to_current_term():
            return  # Raft would drop it; retried when the new term's no-op commits
        ctx = next(self._ctx_ids).to_bytes(8, "big")
        r.read_batches.append(ReadBatch(ctx, raft.term, now, r.pending_reads))
        r.pending_reads = []
        r.raw_node.read_index(ctx)

    async def _handle_ready(
        self,
        r: Replica,
        rd: Ready,
        batch: WriteBatch,
        ctx: ApplyContext,
        rs: RoundStats,
        now: float,
    ) -> float:
        """Stage one Ready; return the seconds spent applying."""
        raft = r.raw_node.raft
        if rd.ss is not None:
            self._on_soft_state(r, rd.ss.leader_id, rd.ss.raft_state, rs)
        if rd.messages:
            self._send(r, rd.messages, rs)
            rs.leader_messages = True
        if not rd.snapshot.is_empty():
            await install_snapshot(r, rd, engine=self.engine, writer=self.writer,
                                   router=self.router, metrics=self.metrics)  # fmt: skip
        r.pending_snapshot = None
        if rd.entries or rd.hs is not None:
            r.storage.stage_ready(rd.entries, rd.hs, batch)
        if rd.read_states:
            by_ctx = {b.ctx: b for b in r.read_batches}
            for st in rd.read_states:
                b = by_ctx.get(st.request_ctx)
                if b is not None:
                    b.index = st.index
                    if b.term == raft.term and raft.state == StateRole.Leader:
                        r.lease.renew(b.issued)
        t = self.clock()
        apply_entries(r, rd.committed_entries, ctx, now)
        apply_t = self.clock() - t
        if raft.term != r.term or (
            raft.state != StateRole.Leader
            and (len(r.proposals) or r.read_batches or r.pending_reads)
        ):
            self._fail_stale(r, ctx)
        r.term = raft.term
        r.raw_node.advance_append_async(rd)
        return apply_t

    def _on_soft_state(self, r: Replica, leader_id: int, role: StateRole, rs: RoundStats) -> None:
        if leader_id and leader_id != r.leader_id:
            rs.leader_changes += 1
        if role == StateRole.Leader and r.role != StateRole.Leader:
            self.heartbeat_wanted.add(r.region_id)
            self.heartbeat_event.set()
        if role != r.role:
            r.lease.expire()
        r.leader_id = leader_id
        r.role = role

    def _fail_stale(self, r: Replica, ctx: ApplyContext) -> None:
        """The replica's term moved or it stopped leading: what it promised cannot be kept."""
        raft = r.raw_node.raft
        leading = raft.state == StateRole.Leader
        stale = r.proposals.take_older_than(raft.term) if leading else r.proposals.take_all()
        for p in stale:
            ctx.answer(p, StaleCommand())
        # Raft forgets pending ReadIndex requests on every term change.
        err = r.not_leader()
        for b in r.read_batches:
            for read in b.reads:
                read.waiter.set(err)
        r.read_batches.clear()
        if not leading:
            r.epoch_tracker.clear()
            for read in r.pending_reads:
                read.waiter.set(err)
            r.pending_reads = []
        r.lease.expire()

    def _send(self, r: Replica, msgs: Iterable[Message], rs: RoundStats) -> None:
        transport = self.transport
        sent = rs.sent
        for m in msgs:
            env = r.envelope(m)
            if env is None:
                rs.unreachable.append((r, m.to))
                continue
            t = m.msg_type
            if t == MessageType.MsgSnapshot:
                if self.snapshots is None:
                    rs.unreachable.append((r, m.to))
                else:
                    self.snapshots.start(env.to_peer.store_id, env)
            elif not transport.send(env.to_peer.store_id, env):
                rs.unreachable.append((r, m.to))
            sent[t] = sent.get(t, 0) + 1

    # ------------------------------------------------------------------
    # Step 4: after the commit

    def _after_commit(
        self, readies: list[tuple[Replica, Ready]], ctx: ApplyContext, rs: RoundStats
    ) -> None:
        for r, rd in readies:
            if r.destroyed:
                continue
            r.raw_node.on_persist_ready(rd.number)
            if rd.persisted_messages:
                self._send(r, rd.persisted_messages, rs)
        for waiter, answer in ctx.answers:
            waiter.set(answer)
        for label, n in ctx.results.items():
            inc(rs.proposals, label, n)
        orphaned, self._orphaned = self._orphaned, []
        if self.cleaner is not None:
            for g in orphaned:  # the cleaner skips any part a live replica covers
                self.cleaner.schedule(g.id, g.start_key, g.end_key)
        if ctx.compactions and self.log_gc is not None:
            self.log_gc.on_compactions(ctx.compactions)
        if self.metrics is not None:
            if ctx.splits:
                self.metrics.raft.splits.inc(ctx.splits)
            for name, n in ctx.conf_changes.items():
                self.metrics.raft.conf_changes.labels(name).inc(n)
        for r in rs.destroyed:
            finish_destroy(r, self.router, self.cleaner)
        for env in rs.gc_notices:
            self.transport.send(env.to_peer.store_id, env)  # best effort: no unreachable report
        for r, _ in readies:
            if r.destroyed:
                if r.replaced_by_split:
                    continue  # its region lives on in the replica the split created
                finish_destroy(r, self.router, self.cleaner)
                continue
            r.raw_node.advance_apply_to(r.applied_index)
            self._serve_read_batches(r, rs)
        self._close_read_txn()
        for r, peer_id in rs.unreachable:
            if not r.destroyed:
                r.raw_node.report_unreachable(peer_id)
        for r, _ in readies:
            if not r.destroyed and r.raw_node.has_ready():
                self.dirty[r.region_id] = r

    def _serve_read_batches(self, r: Replica, rs: RoundStats) -> None:
        batches = r.read_batches
        while batches and batches[0].index is not None and batches[0].index <= r.applied_index:
            b = batches.popleft()
            for read in b.reads:
                err = r.check_request(read.req, need_leader=False)
                if err is not None:
                    read.waiter.set(err)
                else:
                    self._serve(r, read, rs)
