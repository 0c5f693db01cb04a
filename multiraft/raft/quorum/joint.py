"""Joint quorums: two majority configs that must both agree (Raft thesis §4.3).

A port of raft-rs ``src/quorum/joint.rs``. During a membership change the
cluster is in ``C_old,new``: ``incoming`` is the new voter set and ``outgoing``
the old one. Outside a change ``outgoing`` is empty, and because an empty
majority config commits everything and wins every vote, the joint config then
behaves exactly like ``incoming`` alone.

Invariants:

* committed index = min(committed of incoming, committed of outgoing);
* a vote is Won iff won in both halves, Lost iff lost in either, else Pending;
* the two halves may overlap; a voter in both is counted in each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from multiraft.raft.quorum.majority import AckedIndexer, MajorityConfig, VoteResult

__all__ = ["JointConfig"]


class JointConfig:
    """Two (possibly overlapping) majority configs; decisions need both.

    ``JointConfig(voters)`` is a non-joint config; ``JointConfig(incoming,
    outgoing)`` builds a joint one. The arguments are copied.
    """

    __slots__ = ("incoming", "outgoing")

    def __init__(self, incoming: Iterable[int] = (), outgoing: Iterable[int] = ()) -> None:
        #: The voters of the configuration being moved to (or the only one).
        self.incoming = MajorityConfig(incoming)
        #: The voters of the configuration being left; empty when not joint.
        self.outgoing = MajorityConfig(outgoing)

    def copy(self) -> JointConfig:
        """An independent copy of both halves."""
        return JointConfig(self.incoming, self.outgoing)

    def committed_index(self, use_group_commit: bool, indexer: AckedIndexer) -> tuple[int, bool]:
        """The highest index committed in *both* majorities.

        The flag is True only when both halves report that group commit decided
        their answer (see :meth:`MajorityConfig.committed_index`).
        """
        i_idx, i_gc = self.incoming.committed_index(use_group_commit, indexer)
        o_idx, o_gc = self.outgoing.committed_index(use_group_commit, indexer)
        return min(i_idx, o_idx), i_gc and o_gc

    def vote_result(self, check: Callable[[int], bool | None]) -> VoteResult:
        """Won iff both halves won, Lost if either lost, else Pending."""
        i = self.incoming.vote_result(check)
        o = self.outgoing.vote_result(check)
        if i == VoteResult.Won and o == VoteResult.Won:
            return VoteResult.Won
        if i == VoteResult.Lost or o == VoteResult.Lost:
            return VoteResult.Lost
        # Pending in both, or won in only one half.
        return VoteResult.Pending

    def clear(self) -> None:
        """Remove every voter from both halves."""
        self.incoming.clear()
        self.outgoing.clear()

    def is_singleton(self) -> bool:
        """True iff there is exactly one voter (the leader) and no joint state."""
        return not self.outgoing and len(self.incoming) == 1

    def ids(self) -> set[int]:
        """Every voter in either half (a new set)."""
        return self.incoming | self.outgoing

    def contains(self, id: int) -> bool:
        """Whether ``id`` is a voter in either half."""
        return id in self.incoming or id in self.outgoing

    __contains__ = contains

    def describe(self, indexer: AckedIndexer) -> str:
        """The :meth:`MajorityConfig.describe` picture of all voters of both halves."""
        return MajorityConfig(self.ids()).describe(indexer)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JointConfig):
            return NotImplemented
        return self.incoming == other.incoming and self.outgoing == other.outgoing

    __hash__ = None  # type: ignore[assignment]  # mutable: not hashable

    def __str__(self) -> str:
        if self.outgoing:
            return f"{self.incoming}&&{self.outgoing}"
        return str(self.incoming)

    def __repr__(self) -> str:
        return f"JointConfig({sorted(self.incoming)!r}, {sorted(self.outgoing)!r})"
