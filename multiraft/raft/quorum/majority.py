"""Majority quorums: a set of voters where any strict majority decides.

A port of raft-rs ``src/quorum/majority.rs`` plus the vocabulary of
``src/quorum.rs``.

Invariants:

* A config of ``n > 0`` voters needs ``n // 2 + 1`` of them (:func:`majority`).
* The empty config commits ``NO_LIMIT`` and wins every vote (see the package
  docstring for why).
* A voter the indexer knows nothing about counts as having acknowledged index 0;
  it can never raise the committed index.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from enum import IntEnum
from operator import attrgetter
from typing import Protocol

from multiraft.raft.types import NO_LIMIT

__all__ = [
    "AckIndexer",
    "AckedIndexer",
    "Index",
    "MajorityConfig",
    "VoteResult",
    "majority",
]


def majority(total: int) -> int:
    """The number of votes a group of ``total`` voters needs: a strict majority.

    Example: ``majority(3) == 2``, ``majority(4) == 3``.
    """
    return total // 2 + 1


class VoteResult(IntEnum):
    """The outcome of a vote as far as the votes cast so far can tell."""

    #: Neither "yes" nor "no" has reached a quorum yet; the outcome depends on
    #: votes still missing.
    Pending = 0
    #: A quorum can no longer say "yes".
    Lost = 1
    #: A quorum said "yes".
    Won = 2

    def __str__(self) -> str:
        return f"Vote{self.name}"


@dataclass(frozen=True, slots=True)
class Index:
    """A Raft log position acknowledged by a voter, with its commit group.

    ``group_id`` 0 means "in no commit group" (see group commit in
    :meth:`MajorityConfig.committed_index`).
    """

    index: int = 0
    group_id: int = 0

    def __str__(self) -> str:
        idx = "∞" if self.index == NO_LIMIT else str(self.index)
        return idx if self.group_id == 0 else f"[{self.group_id}]{idx}"


class AckedIndexer(Protocol):
    """Anything that can tell the highest log index a voter has acknowledged."""

    def acked_index(self, voter_id: int) -> Index | None:
        """The voter's acknowledged index, or None if nothing is known about it."""
        ...


class AckIndexer(dict[int, Index]):
    """A plain ``voter id -> Index`` map usable as an :class:`AckedIndexer` (tests, tools)."""

    __slots__ = ()

    def acked_index(self, voter_id: int) -> Index | None:
        """The recorded index of ``voter_id``, or None."""
        return self.get(voter_id)


_ZERO = Index(0, 0)
_by_index = attrgetter("index")


class MajorityConfig(set[int]):
    """A set of voter ids that decides by simple majority.

    It *is* a ``set[int]`` (raft-rs derefs to its ``HashSet``), so membership,
    ``len``, ``add``/``discard`` and iteration are the set's own.
    """

    __slots__ = ()

    def copy(self) -> MajorityConfig:
        """A copy that is still a MajorityConfig (``set.copy`` would drop the type)."""
        return MajorityConfig(self)

    def ids(self) -> AbstractSet[int]:
        """The voter ids (a read-only view of this set; do not mutate through it)."""
        return self

    def slice(self) -> list[int]:
        """The voter ids, sorted."""
        return sorted(self)

    def raw_slice(self) -> list[int]:
        """The voter ids in iteration order."""
        return list(self)

    def committed_index(self, use_group_commit: bool, indexer: AckedIndexer) -> tuple[int, bool]:
        """The highest index acknowledged by a majority of the voters.

        Args:
            use_group_commit: also require the index to be replicated to at least
                two commit groups (TiKV's cross-datacenter "group commit").
            indexer: where to look up each voter's acknowledged index.

        Returns:
            ``(index, used_group_commit)``. The flag is True only when group commit
            was requested *and* decided the answer (at least two groups seen), and
            for the empty config, which commits ``NO_LIMIT``.

        Example: acked indexes ``[2, 2, 2, 4, 5]`` commit 2; with groups
        ``[(1, g1), (2, g2), (3, g2)]`` group commit answers 1.
        """
        if not self:
            # Plays well with joint quorums: an empty half defers to the other half.
            return NO_LIMIT, True

        matched: list[Index] = []
        for v in self:
            idx = indexer.acked_index(v)
            matched.append(_ZERO if idx is None else idx)
        # Highest first, so the quorum-th entry is the index a majority has reached.
        matched.sort(key=_by_index, reverse=True)

        quorum_index = matched[majority(len(matched)) - 1]
        if not use_group_commit:
            return quorum_index.index, False

        quorum_commit_index = quorum_index.index
        checked_group_id = quorum_index.group_id
        single_group = True
        for m in matched:
            if m.group_id == 0:
                single_group = False
                continue
            if checked_group_id == 0:
                checked_group_id = m.group_id
                continue
            if checked_group_id == m.group_id:
                continue
            # The highest index that a second group holds bounds what is safe.
            return min(m.index, quorum_commit_index), True
        if single_group:
            # Every voter is in one group: group commit cannot apply, use quorum.
            return quorum_commit_index, False
        # Some voters have no group: only what *every* voter holds is safe.
        return matched[-1].index, False

    def vote_result(self, check: Callable[[int], bool | None]) -> VoteResult:
        """Tally the votes that ``check`` reports (True yes, False no, None missing).

        Returns Won once a majority said yes, Lost once a majority can no longer
        say yes, else Pending. The empty config wins by convention, so that a
        half-populated joint config behaves like a plain majority.
        """
        if not self:
            return VoteResult.Won

        yes = 0
        missing = 0
        for v in self:
            vote = check(v)
            if vote is None:
                missing += 1
            elif vote:
                yes += 1
        q = majority(len(self))
        if yes >= q:
            return VoteResult.Won
        if yes + missing >= q:
            return VoteResult.Pending
        return VoteResult.Lost

    def describe(self, indexer: AckedIndexer) -> str:
        """A multi-line picture of the voters' acknowledged indexes (tests, debugging).

        One line per voter (sorted by id): a bar (the voter's rank among the
        acknowledged indexes, see below), then the index (``?`` and 0 when
        unknown) and the id.
        """
        n = len(self)
        if n == 0:
            return "<empty majority quorum>"

        def known(idx: Index | None) -> int:
            return 0 if idx is None else idx.index

        info: list[tuple[int, Index | None]] = [(vid, indexer.acked_index(vid)) for vid in self]
        info.sort(key=lambda t: (known(t[1]), t[0]))
        # As in etcd and raft-rs: a voter gets bar i only when its index is strictly
        # above its predecessor's in this order; ties fall back to an empty bar.
        bars: dict[int, int] = {}
        for i, (vid, idx) in enumerate(info):
            bars[vid] = i if i > 0 and known(info[i - 1][1]) < known(idx) else 0

        lines = [" " * n + "    idx"]
        for vid, idx in sorted(info, key=lambda t: t[0]):
            if idx is None:
                lines.append(f"?{' ' * n} {'0':>5}    (id={vid})")
            else:
                b = bars[vid]
                lines.append(f"{'x' * b}>{' ' * (n - b)} {idx!s:>5}    (id={vid})")
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return "(" + " ".join(str(v) for v in sorted(self)) + ")"

    def __repr__(self) -> str:
        return f"MajorityConfig({sorted(self)!r})"
