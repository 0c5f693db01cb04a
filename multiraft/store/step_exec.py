"""Executing operator steps and admin requests: splits, membership changes, leader transfers.

Theory of operation
-------------------
Placement answers a leader's region heartbeat with the current step of the
region's operator (multiraft-design §6.3); admin requests (``multiraft region
split`` through a store, tests) ask for the same actions directly. Both end up
here, outside the ready loop, because a split first needs ids from placement:

* **Membership steps** (AddLearner, PromoteLearner, DemoteVoter, JointEnter,
  JointLeave, RemovePeer) become one ``ChangePeerV2`` admin command built with
  the step's epoch, proposed through :func:`~multiraft.store.admin_propose.propose_admin`.
* **SplitRegion**: the split keys are the step's, or the region's middle key
  (scanned in a worker thread); the ids of the new regions and of their peers
  (one per parent peer, in ``region.peers`` order) come from placement before
  the proposal (§4.2); then a ``BatchSplit`` with the step's epoch.
* **TransferLeader** is no log entry: the loop steps ``MsgTransferLeader``.

Placement resends a step with every heartbeat until it sees it finished, so at
most one step runs per region; a resent step that is already running is
ignored, and a step that already applied fails its epoch check harmlessly. When
a step's command applied, the leader heartbeats at once so placement moves the
operator on without waiting for the next interval.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

import lmdb
import trio

from multiraft.placement.errors import PlacementClientError
from multiraft.store.admin_propose import propose_admin
from multiraft.store.inbox import AdminItem
from multiraft.store.proposals import Answer, Waiter
from multiraft.store.ready_loop import ReadyLoop
from multiraft.wire.command_codec import (
    BatchSplit,
    ChangePeer,
    ChangePeerV2,
    CmdHeader,
    RaftCmd,
    SplitRequest,
)
from multiraft.wire.messages import (
    AdminRequest,
    AdminResponse,
    EpochNotMatch,
    Internal,
    RegionNotFound,
    RequestError,
    Timeout,
    WriteOk,
)
from multiraft.wire.messages import TransferLeader as TransferLeaderCmd
from regions.conf_change import PeerChange
from regions.region import PeerRole, Region, RegionEpoch
from regions.scheduling import JointLeave, SplitRegion, Step
from regions.scheduling import TransferLeader as TransferLeaderStep

__all__ = ["IdSource", "SplitOutcome", "StepExecutor"]

log = logging.getLogger(__name__)


class IdSource(Protocol):
    """Where split ids come from (``PlacementClient.alloc_ids``)."""

    async def alloc_ids(self, count: int = 1, /) -> object: ...


class SplitOutcome:
    """A split that applied: the regions now covering the parent's old range, left to right."""

    __slots__ = ("regions",)

    def __init__(self, regions: list[Region]) -> None:
        self.regions = regions

    def __repr__(self) -> str:
        return f"SplitOutcome({[(r.id, r.start_key) for r in self.regions]})"


class StepExecutor:
    """Runs steps and admin actions for one store's leaders (see the module docstring)."""

    def __init__(self, loop: ReadyLoop, ids: IdSource | None, *, timeout: float = 10.0) -> None:
        self._loop = loop
        self._ids = ids
        self._timeout = timeout
        self._running: dict[int, Step] = {}
        self._nursery: trio.Nursery | None = None
        self.steps_run = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the tasks of submitted steps until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    # -- steps from placement ---------------------------------------------------------

    def submit(self, region_id: int, step: Step) -> bool:
        """Start ``step`` for ``region_id`` unless a step already runs for it; True if started."""
        if self._nursery is None or region_id in self._running:
            return False
        self._running[region_id] = step
        self._nursery.start_soon(self._run_step, region_id, step)
        return True

    async def _run_step(self, region_id: int, step: Step) -> None:
        try:
            try:
                answer = await self.execute(region_id, step)
            except Exception:
                # A step is advisory and placement resends it: a failure to run one must
                # not take the store's other tasks down with it.
                log.exception("region %d: step %s raised", region_id, step.describe())
                return
            self.steps_run += 1
            if isinstance(answer, RequestError):
                log.info("region %d: step %s failed: %s", region_id, step.describe(), answer)
            else:
                self._heartbeat_soon(region_id)
        finally:
            self._running.pop(region_id, None)

    async def execute(self, region_id: int, step: Step) -> Answer | SplitOutcome:
        """Do what ``step`` asks on this store's replica of ``region_id``."""
        if isinstance(step, SplitRegion):
            return await self.split(region_id, step.epoch, list(step.keys))
        if isinstance(step, TransferLeaderStep):
            return await self.transfer_leader(region_id, step.to_store)
        if isinstance(step, JointLeave):
            handover = self._demoting_leader_handover(region_id)
            if handover is not None:
                # We may not leave joint while demoting ourselves (admin_propose refuses,
                # as TiKV does): hand over to a voter that stays one, which then gets the
                # same step from placement and leaves (PD's ChangePeerV2Leave does this).
                return await self.transfer_leader(region_id, handover)
        changes = step.conf_changes()
        if changes is None:
            return Internal(f"the store cannot run step {step.describe()}")
        return await self.change_peers(region_id, step.epoch, changes)

    def _demoting_leader_handover(self, region_id: int) -> int | None:
        """The store to hand leadership to if this leader is a DemotingVoter, else None."""
        r = self._loop.router.get(region_id)
        if r is None or r.region.peer_by_id(r.peer.id) is None:
            return None
        if r.region.peer_by_id(r.peer.id).role != PeerRole.DemotingVoter:  # type: ignore[union-attr]
            return None
        for role in (PeerRole.Voter, PeerRole.IncomingVoter):
            for p in r.region.peers:
                if p.role == role:
                    return p.store_id
        return None

    def _heartbeat_soon(self, region_id: int) -> None:
        loop = self._loop
        loop.heartbeat_wanted.add(region_id)
        loop.heartbeat_event.set()

    # -- actions ----------------------------------------------------------------------

    async def change_peers(
        self, region_id: int, epoch: RegionEpoch, changes: Sequence[PeerChange]
    ) -> Answer:
        """Propose one membership change list (one change: simple; several: enter joint;
        none: leave joint) made for ``epoch``."""
        admin = ChangePeerV2([ChangePeer(c.change_type, c.peer) for c in changes])
        cmd = RaftCmd(CmdHeader(region_id, epoch), admin=admin)
        return await propose_admin(self._loop.inbox, cmd, timeout=self._timeout)

    async def transfer_leader(self, region_id: int, to_store: int) -> Answer:
        """Ask the leader to hand leadership to its peer on ``to_store``."""
        r = self._loop.router.get(region_id)
        if r is None or not r.initialized:
            return RegionNotFound(region_id)
        target = r.region.peer_on_store(to_store)
        if target is None:
            return Internal(f"region {region_id} has no peer on store {to_store}")
        req = AdminRequest(0, region_id, r.region.epoch, TransferLeaderCmd(target))
        waiter: Waiter[AdminResponse] = Waiter()
        self._loop.inbox.put(AdminItem(req, waiter))
        with trio.move_on_after(self._timeout):
            resp = await waiter.wait()
            return resp.error or WriteOk()
        waiter.abandon()
        return Timeout()

    async def split(
        self, region_id: int, epoch: RegionEpoch, keys: Sequence[bytes] = ()
    ) -> Answer | SplitOutcome:
        """Split the region (made for ``epoch``) at ``keys``, or at its middle key if none."""
        r = self._loop.router.get(region_id)
        if r is None or not r.initialized:
            return RegionNotFound(region_id)
        region = r.region_copy()
        if region.epoch != epoch:
            return EpochNotMatch([region])
        if not r.is_leader():
            return r.not_leader()
        split_keys = sorted(set(keys))
        if not split_keys:
            from multiraft.store.split_check import middle_key

            try:
                mid = await trio.to_thread.run_sync(middle_key, self._loop.engine, region)
            except lmdb.Error as exc:
                return Internal(f"cannot scan region {region_id} for its middle key: {exc}")
            if mid is None:
                return Internal(f"region {region_id} has too few keys to split in half")
            split_keys = [mid]
        if self._ids is None:
            return Internal("no placement service to allocate split ids")
        n, peers = len(split_keys), len(region.peers)
        try:
            got = await self._ids.alloc_ids(n * (1 + peers))
        except PlacementClientError as exc:  # placement down: the split waits, the store goes on
            return Internal(f"cannot get split ids from placement: {exc}")
        first: int = got.first  # type: ignore[attr-defined]
        ids = iter(range(first, first + n * (1 + peers)))
        requests = [
            SplitRequest(k, next(ids), [next(ids) for _ in range(peers)]) for k in split_keys
        ]
        cmd = RaftCmd(CmdHeader(region_id, epoch), admin=BatchSplit(requests))
        answer = await propose_admin(self._loop.inbox, cmd, timeout=self._timeout)
        if isinstance(answer, RequestError):
            return answer
        router = self._loop.router
        out = [
            rr.region_copy()
            for rid in [q.new_region_id for q in requests] + [region_id]
            if (rr := router.get(rid)) is not None and rr.initialized
        ]
        out.sort(key=lambda g: g.start_key)
        return SplitOutcome(out)
