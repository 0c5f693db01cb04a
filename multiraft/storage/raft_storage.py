"""RaftStorage: the Raft core's Storage for one region, over LMDB plus a tail cache.

Theory of operation
-------------------
The Raft core reads its stable log through :class:`~multiraft.raft.storage.Storage`;
the store writes it by staging a Ready into the round's
:class:`~multiraft.storage.write_batch.WriteBatch`. With raft-rs's
asynchronous persistence (``advance_append_async``) the core reads back what
a Ready handed out *before* the batch commits, so every staged write is
applied to this object's in-memory view at once:

* **Bounds and state** (``last_index``, the hard state, the conf state, the
  truncated index/term and the applied index) live in memory and are
  updated as writes are staged. ``first_index()`` is ``truncated_index + 1``.
* **The tail cache** is a contiguous list of the log's last entries,
  ending at ``last_index``. Appends go into it as well as into the batch, so
  ``term()`` and ``entries()`` for the hot tail never touch disk. Below the
  cache the log is read from LMDB in one read transaction per call.

Invariants:

1. ``cache[i].index == cache_first + i`` and, if the cache is non-empty,
   ``cache[-1].index == last_index``; ``cache_first > truncated_index``.
2. Everything on disk below ``cache_first`` is durable and current, so a disk
   read there is always right. An entry may leave the cache only once the
   batch that wrote it has committed and no pending batch rewrites it: the
   storage tracks, per pending batch, the lowest index the batch writes,
   and evicts only below the lowest of them.
3. The cache is bounded (``cache_max_entries``, ``cache_max_bytes``) except
   for entries not yet durable, which Raft's own flow control bounds.

Errors match :class:`~multiraft.raft.storage.MemStorage` exactly (the shared
conformance suite runs against both): ``Compacted`` below the first index,
``Unavailable`` past the last, ``RaftFatal`` for a read past ``last_index + 1``
and for appends that overwrite compacted entries or leave a gap. Unlike
MemStorage, log compaction records the truncated term, so
``term(first_index() - 1)`` stays answerable after a compaction (TiKV's
``truncated_state``). A record that fails to decode raises
:class:`~multiraft.wire.records.RecordCorrupted`.

If a batch this storage staged into is aborted (its commit failed), the
storage reloads itself from disk; writes staged into later batches are then
lost too, which is why a failed commit must stop the store.

Snapshots: :meth:`snapshot` asks the ``snapshot_producer`` given at
construction; without one it raises ``SnapshotTemporarilyUnavailable`` (the
core retries later). :func:`multiraft.storage.snapshot.metadata_snapshot` is
MemStorage's metadata-only producer, for tests and harnesses; the store plugs
in one backed by :func:`multiraft.storage.snapshot.generate`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypedDict, Unpack

from multiraft.raft.errors import (
    Compacted,
    RaftFatal,
    SnapshotOutOfDate,
    SnapshotTemporarilyUnavailable,
    Unavailable,
)
from multiraft.raft.storage import GetEntriesContext
from multiraft.raft.types import (
    NO_LIMIT,
    ConfState,
    Entry,
    HardState,
    RaftState,
    Snapshot,
    SnapshotMetadata,
    entry_size,
)
from multiraft.raft.util import take_limited
from multiraft.storage import keys
from multiraft.storage.compaction import CompactTask, compact_log
from multiraft.storage.engine import Engine
from multiraft.storage.recovery import RecoveredRegion, read_region_records
from multiraft.storage.write_batch import WriteBatch
from multiraft.wire.records import (
    ENTRY_HEADER_SIZE,
    RecordCorrupted,
    decode_entry,
    decode_entry_term,
)
from regions.local_state import ApplyState

__all__ = ["RaftStorage", "SnapshotProducer", "StorageOptions"]

#: ``producer(storage, request_index, to) -> Snapshot``; may raise SnapshotTemporarilyUnavailable.
SnapshotProducer = Callable[["RaftStorage", int, int], Snapshot]


class StorageOptions(TypedDict, total=False):
    """Keyword options of :class:`RaftStorage`."""

    #: Tail cache bound in entries (default 1024); 0 serves every durable read from disk.
    cache_max_entries: int
    #: Tail cache bound in approximate bytes (default 4 MiB).
    cache_max_bytes: int
    #: What :meth:`RaftStorage.snapshot` asks; None: SnapshotTemporarilyUnavailable.
    snapshot_producer: SnapshotProducer | None


#: A rough per-entry memory cost beyond its encoded size (object, list slot).
_ENTRY_OVERHEAD = 100
#: The same beyond the payload (adds the encoded header).
_ENTRY_COST = _ENTRY_OVERHEAD + ENTRY_HEADER_SIZE
#: How many entries a tail ``term()`` miss reads into the cache at once.
_WARM_WINDOW = 32
_INF = float("inf")
_log_key = keys.log_key


def _copy_conf_state(c: ConfState) -> ConfState:
    return ConfState(
        [*c.voters], [*c.learners], [*c.voters_outgoing], [*c.learners_next], c.auto_leave
    )


class RaftStorage:
    """One region's Raft log and state: the Storage protocol plus staging methods."""

    __slots__ = (
        "_applied_index",
        "_cache",
        "_cache_bytes",
        "_cache_first",
        "_conf_state",
        "_engine",
        "_hard_state",
        "_last_index",
        "_log_db",
        "_max_bytes",
        "_max_entries",
        "_pending",
        "_region_id",
        "_snapshot_producer",
        "_truncated_index",
        "_truncated_term",
    )

    def __init__(self, engine: Engine, region_id: int, **opts: Unpack[StorageOptions]) -> None:
        """An empty view; use :meth:`open` or :meth:`from_recovered` to load one."""
        self._engine = engine
        self._log_db = engine.dbs.raft_log
        self._region_id = region_id
        self._max_entries = opts.get("cache_max_entries", 1024)
        self._max_bytes = opts.get("cache_max_bytes", 4 << 20)
        self._snapshot_producer = opts.get("snapshot_producer")
        self._hard_state = HardState()
        self._conf_state = ConfState()
        self._last_index = 0
        self._applied_index = 0
        self._truncated_index = 0
        self._truncated_term = 0
        self._cache: list[Entry] = []
        self._cache_first = 1
        self._cache_bytes = 0
        #: ``[batch, lowest index it writes]`` for every batch staged into and not yet committed.
        self._pending: list[list[Any]] = []

    @classmethod
    def open(cls, engine: Engine, region_id: int, **opts: Unpack[StorageOptions]) -> RaftStorage:
        """Load a region's state from disk (absent records: a fresh, empty region)."""
        st = cls(engine, region_id, **opts)
        st.reload()
        return st

    @classmethod
    def from_recovered(
        cls, engine: Engine, rec: RecoveredRegion, **opts: Unpack[StorageOptions]
    ) -> RaftStorage:
        """Build from a startup :class:`~multiraft.storage.recovery.RecoveredRegion` (no re-read)."""
        st = cls(engine, rec.region_id, **opts)
        st._load(
            rec.raft_state.hard_state, rec.raft_state.last_index, rec.apply_state, rec.conf_state
        )
        return st

    def reload(self) -> None:
        """Forget everything in memory (cache, pending batches) and re-read the records."""
        with self._engine.read() as txn:
            raft, apply, conf = read_region_records(txn, self._engine.dbs, self._region_id)
        self._load(raft.hard_state, raft.last_index, apply, conf)

    def _load(self, hs: HardState, last_index: int, apply: ApplyState, cs: ConfState) -> None:
        self._hard_state = HardState(hs.term, hs.vote, hs.commit)
        self._last_index = max(last_index, apply.truncated_index)
        self._applied_index = apply.applied_index
        self._truncated_index = apply.truncated_index
        self._truncated_term = apply.truncated_term
        self._conf_state = _copy_conf_state(cs)
        self._cache = []
        self._cache_first = self._last_index + 1
        self._cache_bytes = 0
        self._pending = []

    @property
    def region_id(self) -> int:
        return self._region_id

    # ------------------------------------------------------------------
    # Staging writes (the store's thread)

    def _track(self, batch: WriteBatch, lowest: float) -> bool:
        """Record that ``batch`` writes from index ``lowest``; True if the batch is new to us."""
        pending = self._pending
        if pending and pending[-1][0] is batch:
            if lowest < pending[-1][1]:
                pending[-1][1] = lowest
            return False
        pending.append([batch, lowest])
        return True

    def append(self, entries: Sequence[Entry], batch: WriteBatch) -> None:
        """Stage ``entries`` (contiguous) and the raft state, replacing what they overwrite.

        Raises:
            RaftFatal: ``entries`` start below ``first_index()`` or leave a gap
                after ``last_index()`` (nothing is staged).
        """
        if entries:
            self.stage_ready(entries, None, batch)

    def set_hard_state(self, hs: HardState, batch: WriteBatch) -> None:
        """Stage (a copy of) the hard state, with the current last index."""
        self.stage_ready((), hs, batch)

    def stage_ready(
        self, entries: Sequence[Entry], hs: HardState | None, batch: WriteBatch
    ) -> None:
        """:meth:`append` then :meth:`set_hard_state` (if ``hs``), staging the raft state once.

        Everything staged is readable through this storage at once.
        """
        start: float
        if entries:
            start = entries[0].index
            first = self._truncated_index + 1
            if first > start:
                raise RaftFatal(
                    f"overwrite compacted raft logs, compacted: {first - 1}, append: {start}"
                )
            last = self._last_index
            if last + 1 < start:
                raise RaftFatal(
                    f"raft logs should be continuous, last index: {last}, new appended: {start}"
                )
        elif hs is None:
            return
        else:
            start = _INF
        hs = self._hard_state if hs is None else HardState(hs.term, hs.vote, hs.commit)
        pending = self._pending
        new = not pending or pending[-1][0] is not batch
        added = batch.stage_raft(
            self._region_id, entries, self._last_index, hs, self if new else None
        )
        # Staged: now the in-memory view follows.
        self._hard_state = hs
        if new:
            pending.append([batch, start])
        elif start < pending[-1][1]:
            pending[-1][1] = start
        if entries:
            self._cache_append(entries, int(start), added + _ENTRY_OVERHEAD * len(entries))

    def _cache_append(self, entries: Sequence[Entry], start: int, added: int) -> None:
        self._last_index = entries[-1].index
        # Drop what the new entries overwrite, then extend.
        cache = self._cache
        cf = self._cache_first
        if start >= cf and cache:
            pos = start - cf
            if pos < len(cache):
                self._cache_bytes -= _bytes_of(cache, pos)
                del cache[pos:]
            cache.extend(entries)
            self._cache_bytes += added
        else:
            self._cache = list(entries)
            self._cache_first = start
            self._cache_bytes = added
        if len(self._cache) > self._max_entries or self._cache_bytes > self._max_bytes:
            self._evict()

    def set_conf_state(self, cs: ConfState, batch: WriteBatch) -> None:
        """Stage the membership (after applying a conf change or installing a region)."""
        self._conf_state = _copy_conf_state(cs)
        batch.put_conf_state(self._region_id, self._conf_state)
        if self._track(batch, _INF):
            batch.add_listener(self)

    def set_applied_index(self, index: int, batch: WriteBatch) -> None:
        """Stage the apply state with ``applied_index = index``.

        Stage the data mutations of the entries up to ``index`` in the same batch.
        """
        self._applied_index = index
        batch.put_apply_state(self._region_id, self.apply_state())
        if self._track(batch, _INF):
            batch.add_listener(self)

    def apply_snapshot_meta(self, meta: SnapshotMetadata, batch: WriteBatch) -> None:
        """Stage the raft side of installing a snapshot (its data is installed separately).

        The log is replaced: first index becomes ``meta.index + 1``, the
        truncated and applied indexes ``meta.index``, ``hs.commit`` too, the
        term is raised to ``meta.term`` if lower, and the conf state is the
        snapshot's.

        Raises:
            SnapshotOutOfDate: ``meta.index < first_index()``.
        """
        index = meta.index
        if self._truncated_index + 1 > index:
            raise SnapshotOutOfDate()
        hs = self._hard_state
        self._hard_state = HardState(max(hs.term, meta.term), hs.vote, index)
        self._truncated_index = index
        self._truncated_term = meta.term
        self._applied_index = index
        self._last_index = index
        self._conf_state = _copy_conf_state(meta.conf_state)
        self._cache = []
        self._cache_first = index + 1
        self._cache_bytes = 0
        rid = self._region_id
        batch.clear_log(rid)
        batch.put_raft_state(rid, self._hard_state, index)
        batch.put_apply_state(rid, self.apply_state())
        batch.put_conf_state(rid, self._conf_state)
        # Everything at or above the old first index is rewritten by this batch.
        if self._track(batch, 0):
            batch.add_listener(self)

    def prepare_compact(self, compact_index: int) -> CompactTask | None:
        """Move the first index to ``compact_index`` in memory; return the disk work, if any.

        Run the returned task with :func:`~multiraft.storage.compaction.compact_log`
        (e.g. through ``StorageWriter.run``) to record the truncated state and
        delete the entries. Until then, the entries are merely unreachable.

        Raises:
            RaftFatal: ``compact_index > last_index() + 1``, past the applied
                index, or over entries not yet durable.
        """
        if compact_index <= self._truncated_index + 1:
            return None
        last = self._last_index
        if compact_index > last + 1:
            raise RaftFatal(f"compact not received raft logs: {compact_index}, last index: {last}")
        if compact_index - 1 > self._applied_index:
            raise RaftFatal(f"compact {compact_index} past applied index {self._applied_index}")
        if compact_index > self._durable_below():
            raise RaftFatal(f"compact {compact_index} over entries that are not durable yet")
        term = self.term(compact_index - 1)
        self._truncated_index = compact_index - 1
        self._truncated_term = term
        drop = compact_index - self._cache_first
        if drop > 0:
            drop = min(drop, len(self._cache))
            self._cache_bytes -= _bytes_of(self._cache, 0, drop)
            del self._cache[:drop]
            self._cache_first += drop
        return CompactTask(self._region_id, compact_index, term)

    def compact(self, compact_index: int) -> None:
        """Discard entries below ``compact_index`` now, in its own transaction.

        A no-op at or below ``first_index()``; see :meth:`prepare_compact`.
        """
        task = self.prepare_compact(compact_index)
        if task is not None:
            compact_log(self._engine, task)

    # ------------------------------------------------------------------
    # BatchListener

    def batch_committed(self, batch: WriteBatch) -> None:
        pending = self._pending
        if pending and pending[0][0] is batch:  # batches commit in order: the usual case
            del pending[0]
        else:
            for i, (b, _) in enumerate(pending):
                if b is batch:
                    del pending[i]
                    break
        if len(self._cache) > self._max_entries or self._cache_bytes > self._max_bytes:
            self._evict()

    def batch_aborted(self, batch: WriteBatch) -> None:
        self.reload()

    def _durable_below(self) -> float:
        """Entries below this index are durable and no pending batch rewrites them."""
        if not self._pending:
            return self._last_index + 1
        return float(min(p[1] for p in self._pending))

    def _evict(self) -> None:
        cache = self._cache
        limit = self._durable_below() - self._cache_first
        n = 0
        nbytes = self._cache_bytes
        over = len(cache) - self._max_entries
        while n < limit and n < len(cache) and (n < over or nbytes > self._max_bytes):
            e = cache[n]
            nbytes -= len(e.data) + len(e.context) + _ENTRY_COST
            n += 1
        if n:
            del cache[:n]
            self._cache_first += n
            self._cache_bytes = nbytes

    # ------------------------------------------------------------------
    # Storage protocol

    def initial_state(self) -> RaftState:
        """A copy of the hard state and conf state (staged writes included)."""
        hs = self._hard_state
        return RaftState(HardState(hs.term, hs.vote, hs.commit), _copy_conf_state(self._conf_state))

    def entries(
        self, low: int, high: int, max_size: int | None, context: GetEntriesContext
    ) -> list[Entry]:
        """See :meth:`Storage.entries`; the tail comes from the cache, the rest from disk."""
        if low <= self._truncated_index:
            raise Compacted()
        last = self._last_index
        if high > last + 1:
            raise RaftFatal(f"index out of bound (last: {last + 1}, high: {high})")
        if low >= high:
            if low > high:
                raise RaftFatal(f"invalid entries range [{low}, {high})")
            return []
        cf = self._cache_first
        if low >= cf:
            return take_limited(self._cache, low - cf, high - cf, max_size)
        if max_size == NO_LIMIT:
            max_size = None
        out: list[Entry] = []
        size, stopped = self._read_disk(low, min(high, cf), max_size, out)
        if stopped:
            return out
        n_disk = len(out)
        if high > cf:
            _extend_limited(out, self._cache, 0, high - cf, size, max_size)
        if high >= cf and n_disk + len(self._cache) <= self._max_entries:
            # The read reached the cache: keep it, the next reads are likely nearby.
            self._prepend(out[:n_disk])
        return out

    def term(self, idx: int) -> int:
        """See :meth:`Storage.term`; never touches disk for the cached tail."""
        cf = self._cache_first
        if idx >= cf:
            pos = idx - cf
            cache = self._cache
            if pos < len(cache):
                return cache[pos].term
            raise Unavailable()
        if idx == self._truncated_index:
            return self._truncated_term
        if idx < self._truncated_index:
            raise Compacted()
        if idx >= cf - _WARM_WINDOW and len(self._cache) + _WARM_WINDOW <= self._max_entries:
            lo = max(self._truncated_index + 1, cf - _WARM_WINDOW)
            out: list[Entry] = []
            self._read_disk(lo, cf, None, out)
            self._prepend(out)
            return self._cache[idx - self._cache_first].term
        return self._term_from_disk(idx)

    def first_index(self) -> int:
        return self._truncated_index + 1

    def last_index(self) -> int:
        return self._last_index

    def snapshot(self, request_index: int, to: int) -> Snapshot:
        """The producer's snapshot; without a producer, ``SnapshotTemporarilyUnavailable``."""
        if self._snapshot_producer is None:
            raise SnapshotTemporarilyUnavailable()
        return self._snapshot_producer(self, request_index, to)

    # ------------------------------------------------------------------
    # Introspection

    def hard_state(self) -> HardState:
        """A copy of the current (staged) hard state."""
        hs = self._hard_state
        return HardState(hs.term, hs.vote, hs.commit)

    def conf_state(self) -> ConfState:
        return _copy_conf_state(self._conf_state)

    def apply_state(self) -> ApplyState:
        """The apply state as staged: applied index and truncated index/term."""
        return ApplyState(self._applied_index, self._truncated_index, self._truncated_term)

    def applied_index(self) -> int:
        return self._applied_index

    def cached_range(self) -> tuple[int, int]:
        """``[first, last]`` log indexes held by the tail cache (``first > last`` if empty)."""
        return self._cache_first, self._cache_first + len(self._cache) - 1

    def pending_batches(self) -> int:
        """Batches staged into and not yet committed."""
        return len(self._pending)

    # ------------------------------------------------------------------
    # Disk reads

    def _prepend(self, ents: list[Entry]) -> None:
        if not ents:
            return
        self._cache[0:0] = ents
        self._cache_first = ents[0].index
        self._cache_bytes += _bytes_of(ents, 0)

    def _read_disk(
        self, lo: int, hi: int, max_size: int | None, out: list[Entry]
    ) -> tuple[int, bool]:
        """Append entries ``[lo, hi)`` read from disk to ``out``, under ``max_size``.

        Returns the running encoded size and whether the budget stopped the read.
        """
        rid = self._region_id
        eng = self._engine
        txn = eng.begin_read()
        try:
            cur = txn.cursor(self._log_db)
            expect = lo
            size = 0
            if not cur.set_key(_log_key(rid, lo)):
                raise RecordCorrupted(f"region {rid}: log entry {lo} is missing")
            for key, val in cur.iternext():
                if expect >= hi:
                    break
                e = decode_entry(val)
                if e.index != expect or key != _log_key(rid, expect):
                    raise RecordCorrupted(
                        f"region {rid}: expected log entry {expect}, found {e.index}"
                    )
                if max_size is not None:
                    if size == 0:
                        size = entry_size(e)
                    else:
                        size += entry_size(e)
                        if size > max_size:
                            return size, True
                out.append(e)
                expect += 1
            if expect < hi:
                raise RecordCorrupted(f"region {rid}: log entries {expect}..{hi - 1} are missing")
            return size, False
        finally:
            eng.end_read(txn)

    def _term_from_disk(self, idx: int) -> int:
        rid = self._region_id
        with self._engine.read() as txn:
            raw = txn.get(_log_key(rid, idx), db=self._log_db)
        if raw is None:
            raise RecordCorrupted(f"region {rid}: log entry {idx} is missing")
        term, index = decode_entry_term(raw)
        if index != idx:
            raise RecordCorrupted(f"region {rid}: log key {idx} holds entry {index}")
        return term


def _bytes_of(ents: Sequence[Entry], start: int, stop: int | None = None) -> int:
    """The cache's estimate of a run of entries' memory: encoded size plus object overhead."""
    n = 0
    for e in ents[start:stop]:
        n += len(e.data) + len(e.context) + _ENTRY_COST
    return n


def _extend_limited(
    out: list[Entry], src: Sequence[Entry], start: int, stop: int, size: int, max_size: int | None
) -> None:
    """Continue a size-limited read into ``src[start:stop]`` (raft-rs ``limit_size`` rules)."""
    if max_size is None:
        out.extend(src[start:stop])
        return
    for pos in range(start, stop):
        e = src[pos]
        if size == 0:
            # As in limit_size: while nothing has been counted, take the next entry.
            size = entry_size(e)
        else:
            size += entry_size(e)
            if size > max_size:
                return
        out.append(e)
