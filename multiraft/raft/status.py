"""Status: a read-only summary of a node for the CLI, metrics and tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from multiraft.raft.types import HardState, SoftState, StateRole

if TYPE_CHECKING:
    from multiraft.raft.raft import Raft
    from multiraft.raft.tracker import ProgressTracker


@dataclass(slots=True)
class Status:
    """``progress`` is the leader's ProgressTracker, and None on any other role."""

    id: int
    hs: HardState
    ss: SoftState
    applied: int
    progress: ProgressTracker | None

    @classmethod
    def from_raft(cls, raft: Raft) -> Status:
        progress = raft.prs() if raft.state == StateRole.Leader else None
        return cls(raft.id, raft.hard_state(), raft.soft_state(), raft.raft_log.applied, progress)
