"""Progress: a leader's view of how far one follower's log has come.

A port of raft-rs ``src/tracker/progress.rs``.

Theory of operation
-------------------
The leader keeps one Progress per peer (itself included). ``matched`` is the
highest index known to be in the peer's log; ``next_idx`` is the next index to
send. The ``state`` decides how aggressively to send:

* Probe (the default): send one MsgAppend, then stay ``paused`` until the
  peer answers; an acknowledged append moves the peer to Replicate.
* Replicate: pipeline appends, advancing ``next_idx`` optimistically, as long
  as the ``ins`` window is not full; a rejection or an unreachable report
  falls back to Probe.
* Snapshot: send nothing (always paused) until the snapshot is reported or
  ``matched`` catches up with it; then Probe.

Invariants:

* every state transition and update here leaves ``next_idx >= matched + 1``
  (only direct field writes can break it);
* ``pending_snapshot`` is meaningful only in Snapshot state;
* ``ins`` is non-empty only in Replicate state (every state change resets it).

These methods run once or more per message a leader handles, so the class uses
``__slots__`` and keeps each method to a few attribute operations.
"""

from __future__ import annotations

from multiraft.raft.errors import RaftFatal
from multiraft.raft.tracker.inflights import Inflights
from multiraft.raft.tracker.state import ProgressState
from multiraft.raft.types import INVALID_INDEX

__all__ = ["Progress"]

# Module-level aliases: an Enum class attribute lookup costs more than a global.
_PROBE = ProgressState.Probe
_REPLICATE = ProgressState.Replicate
_SNAPSHOT = ProgressState.Snapshot


class Progress:
    """The replication progress of one peer, as tracked by the leader."""

    __slots__ = (
        "commit_group_id",
        "committed_index",
        "ins",
        "matched",
        "next_idx",
        "paused",
        "pending_request_snapshot",
        "pending_snapshot",
        "recent_active",
        "state",
    )

    def __init__(self, next_idx: int, ins_size: int, ins_max_bytes: int = 0) -> None:
        """A fresh Probe-state progress that will next send ``next_idx``.

        Args:
            next_idx: the first index to send.
            ins_size: the in-flight window in messages (``max_inflight_msgs``).
            ins_max_bytes: an optional in-flight byte limit; 0 means none.
        """
        #: Highest index known to be replicated on the peer.
        self.matched = 0
        #: Next index to send to the peer.
        self.next_idx = next_idx
        self.state = _PROBE
        #: Probe state only: one message was sent, wait for its answer.
        self.paused = False
        #: Snapshot state: the index of the snapshot in flight (0 = none/failed).
        self.pending_snapshot = 0
        #: The index at which the peer asked for a snapshot (TiKV extension); 0 = none.
        self.pending_request_snapshot = 0
        #: Whether the peer was heard from during the last election timeout
        #: (check-quorum); cleared by ``ProgressTracker.quorum_recently_active``.
        self.recent_active = False
        #: The in-flight MsgAppend window (Replicate state).
        self.ins = Inflights(ins_size, ins_max_bytes)
        #: Group-commit group of the peer; 0 = none.
        self.commit_group_id = 0
        #: The peer's commit index as last reported by it.
        self.committed_index = 0

    def _reset_state(self, state: ProgressState) -> None:
        self.paused = False
        self.pending_snapshot = 0
        self.state = state
        self.ins.reset()

    def reset(self, next_idx: int) -> None:
        """Forget everything about the peer (new term); it will next be probed at ``next_idx``."""
        self.matched = 0
        self.next_idx = next_idx
        self.state = _PROBE
        self.paused = False
        self.pending_snapshot = 0
        self.pending_request_snapshot = INVALID_INDEX
        self.recent_active = False
        self.ins.reset()

    def become_probe(self) -> None:
        """Enter Probe state, sending next the entry after what is known to match.

        Leaving Snapshot state means the snapshot reached the peer (or failed, in
        which case ``pending_snapshot`` is already 0), so probing starts after it.
        """
        if self.state == _SNAPSHOT:
            pending_snapshot = self.pending_snapshot
            self._reset_state(_PROBE)
            self.next_idx = max(self.matched + 1, pending_snapshot + 1)
        else:
            self._reset_state(_PROBE)
            self.next_idx = self.matched + 1

    def become_replicate(self) -> None:
        """Enter Replicate state, pipelining from ``matched + 1``."""
        self._reset_state(_REPLICATE)
        self.next_idx = self.matched + 1

    def become_snapshot(self, snapshot_idx: int) -> None:
        """Enter Snapshot state while a snapshot at ``snapshot_idx`` is in flight."""
        self._reset_state(_SNAPSHOT)
        self.pending_snapshot = snapshot_idx

    def snapshot_failure(self) -> None:
        """Forget the pending snapshot so that ``become_probe`` does not skip past it."""
        self.pending_snapshot = 0

    def is_snapshot_caught_up(self) -> bool:
        """True in Snapshot state once ``matched`` reached the pending snapshot."""
        return self.state == _SNAPSHOT and self.matched >= self.pending_snapshot

    def maybe_update(self, n: int) -> bool:
        """Record that the peer acknowledged index ``n``.

        Returns False if ``n`` comes from an outdated message (``n <= matched``);
        ``next_idx`` is still raised to at least ``n + 1`` in that case.
        """
        need_update = self.matched < n
        if need_update:
            self.matched = n
            self.paused = False
        if self.next_idx < n + 1:
            self.next_idx = n + 1
        return need_update

    def update_committed(self, committed_index: int) -> None:
        """Raise the peer's known commit index (it never goes down)."""
        if committed_index > self.committed_index:
            self.committed_index = committed_index

    def optimistic_update(self, n: int) -> None:
        """Assume the peer will accept everything up to ``n`` (Replicate state)."""
        self.next_idx = n + 1

    def maybe_decr_to(self, rejected: int, match_hint: int, request_snapshot: int) -> bool:
        """Handle a rejected MsgAppend for index ``rejected``.

        Args:
            rejected: the index of the rejected append (``m.index`` of the response).
            match_hint: the follower's hint of the last index that may match.
            request_snapshot: non-zero if the follower asks for a snapshot instead.

        Returns:
            False if the rejection is stale and was ignored; True if ``next_idx``
            was lowered (or a snapshot request recorded) and the peer resumed.
        """
        if self.state == _REPLICATE:
            # Stale if the peer already matched past the rejected index, or at
            # it without asking for a snapshot.
            if rejected < self.matched or (
                rejected == self.matched and request_snapshot == INVALID_INDEX
            ):
                return False
            if request_snapshot == INVALID_INDEX:
                self.next_idx = self.matched + 1
            else:
                self.pending_request_snapshot = request_snapshot
            return True

        # In Probe only the answer to the one outstanding probe (index next - 1)
        # counts, unless it is a snapshot request. raft-rs also guards
        # next_idx == 0 against u64 underflow; -1 never equals an index here.
        if self.next_idx - 1 != rejected and request_snapshot == INVALID_INDEX:
            return False

        if request_snapshot == INVALID_INDEX:
            # Never probe below what is known to match.
            self.next_idx = max(min(rejected, match_hint + 1), self.matched + 1)
        elif self.pending_request_snapshot == INVALID_INDEX:
            # A snapshot may be requested in any state; keep next_idx.
            self.pending_request_snapshot = request_snapshot
        self.paused = False
        return True

    def is_paused(self) -> bool:
        """Whether the leader must not send a MsgAppend to this peer right now."""
        state = self.state
        if state == _PROBE:
            return self.paused
        if state == _REPLICATE:
            return self.ins.full()
        return True

    def resume(self) -> None:
        """Allow sending again (Probe state)."""
        self.paused = False

    def pause(self) -> None:
        """Stop sending until the peer answers (Probe state)."""
        self.paused = True

    def update_state(self, last: int, size: int = 0) -> None:
        """Account for a MsgAppend just sent whose last entry is ``last``.

        ``size`` is the message's byte size; it matters only with an inflight byte limit.

        Raises:
            RaftFatal: in Snapshot state, where nothing should be sent.
        """
        state = self.state
        if state == _REPLICATE:
            self.next_idx = last + 1
            self.ins.add(last, size)
        elif state == _PROBE:
            self.paused = True
        else:
            raise RaftFatal(f"updating progress state in unhandled state {state}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Progress):
            return NotImplemented
        return (
            self.matched == other.matched
            and self.next_idx == other.next_idx
            and self.state == other.state
            and self.paused == other.paused
            and self.pending_snapshot == other.pending_snapshot
            and self.pending_request_snapshot == other.pending_request_snapshot
            and self.recent_active == other.recent_active
            and self.ins == other.ins
            and self.commit_group_id == other.commit_group_id
            and self.committed_index == other.committed_index
        )

    __hash__ = None  # type: ignore[assignment]  # mutable: not hashable

    def __repr__(self) -> str:
        return (
            f"Progress(state={self.state}, matched={self.matched}, next_idx={self.next_idx}, "
            f"paused={self.paused}, pending_snapshot={self.pending_snapshot}, "
            f"pending_request_snapshot={self.pending_request_snapshot}, "
            f"recent_active={self.recent_active}, inflights={self.ins.count()}, "
            f"commit_group_id={self.commit_group_id}, committed_index={self.committed_index})"
        )
