"""Changer: validate a membership change and compute the configuration it leads to.

A port of raft-rs ``src/confchange/changer.rs`` (etcd ``confchange/confchange.go``).

Theory of operation
-------------------
A change is a list of :class:`~multiraft.raft.types.ConfChangeSingle` steps
(add voter, add learner, remove). The Changer applies them to a *copy* of the
tracker's configuration and returns ``(new Configuration, MapChange)``; the
caller installs both with ``ProgressTracker.apply_conf``. Nothing is changed
when a call raises, so a refused change leaves the node exactly as it was.

There are three entry points (Raft thesis §4.3 names in parentheses):

* :meth:`Changer.simple` - at most one voter may change, so old and new
  majorities always overlap; refused while joint.
* :meth:`Changer.enter_joint` - copy ``incoming`` into ``outgoing``
  (``C_old``), then apply the steps to ``incoming`` (``C_new``), giving
  ``C_old,new``; any number of voters may change.
* :meth:`Changer.leave_joint` - drop ``outgoing`` (back to ``C_new``), turn
  ``learners_next`` into learners and drop the Progress of peers that are
  members no more.

Rules the steps follow: changes apply to ``incoming``; adding an existing
member, or removing an absent one, is a no-op; node id 0 is ignored (the
application zeroes changes it decided to skip); a voter demoted while it is
still an outgoing voter waits in ``learners_next``; a removed peer keeps its
Progress while it is still an outgoing voter.

Invariants checked before and after every change (:func:`check_invariants`):
every voter, learner and staged learner has a Progress; learners are disjoint
from both voter halves; ``learners_next`` is a subset of the outgoing voters;
outside the joint state ``learners_next`` is empty and ``auto_leave`` False;
the incoming voter set is never left empty by a change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from multiraft.raft.errors import ConfChangeError
from multiraft.raft.tracker import (
    Configuration,
    MapChange,
    MapChangeType,
    ProgressMap,
    ProgressTracker,
)
from multiraft.raft.types import ConfChangeSingle, ConfChangeType

__all__ = ["Changer", "check_invariants"]


class _IncrChangeMap:
    """The tracker's progress map overlaid with the changes computed so far.

    raft-rs's ``IncrChangeMap``: the real map is never touched; ``changes`` is
    replayed later by ``apply_conf``.
    """

    __slots__ = ("_base", "_overlay", "changes")

    def __init__(self, base: ProgressMap) -> None:
        self._base = base
        #: The changes, in order (an id may be added then removed in one batch).
        self.changes: MapChange = []
        #: id -> present after the latest change to it.
        self._overlay: dict[int, bool] = {}

    def contains(self, id: int) -> bool:
        present = self._overlay.get(id)
        return id in self._base if present is None else present

    def add(self, id: int) -> None:
        self.changes.append((id, MapChangeType.Add))
        self._overlay[id] = True

    def remove(self, id: int) -> None:
        self.changes.append((id, MapChangeType.Remove))
        self._overlay[id] = False


class Changer:
    """Computes validated configuration changes against a tracker, without mutating it."""

    __slots__ = ("_tracker",)

    def __init__(self, tracker: ProgressTracker) -> None:
        self._tracker = tracker

    def enter_joint(
        self, auto_leave: bool, ccs: Sequence[ConfChangeSingle]
    ) -> tuple[Configuration, MapChange]:
        """Enter a joint configuration: ``outgoing`` := ``incoming``, then apply ``ccs``.

        Args:
            auto_leave: whether Raft should leave the joint state by itself once
                the change is applied (else the application must propose it).
            ccs: the steps, applied to the incoming half.

        Returns:
            The new configuration and the progress changes to apply with it.

        Raises:
            ConfChangeError: already joint, no voters to start from, the steps
                remove every incoming voter, or an invariant would break.

        Example: from ``voters=(1 2 3)``, ``enter_joint(True, [r3, v4])`` gives
        ``voters=(1 2 4)&&(1 2 3) autoleave`` and adds a Progress for 4.
        """
        if self._tracker.conf().is_joint():
            raise ConfChangeError("config is already joint")
        cfg, prs = self._check_and_copy()
        if not cfg.voters.incoming:
            # Adding voters to an empty config is allowed (bootstrap, tests), but
            # a joint state needs an old majority to hand over from.
            raise ConfChangeError("can't make a zero-voter config joint")
        cfg.voters.outgoing.update(cfg.voters.incoming)
        _apply(cfg, prs, ccs)
        cfg.auto_leave = auto_leave
        check_invariants(cfg, prs.contains)
        return cfg, prs.changes

    def leave_joint(self) -> tuple[Configuration, MapChange]:
        """Leave the joint state: ``incoming`` alone decides from now on.

        Staged learners (``learners_next``) become learners, and peers that are
        neither incoming voters nor learners lose their Progress.

        Raises:
            ConfChangeError: the configuration is not joint, or an invariant
                would break.
        """
        if not self._tracker.conf().is_joint():
            raise ConfChangeError("can't leave a non-joint config")
        cfg, prs = self._check_and_copy()
        cfg.learners.update(cfg.learners_next)
        cfg.learners_next.clear()
        for id in sorted(cfg.voters.outgoing):
            if id not in cfg.voters.incoming and id not in cfg.learners:
                prs.remove(id)
        cfg.voters.outgoing.clear()
        cfg.auto_leave = False
        check_invariants(cfg, prs.contains)
        return cfg, prs.changes

    def simple(self, ccs: Sequence[ConfChangeSingle]) -> tuple[Configuration, MapChange]:
        """Apply ``ccs`` that in aggregate change at most one voter.

        Raises:
            ConfChangeError: the configuration is joint, more than one voter would
                change, every voter would be removed, or an invariant would break.

        Example: from ``voters=(1 2)``, ``simple([l3])`` adds learner 3; but
        ``simple([v3, v4])`` raises, as it changes two voters.
        """
        if self._tracker.conf().is_joint():
            raise ConfChangeError("can't apply simple config change in joint config")
        cfg, prs = self._check_and_copy()
        _apply(cfg, prs, ccs)
        if len(cfg.voters.incoming ^ self._tracker.conf().voters.incoming) > 1:
            raise ConfChangeError("more than one voter changed without entering joint config")
        check_invariants(cfg, prs.contains)
        return cfg, prs.changes

    def _check_and_copy(self) -> tuple[Configuration, _IncrChangeMap]:
        """Copy the tracker's configuration after checking that it is valid.

        Unlike etcd the Progress map is not copied: additions and removals are
        only recorded, and happen in ``apply_conf`` once everything checked out.
        """
        prs = _IncrChangeMap(self._tracker.progress)
        conf = self._tracker.conf()
        check_invariants(conf, prs.contains)
        return conf.copy(), prs


def _apply(cfg: Configuration, prs: _IncrChangeMap, ccs: Sequence[ConfChangeSingle]) -> None:
    """Apply the steps to ``cfg``'s incoming half (raft-rs ``Changer::apply``)."""
    for cc in ccs:
        id = cc.node_id
        if id == 0:
            # The application zeroes a change it decided not to apply.
            continue
        t = cc.change_type
        if t == ConfChangeType.AddNode:
            _make_voter(cfg, prs, id)
        elif t == ConfChangeType.AddLearnerNode:
            _make_learner(cfg, prs, id)
        elif t == ConfChangeType.RemoveNode:
            _remove(cfg, prs, id)
        else:
            raise ConfChangeError(f"unknown conf change type {t!r}")
    if not cfg.voters.incoming:
        raise ConfChangeError("removed all voters")


def _make_voter(cfg: Configuration, prs: _IncrChangeMap, id: int) -> None:
    """Add ``id`` as an incoming voter, or promote it."""
    if not prs.contains(id):
        cfg.voters.incoming.add(id)
        prs.add(id)
        return
    cfg.voters.incoming.add(id)
    cfg.learners.discard(id)
    cfg.learners_next.discard(id)


def _make_learner(cfg: Configuration, prs: _IncrChangeMap, id: int) -> None:
    """Add ``id`` as a learner, demote it, or stage it in ``learners_next``.

    A peer that is still an outgoing voter cannot be a learner too (the roles
    must stay disjoint), so it is staged and becomes a learner in leave_joint.
    """
    if not prs.contains(id):
        cfg.learners.add(id)
        prs.add(id)
        return
    if id in cfg.learners:
        return
    cfg.voters.incoming.discard(id)
    cfg.learners_next.discard(id)
    if id in cfg.voters.outgoing:
        cfg.learners_next.add(id)
    else:
        cfg.learners.add(id)


def _remove(cfg: Configuration, prs: _IncrChangeMap, id: int) -> None:
    """Remove ``id`` as a voter or learner of the incoming configuration."""
    if not prs.contains(id):
        return
    cfg.voters.incoming.discard(id)
    cfg.learners.discard(id)
    cfg.learners_next.discard(id)
    # An outgoing voter still votes until the joint state is left: keep its Progress.
    if id not in cfg.voters.outgoing:
        prs.remove(id)


def check_invariants(cfg: Configuration, has_progress: Callable[[int], bool]) -> None:
    """Check that a configuration is well formed and that its members have a Progress.

    Args:
        cfg: the configuration to check.
        has_progress: tells whether an id has a Progress (e.g. ``progress.__contains__``).

    Raises:
        ConfChangeError: naming the first broken rule.

    The empty configuration is valid on purpose: it is where bootstrap starts.
    """
    contains = has_progress
    voters = cfg.voters
    for id in sorted(voters.ids()):
        if not contains(id):
            raise ConfChangeError(f"no progress for voter {id}")
    for id in sorted(cfg.learners):
        if not contains(id):
            raise ConfChangeError(f"no progress for learner {id}")
        if id in voters.outgoing:
            raise ConfChangeError(f"{id} is in learners and outgoing voters")
        if id in voters.incoming:
            raise ConfChangeError(f"{id} is in learners and incoming voters")
    for id in sorted(cfg.learners_next):
        if not contains(id):
            raise ConfChangeError(f"no progress for learner(next) {id}")
        # A learner is staged only because it is still an outgoing voter.
        if id not in voters.outgoing:
            raise ConfChangeError(f"{id} is in learners_next but not in outgoing voters")
    if not voters.outgoing:
        if cfg.learners_next:
            raise ConfChangeError("learners_next must be empty when not joint")
        if cfg.auto_leave:
            raise ConfChangeError("auto_leave must be false when not joint")
