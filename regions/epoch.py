"""TiKV's region-epoch rules: which command checks and which bumps ``version``/``conf_ver``.

The table (TiKV ``store/util.rs admin_cmd_epoch_lookup``, marked "MUST NOT be
changed"; multiraft-design §4.1):

==================================  =========  ============  ======================  ===============
Command                             check ver  check conf    bump ver                bump conf_ver
==================================  =========  ============  ======================  ===============
normal read / write                 yes        no            no                      no
ChangePeer / ChangePeerV2           no         yes           no                      +number of changes
Split / BatchSplit                  yes        yes           +number of new regions  no
PrepareMerge                        yes        yes           +1                      +1
CommitMerge                         yes        yes           max(source, target)+1   no
RollbackMerge                       yes        yes           +1                      no
TransferLeader, CompactLog, hashes  no         no            no                      no
==================================  =========  ============  ======================  ===============

Rules that follow from it:

* The two components are compared **separately**, and a check is an equality:
  a request made for another epoch, older *or* newer, does not match
  (:func:`check_epoch`). The check runs at propose time and again at apply
  time, so a write committed before a split but applied after it fails the
  same way on every replica.
* A message or report is **stale** when either component is older than the
  current one (:func:`is_stale`); newer is not stale.
* A leader proposes no command that checks an epoch field while an earlier,
  unapplied proposal bumps that field (TiKV ``CmdEpochChecker``):
  :class:`EpochChangeTracker`. Together with the joint-state rule of
  :mod:`regions.conf_change` this gives "one pending conf change per region".

Pure: nothing here reads a clock or does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from regions.region import RegionEpoch

__all__ = [
    "EPOCH_RULES",
    "CommandKind",
    "EpochChangeTracker",
    "EpochRule",
    "bump_epoch",
    "check_epoch",
    "is_stale",
]


class CommandKind(StrEnum):
    """A kind of Raft command, as far as the epoch rules tell them apart."""

    NORMAL = "normal"
    CHANGE_PEER = "change_peer"
    CHANGE_PEER_V2 = "change_peer_v2"
    SPLIT = "split"
    BATCH_SPLIT = "batch_split"
    PREPARE_MERGE = "prepare_merge"
    COMMIT_MERGE = "commit_merge"
    ROLLBACK_MERGE = "rollback_merge"
    TRANSFER_LEADER = "transfer_leader"
    COMPACT_LOG = "compact_log"
    COMPUTE_HASH = "compute_hash"
    VERIFY_HASH = "verify_hash"


@dataclass(frozen=True, slots=True)
class EpochRule:
    """One row of the table: what a command checks and what its apply bumps."""

    check_ver: bool
    check_conf_ver: bool
    change_ver: bool
    change_conf_ver: bool

    @property
    def changes_epoch(self) -> bool:
        return self.change_ver or self.change_conf_ver


_NONE = EpochRule(False, False, False, False)

#: The epoch table. Read-only: changing it changes what every replica applies.
EPOCH_RULES: Final[Mapping[CommandKind, EpochRule]] = MappingProxyType(
    {
        CommandKind.NORMAL: EpochRule(True, False, False, False),
        CommandKind.CHANGE_PEER: EpochRule(False, True, False, True),
        CommandKind.CHANGE_PEER_V2: EpochRule(False, True, False, True),
        CommandKind.SPLIT: EpochRule(True, True, True, False),
        CommandKind.BATCH_SPLIT: EpochRule(True, True, True, False),
        CommandKind.PREPARE_MERGE: EpochRule(True, True, True, True),
        CommandKind.COMMIT_MERGE: EpochRule(True, True, True, False),
        CommandKind.ROLLBACK_MERGE: EpochRule(True, True, True, False),
        CommandKind.TRANSFER_LEADER: _NONE,
        CommandKind.COMPACT_LOG: _NONE,
        CommandKind.COMPUTE_HASH: _NONE,
        CommandKind.VERIFY_HASH: _NONE,
    }
)


def check_epoch(kind: CommandKind, request_epoch: RegionEpoch, current_epoch: RegionEpoch) -> bool:
    """Whether a ``kind`` command made for ``request_epoch`` may run against ``current_epoch``.

    False means EpochNotMatch. Only the fields the table checks are compared,
    and each must be *equal* (TiKV ``check_region_epoch``).
    """
    rule = EPOCH_RULES[kind]
    if rule.check_ver and request_epoch.version != current_epoch.version:
        return False
    return not (rule.check_conf_ver and request_epoch.conf_ver != current_epoch.conf_ver)


def bump_epoch(
    kind: CommandKind,
    epoch: RegionEpoch,
    n: int = 1,
    *,
    merge_source: RegionEpoch | None = None,
) -> RegionEpoch:
    """The epoch after applying a ``kind`` command to a region at ``epoch``.

    ``n`` is the number of peer changes (ChangePeer/ChangePeerV2; for leaving a
    joint state, the number of roles that change) or of new regions
    (BatchSplit). The other kinds bump by their fixed amount and ignore it.
    CommitMerge needs the source region's epoch: the target's version becomes
    ``max(source, target) + 1``.

    Raises:
        ValueError: ``n < 1`` where ``n`` counts, or CommitMerge without a source.
    """
    match kind:
        case CommandKind.CHANGE_PEER | CommandKind.CHANGE_PEER_V2:
            _check_count(kind, n)
            return replace(epoch, conf_ver=epoch.conf_ver + n)
        case CommandKind.BATCH_SPLIT:
            _check_count(kind, n)
            return replace(epoch, version=epoch.version + n)
        case CommandKind.SPLIT | CommandKind.ROLLBACK_MERGE:
            return replace(epoch, version=epoch.version + 1)
        case CommandKind.PREPARE_MERGE:
            return RegionEpoch(conf_ver=epoch.conf_ver + 1, version=epoch.version + 1)
        case CommandKind.COMMIT_MERGE:
            if merge_source is None:
                raise ValueError("CommitMerge needs the source region's epoch")
            return replace(epoch, version=max(epoch.version, merge_source.version) + 1)
    return epoch


def _check_count(kind: CommandKind, n: int) -> None:
    if n < 1:
        raise ValueError(f"{kind}: the number of changes must be at least 1, got {n}")


def is_stale(epoch: RegionEpoch, current: RegionEpoch) -> bool:
    """Whether ``epoch`` is older than ``current`` in either component (TiKV ``is_epoch_stale``)."""
    return epoch.version < current.version or epoch.conf_ver < current.conf_ver


@dataclass(frozen=True, slots=True)
class _Proposal:
    kind: CommandKind
    index: int


class EpochChangeTracker:
    """The epoch-changing admin commands a leader has proposed and not yet applied.

    TiKV's ``CmdEpochChecker``. Before proposing any command (normal writes
    included), the leader asks :meth:`conflict_index`: if an unapplied proposal
    bumps a field the new command checks, the new one must wait until that
    index is applied (proposing it now would only fail at apply time). After a
    successful proposal it calls :meth:`proposed`, and after apply
    :meth:`applied`. A new term forgets everything: the proposals of an older
    term are either in the log (and will be applied) or lost.

    Invariant: the recorded proposals all change the epoch, were made in
    :attr:`term`, and their indexes increase.
    """

    __slots__ = ("_proposals", "term")

    def __init__(self) -> None:
        self._proposals: list[_Proposal] = []
        self.term = 0

    def __len__(self) -> int:
        return len(self._proposals)

    def _observe_term(self, term: int) -> None:
        if term > self.term:
            self.term = term
            self._proposals.clear()

    def conflict_index(self, kind: CommandKind, term: int) -> int | None:
        """The index of the last unapplied proposal that blocks a ``kind`` command, if any."""
        self._observe_term(term)
        rule = EPOCH_RULES[kind]
        for p in reversed(self._proposals):
            bumps = EPOCH_RULES[p.kind]
            if (rule.check_ver and bumps.change_ver) or (
                rule.check_conf_ver and bumps.change_conf_ver
            ):
                return p.index
        return None

    def proposed(self, kind: CommandKind, index: int, term: int) -> None:
        """Record a proposal at ``index``; commands that change no epoch are not kept."""
        self._observe_term(term)
        if term < self.term or not EPOCH_RULES[kind].changes_epoch:
            return
        if self._proposals and index <= self._proposals[-1].index:
            raise ValueError(f"proposal index {index} does not follow {self._proposals[-1].index}")
        self._proposals.append(_Proposal(kind, index))

    def applied(self, index: int) -> None:
        """Forget the proposals at or below the applied ``index``."""
        self._proposals = [p for p in self._proposals if p.index > index]

    def clear(self) -> None:
        """Forget everything (the peer stepped down)."""
        self._proposals.clear()
