"""Rebuild a tracker's configuration from a ConfState (snapshot or restart).

A port of raft-rs ``src/confchange/restore.rs``.

A ConfState is not a change, so it is replayed as one: starting from an empty
tracker, first the outgoing voters are added one at a time with ``simple``
(building ``C_old``), then a single ``enter_joint`` removes them all and adds
the incoming voters, learners and staged learners (giving ``C_old,new``). A
non-joint ConfState is just a sequence of ``simple`` additions. Going through
the Changer means a ConfState is accepted only if it is reachable by valid
changes.

Example: ``voters=(1 2 3) learners=(5) voters_outgoing=(1 2 4 6)
learners_next=(4)`` replays as ``v1``, ``v2``, ``v4``, ``v6`` (simple), then
``enter_joint(r1 r2 r4 r6 v1 v2 v3 l5 l4)``, yielding
``voters=(1 2 3)&&(1 2 4 6) learners=(5) learners_next=(4)``.
"""

from __future__ import annotations

from multiraft.raft.confchange.changer import Changer
from multiraft.raft.tracker import ProgressTracker
from multiraft.raft.types import (
    ConfChangeSingle,
    ConfChangeType,
    ConfState,
    new_conf_change_single,
)

__all__ = ["restore", "to_conf_change_single"]


def to_conf_change_single(cs: ConfState) -> tuple[list[ConfChangeSingle], list[ConfChangeSingle]]:
    """The ``(outgoing, incoming)`` steps that rebuild ``cs`` from an empty config.

    ``outgoing`` adds the outgoing voters one by one; ``incoming``, applied as one
    joint change on top, removes them again and adds the incoming voters, the
    learners and the staged learners (which are outgoing voters, so they land in
    ``learners_next``). Whether a learner predates the joint state cannot be told
    and does not matter: it is added in the joint step.
    """
    outgoing = [new_conf_change_single(id, ConfChangeType.AddNode) for id in cs.voters_outgoing]
    incoming = [new_conf_change_single(id, ConfChangeType.RemoveNode) for id in cs.voters_outgoing]
    incoming += [new_conf_change_single(id, ConfChangeType.AddNode) for id in cs.voters]
    incoming += [new_conf_change_single(id, ConfChangeType.AddLearnerNode) for id in cs.learners]
    incoming += [
        new_conf_change_single(id, ConfChangeType.AddLearnerNode) for id in cs.learners_next
    ]
    return outgoing, incoming


def restore(tracker: ProgressTracker, next_idx: int, cs: ConfState) -> None:
    """Replay ``cs`` into ``tracker``, which must hold an empty configuration.

    New Progresses start at ``next_idx``. An all-empty ConfState leaves the
    tracker empty (an uninitialised node).

    Raises:
        ConfChangeError: ``cs`` is not a valid configuration (for example
            learners without voters, or a learner that is also a voter). The
            tracker may then hold part of the configuration; callers treat this
            as fatal.
    """
    outgoing, incoming = to_conf_change_single(cs)
    if not outgoing:
        for cc in incoming:
            cfg, changes = Changer(tracker).simple([cc])
            tracker.apply_conf(cfg, changes, next_idx)
        return
    for cc in outgoing:
        cfg, changes = Changer(tracker).simple([cc])
        tracker.apply_conf(cfg, changes, next_idx)
    cfg, changes = Changer(tracker).enter_joint(cs.auto_leave, incoming)
    tracker.apply_conf(cfg, changes, next_idx)
