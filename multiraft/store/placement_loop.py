"""Talking to placement: store heartbeats (and the bootstrap regions they bring back),
and region heartbeats from the leaders.

Theory of operation
-------------------
Two tasks, owned by :meth:`PlacementLoop.run`:

* **Store heartbeats**, every ``store_heartbeat_interval`` (every
  ``BOOTSTRAP_POLL`` seconds while the store hosts no region yet, so a new
  cluster forms quickly). The reply may list regions to bootstrap (the first
  region of the cluster, multiraft-design §6 / the issue 4 contract); each is
  posted to the ready loop, which creates it idempotently (a region it already
  knows is ignored). It also lists the regions this store leads that have a
  running operator: they heartbeat at once to fetch the operator's step (PD
  pushes steps on its heartbeat stream; our heartbeats are request/response).
* **Region heartbeats**, from each region this store leads: at once when a
  replica becomes leader (the ready loop sets ``heartbeat_wanted`` and wakes
  us), and every ``region_heartbeat_interval`` after that. A heartbeat carries
  the region descriptor, the leader peer and term, and the pending peers.
  ``StaleEpoch`` answers are expected while placement knows a newer epoch, and
  are ignored. A reply may carry the current step of the region's operator: it
  is handed to the :class:`~multiraft.store.step_exec.StepExecutor`.

Placement being down never stops the store: each failure is logged (once per
outage, not once per attempt) and retried at the next interval. This task only
*reads* replica state, between the ready loop's rounds.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Protocol

import trio

from multiraft.placement.errors import PlacementClientError, PlacementRequestError
from multiraft.store.inbox import BootstrapItem
from multiraft.store.ready_loop import ReadyLoop
from multiraft.store.replica import Replica
from multiraft.store.step_exec import StepExecutor
from multiraft.wire.placement_messages import (
    DownPeer,
    PlacementErrorCode,
    RegionHeartbeatReply,
    StoreHeartbeatReply,
    StoreStats,
)
from regions.region import Peer, Region

__all__ = ["PlacementApi", "PlacementLoop", "StoreRetired"]

log = logging.getLogger(__name__)

#: Seconds between store heartbeats while the store has no region yet.
BOOTSTRAP_POLL: Final = 0.5
#: Seconds between region heartbeats while the region has peers catching up (a move waits
#: for its learner's snapshot before placement sends the next step).
PENDING_POLL: Final = 0.5


class StoreRetired(Exception):
    """Placement says this store was drained and tombstoned: the store must stop."""


class PlacementApi(Protocol):
    """The calls this loop makes (``multiraft.placement.client.PlacementClient``)."""

    async def store_heartbeat(self, stats: StoreStats) -> StoreHeartbeatReply: ...

    async def alloc_ids(self, count: int = 1, /) -> object: ...

    async def region_heartbeat(
        self,
        region: Region,
        leader: Peer,
        term: int,
        *,
        down_peers: Sequence[DownPeer] = (),
        pending_peers: Sequence[Peer] = (),
        approximate_size: int = 0,
        approximate_keys: int = 0,
    ) -> RegionHeartbeatReply: ...


class PlacementLoop:
    """Heartbeats of one store (see the module docstring)."""

    def __init__(
        self,
        loop: ReadyLoop,
        placement: PlacementApi,
        *,
        steps: StepExecutor | None = None,
        data_dir: Path | None = None,
        store_heartbeat_interval: float = 10.0,
        region_heartbeat_interval: float = 5.0,
    ) -> None:
        self._loop = loop
        self._placement = placement
        self._steps = steps
        self._data_dir = data_dir
        self._store_interval = store_heartbeat_interval
        self._region_interval = region_heartbeat_interval
        self._started = trio.current_time()
        self._failing = False
        self.store_heartbeats = 0
        self.region_heartbeats = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._store_heartbeats)
            nursery.start_soon(self._region_heartbeats)
            task_status.started()

    # -- store heartbeats -------------------------------------------------------------

    def stats(self) -> StoreStats:
        loop = self._loop
        router = loop.router
        capacity = available = 0
        if self._data_dir is not None:
            try:
                du = shutil.disk_usage(self._data_dir)
                capacity, available = du.total, du.free
            except OSError:
                pass
        snapshots = loop.snapshots.in_flight if loop.snapshots is not None else 0
        return StoreStats(
            store_id=loop.store_id,
            region_count=len(router),
            leader_count=sum(1 for r in router if r.is_leader()),
            used_bytes=loop.engine.size(),
            capacity_bytes=capacity,
            available_bytes=available,
            sending_snap_count=snapshots,
            is_busy=loop.inbox.busy(),
            uptime_seconds=int(trio.current_time() - self._started),
        )

    async def _store_heartbeats(self) -> None:
        while True:
            await self.store_heartbeat_once()
            bootstrapping = len(self._loop.router) == 0
            await trio.sleep(BOOTSTRAP_POLL if bootstrapping else self._store_interval)

    async def store_heartbeat_once(self) -> None:
        try:
            reply = await self._placement.store_heartbeat(self.stats())
        except PlacementRequestError as exc:
            if exc.code == PlacementErrorCode.StoreTombstoned:
                raise StoreRetired(
                    f"store {self._loop.store_id} was drained and removed from the cluster "
                    "(tombstone): it stops, and cannot rejoin under this id"
                ) from None
            self._failed(exc)
            return
        except PlacementClientError as exc:
            self._failed(exc)
            return
        self._ok()
        self.store_heartbeats += 1
        for region in reply.bootstrap_regions:
            self._loop.inbox.put(BootstrapItem(region))
        if reply.operator_regions:
            # A new operator waits for its region's heartbeat to hand out its first step.
            self._loop.heartbeat_wanted.update(reply.operator_regions)
            self._loop.heartbeat_event.set()

    # -- region heartbeats ------------------------------------------------------------

    def _due(self, now: float) -> list[Replica]:
        loop = self._loop
        wanted, loop.heartbeat_wanted = loop.heartbeat_wanted, set()
        out = []
        for r in loop.router:
            if not r.is_leader() or not r.initialized:
                continue
            age = now - r.last_heartbeat
            if r.region_id in wanted or age >= self._region_interval:
                out.append(r)
            elif r.reported_pending and age >= PENDING_POLL:
                out.append(r)  # placement waits for its learner's snapshot: report progress
        return out

    async def _region_heartbeats(self) -> None:
        loop = self._loop
        while True:
            now = trio.current_time()
            for r in self._due(now):
                await self.region_heartbeat(r)
            # Sleep until the earliest leader is due (not a whole interval after the last
            # wake-up, which could make a region wait almost two intervals), or a wake-up.
            with trio.move_on_at(self._next_due(trio.current_time())):
                await loop.heartbeat_event.wait()
            loop.heartbeat_event = trio.Event()

    def _next_due(self, now: float) -> float:
        """When the next leader's periodic heartbeat is due (at most one interval away)."""
        due = now + self._region_interval
        for r in self._loop.router:
            if r.is_leader() and r.initialized:
                period = PENDING_POLL if r.reported_pending else self._region_interval
                due = min(due, r.last_heartbeat + period)
        return max(due, now + 0.01)

    async def region_heartbeat(self, r: Replica) -> None:
        """Report ``r`` (if it still leads) to placement."""
        if not r.is_leader() or r.destroyed:
            return
        leader = r.leader_peer()
        if leader is None:
            return
        r.last_heartbeat = trio.current_time()
        pending = r.pending_peers()
        r.reported_pending = bool(pending)
        try:
            reply = await self._placement.region_heartbeat(
                r.region_copy(), leader, r.raw_node.raft.term, pending_peers=pending,
                approximate_size=r.approx_size, approximate_keys=r.approx_keys,
            )
        except PlacementRequestError as exc:
            log.debug("region %d: heartbeat refused: %s", r.region_id, exc)
            return
        except PlacementClientError as exc:
            self._failed(exc)
            return
        self._ok()
        self.region_heartbeats += 1
        step = reply.operator_step
        if step is not None and self._steps is not None and not r.destroyed:
            self._steps.submit(r.region_id, step)

    def _failed(self, exc: Exception) -> None:
        if not self._failing:
            log.warning("store %d: placement unreachable: %s", self._loop.store_id, exc)
        self._failing = True

    def _ok(self) -> None:
        if self._failing:
            log.info("store %d: placement reachable again", self._loop.store_id)
        self._failing = False
