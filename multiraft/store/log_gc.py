"""Raft log GC: when a leader compacts its region's log, how every replica applies it, and the
deletion of compacted entries off the ready loop's critical path (multiraft-design §4.3, §1.4).

Theory of operation
-------------------
Three steps, as in TiKV (``fsm/peer.rs on_raft_gc_log_tick``, ``fsm/apply.rs
exec_compact_log``, ``worker/raftlog_gc.rs``):

1. **Decide** (leaders, every ``tick_interval``): :func:`compact_decision`
   looks at the leader's log and its followers' progress. ``replicated`` is the
   smallest ``matched`` over every peer (learners included). Normally the log is
   compacted up to ``replicated - 1`` once ``replicated - first_index >=
   threshold`` (or, after ``reserve_max_ticks`` ticks below the threshold, with
   whatever there is), so no follower needs a snapshot. When the applied log is
   over ``count_limit`` entries or ``size_limit_bytes`` bytes, the leader
   compacts to ``max(first + (last - first) / 2, replicated) - 1`` anyway: a
   lagging follower then gets a snapshot instead of pinning the log forever.
   Never past the applied index (what is not applied may be needed after a
   restart). The decision is a :class:`~multiraft.wire.command_codec.CompactLog`
   ``{compact_index, compact_term}`` proposed through the region's own log
   (``propose``: ``admin_propose.propose_admin``).
2. **Apply** (every replica, :func:`apply_compact_log`): the truncated state
   becomes ``(compact_index, compact_term)`` — the first index is then
   ``compact_index + 1`` — in the RaftStorage's memory (``prepare_compact``: the
   first index moves and the tail cache drops what is below it, so no reader
   asks for those entries again) and in the apply state staged in the round's
   batch, so it is durable exactly when the apply is. A command at or below the
   current truncated index is a no-op (a snapshot or an earlier compaction got
   there first); one past the applied index, or whose term is not the log's, is
   refused. Apply stays deterministic: the checks read only the replicated log
   and the applied index, and the outcome touches only the replica's own log,
   never the state machine, so a replica that differs (it installed a snapshot)
   answers differently without diverging.
3. **Delete** (:meth:`LogGc.on_compactions`, told by the ready loop after the
   round's commit): the region's entries below the new first index are
   deleted by a background task, :func:`multiraft.storage.compaction.purge_log`
   through the store's ``StorageWriter`` (the writer's thread slot, FIFO with
   the rounds' commits), at most ``purge_batch`` entries per transaction, so a
   round never waits behind more than one bounded transaction. Requests for
   one region coalesce. A crash before or during the deletion leaves
   unreachable entries; the next compaction of the region deletes them too
   (``purge_log`` always starts at the region's first key).

The size limit needs the applied log's size, which nothing else tracks:
:class:`LogGc` measures it incrementally, reading each applied entry's length
once (in a worker thread, at most ``max_measure_entries`` per tick) and
starting over from the new first index after a compaction.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import lmdb
import trio

from multiraft.metrics.raft import RaftMetrics
from multiraft.raft.errors import RaftError
from multiraft.storage import keys
from multiraft.storage.compaction import DEFAULT_PURGE_BATCH, purge_log
from multiraft.storage.engine import Engine, EngineError
from multiraft.storage.write_batch import StorageWriter
from multiraft.store.proposals import Answer
from multiraft.store.replica import Replica
from multiraft.store.router import Router
from multiraft.wire.command_codec import CmdHeader, CompactLog, RaftCmd
from multiraft.wire.messages import Internal, RequestError, Timeout, WriteOk
from regions.split import KIB, MIB

if TYPE_CHECKING:
    from multiraft.store.apply import ApplyContext

__all__ = [
    "LogGc",
    "LogGcConfig",
    "LogGcStatistics",
    "Propose",
    "apply_compact_log",
    "compact_decision",
    "measure_log_bytes",
]

log = logging.getLogger(__name__)

#: ``propose(cmd) -> answer``: have the ready loop propose an admin command and wait for its apply.
Propose = Callable[[RaftCmd], Awaitable[Answer]]


@dataclass(frozen=True, slots=True)
class LogGcConfig:
    """Log GC settings (TiKV's names: ``raft-log-gc-*``, ``raft-log-reserve-max-ticks``).

    TiKV derives the limits from the region split size: ``count_limit = split *
    3/4 / 1 KiB`` entries and ``size_limit = split * 3/4`` bytes (72k entries /
    72 MiB for a 96 MiB split). The defaults here are :meth:`local`'s, the same
    formulas applied to the local cluster's 1 MiB split size: 768 entries,
    768 KiB.
    """

    #: How often leaders consider compacting (TiKV 3 s).
    tick_interval: float = 3.0
    #: Compact once this many entries are replicated to every peer (TiKV 50).
    threshold: int = 50
    #: Compact past lagging followers once the applied log holds this many entries.
    count_limit: int = 768
    #: ... or this many bytes.
    size_limit_bytes: int = 768 * KIB
    #: Below the threshold, compact anyway after this many ticks (TiKV 6).
    reserve_max_ticks: int = 6
    #: Entries deleted per transaction of the background deletion.
    purge_batch: int = DEFAULT_PURGE_BATCH
    #: How long a CompactLog proposal may wait for its apply.
    propose_timeout: float = 10.0
    #: CompactLog proposals in flight at once (one per region at most).
    max_inflight_proposals: int = 16
    #: Log entries whose size is read per tick, over all regions.
    max_measure_entries: int = 100_000

    def __post_init__(self) -> None:
        if self.tick_interval <= 0 or self.propose_timeout <= 0:
            raise ValueError("log GC intervals and timeouts must be positive")
        for name in ("threshold", "count_limit", "size_limit_bytes", "purge_batch",
                     "max_inflight_proposals", "max_measure_entries"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"log GC {name} must be at least 1, got {getattr(self, name)}")
        if self.reserve_max_ticks < 0:
            raise ValueError(f"reserve_max_ticks must be >= 0, got {self.reserve_max_ticks}")

    @classmethod
    def from_split_size(cls, split_size_bytes: int) -> LogGcConfig:
        """TiKV's derived limits for a region split size (see the class docstring); change
        other fields with ``dataclasses.replace``."""
        size = max(1, split_size_bytes * 3 // 4)
        return cls(count_limit=max(1, size // KIB), size_limit_bytes=size)

    @classmethod
    def local(cls) -> LogGcConfig:
        """The local cluster's limits (1 MiB split size)."""
        return cls.from_split_size(MIB)


# -- 1. deciding ------------------------------------------------------------------------


def compact_decision(
    r: Replica, cfg: LogGcConfig, *, log_bytes: int = 0, skipped_ticks: int = 0
) -> CompactLog | None:
    """The CompactLog a leader should propose now, or None (TiKV ``on_raft_gc_log_tick``).

    ``log_bytes`` is the size of the applied log (for ``size_limit_bytes``);
    ``skipped_ticks`` how many ticks in a row found the region below the threshold.
    """
    if r.destroyed or not r.initialized or not r.is_leader():
        return None
    st = r.storage
    first = st.first_index()
    last = st.last_index()
    applied = min(r.applied_index, last)
    replicated = last
    for _, pr in r.raw_node.raft.prs().iter():
        replicated = min(replicated, pr.matched)
    if (applied > first and applied - first >= cfg.count_limit) or (
        log_bytes >= cfg.size_limit_bytes
    ):
        compact = max(first + (last - first) // 2, replicated)
    elif replicated < first or last - first < 3:
        return None  # nothing replicated everywhere to drop, or too little log to bother
    elif replicated - first < cfg.threshold and skipped_ticks < cfg.reserve_max_ticks:
        return None
    else:
        compact = replicated
    # Keep the entry at ``compact``: the leader asks for the term of a follower's match.
    compact = min(compact - 1, applied)
    if compact < first:
        return None
    return CompactLog(compact, st.term(compact))


# -- 2. applying --------------------------------------------------------------------------


def apply_compact_log(r: Replica, cmd: CompactLog, ctx: ApplyContext) -> Answer:
    """Apply a CompactLog on ``r`` (the entry before it is ``r.applied_index``).

    Stages the new truncated state in ``ctx.batch`` (with this round's apply)
    and appends ``(r, compact_index)`` to ``ctx.compactions`` for the deletion.
    """
    st = r.storage
    index = cmd.compact_index
    if index <= st.first_index() - 1:
        return WriteOk()  # compacted that far already (an earlier command, or a snapshot)
    if index > r.applied_index:
        return Internal(f"compact index {index} is past the applied index {r.applied_index}")
    try:
        term = st.term(index)
    except RaftError as exc:
        return Internal(f"compact index {index}: {exc!r}")
    if term != cmd.compact_term:
        return Internal(f"compact index {index} has term {term}, not {cmd.compact_term}")
    # RaftStorage checks a compaction against the applied index it has staged, which apply
    # raises only once per round: stage the entries applied so far first.
    st.set_applied_index(r.applied_index, ctx.batch)
    try:
        st.prepare_compact(index + 1)
    except RaftError as exc:  # entries not durable yet: cannot happen for applied entries
        log.error("region %d: CompactLog to %d refused: %s", r.region_id, index, exc)
        return Internal(f"compact index {index}: {exc}")
    # Stage the apply state again: it now carries the new truncated index and term, and
    # commits with this apply (the round's last set_applied_index rewrites it with both).
    st.set_applied_index(r.applied_index, ctx.batch)
    ctx.compactions.append((r, index))
    return WriteOk()


# -- 3. measuring and deleting ------------------------------------------------------------


def measure_log_bytes(
    engine: Engine, ranges: Iterable[tuple[int, int, int]], max_entries: int
) -> dict[int, tuple[int, int]]:
    """For each ``(region_id, lo, hi)``, the stored size of log entries ``lo..hi``.

    Returns ``{region_id: (last index measured, bytes)}``; stops after
    ``max_entries`` entries in all (the last region measured may be partial, the
    rest absent) or at the first missing entry. One read transaction; blocking.
    """
    out: dict[int, tuple[int, int]] = {}
    budget = max_entries
    db = engine.dbs.raft_log
    with engine.read() as txn:
        cur = txn.cursor(db)
        for rid, lo, hi in ranges:
            if budget <= 0:
                break
            nbytes = 0
            done = lo - 1
            if cur.set_key(keys.log_key(rid, lo)):
                expect = lo
                for k, v in cur.iternext():
                    if expect > hi or budget <= 0 or k != keys.log_key(rid, expect):
                        break
                    nbytes += len(v)
                    done = expect
                    expect += 1
                    budget -= 1
            out[rid] = (done, nbytes)
    return out


@dataclass(slots=True)
class _LogSize:
    first: int
    measured_to: int
    nbytes: int


@dataclass(frozen=True, slots=True)
class LogGcStatistics:
    """Totals since the LogGc was built."""

    ticks: int
    proposals: int
    proposal_failures: int
    compactions: int
    deleted_entries: int
    pending_purges: int


class LogGc:
    """The store's log GC: a tick task proposing compactions, and a deletion task."""

    def __init__(
        self,
        router: Router,
        engine: Engine,
        writer: StorageWriter,
        propose: Propose,
        cfg: LogGcConfig | None = None,
        *,
        metrics: RaftMetrics | None = None,
    ) -> None:
        self.router = router
        self.engine = engine
        self.writer = writer
        self.propose = propose
        self.cfg = cfg or LogGcConfig.local()
        self.metrics = metrics
        #: Regions with a CompactLog proposal in flight.
        self.inflight: set[int] = set()
        self._limiter = trio.CapacityLimiter(self.cfg.max_inflight_proposals)
        self._skipped: dict[int, int] = {}
        self._sizes: dict[int, _LogSize] = {}
        #: region id -> delete the log below this index.
        self._purge: dict[int, int] = {}
        self._wake = trio.Event()
        self._ticks = self._proposals = self._failures = 0
        self._compactions = self._deleted = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the GC tick and the deletion task until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._purger)
            task_status.started()
            while True:
                await trio.sleep(self.cfg.tick_interval)
                await self.tick(nursery)

    # -- the tick ---------------------------------------------------------------------

    def _leaders(self) -> list[Replica]:
        return [r for r in self.router if r.initialized and not r.destroyed and r.is_leader()]

    async def tick(self, nursery: trio.Nursery) -> int:
        """One GC pass over the leaders; proposals run in ``nursery``. Returns how many started."""
        self._ticks += 1
        await self._measure(self._leaders())
        started = 0
        for r in self._leaders():  # again: leadership may have moved during the measure
            rid = r.region_id
            if rid in self.inflight:
                continue
            size = self._sizes.get(rid)
            if size is not None and size.first != r.storage.first_index():
                size = None  # compacted since the measure: it starts over next tick
            decision = compact_decision(
                r, self.cfg, log_bytes=size.nbytes if size is not None else 0,
                skipped_ticks=self._skipped.get(rid, 0),
            )  # fmt: skip
            if decision is None:
                self._skipped[rid] = self._skipped.get(rid, 0) + 1
                continue
            self._skipped.pop(rid, None)
            cmd = RaftCmd(CmdHeader(rid, r.region.epoch), admin=decision)
            self.inflight.add(rid)
            nursery.start_soon(self._propose_one, rid, cmd)
            started += 1
        return started

    async def _measure(self, leaders: list[Replica]) -> None:
        sizes: dict[int, _LogSize] = {}
        todo: list[tuple[int, int, int]] = []
        for r in leaders:
            rid, first = r.region_id, r.storage.first_index()
            if r.applied_index - first >= self.cfg.count_limit:
                continue  # the count limit decides already: no need to read anything
            size = self._sizes.get(rid)
            if size is None or size.first != first:
                size = _LogSize(first, first - 1, 0)
            sizes[rid] = size
            applied = min(r.applied_index, r.storage.last_index())
            if applied > size.measured_to:
                todo.append((rid, size.measured_to + 1, applied))
        self._sizes = sizes  # followers and gone regions are forgotten
        self._skipped = {rid: n for rid, n in self._skipped.items() if rid in sizes}
        if not todo:
            return
        try:
            got = await trio.to_thread.run_sync(
                measure_log_bytes, self.engine, todo, self.cfg.max_measure_entries
            )
        except (EngineError, lmdb.Error) as exc:
            log.warning("log GC: measuring log sizes failed: %s", exc)
            return
        for rid, (to, nbytes) in got.items():
            size = sizes[rid]
            size.measured_to = max(size.measured_to, to)
            size.nbytes += nbytes

    async def _propose_one(self, rid: int, cmd: RaftCmd) -> None:
        result = "error"
        try:
            async with self._limiter:
                answer = await self.propose(cmd)
            if isinstance(answer, WriteOk):
                result = "ok"
            elif isinstance(answer, Timeout):
                result = "timeout"
            if isinstance(answer, RequestError):
                log.debug("region %d: CompactLog %s: %s", rid, cmd.admin, answer)
        finally:
            self.inflight.discard(rid)
            self._proposals += 1
            if result != "ok":
                self._failures += 1
            if self.metrics is not None:
                self.metrics.log_compact_proposals.labels(result).inc()

    # -- deletion ---------------------------------------------------------------------

    def on_compactions(self, compactions: Iterable[tuple[Replica, int]]) -> None:
        """After a round's commit: delete each region's log up to its compact index (later)."""
        n = 0
        for r, index in compactions:
            below = index + 1
            if self._purge.get(r.region_id, 0) < below:
                self._purge[r.region_id] = below
            n += 1
        if n:
            self._compactions += n
            if self.metrics is not None:
                self.metrics.log_compactions.inc(n)
            self._wake.set()

    async def _purger(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            await self.purge_pending()

    async def purge_pending(self) -> int:
        """Delete what every pending compaction left, one bounded transaction per call to the
        writer; returns the entries deleted."""
        total = 0
        batch = self.cfg.purge_batch
        while self._purge:
            rid = next(iter(self._purge))
            below = self._purge.pop(rid)
            while True:
                try:
                    n = await self.writer.run(purge_log, self.engine, rid, below, batch)
                except (EngineError, lmdb.Error) as exc:
                    # Harmless to give up: the next compaction of the region deletes these too.
                    log.warning("region %d: deleting compacted log failed: %s", rid, exc)
                    break
                total += n
                self._deleted += n
                if self.metrics is not None and n:
                    self.metrics.log_gc_deleted_entries.inc(n)
                if n < batch:
                    break
        return total

    def statistics(self) -> LogGcStatistics:
        return LogGcStatistics(self._ticks, self._proposals, self._failures, self._compactions,
                               self._deleted, len(self._purge))  # fmt: skip
