"""Range cleanup: delete the data no replica on this store owns any more, in the background.

Theory of operation
-------------------
Destroying a peer commits its ``Tombstone`` and clears its raft records in the
round's batch, but leaves its data (multiraft-design §1.4, §2.3: TiKV's
``worker/region.rs`` deletes the range asynchronously): a region can hold far
more data than a round should write. Likewise a split whose new region's peer
here was already removed leaves that range's data without an owner. The store
hands such ranges to :meth:`RangeCleaner.schedule` once the batch that orphaned
them has committed, and the cleaner's task deletes their keys:

* **Bounded transactions** of at most ``batch_keys`` deletions each, through
  the store's ``StorageWriter`` (its thread slot, FIFO with the rounds'
  commits), so a round never waits behind more than one of them.
* **Only what nobody owns, decided at deletion time.** Before each
  transaction the job's remaining range is cut down to the parts no replica
  covers *now*: the range of every initialized replica in the router (a new
  replica of the region, or a neighbour that grew, may have arrived since the
  job was scheduled), and the region of every replica with a snapshot received
  or being applied (``pending_snapshot`` / ``Applying``; one whose region is
  unknown holds the whole job back). Why that is enough: data enters a range
  only through the apply of a replica that is initialized there, or through a
  snapshot apply, which runs in the writer's slot while its replica is
  ``Applying`` (and clears the range first). The cover is computed on the trio
  thread and the transaction is queued on the writer slot with no await in
  between, so a snapshot apply that starts after the check runs after the
  deletion.
* **Idempotent**: deleting keys that are gone is a no-op, so a range may be
  scheduled twice, and a job that fails is dropped.
* **Restart-safe**: the queue lives in memory, and nothing records which
  ranges are dirty; instead, at startup (after recovery built the router)
  :func:`ranges_to_clean` lists the gaps between live replicas' ranges that
  still hold a key. Every data key outside all live initialized replicas is
  garbage (recovery finishes interrupted snapshot applies first, and an
  uninitialized replica holds no data), so this finds every tombstoned or
  orphaned range without reading a single tombstone, at the cost of one seek
  per gap.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

import lmdb
import trio

from multiraft.metrics.storage import StorageMetrics
from multiraft.storage.engine import Engine, EngineError, Txn
from multiraft.storage.write_batch import StorageWriter
from multiraft.store.router import Router
from regions.keyspace import format_range
from regions.local_state import PeerState

__all__ = [
    "DEFAULT_BATCH_KEYS",
    "CleanerStatistics",
    "KeyRange",
    "RangeCleaner",
    "covered_ranges",
    "delete_data",
    "ranges_to_clean",
    "subtract_ranges",
]

log = logging.getLogger(__name__)

#: ``(start, end)``: the half-open key range ``[start, end)``; an empty ``end`` is unbounded.
KeyRange = tuple[bytes, bytes]

#: Data keys deleted per write transaction.
DEFAULT_BATCH_KEYS = 4096

_EVERYTHING: KeyRange = (b"", b"")


def subtract_ranges(start: bytes, end: bytes, covered: list[KeyRange]) -> list[KeyRange]:
    """The parts of ``[start, end)`` outside every range of ``covered`` (any order, may
    overlap), in key order. Empty ends are unbounded."""
    out: list[KeyRange] = []
    pos = start
    for s, e in sorted(covered):
        if end and s >= end:
            break
        if e and e <= pos:
            continue
        if s > pos:
            out.append((pos, s))
        if not e:
            return out
        pos = e  # > pos: ranges ending at or before pos were skipped
        if end and pos >= end:
            return out
    out.append((pos, end))
    return out


def covered_ranges(router: Router, start: bytes, end: bytes) -> list[KeyRange]:
    """What the replicas in ``router`` own or are about to own within reach of ``[start, end)``
    (see the module docstring); ``[(b"", b"")]`` when a snapshot's region is unknown."""
    out: list[KeyRange] = []
    for rid in router.overlapping(start, end):
        r = router.replicas[rid]
        out.append((r.region.start_key, r.region.end_key))
    for r in router:
        snap = r.pending_snapshot
        if snap is not None:
            out.append((snap.region.start_key, snap.region.end_key))
        elif r.peer_state == PeerState.Applying:
            return [_EVERYTHING]
    return out


def delete_data(
    engine: Engine, ranges: list[KeyRange], limit: int
) -> tuple[int, int, bytes | None]:
    """Delete up to ``limit`` data keys from ``ranges`` (in order), in one write transaction.

    Returns ``(keys deleted, their bytes, resume key)``: the resume key is the
    first key not deleted because the limit was reached (None: the ranges are
    empty now). Blocking; may run twice if the map grows (it only reads the txn).
    """
    db = engine.dbs.data

    def run(txn: Txn) -> tuple[int, int, bytes | None]:
        n = nbytes = 0
        cur = txn.cursor(db)
        for s, e in ranges:
            if not (cur.set_range(s) if s else cur.first()):
                break  # nothing at or after s: the later ranges are empty too
            while True:
                key = cur.key()
                if not key or (e and key >= e):
                    break
                if n >= limit:
                    return n, nbytes, key
                nbytes += len(key) + len(cur.value())
                cur.delete()  # moves to the next key
                n += 1
        return n, nbytes, None

    return engine.write(run)


def ranges_to_clean(engine: Engine, router: Router) -> list[KeyRange]:
    """The gaps between the ranges of ``router``'s replicas that hold at least one data key.

    Call it at startup, once recovery has registered every replica, and
    :meth:`RangeCleaner.schedule` each result (see the module docstring). Cost:
    sorting the live ranges and one seek per gap, in one short read.
    """
    gaps = subtract_ranges(b"", b"", covered_ranges(router, b"", b""))
    out: list[KeyRange] = []
    with engine.read() as txn:
        cur = txn.cursor(engine.dbs.data)
        for s, e in gaps:
            found = cur.set_range(s) if s else cur.first()
            if found and (not e or cur.key() < e):
                out.append((s, e))
    return out


@dataclass(slots=True)
class _Job:
    region_id: int
    start: bytes
    end: bytes


@dataclass(frozen=True, slots=True)
class CleanerStatistics:
    """Totals since the cleaner was built."""

    pending: int
    deleted_keys: int
    deleted_bytes: int
    transactions: int
    failures: int


class RangeCleaner:
    """Deletes orphaned data ranges in the background (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        writer: StorageWriter,
        router: Router,
        *,
        batch_keys: int = DEFAULT_BATCH_KEYS,
        metrics: StorageMetrics | None = None,
    ) -> None:
        if batch_keys < 1:
            raise ValueError(f"batch_keys must be at least 1, got {batch_keys}")
        self.engine = engine
        self.writer = writer
        self.router = router
        self.batch_keys = batch_keys
        self.metrics = metrics
        self._jobs: deque[_Job] = deque()
        self._wake = trio.Event()
        self._keys = self._bytes = self._txns = self._failures = 0

    def schedule(self, region_id: int, start: bytes, end: bytes) -> None:
        """Delete the data in ``[start, end)`` (empty ``end``: unbounded) that no replica owns;
        ``region_id`` is for the logs (0: unknown). Returns at once."""
        self._jobs.append(_Job(region_id, start, end))
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Clean scheduled ranges until cancelled."""
        task_status.started()
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            await self.clean_pending()

    async def clean_pending(self) -> int:
        """Work through every scheduled range now; returns the keys deleted."""
        total = 0
        while self._jobs:
            job = self._jobs[0]
            try:
                n, done = await self._step(job)
            except (EngineError, lmdb.Error) as exc:
                # Dropped, not retried: the next startup finds what is left (ranges_to_clean).
                self._failures += 1
                self._jobs.popleft()
                log.warning("region %d: cleaning %s failed: %s", job.region_id,
                            format_range(job.start, job.end), exc)  # fmt: skip
                continue
            total += n
            if done:
                self._jobs.popleft()
                log.debug("region %d: cleaned %s", job.region_id, format_range(job.start, job.end))
        return total

    async def _step(self, job: _Job) -> tuple[int, bool]:
        """One transaction of ``job``: the keys deleted and whether the job is finished."""
        todo = subtract_ranges(job.start, job.end, covered_ranges(self.router, job.start, job.end))
        if not todo:
            return 0, True
        # No await between the cover check and queueing on the writer slot (module docstring).
        n, nbytes, resume = await self.writer.run(delete_data, self.engine, todo, self.batch_keys)
        self._txns += 1
        self._keys += n
        self._bytes += nbytes
        if self.metrics is not None and n:
            self.metrics.range_cleaned_keys.inc(n)
            self.metrics.range_cleaned_bytes.inc(nbytes)
        if resume is None:
            return n, True
        job.start = resume
        return n, False

    def statistics(self) -> CleanerStatistics:
        return CleanerStatistics(len(self._jobs), self._keys, self._bytes, self._txns,
                                 self._failures)  # fmt: skip
