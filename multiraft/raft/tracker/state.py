"""ProgressState: how a leader is currently replicating to one follower.

A port of raft-rs ``src/tracker/state.rs``. The states and their transitions are
described in :mod:`multiraft.raft.tracker.progress`.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ProgressState"]


class ProgressState(IntEnum):
    """The replication state of a follower, as seen by the leader."""

    #: The leader does not know where the follower's log ends: it sends at most
    #: one MsgAppend and waits for the answer (the default).
    Probe = 0
    #: The follower is known to be in sync: appends are pipelined optimistically,
    #: bounded by the Inflights window.
    Replicate = 1
    #: A snapshot has been sent; nothing else is sent until it is reported.
    Snapshot = 2

    def __str__(self) -> str:
        return f"State{self.name}"
