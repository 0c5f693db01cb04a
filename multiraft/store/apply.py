"""Apply committed entries into the round's WriteBatch: data and applied index, atomically.

Theory of operation
-------------------
The ready round hands each replica's ``committed_entries`` to
:func:`apply_entries`, which stages into the round's ONE
:class:`~multiraft.storage.WriteBatch`:

* the data mutations of every write command, and
* the region's ``ApplyState.applied_index`` (one ``set_applied_index`` per
  region per round, after its last entry),

so after a crash the data on disk is exactly that of the entries up to the
applied index, and ``Config.applied`` keeps Raft from handing them out again:
apply happens exactly once.

Apply must be **deterministic**: every replica applies the same entries to the
same state and must reach the same result, so nothing here looks at clocks,
sizes or configuration. Each command is checked again at apply time, against
the region as this replica has applied it so far (multiraft-design §4.1):

* the header's region id, and the epoch ``version`` for writes (``conf_ver``
  for a membership change): a write committed before a split but applied after
  it fails with EpochNotMatch on every replica alike;
* every key against the region's range (KeyNotInRegion).

A failed check applies nothing but still advances the applied index. An entry
whose data does not decode (written by another version, or damaged) is treated
the same way on every replica: skipped, and logged.

``Cas`` reads the current value of its key through :class:`ApplyContext`: first
an overlay of this round's earlier writes (the batch is not committed yet, so
LMDB does not show them), then one LMDB read transaction shared by the whole
round (opened lazily and closed before the batch commits, so it never holds
off a map resize).

Answers are not sent here: the matching proposal's waiter and its result are
appended to :attr:`ApplyContext.answers`, which the ready loop delivers only
after the batch is durable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from multiraft.raft.types import Entry, EntryType
from multiraft.storage import keys
from multiraft.storage.engine import Engine, Txn
from multiraft.storage.write_batch import WriteBatch
from multiraft.store.admin_apply import apply_admin, apply_conf_change_entry
from multiraft.store.proposals import Answer, Proposal, Waiter
from multiraft.wire.command_codec import RaftCmd, WriteOp, decode_cmd
from multiraft.wire.errors import WireError
from multiraft.wire.messages import (
    BatchPut,
    Cas,
    CasResult,
    Delete,
    EpochNotMatch,
    Internal,
    KeyNotInRegion,
    NotLeader,
    Put,
    RegionNotFound,
    StaleCommand,
    WriteOk,
)
from regions.region import Region

if TYPE_CHECKING:
    from multiraft.store.replica import Replica

__all__ = ["ApplyContext", "apply_entries", "check_write_keys", "result_label"]

log = logging.getLogger(__name__)


def result_label(answer: Answer) -> str:
    """The ``proposals`` metric result for an answer."""
    match answer:
        case EpochNotMatch():
            return "epoch_not_match"
        case KeyNotInRegion():
            return "key_not_in_region"
        case StaleCommand():
            return "stale_command"
        case RegionNotFound():
            return "region_not_found"
        case NotLeader():
            return "not_leader"
        case Internal():
            return "dropped"
    return "ok"


@dataclass(slots=True)
class ApplyContext:
    """One round's apply state, shared by every region applied in the round."""

    engine: Engine
    batch: WriteBatch
    #: Values staged by this round's earlier writes (None: deleted).
    overlay: dict[bytes, bytes | None] = field(default_factory=dict)
    #: ``(waiter, answer)`` to deliver once the batch is durable.
    answers: list[tuple[Waiter[Answer], Answer]] = field(default_factory=list)
    #: Proposals answered (for the proposals metric), by result label.
    results: dict[str, int] = field(default_factory=dict)
    #: Replicas that applied their own removal: destroy after the commit.
    removed: list[Replica] = field(default_factory=list)
    #: Called by a split's apply with the parent, the new regions and the batch: stages
    #: the new regions' initial state and creates their replicas (the ready loop's hook).
    on_split: Callable[[Replica, list[Region], WriteBatch], None] | None = None
    #: ``(replica, compact index)`` of the CompactLog commands applied this round.
    compactions: list[tuple[Replica, int]] = field(default_factory=list)
    splits: int = 0
    #: Single membership changes applied this round, by ConfChangeType name.
    conf_changes: dict[str, int] = field(default_factory=dict)
    entries: int = 0
    #: Sum of (apply time - proposal time) of the proposals applied, and their count.
    commit_latency: list[float] = field(default_factory=list)
    _txn: Txn | None = None

    # -- the data view -----------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        """The value of ``key`` as of this round's writes so far."""
        if key in self.overlay:
            return self.overlay[key]
        if self._txn is None:
            self._txn = self.engine.begin_read()
        return self._txn.get(key, db=self.engine.dbs.data)

    def put(self, key: bytes, value: bytes) -> None:
        self.batch.put(key, value)
        self.overlay[key] = value

    def delete(self, key: bytes) -> None:
        self.batch.delete(key)
        self.overlay[key] = None

    def close(self) -> None:
        """Release the read transaction (before the batch commits)."""
        if self._txn is not None:
            txn, self._txn = self._txn, None
            self.engine.end_read(txn)

    # -- answers ----------------------------------------------------------------------

    def answer(self, p: Proposal, answer: Answer) -> None:
        self.answers.append((p.waiter, answer))
        label = result_label(answer)
        self.results[label] = self.results.get(label, 0) + 1


def _key_error(key: bytes, region: Region) -> KeyNotInRegion | None:
    if region.contains(key) and 0 < len(key) <= keys.MAX_DATA_KEY_SIZE:
        return None
    return KeyNotInRegion(key, region.id, region.start_key, region.end_key)


def check_write_keys(writes: list[WriteOp], region: Region) -> KeyNotInRegion | None:
    """The first key of ``writes`` outside ``region`` (or unstorable), as an error."""
    for op in writes:
        if isinstance(op, BatchPut):
            for k, _ in op.pairs:
                if (err := _key_error(k, region)) is not None:
                    return err
        elif (err := _key_error(op.key, region)) is not None:
            return err
    return None


def _execute(writes: list[WriteOp], ctx: ApplyContext) -> Answer:
    """Stage ``writes`` (already checked); the answer of the last one."""
    answer: Answer = WriteOk()
    for op in writes:
        match op:
            case Put(key, value):
                ctx.put(key, value)
                answer = WriteOk()
            case Delete(key):
                ctx.delete(key)
                answer = WriteOk()
            case Cas(key, expected, new_value):
                current = ctx.get(key)
                ok = current == expected
                if ok:
                    if new_value is None:
                        ctx.delete(key)
                    else:
                        ctx.put(key, new_value)
                answer = CasResult(ok, current)
            case BatchPut(pairs):
                for k, v in pairs:
                    ctx.put(k, v)
                answer = WriteOk()
    return answer


def _apply_command(r: Replica, cmd: RaftCmd, ctx: ApplyContext) -> Answer:
    region = r.region
    h = cmd.header
    if h.region_id != region.id:
        return RegionNotFound(h.region_id)
    if cmd.admin is not None:
        return apply_admin(r, cmd, ctx)
    if h.epoch.version != region.epoch.version:
        return EpochNotMatch([r.region_copy()])
    err = check_write_keys(cmd.writes, region)
    if err is not None:
        return err
    _grow_estimate(r, cmd.writes)
    return _execute(cmd.writes, ctx)


def _grow_estimate(r: Replica, writes: list[WriteOp]) -> None:
    """Grow the region's approximate size and key count (the split checker's trigger).

    Overwrites and deletes are not subtracted: the checker's scan resets the estimate.
    This is the only per-replica state apply reads that may differ between replicas,
    and nothing applied depends on it.
    """
    size = keys_ = 0
    for op in writes:
        if isinstance(op, Put):
            size += len(op.key) + len(op.value)
            keys_ += 1
        elif isinstance(op, BatchPut):
            for k, v in op.pairs:
                size += len(k) + len(v)
            keys_ += len(op.pairs)
        elif isinstance(op, Cas) and op.new_value is not None:
            size += len(op.key) + len(op.new_value)
            keys_ += 1
    r.approx_size += size
    r.approx_keys += keys_


def apply_entries(r: Replica, entries: list[Entry], ctx: ApplyContext, now: float) -> None:
    """Stage the apply of ``entries`` (committed, in order) for replica ``r``.

    Matching proposals get their answers in ``ctx.answers``; proposals the log
    passed over get StaleCommand. The leader's lease renews from the proposal
    time of an applied entry of its current term.
    """
    if not entries:
        return
    raft = r.raw_node.raft
    is_leader = r.is_leader()
    for e in entries:
        if e.index <= r.applied_index:
            continue  # already applied (a snapshot overtook it)
        if e.entry_type == EntryType.EntryNormal:
            head = r.proposals.head()
            if not e.data:
                answer: Answer | None = None  # the leader's no-op
            elif head is not None and head.index == e.index and head.term == e.term:
                # Our own proposal: its command is the one encoded in this entry.
                answer = _apply_command(r, head.cmd, ctx)
            else:
                try:
                    cmd = decode_cmd(e.data)
                except WireError as exc:
                    log.error(
                        "region %d: skipping undecodable entry %d: %s", r.region_id, e.index, exc
                    )
                    answer = None
                else:
                    answer = _apply_command(r, cmd, ctx)
        else:
            answer = apply_conf_change_entry(r, e, ctx)
        p, stale = r.proposals.pop_applied(e.index, e.term)
        for s in stale:
            ctx.answer(s, StaleCommand())
        if p is not None:
            ctx.answer(p, answer if answer is not None else StaleCommand())
            ctx.commit_latency.append(now - p.proposed)
            if is_leader and p.term == raft.term:
                r.lease.renew(p.proposed)
        r.applied_index = e.index
        r.applied_term = e.term
        ctx.entries += 1
        if r.destroy_pending:
            break
    if len(r.epoch_tracker):  # rare: an epoch-changing admin command of ours is in flight
        r.epoch_tracker.applied(r.applied_index)
    r.storage.set_applied_index(r.applied_index, ctx.batch)
