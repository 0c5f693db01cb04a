"""ProgressTracker: the membership configuration plus one Progress per member.

A port of raft-rs ``src/tracker.rs``.

Theory of operation
-------------------
A Raft node keeps a :class:`Configuration` (who votes, who learns) and a
``progress`` map with one :class:`Progress` per voter and learner. The leader
uses the map to replicate; every node uses the configuration to count votes
and commits:

* commit: :meth:`ProgressTracker.maximal_committed_index` asks the joint
  quorum which index a quorum of voters has ``matched``;
* elections: votes are recorded once per voter (:meth:`~ProgressTracker.record_vote`)
  and tallied against the joint quorum;
* check-quorum: :meth:`~ProgressTracker.quorum_recently_active` asks whether a
  quorum was heard from since the last check, and clears the marks.

The tracker never decides membership itself. The :mod:`~multiraft.raft.confchange`
``Changer`` validates a change against the current configuration and returns
the new :class:`Configuration` plus a list of progress additions/removals;
:meth:`ProgressTracker.apply_conf` then installs both at once.

Invariants:

* the ``progress`` keys are exactly ``voters.ids() | learners | learners_next``
  (the Changer maintains this);
* learners and voters (either half) are disjoint; ``learners_next`` is a subset
  of the outgoing voters and is empty, like ``auto_leave`` is False, unless the
  configuration is joint.
"""

from __future__ import annotations

from collections.abc import Container, ItemsView, Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TypeAlias

from multiraft.raft.quorum import Index, JointConfig, VoteResult, majority
from multiraft.raft.tracker.progress import Progress
from multiraft.raft.types import NO_LIMIT, ConfState

__all__ = [
    "Configuration",
    "MapChange",
    "MapChangeType",
    "ProgressMap",
    "ProgressTracker",
]


class MapChangeType(IntEnum):
    """What :meth:`ProgressTracker.apply_conf` does to a peer's Progress.

    Defined here rather than in ``confchange`` (where raft-rs has it) so that the
    import graph stays acyclic: ``confchange`` depends on ``tracker``, not back.
    """

    #: Create a fresh Progress for the peer.
    Add = 0
    #: Drop the peer's Progress.
    Remove = 1


#: The progress changes a conf change implies, in order: ``(peer id, change)``.
MapChange: TypeAlias = list[tuple[int, MapChangeType]]

#: Peer id -> its Progress.
ProgressMap: TypeAlias = dict[int, Progress]


@dataclass(slots=True)
class Configuration:
    """The membership tracked by a ProgressTracker: voters, learners and joint state.

    Invariant: learners are disjoint from both voter halves, so a peer's role is
    clear without looking at the joint state. A voter being demoted while it is
    still in the outgoing half cannot become a learner yet; it waits in
    ``learners_next`` and moves to ``learners`` when the joint state is left.
    """

    #: The voters: ``incoming`` and, while joint, ``outgoing``.
    voters: JointConfig = field(default_factory=JointConfig)
    #: Learners: receive the log, never vote.
    learners: set[int] = field(default_factory=set)
    #: Outgoing voters to turn into learners when the joint state is left.
    learners_next: set[int] = field(default_factory=set)
    #: While joint: whether Raft should leave the joint state by itself.
    auto_leave: bool = False

    @classmethod
    def new(cls, voters: Iterable[int], learners: Iterable[int] = ()) -> Configuration:
        """A non-joint configuration of the given voters and learners."""
        return cls(JointConfig(voters), set(learners))

    def copy(self) -> Configuration:
        """An independent copy (the Changer edits copies, never the live config)."""
        return Configuration(
            self.voters.copy(), set(self.learners), set(self.learners_next), self.auto_leave
        )

    def is_joint(self) -> bool:
        """Whether the configuration is joint (the outgoing half is non-empty)."""
        return bool(self.voters.outgoing)

    def to_conf_state(self) -> ConfState:
        """The ConfState describing this configuration (id lists sorted)."""
        return ConfState(
            voters=sorted(self.voters.incoming),
            learners=sorted(self.learners),
            voters_outgoing=sorted(self.voters.outgoing),
            learners_next=sorted(self.learners_next),
            auto_leave=self.auto_leave,
        )

    def clear(self) -> None:
        """Forget every member."""
        self.voters.clear()
        self.learners.clear()
        self.learners_next.clear()
        self.auto_leave = False

    def __str__(self) -> str:
        # Same layout as raft-rs's Display, e.g.
        # "voters=(1 2)&&(1 3) learners=(4) learners_next=(3) autoleave".
        parts = [f"voters={self.voters}"]
        if self.learners:
            parts.append(f"learners=({' '.join(map(str, sorted(self.learners)))})")
        if self.learners_next:
            parts.append(f"learners_next=({' '.join(map(str, sorted(self.learners_next)))})")
        if self.auto_leave:
            parts.append("autoleave")
        return " ".join(parts)


class _ProgressIndexer:
    """Reads a ProgressMap as an AckedIndexer: a voter's ``matched`` and commit group."""

    __slots__ = ("_progress",)

    def __init__(self, progress: ProgressMap) -> None:
        self._progress = progress

    def acked_index(self, voter_id: int) -> Index | None:
        pr = self._progress.get(voter_id)
        return None if pr is None else Index(pr.matched, pr.commit_group_id)


def _quorum_matched(voters: Iterable[int], n: int, progress: ProgressMap) -> int:
    """The index a majority of ``voters`` (``n`` of them, n > 0) has matched."""
    matched = sorted([pr.matched if (pr := progress.get(v)) is not None else 0 for v in voters])
    # Ascending order: the majority-th largest sits at position n - majority(n).
    return matched[n - majority(n)]


class ProgressTracker:
    """The configuration plus the Progress of every voter and learner."""

    __slots__ = (
        "_conf",
        "_group_commit",
        "_max_inflight",
        "_max_inflight_bytes",
        "progress",
        "votes",
    )

    def __init__(self, max_inflight: int, max_inflight_bytes: int = 0) -> None:
        """An empty tracker whose new Progresses get a window of ``max_inflight`` messages.

        ``max_inflight_bytes > 0`` also bounds each window in bytes (etcd's
        ``MaxInflightBytes``); the default keeps raft-rs's count-only window.
        """
        #: Peer id -> Progress. Use the quorum methods, not this map, to count quorums.
        self.progress: ProgressMap = {}
        #: Votes received in the current election: voter id -> granted.
        self.votes: dict[int, bool] = {}
        self._conf = Configuration()
        self._max_inflight = max_inflight
        self._max_inflight_bytes = max_inflight_bytes
        self._group_commit = False

    # -- accessors -------------------------------------------------------------

    def conf(self) -> Configuration:
        """The current configuration (the live object: do not mutate it)."""
        return self._conf

    def max_inflight(self) -> int:
        """The in-flight window given to every new Progress."""
        return self._max_inflight

    def enable_group_commit(self, enable: bool) -> None:
        """Turn group commit on or off for :meth:`maximal_committed_index`."""
        self._group_commit = enable

    def group_commit(self) -> bool:
        """Whether group commit is on."""
        return self._group_commit

    def assign_commit_groups(self, ids: Iterable[tuple[int, int]]) -> None:
        """Set the commit group of each ``(peer id, group id)``; unknown peers are skipped."""
        progress = self.progress
        for peer_id, group_id in ids:
            pr = progress.get(peer_id)
            if pr is not None:
                pr.commit_group_id = group_id

    def clear_commit_group(self) -> None:
        """Put every peer back in no commit group."""
        for pr in self.progress.values():
            pr.commit_group_id = 0

    def clear(self) -> None:
        """Forget every member, Progress and vote (before a snapshot restore)."""
        self.progress.clear()
        self._conf.clear()
        self.votes.clear()

    def is_singleton(self) -> bool:
        """True iff there is exactly one voter (the leader) and no joint state."""
        return self._conf.voters.is_singleton()

    def get(self, id: int) -> Progress | None:
        """The Progress of peer ``id``, or None."""
        return self.progress.get(id)

    def get_mut(self, id: int) -> Progress | None:
        """Same as :meth:`get` (Progress objects are mutable in place)."""
        return self.progress.get(id)

    def iter(self) -> ItemsView[int, Progress]:
        """``(id, Progress)`` for every peer. Not for counting quorums: see :meth:`has_quorum`."""
        return self.progress.items()

    def iter_mut(self) -> ItemsView[int, Progress]:
        """Same as :meth:`iter`."""
        return self.progress.items()

    # -- quorums ---------------------------------------------------------------

    def maximal_committed_index(self) -> tuple[int, bool]:
        """The highest index a (joint) quorum of voters has matched.

        The flag tells whether group commit decided the answer.

        Example: matched ``[2, 2, 2, 4, 5]`` gives ``(2, False)``.
        """
        voters = self._conf.voters
        if self._group_commit:
            return voters.committed_index(True, _ProgressIndexer(self.progress))
        # Fast path of voters.committed_index(False, ...) for the per-response hot
        # path: read `matched` directly instead of building an Index per voter.
        # An empty half commits NO_LIMIT and reports True, so the joint flag is
        # True only when both halves are empty.
        progress = self.progress
        incoming = voters.incoming
        outgoing = voters.outgoing
        n_in = len(incoming)
        n_out = len(outgoing)
        i_idx = _quorum_matched(incoming, n_in, progress) if n_in else NO_LIMIT
        if not n_out:
            return i_idx, not n_in
        o_idx = _quorum_matched(outgoing, n_out, progress)
        return min(i_idx, o_idx), False

    def reset_votes(self) -> None:
        """Start a new round of vote counting."""
        self.votes.clear()

    def record_vote(self, id: int, vote: bool) -> None:
        """Record ``id``'s vote; only its first vote in a round counts."""
        self.votes.setdefault(id, vote)

    def tally_votes(self) -> tuple[int, int, VoteResult]:
        """``(granted, rejected, result)`` of the current round.

        Votes from peers that are no longer voters are not counted (they are
        informational anyway); the result is :meth:`vote_result`.
        """
        voters = self._conf.voters
        granted = 0
        rejected = 0
        for id, vote in self.votes.items():
            if not voters.contains(id):
                continue
            if vote:
                granted += 1
            else:
                rejected += 1
        return granted, rejected, self.vote_result(self.votes)

    def vote_result(self, votes: Mapping[int, bool]) -> VoteResult:
        """The election outcome given ``votes`` (voter id -> granted)."""
        return self._conf.voters.vote_result(votes.get)

    def quorum_recently_active(self, perspective_of: int) -> bool:
        """Whether a quorum was active since the last call, from ``perspective_of``'s view.

        Clears ``recent_active`` of every other peer, so each call covers the
        period since the previous one; the caller itself always counts as
        active. Only a leader should call this (check-quorum).
        """
        active: set[int] = set()
        for id, pr in self.progress.items():
            if id == perspective_of:
                pr.recent_active = True
                active.add(id)
            elif pr.recent_active:
                # Learners may be added too: quorums are counted over voter ids.
                active.add(id)
                pr.recent_active = False
        return self.has_quorum(active)

    def has_quorum(self, potential_quorum: Container[int]) -> bool:
        """Whether ``potential_quorum`` contains a quorum of the (joint) voters.

        This is the only correct way to test for a quorum during joint consensus.
        """
        # Same answer as voters.vote_result(id in potential_quorum or None) == Won,
        # without a callback per voter: every non-empty half needs a majority.
        voters = self._conf.voters
        for half in (voters.incoming, voters.outgoing):
            if half:
                present = 0
                for id in half:
                    if id in potential_quorum:
                        present += 1
                if present < majority(len(half)):
                    return False
        return True

    # -- membership ------------------------------------------------------------

    def apply_conf(self, conf: Configuration, changes: MapChange, next_idx: int) -> None:
        """Install a configuration produced by the Changer, with its progress changes.

        A new peer's Progress starts probing at ``next_idx`` and counts as
        recently active, so that check-quorum does not depose the leader before
        the newcomer had a chance to answer.
        """
        self._conf = conf
        progress = self.progress
        for id, change_type in changes:
            if change_type == MapChangeType.Add:
                pr = Progress(next_idx, self._max_inflight, self._max_inflight_bytes)
                pr.recent_active = True
                progress[id] = pr
            else:
                progress.pop(id, None)

    def __repr__(self) -> str:
        return f"ProgressTracker(conf={self._conf}, progress={self.progress!r})"
