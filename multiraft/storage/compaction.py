"""Raft log compaction: record the truncation point, then delete the entries below it.

Theory of operation
-------------------
Compaction is garbage collection, off the round's critical path: run
:func:`compact_log` in a worker thread (``StorageWriter.run`` or
``trio.to_thread.run_sync``). It never blocks a round for long because it
commits in bounded transactions:

1. The first transaction raises ``truncated_index``/``truncated_term`` in the
   region's apply state (never lowers it) and deletes up to
   ``max_deletes_per_txn`` entries from the start of the region's log.
2. Further transactions, if needed, delete the rest below the compact index.

A crash between them leaves entries below the truncated index on disk; they
are unreachable (the first index is ``truncated_index + 1``) and the next
compaction of the region deletes them, because it always deletes from the
start of the region's log rather than from the previous truncation point.

Safety rules checked against what is on disk: never past the applied index
(what is not applied may still be needed for apply after a restart) and never
past the last index. A :class:`~multiraft.storage.raft_storage.RaftStorage`
moves its first index in memory first (``prepare_compact``), so no reader
asks for an entry this function is deleting.

Because a round's batch may carry an apply state built before the
compaction, :class:`~multiraft.storage.write_batch.WriteBatch` keeps the
larger stored ``truncated_index`` when it writes an apply state.

The store's log GC (``multiraft.store.log_gc``) records the truncation
differently: a CompactLog command raises the truncated state in the round's
batch, atomically with its apply, so only the deletion is left to do;
:func:`purge_log` does that, one bounded transaction per call, and never
deletes at or above the truncated index it reads in that transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from multiraft.storage import keys
from multiraft.storage.engine import Engine, Txn
from multiraft.storage.write_batch import delete_range
from multiraft.wire.records import (
    RecordCorrupted,
    decode_apply_state,
    decode_entry_term,
    decode_raft_local_state,
    encode_apply_state,
)
from regions.local_state import ApplyState

__all__ = ["CompactResult", "CompactTask", "CompactionError", "compact_log", "purge_log"]

DEFAULT_MAX_DELETES_PER_TXN = 50_000
#: Entries :func:`purge_log` deletes per transaction by default.
DEFAULT_PURGE_BATCH = 4096


class CompactionError(Exception):
    """The compaction would cut into entries that are not applied or do not exist."""


@dataclass(frozen=True, slots=True)
class CompactTask:
    """Keep entries from ``compact_index`` on; ``term`` is the term of ``compact_index - 1`` if known."""

    region_id: int
    compact_index: int
    term: int | None = None


@dataclass(frozen=True, slots=True)
class CompactResult:
    region_id: int
    truncated_index: int
    truncated_term: int
    deleted_entries: int
    transactions: int


def compact_log(
    engine: Engine, task: CompactTask, *, max_deletes_per_txn: int = DEFAULT_MAX_DELETES_PER_TXN
) -> CompactResult:
    """Truncate ``task.region_id``'s log below ``task.compact_index`` (thread-safe, blocking).

    Raises:
        CompactionError: ``compact_index - 1`` is past the applied or the last index,
            or ``task.term`` disagrees with the stored entry.
        RecordCorrupted: the entry at ``compact_index - 1`` is needed and missing.
    """
    rid = task.region_id
    ci = task.compact_index
    dbs = engine.dbs
    rkey = keys.region_key(rid)
    log_start = keys.log_key(rid, 0)
    log_stop = keys.log_key(rid, ci)

    def first(txn: Txn) -> tuple[int, int, int]:
        raw = txn.get(rkey, db=dbs.apply_state)
        apply = decode_apply_state(raw) if raw is not None else ApplyState()
        raw = txn.get(rkey, db=dbs.raft_state)
        last = decode_raft_local_state(raw).last_index if raw is not None else 0
        target = ci - 1
        if target > apply.applied_index:
            raise CompactionError(
                f"region {rid}: compact to {ci} past applied index {apply.applied_index}"
            )
        if target > max(last, apply.truncated_index):
            raise CompactionError(f"region {rid}: compact to {ci} past last index {last}")
        tindex, tterm = apply.truncated_index, apply.truncated_term
        if target > tindex:
            stored = txn.get(keys.log_key(rid, target), db=dbs.raft_log)
            if stored is None:
                if task.term is None:
                    raise RecordCorrupted(f"region {rid}: log entry {target} is missing")
                term = task.term
            else:
                term, index = decode_entry_term(stored)
                if index != target:
                    raise RecordCorrupted(f"region {rid}: log key {target} holds entry {index}")
                if task.term is not None and task.term != term:
                    raise CompactionError(
                        f"region {rid}: entry {target} has term {term}, caller said {task.term}"
                    )
            tindex, tterm = target, term
            txn.put(
                rkey,
                encode_apply_state(ApplyState(apply.applied_index, tindex, tterm)),
                db=dbs.apply_state,
            )
        n = delete_range(txn, dbs.raft_log, log_start, log_stop, max_deletes_per_txn)
        return tindex, tterm, n

    tindex, tterm, deleted = engine.write(first)
    txns = 1
    n = deleted
    while n >= max_deletes_per_txn:
        n = engine.write(
            lambda txn: delete_range(txn, dbs.raft_log, log_start, log_stop, max_deletes_per_txn)
        )
        deleted += n
        txns += 1
    return CompactResult(rid, tindex, tterm, deleted, txns)


def purge_log(engine: Engine, region_id: int, below: int, limit: int = DEFAULT_PURGE_BATCH) -> int:
    """Delete up to ``limit`` of the region's log entries below ``below``, in one transaction.

    Only entries at or below the truncated index *stored* in the same
    transaction are deleted, whatever ``below`` says: the truncated state is the
    only authority on what is unreachable, so a stale request (the region was
    destroyed, or re-created here under a new peer with a lower truncation)
    deletes nothing that is still needed. Blocking and thread-safe.

    Returns:
        How many entries were deleted; ``limit`` means there may be more.
    """
    dbs = engine.dbs
    rkey = keys.region_key(region_id)

    def purge(txn: Txn) -> int:
        raw = txn.get(rkey, db=dbs.apply_state)
        if raw is None:
            return 0  # destroyed (its log went with it) or never created
        stop = min(below, decode_apply_state(raw).truncated_index + 1)
        if stop <= 0:
            return 0
        return delete_range(
            txn, dbs.raft_log, keys.log_key(region_id, 0), keys.log_key(region_id, stop), limit
        )

    return engine.write(purge)
