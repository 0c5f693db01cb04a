"""WriteBatch: one ready round's writes for many regions, committed in one LMDB transaction.

Theory of operation
-------------------
A store's round (ARCHITECTURE.md §3) collects, for every dirty region, the
log entries and hard state of its Ready, the apply states and data of what
it applied, and any region-state changes, then makes all of them durable
with **one** write transaction and therefore one fsync. LMDB commits a
transaction atomically, so after a crash either the whole round is on disk or
none of it is. That is what makes each atomicity rule of
``docs/storage.md`` hold: log entries with their ``RaftLocalState``, data
mutations with the ``ApplyState`` that covers them, and admin results with
every region state they touch.

Staging happens on the store's thread: records are encoded as they are
added (the entry encoding is the hot path, see
:mod:`multiraft.wire.records`), so the writing thread only issues puts.
:meth:`WriteBatch.write` then runs the transaction: it may run in a worker
thread (LMDB pins a write transaction to the thread that begins it, so the
transaction begins, writes and commits inside that one call) and it may run
twice if the map has to grow, which is safe because it only replays staged
bytes. :meth:`WriteBatch.finish` runs afterwards on the store's thread and
tells the listeners (each :class:`~multiraft.storage.raft_storage.RaftStorage`
that staged into the batch) that their writes are durable.

Rules kept by the batch:

* Log writes per region are one contiguous run ``puts`` from ``first``; a
  later append in the same batch that starts inside the run truncates it
  first (the conflicting-tail rule), and the old durable tail beyond the new
  last index, up to the largest last index seen, is deleted at commit.
* Later writes of the same state record replace earlier ones; data
  operations keep their order.
* ``truncated_index`` in an apply state never goes backwards: the commit
  keeps the stored one if it is larger, so a round's apply state staged
  before a concurrent log compaction cannot undo it.

:class:`StorageWriter` is the async face for trio: ``await
writer.commit(batch)`` runs :meth:`WriteBatch.write` through
``trio.to_thread.run_sync`` under a ``CapacityLimiter(1)``, so the store keeps
receiving messages while the fsync happens. (The puts hold the GIL like any
Python code; the commit's fsync does not, and that is most of a round's
write time. Entries of one region go down in one ``putmulti`` call.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import trio

from multiraft.raft.types import ConfState, Entry, HardState
from multiraft.storage import keys
from multiraft.storage.engine import Db, Dbs, Engine, Txn
from multiraft.wire.records import (
    decode_apply_state,
    encode_apply_state,
    encode_conf_state,
    encode_entry,
    encode_raft_local_state,
    encode_region_local_state,
)
from regions.local_state import ApplyState, RegionLocalState

__all__ = [
    "BatchListener",
    "BatchStatistics",
    "StorageWriter",
    "WriteBatch",
    "WriterStatistics",
    "delete_range",
]

T = TypeVar("T")

_PUT, _DELETE, _DELETE_RANGE = 0, 1, 2
_log_key = keys.log_key
_region_key = keys.region_key
_encode_entry = encode_entry
_encode_raft_local_state = encode_raft_local_state


class BatchListener(Protocol):
    """Told, on the store's thread, whether the writes it staged became durable."""

    def batch_committed(self, batch: WriteBatch) -> None: ...
    def batch_aborted(self, batch: WriteBatch) -> None: ...


@dataclass(frozen=True, slots=True)
class BatchStatistics:
    """What one batch wrote; ``commit_seconds`` is 0.0 until it is written."""

    regions: int
    entries: int
    entry_bytes: int
    state_records: int
    data_ops: int
    commit_seconds: float


class _RegionLog:
    """One region's staged log writes: ``puts[i]`` is entry ``first + i``, encoded."""

    __slots__ = ("clear", "delete_to", "first", "puts")

    def __init__(self, first: int, puts: list[bytes], delete_to: int, clear: bool) -> None:
        self.first = first
        self.puts = puts
        #: Delete indexes ``(last put, delete_to]``: the old tail beyond the new last index.
        self.delete_to = delete_to
        #: Delete the region's whole log before the puts (snapshot, destroy).
        self.clear = clear


class WriteBatch:
    """The writes of one round, for any number of regions. Build, then :meth:`commit`."""

    __slots__ = (
        "_apply_states",
        "_commit_seconds",
        "_conf_states",
        "_data",
        "_entries",
        "_entry_bytes",
        "_listeners",
        "_logs",
        "_raft_states",
        "_region_states",
        "_state",
    )

    def __init__(self) -> None:
        self._logs: dict[int, _RegionLog] = {}
        # None means "delete the record".
        self._raft_states: dict[int, bytes | None] = {}
        self._apply_states: dict[int, ApplyState | None] = {}
        self._conf_states: dict[int, bytes | None] = {}
        self._region_states: dict[int, bytes] = {}
        self._data: list[tuple[int, bytes, bytes | None]] = []
        self._listeners: list[BatchListener] = []
        self._entries = 0
        self._entry_bytes = 0
        self._commit_seconds = 0.0
        self._state = "open"

    # ------------------------------------------------------------------
    # Staging (the store's thread)

    def _check_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(f"this WriteBatch is already {self._state}")

    def append_entries(self, region_id: int, entries: Sequence[Entry], prev_last_index: int) -> int:
        """Stage ``entries`` (contiguous) for ``region_id``, whose last index was ``prev_last_index``.

        Stored entries from ``entries[0].index`` on are replaced; those beyond
        the new last index, up to ``prev_last_index``, are deleted.

        Returns:
            The encoded size of ``entries`` in bytes.
        """
        if self._state != "open":
            self._check_open()
        if not entries:
            return 0
        if len(entries) == 1:  # the common case: skip the comprehension's frame
            enc = [_encode_entry(entries[0])]
        else:
            enc = [_encode_entry(e) for e in entries]
        nbytes = sum(map(len, enc))
        self._entries += len(enc)
        self._entry_bytes += nbytes
        first = entries[0].index
        log = self._logs.get(region_id)
        if log is None:
            self._logs[region_id] = _RegionLog(first, enc, prev_last_index, False)
            return nbytes
        puts = log.puts
        if not puts or first < log.first:
            log.first = first
            log.puts = enc
        elif first <= log.first + len(puts):
            del puts[first - log.first :]
            puts.extend(enc)
        else:
            raise ValueError(
                f"region {region_id}: append at {first} leaves a gap after staged "
                f"entry {log.first + len(puts) - 1}"
            )
        if prev_last_index > log.delete_to:
            log.delete_to = prev_last_index
        return nbytes

    def stage_raft(
        self,
        region_id: int,
        entries: Sequence[Entry],
        prev_last_index: int,
        hs: HardState,
        listener: BatchListener | None = None,
    ) -> int:
        """One region's Ready, raft side: its entries (maybe none) and its ``RaftLocalState``.

        :meth:`append_entries` (if any entries), then ``RaftLocalState{hs,
        new last index}``, then :meth:`add_listener` (if given), in one call:
        the per-region path of every round.

        Returns:
            The encoded size of ``entries`` in bytes.
        """
        if entries:
            nbytes = self.append_entries(region_id, entries, prev_last_index)
            last = entries[-1].index
        else:
            if self._state != "open":
                self._check_open()
            nbytes = 0
            last = prev_last_index
        self._raft_states[region_id] = _encode_raft_local_state(hs, last)
        if listener is not None:
            self._listeners.append(listener)
        return nbytes

    def clear_log(self, region_id: int) -> None:
        """Delete the region's whole log (before any entries staged after this call)."""
        self._check_open()
        self._logs[region_id] = _RegionLog(0, [], 0, True)

    def put_raft_state(self, region_id: int, hs: HardState, last_index: int) -> None:
        """Stage ``RaftLocalState{hs, last_index}``; it must go with the entries it describes."""
        if self._state != "open":
            self._check_open()
        self._raft_states[region_id] = _encode_raft_local_state(hs, last_index)

    def put_apply_state(self, region_id: int, state: ApplyState) -> None:
        """Stage the apply state; it must go with the data mutations it covers."""
        self._check_open()
        self._apply_states[region_id] = ApplyState(
            state.applied_index, state.truncated_index, state.truncated_term
        )

    def put_conf_state(self, region_id: int, cs: ConfState) -> None:
        self._check_open()
        self._conf_states[region_id] = encode_conf_state(cs)

    def put_region_state(self, region_id: int, state: RegionLocalState) -> None:
        """Stage the region descriptor and lifecycle state (Normal / Applying / Tombstone)."""
        self._check_open()
        self._region_states[region_id] = encode_region_local_state(state)

    def delete_raft_meta(self, region_id: int) -> None:
        """Delete the region's log, raft state, apply state and conf state (peer destroy).

        Stage a ``Tombstone`` region state in the same batch.
        """
        self.clear_log(region_id)
        self._raft_states[region_id] = None
        self._apply_states[region_id] = None
        self._conf_states[region_id] = None

    def put(self, key: bytes, value: bytes) -> None:
        """Stage a user-data put."""
        self._check_open()
        keys.check_data_key(key)
        self._data.append((_PUT, key, value))

    def delete(self, key: bytes) -> None:
        """Stage a user-data delete (absent keys are fine)."""
        self._check_open()
        keys.check_data_key(key)
        self._data.append((_DELETE, key, None))

    def delete_range(self, start: bytes, end: bytes) -> None:
        """Stage deletion of every user key in ``[start, end)``; an empty ``end`` is unbounded."""
        self._check_open()
        self._data.append((_DELETE_RANGE, start, end))

    def add_listener(self, listener: BatchListener) -> None:
        """Tell ``listener`` about this batch's fate (once per listener, please)."""
        self._check_open()
        self._listeners.append(listener)

    # ------------------------------------------------------------------
    # Introspection

    def is_empty(self) -> bool:
        return not (
            self._logs
            or self._raft_states
            or self._apply_states
            or self._conf_states
            or self._region_states
            or self._data
        )

    @property
    def state(self) -> str:
        """``open``, ``written`` (durable, listeners not yet told), ``finished`` or ``aborted``."""
        return self._state

    def statistics(self) -> BatchStatistics:
        regions = (
            self._logs.keys()
            | self._raft_states.keys()
            | self._apply_states.keys()
            | self._conf_states.keys()
            | self._region_states.keys()
        )
        return BatchStatistics(
            regions=len(regions),
            entries=self._entries,
            entry_bytes=self._entry_bytes,
            state_records=len(self._raft_states)
            + len(self._apply_states)
            + len(self._conf_states)
            + len(self._region_states),
            data_ops=len(self._data),
            commit_seconds=self._commit_seconds,
        )

    # ------------------------------------------------------------------
    # Committing

    def commit(self, engine: Engine) -> None:
        """:meth:`write` then :meth:`finish`, here and now (or :meth:`abort` on failure)."""
        try:
            self.write(engine)
        except BaseException:
            self.abort()
            raise
        self.finish()

    def write(self, engine: Engine) -> None:
        """Write everything in one transaction and commit it (durably with ``sync=True``).

        An empty batch skips the transaction (there is nothing to make durable).

        Thread-safe with respect to the engine; call it from the thread that
        should block on the fsync. Does not tell the listeners: :meth:`finish`
        does, on the store's thread.
        """
        self._check_open()
        if self.is_empty():
            self._state = "written"
            return
        t0 = time.perf_counter()
        dbs = engine.dbs
        engine.write(lambda txn: self._apply_to(txn, dbs))
        self._commit_seconds = time.perf_counter() - t0
        self._state = "written"

    def finish(self) -> None:
        """After :meth:`write`: tell every listener its writes are durable."""
        if self._state != "written":
            raise RuntimeError(f"finish() on a batch that is {self._state}, not written")
        self._state = "finished"
        for listener in self._listeners:
            listener.batch_committed(self)

    def abort(self) -> None:
        """The batch will never be written: listeners drop what they staged."""
        if self._state in ("finished", "aborted"):
            return
        self._state = "aborted"
        for listener in self._listeners:
            listener.batch_aborted(self)

    def _apply_to(self, txn: Txn, dbs: Dbs) -> None:
        log_db = dbs.raft_log
        put = txn.put
        delete = txn.delete
        logs = self._logs
        # All log puts go down in ONE putmulti (a C loop; a put() call per
        # entry costs twice as much), in key order so the B-tree is walked
        # forward. A region's deletes come first: the whole log before a
        # snapshot's entries, and the old tail beyond the new last index
        # (which no put of this batch touches).
        log_puts: list[tuple[bytes, bytes]] = []
        for rid in sorted(logs):
            log = logs[rid]
            if log.clear:
                start, end = keys.region_log_range(rid)
                delete_range(txn, log_db, start, end)
            first = log.first
            puts = log.puts
            n = len(puts)
            if n == 1:
                log_puts.append((_log_key(rid, first), puts[0]))
            elif n:
                log_puts += [(_log_key(rid, i), v) for i, v in enumerate(puts, first)]
            last = first + n - 1 if n else 0
            if log.delete_to > last:
                if log.delete_to - last > 64:
                    delete_range(
                        txn, log_db, _log_key(rid, last + 1), _log_key(rid, log.delete_to + 1)
                    )
                else:
                    for i in range(last + 1, log.delete_to + 1):
                        delete(_log_key(rid, i), db=log_db)
        if log_puts:
            txn.cursor(log_db).putmulti(log_puts)
        _put_or_delete(txn, dbs.raft_state, self._raft_states)
        _put_or_delete(txn, dbs.conf_state, self._conf_states)
        apply_db = dbs.apply_state
        for rid, st in self._apply_states.items():
            key = _region_key(rid)
            if st is None:
                delete(key, db=apply_db)
                continue
            old = txn.get(key, db=apply_db)
            if old is not None:
                prev = decode_apply_state(old)
                if prev.truncated_index > st.truncated_index:
                    st = ApplyState(st.applied_index, prev.truncated_index, prev.truncated_term)
            put(key, encode_apply_state(st), db=apply_db)
        region_db = dbs.region_state
        for rid, raw in self._region_states.items():
            put(_region_key(rid), raw, db=region_db)
        data_db = dbs.data
        for op, key, value in self._data:
            if op == _PUT:
                assert value is not None
                put(key, value, db=data_db)
            elif op == _DELETE:
                delete(key, db=data_db)
            else:
                delete_range(txn, data_db, key, value or None)


def _put_or_delete(txn: Txn, db: Db, records: dict[int, bytes | None]) -> None:
    """Write per-region records (None: delete), the puts in key order in one putmulti."""
    puts: list[tuple[bytes, bytes]] = []
    for rid in sorted(records):
        raw = records[rid]
        if raw is None:
            txn.delete(_region_key(rid), db=db)
        else:
            puts.append((_region_key(rid), raw))
    if puts:
        txn.cursor(db).putmulti(puts)


def delete_range(
    txn: Txn, db: Db, start: bytes, end: bytes | None, limit: int | None = None
) -> int:
    """Delete keys in ``[start, end)`` (``end`` None: to the end) of ``db``; return how many.

    With ``limit``, stop after that many (bounded transactions call it again).
    """
    cur = txn.cursor(db)
    n = 0
    if not (cur.set_range(start) if start else cur.first()):
        return 0
    # Cursor.delete() moves to the next record, so the loop never re-seeks.
    while True:
        key = cur.key()
        if not key or (end is not None and key >= end):
            break
        if limit is not None and n >= limit:
            break
        cur.delete()
        n += 1
    return n


# ----------------------------------------------------------------------
# The async face


@dataclass(frozen=True, slots=True)
class WriterStatistics:
    """Totals since the writer was built (counters only grow)."""

    commits: int
    failures: int
    entries: int
    entry_bytes: int
    state_records: int
    data_ops: int
    busy_seconds: float
    last_commit_seconds: float
    max_commit_seconds: float


class StorageWriter:
    """Commits round batches from trio without blocking the event loop.

    One writer per store. Every write goes through one ``CapacityLimiter(1)``
    (shared with :meth:`run` for compaction or snapshot apply), so rounds are
    durable in the order they were committed and a Ready's persistence can
    be reported in order (``on_persist_ready``).
    """

    def __init__(self, engine: Engine, limiter: trio.CapacityLimiter | None = None) -> None:
        self._engine = engine
        self._limiter = limiter if limiter is not None else trio.CapacityLimiter(1)
        self._commits = 0
        self._failures = 0
        self._entries = 0
        self._entry_bytes = 0
        self._state_records = 0
        self._data_ops = 0
        self._busy = 0.0
        self._last = 0.0
        self._max = 0.0

    @property
    def limiter(self) -> trio.CapacityLimiter:
        return self._limiter

    async def commit(self, batch: WriteBatch) -> None:
        """Make ``batch`` durable in a worker thread, then tell its listeners (here).

        Not cancellable while the transaction runs (a half-done commit cannot
        be abandoned): a cancel is delivered after the commit finished.

        Raises:
            StorageFull, or whatever the write raised: the batch is aborted and
            its listeners reload from disk; the store should stop.
        """
        if batch.is_empty():
            # Nothing to make durable: no thread hop, no fsync.
            batch.write(self._engine)
            batch.finish()
            return
        try:
            await trio.to_thread.run_sync(batch.write, self._engine, limiter=self._limiter)
        except BaseException:
            self._failures += 1
            batch.abort()
            raise
        batch.finish()
        st = batch.statistics()
        self._commits += 1
        self._entries += st.entries
        self._entry_bytes += st.entry_bytes
        self._state_records += st.state_records
        self._data_ops += st.data_ops
        self._busy += st.commit_seconds
        self._last = st.commit_seconds
        self._max = max(self._max, st.commit_seconds)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run other write work (``fn(*args)``, e.g. a compaction) in the writer's thread slot."""
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    def statistics(self) -> WriterStatistics:
        return WriterStatistics(
            commits=self._commits,
            failures=self._failures,
            entries=self._entries,
            entry_bytes=self._entry_bytes,
            state_records=self._state_records,
            data_ops=self._data_ops,
            busy_seconds=self._busy,
            last_commit_seconds=self._last,
            max_commit_seconds=self._max,
        )
