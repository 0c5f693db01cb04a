"""Membership changes: validate them, and rebuild membership from a ConfState.

A port of raft-rs ``src/confchange.rs`` and ``src/confchange/``:

* :class:`Changer` - ``simple``, ``enter_joint`` and ``leave_joint`` compute a
  new :class:`~multiraft.raft.tracker.Configuration` and the Progress changes
  it implies, refusing invalid changes with ``ConfChangeError`` before anything
  is modified;
* :func:`restore` - replays a ConfState into an empty ProgressTracker.

``MapChange``/``MapChangeType`` are defined in :mod:`multiraft.raft.tracker`
(which applies them) and re-exported here, where raft-rs declares them.
"""

from multiraft.raft.confchange.changer import Changer as Changer
from multiraft.raft.confchange.changer import check_invariants as check_invariants
from multiraft.raft.confchange.restore import restore as restore
from multiraft.raft.confchange.restore import to_conf_change_single as to_conf_change_single
from multiraft.raft.tracker import MapChange as MapChange
from multiraft.raft.tracker import MapChangeType as MapChangeType

__all__ = [
    "Changer",
    "MapChange",
    "MapChangeType",
    "check_invariants",
    "restore",
    "to_conf_change_single",
]
