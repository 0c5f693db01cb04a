"""Operators: a region change made of steps, driven by what the region's heartbeats show.

Theory of operation (PD ``pkg/schedule/operator``; multiraft-design §6.3)
-------------------------------------------------------------------------
An :class:`Operator` is a plan for one region: a kind, the steps, the time it
was made (passed in by the caller: this module has no clock), a timeout (the
sum of its steps' timeouts, slow for a step that needs a snapshot), the index
of the current step, and a status: ``running`` until it ends as ``success``,
``timeout``, ``canceled`` or ``stale``.

Every step (:mod:`regions.scheduling.steps`, re-exported here) carries **the
region epoch it was made for**. The builders (``make_*``) compute those epochs
by applying each membership step to a copy of the region with
:mod:`regions.conf_change`, so a plan that the apply rules would refuse is
refused when it is built (:class:`OperatorError`), and step ``k + 1``'s epoch
is exactly the epoch step ``k`` leads to.

The placement service sends the current step with every heartbeat reply; the
store proposes it *with the step's epoch*, so a duplicate or an outdated step
fails harmlessly with EpochNotMatch. Progress is judged only by observing the
region (:meth:`Operator.check`, idempotent):

1. a report whose epoch is older than the current step's in either component
   is old news: nothing changes;
2. while the current step's effect is visible (``is_finished``), advance;
3. if the region's epoch now differs from the current step's epoch, something
   this operator did not do changed the region: the operator is **stale**;
4. past the last step, it is a **success**; past the deadline, a **timeout**.

Finishing conditions tolerate skipped reports: a learner that was added and
then promoted still counts as added, and a demoted peer that was then removed
still counts as demoted. Step 3 makes this safe, because the epoch must still
be the one the operator's own steps lead to.

A region move (``make_move_peer``) is ``AddLearner(B)`` → (leader transfer
off ``A`` if ``A`` leads) → ``JointEnter{promote B, demote A}`` →
``JointLeave`` → ``RemovePeer(A)``; without joint consensus, or when no other
voter could take the leadership, it is ``AddLearner(B)`` → ``PromoteLearner(B)``
→ (transfer to ``B``) → ``DemoteVoter(A)`` → ``RemovePeer(A)``. A voter is never
removed directly and the leader is never demoted or removed: it hands over
leadership first.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum

from regions.conf_change import MembershipError, apply_conf_change, is_joint
from regions.epoch import is_stale
from regions.keyspace import KeyRangeError, split_range
from regions.region import Peer, PeerRole, Region, RegionEpoch
from regions.scheduling.cluster import StoreStats
from regions.scheduling.steps import (
    AddLearner,
    DemoteVoter,
    JointEnter,
    JointLeave,
    PromoteLearner,
    RemovePeer,
    SplitRegion,
    Step,
    TransferLeader,
)

__all__ = [
    "DEFAULT_TIMEOUTS",
    "AddLearner",
    "DemoteVoter",
    "JointEnter",
    "JointLeave",
    "Operator",
    "OperatorError",
    "OperatorKind",
    "OperatorStatus",
    "OperatorTimeouts",
    "PromoteLearner",
    "RemovePeer",
    "SplitRegion",
    "Step",
    "TransferLeader",
    "make_add_peer",
    "make_leave_joint",
    "make_move_peer",
    "make_promote_learner",
    "make_remove_peer",
    "make_split_region",
    "make_transfer_leader",
]


class OperatorError(ValueError):
    """An operator that cannot be built for the region as it is."""


# -- operators ----------------------------------------------------------------------------


class OperatorKind(StrEnum):
    ADD_PEER = "add-peer"
    REMOVE_PEER = "remove-peer"
    MOVE_PEER = "move-peer"
    TRANSFER_LEADER = "transfer-leader"
    SPLIT_REGION = "split-region"
    LEAVE_JOINT = "leave-joint"


class OperatorStatus(StrEnum):
    RUNNING = "running"
    SUCCESS = "success"
    TIMEOUT = "timeout"
    CANCELED = "canceled"
    STALE = "stale"


@dataclass(frozen=True, slots=True)
class OperatorTimeouts:
    """Seconds allowed per step; an operator gets the sum (PD: 60 s fast, 10 min slow)."""

    fast_step: float = 60.0
    slow_step: float = 600.0

    def of(self, step: Step) -> float:
        return self.slow_step if step.slow else self.fast_step


DEFAULT_TIMEOUTS = OperatorTimeouts()


@dataclass(slots=True, eq=False)
class Operator:
    """A plan for one region (see the module docstring). Built by the ``make_*`` functions.

    Invariant: ``0 <= step_index <= len(steps)``; ``step_index == len(steps)``
    exactly when the status is ``success``; a finished status never changes.
    """

    kind: OperatorKind
    region_id: int
    #: The region's epoch when the operator was made (the first step's epoch).
    region_epoch: RegionEpoch
    steps: tuple[Step, ...]
    created_at: float
    timeout: float
    #: Who made it and why, e.g. ``balance-region`` or ``replica-checker: down peer``.
    desc: str = ""
    #: The region's approximate size when made (for the influence on store sizes).
    region_size: int = 0
    step_index: int = 0
    status: OperatorStatus = OperatorStatus.RUNNING
    finished_at: float | None = None

    @property
    def deadline(self) -> float:
        return self.created_at + self.timeout

    @property
    def is_finished(self) -> bool:
        return self.status != OperatorStatus.RUNNING

    @property
    def current_step(self) -> Step | None:
        """The step to send now; None once finished."""
        if self.is_finished:
            return None
        return self.steps[self.step_index]

    @property
    def progress(self) -> tuple[int, int]:
        """(steps done, steps in all)."""
        return self.step_index, len(self.steps)

    def _finish(self, status: OperatorStatus, now: float | None) -> None:
        self.status = status
        self.finished_at = now

    def check(
        self,
        region: Region,
        leader: Peer | None,
        now: float | None = None,
        pending: Collection[int] = (),
    ) -> Step | None:
        """Observe ``region`` and its ``leader``; advance; return the step to send, or None.

        Idempotent for the same observation. With ``now``, a running operator
        past its deadline becomes a timeout (after the observation, so a report
        that shows the last step done still makes a success). ``pending`` are the
        ids of peers the leader reports as still catching up: an added learner
        among them keeps its AddLearner step unfinished (PD waits for the snapshot
        before promoting it), and nothing is sent meanwhile.

        Raises:
            ValueError: ``region`` is another region.
        """
        if region.id != self.region_id:
            raise ValueError(f"operator for region {self.region_id} got region {region.id}")
        if self.is_finished:
            return None
        while self.step_index < len(self.steps):
            step = self.steps[self.step_index]
            if is_stale(region.epoch, step.epoch):
                break  # an old report: no news
            if step.is_finished(region, leader):
                if isinstance(step, AddLearner) and step.peer.id in pending:
                    return None  # added, still being caught up by its snapshot
                self.step_index += 1
                continue
            if region.epoch != step.epoch:
                self._finish(OperatorStatus.STALE, now)
                return None
            break
        if self.step_index == len(self.steps):
            self._finish(OperatorStatus.SUCCESS, now)
            return None
        if now is not None and self.check_timeout(now):
            return None
        return self.steps[self.step_index]

    def check_timeout(self, now: float) -> bool:
        """Mark a running operator past its deadline as timed out; whether it is timed out."""
        if self.status == OperatorStatus.RUNNING and now >= self.deadline:
            self._finish(OperatorStatus.TIMEOUT, now)
        return self.status == OperatorStatus.TIMEOUT

    def cancel(self, now: float | None = None) -> bool:
        """Cancel a running operator; whether it was running."""
        if self.is_finished:
            return False
        self._finish(OperatorStatus.CANCELED, now)
        return True

    def influence(self) -> dict[int, StoreStats]:
        """The statistics change its remaining steps will make (nothing once finished)."""
        out: dict[int, StoreStats] = {}
        if self.is_finished:
            return out
        for step in self.steps[self.step_index :]:
            for sid, delta in step.influence(self.region_size).items():
                out[sid] = out.get(sid, StoreStats()) + delta
        return out

    def store_ids(self) -> set[int]:
        """Every store a step of it puts work on."""
        return {sid for step in self.steps for sid in step.store_ids()}

    def describe(self) -> str:
        done, total = self.progress
        steps = "; ".join(s.describe() for s in self.steps)
        return (
            f"{self.kind} region {self.region_id} ({self.desc or 'admin'}) "
            f"[{self.status}, {done}/{total}]: {steps}"
        )


# -- builders ------------------------------------------------------------------------------


class _Plan:
    """Steps built against a simulated copy of the region, each with the epoch it is made for."""

    def __init__(self, region: Region, leader_store: int | None) -> None:
        self.region = region
        self.leader_store = leader_store
        self.steps: list[Step] = []

    def peer(self, store_id: int) -> Peer:
        p = self.region.peer_on_store(store_id)
        if p is None:
            raise OperatorError(f"region {self.region.id} has no peer on store {store_id}")
        return p

    def _conf(self, step: Step) -> None:
        changes = step.conf_changes()
        assert changes is not None
        try:
            self.region = apply_conf_change(self.region, changes)
        except MembershipError as exc:
            raise OperatorError(str(exc)) from None
        self.steps.append(step)

    def add_learner(self, store_id: int, peer_id: int) -> None:
        if self.region.peer_on_store(store_id) is not None:
            raise OperatorError(f"region {self.region.id} already has a peer on store {store_id}")
        self._conf(AddLearner(self.region.epoch, Peer(peer_id, store_id, PeerRole.Learner)))

    def promote(self, store_id: int) -> None:
        p = self.peer(store_id)
        self._conf(PromoteLearner(self.region.epoch, Peer(p.id, store_id, PeerRole.Voter)))

    def demote(self, store_id: int) -> None:
        self._check_not_leader(store_id, "demote")
        p = self.peer(store_id)
        self._conf(DemoteVoter(self.region.epoch, Peer(p.id, store_id, PeerRole.Learner)))

    def joint_enter(self, promote: Sequence[int], demote: Sequence[int]) -> None:
        for sid in demote:
            self._check_not_leader(sid, "demote")
        ups = tuple(Peer(self.peer(s).id, s, PeerRole.IncomingVoter) for s in promote)
        downs = tuple(Peer(self.peer(s).id, s, PeerRole.DemotingVoter) for s in demote)
        self._conf(JointEnter(self.region.epoch, ups, downs))

    def joint_leave(self) -> None:
        ups = tuple(
            Peer(p.id, p.store_id, PeerRole.Voter)
            for p in self.region.peers
            if p.role == PeerRole.IncomingVoter
        )
        downs = tuple(
            Peer(p.id, p.store_id, PeerRole.Learner)
            for p in self.region.peers
            if p.role == PeerRole.DemotingVoter
        )
        self._conf(JointLeave(self.region.epoch, ups, downs))

    def remove(self, store_id: int) -> None:
        self._check_not_leader(store_id, "remove")
        self._conf(RemovePeer(self.region.epoch, self.peer(store_id)))

    def transfer_leader(self, to_store: int) -> None:
        if self.leader_store is None:
            raise OperatorError(f"region {self.region.id} has no known leader")
        target = self.peer(to_store)
        if target.role not in (PeerRole.Voter, PeerRole.IncomingVoter):
            raise OperatorError(
                f"region {self.region.id}: cannot transfer the leadership to the "
                f"{target.role.name} on store {to_store}"
            )
        if to_store == self.leader_store:
            raise OperatorError(f"region {self.region.id}: store {to_store} already leads")
        self.steps.append(TransferLeader(self.region.epoch, self.leader_store, to_store))
        self.leader_store = to_store

    def _check_not_leader(self, store_id: int, what: str) -> None:
        if self.leader_store is None:
            raise OperatorError(f"region {self.region.id} has no known leader")
        if store_id == self.leader_store:
            raise OperatorError(
                f"region {self.region.id}: cannot {what} the leader on store {store_id}; "
                "transfer the leadership first"
            )

    def other_voter(self, excluded: int) -> int | None:
        """The first plain voter (in peer order) not on ``excluded``."""
        for p in self.region.peers:
            if p.role == PeerRole.Voter and p.store_id != excluded:
                return p.store_id
        return None

    def build(
        self,
        kind: OperatorKind,
        original: Region,
        *,
        now: float,
        desc: str,
        region_size: int,
        timeouts: OperatorTimeouts,
    ) -> Operator:
        if not self.steps:
            raise OperatorError(f"region {original.id}: nothing to do")
        return Operator(
            kind=kind,
            region_id=original.id,
            region_epoch=original.epoch,
            steps=tuple(self.steps),
            created_at=now,
            timeout=sum(timeouts.of(s) for s in self.steps),
            desc=desc,
            region_size=region_size,
        )


def make_transfer_leader(
    region: Region,
    leader_store: int | None,
    to_store: int,
    *,
    now: float,
    desc: str = "",
    region_size: int = 0,
    timeouts: OperatorTimeouts = DEFAULT_TIMEOUTS,
) -> Operator:
    """Move the leadership to the voter on ``to_store``."""
    plan = _Plan(region, leader_store)
    plan.transfer_leader(to_store)
    return plan.build(
        OperatorKind.TRANSFER_LEADER,
        region,
        now=now,
        desc=desc,
        region_size=region_size,
        timeouts=timeouts,
    )


def make_add_peer(
    region: Region,
    store_id: int,
    peer_id: int,
    *,
    now: float,
    desc: str = "",
    region_size: int = 0,
    timeouts: OperatorTimeouts = DEFAULT_TIMEOUTS,
) -> Operator:
    """Add a voter on ``store_id``: a learner (caught up by snapshot), then promoted."""
    plan = _Plan(region, None)
    plan.add_learner(store_id, peer_id)
    plan.promote(store_id)
    return plan.build(
        OperatorKind.ADD_PEER,
        region,
        now=now,
        desc=desc,
        region_size=region_size,
        timeouts=timeouts,
    )


def make_promote_learner(
    region: Region,
    store_id: int,
    *,
    now: float,
    desc: str = "",
    region_size: int = 0,
    timeouts: OperatorTimeouts = DEFAULT_TIMEOUTS,
) -> Operator:
    """Promote the learner already on ``store_id`` to a voter."""
    plan = _Plan(region, None)
    plan.promote(store_id)
    return plan.build(
        OperatorKind.ADD_PEER,
        region,
        now=now,
        desc=desc,
        region_size=region_size,
        timeouts=timeouts,
    )


def make_remove_peer(
    region: Region,
    leader_store: int | None,
    store_id: int,
    *,
    now: float,
    transfer_to: int | None = None,
    desc: str = "",
    region_size: int = 0,
    timeouts: OperatorTimeouts = DEFAULT_TIMEOUTS,
) -> Operator:
    """Remove the peer on ``store_id``: transfer the leadership off it, demote it, remove it.

    The leadership goes to ``transfer_to`` if given, else to the first other voter.
    """
    plan = _Plan(region, leader_store)
    peer = plan.peer(store_id)
    if peer.role != PeerRole.Learner:
        if leader_store == store_id:
            to = transfer_to if transfer_to is not None else plan.other_voter(store_id)
            if to is None:
                raise OperatorError(
                    f"region {region.id}: the peer on store {store_id} is its only voter"
                )
            plan.transfer_leader(to)
        plan.demote(store_id)
    plan.remove(store_id)
    return plan.build(
        OperatorKind.REMOVE_PEER,
        region,
        now=now,
        desc=desc,
        region_size=region_size,
        timeouts=timeouts,
    )


def make_move_peer(
    region: Region,
    leader_store: int | None,
    from_store: int,
    to_store: int,
    new_peer_id: int,
    *,
    now: float,
    use_joint: bool = True,
    transfer_to: int | None = None,
    desc: str = "",
    region_size: int = 0,
    timeouts: OperatorTimeouts = DEFAULT_TIMEOUTS,
) -> Operator:
    """Move the replica on ``from_store`` to ``to_store`` (a new peer ``new_peer_id``).

    A learner moves as a learner (add, then remove). A voter moves as in the
    module docstring; when ``from_store`` leads, the leadership goes first to
    ``transfer_to`` (a voter) or the first other voter, or — with no other
    voter, or without joint consensus — to the new peer once promoted.
    """
    plan = _Plan(region, leader_store)
    source = plan.peer(from_store)
    if leader_store is None:
        raise OperatorError(f"region {region.id} has no known leader")
    plan.add_learner(to_store, new_peer_id)
    if source.role == PeerRole.Learner:
        plan.remove(from_store)
    else:
        leads = leader_store == from_store
        early = transfer_to if transfer_to is not None else plan.other_voter(from_store)
        early_ok = early is not None and early != to_store
        if use_joint and (not leads or early_ok):
            if leads and early is not None:
                plan.transfer_leader(early)
            plan.joint_enter([to_store], [from_store])
            plan.joint_leave()
        else:
            plan.promote(to_store)
            if leads:
                plan.transfer_leader(transfer_to if transfer_to is not None else to_store)
            plan.demote(from_store)
        plan.remove(from_store)
    return plan.build(
        OperatorKind.MOVE_PEER,
        region,
        now=now,
        desc=desc,
        region_size=region_size,
        timeouts=timeouts,
    )


def make_leave_joint(
    region: Region,
    leader_store: int | None = None,
    *,
    now: float,
    desc: str = "",
    region_size: int = 0,
    timeouts: OperatorTimeouts = DEFAULT_TIMEOUTS,
) -> Operator:
    """Leave a joint configuration left behind (e.g. by an operator that timed out).

    A leader that is itself a DemotingVoter first hands the leadership to a voter that
    stays one (PD ``CreateLeaveJointStateOperator``): a store refuses to leave the joint
    state with a demoting leader, as TiKV does, so without the transfer the region would
    stay joint for good.
    """
    if not is_joint(region):
        raise OperatorError(f"region {region.id} is not in a joint configuration")
    plan = _Plan(region, leader_store)
    leader = region.peer_on_store(leader_store) if leader_store is not None else None
    if leader is not None and leader.role == PeerRole.DemotingVoter:
        staying = [p for p in region.peers if p.role == PeerRole.Voter] + [
            p for p in region.peers if p.role == PeerRole.IncomingVoter
        ]
        if not staying:
            raise OperatorError(f"region {region.id}: no voter to take over the leadership")
        plan.transfer_leader(staying[0].store_id)
    plan.joint_leave()
    return plan.build(
        OperatorKind.LEAVE_JOINT,
        region,
        now=now,
        desc=desc,
        region_size=region_size,
        timeouts=timeouts,
    )


def make_split_region(
    region: Region,
    keys: Sequence[bytes] = (),
    *,
    now: float,
    desc: str = "",
    region_size: int = 0,
    timeouts: OperatorTimeouts = DEFAULT_TIMEOUTS,
) -> Operator:
    """Split at ``keys`` (validated against the range), or in half if none are given."""
    if keys:
        try:
            split_range(region.start_key, region.end_key, keys)
        except KeyRangeError as exc:
            raise OperatorError(f"region {region.id}: {exc}") from None
    step = SplitRegion(region.epoch, tuple(keys))
    return Operator(
        kind=OperatorKind.SPLIT_REGION,
        region_id=region.id,
        region_epoch=region.epoch,
        steps=(step,),
        created_at=now,
        timeout=timeouts.of(step),
        desc=desc,
        region_size=region_size,
    )
