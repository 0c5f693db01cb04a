"""The leader's bookkeeping: membership configuration and per-peer replication progress.

A port of raft-rs ``src/tracker.rs`` and ``src/tracker/``:

* :class:`ProgressState` - Probe / Replicate / Snapshot;
* :class:`Inflights` - the per-peer window of unacknowledged MsgAppends;
* :class:`Progress` - one peer's ``matched``/``next_idx`` and state machine;
* :class:`ProgressTracker` - the :class:`Configuration` plus every Progress,
  with the quorum questions (commit index, votes, check-quorum).

Membership changes are computed by :mod:`multiraft.raft.confchange` and
installed with :meth:`ProgressTracker.apply_conf`.
"""

from multiraft.raft.tracker.inflights import Inflights as Inflights
from multiraft.raft.tracker.progress import Progress as Progress
from multiraft.raft.tracker.state import ProgressState as ProgressState
from multiraft.raft.tracker.tracker import Configuration as Configuration
from multiraft.raft.tracker.tracker import MapChange as MapChange
from multiraft.raft.tracker.tracker import MapChangeType as MapChangeType
from multiraft.raft.tracker.tracker import ProgressMap as ProgressMap
from multiraft.raft.tracker.tracker import ProgressTracker as ProgressTracker

__all__ = [
    "Configuration",
    "Inflights",
    "MapChange",
    "MapChangeType",
    "Progress",
    "ProgressMap",
    "ProgressState",
    "ProgressTracker",
]
