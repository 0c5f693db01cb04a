"""The placement service's scheduling loop: running operators, their progress and history.

Theory of operation
-------------------
:class:`OperatorController` is synchronous and clock-free (``now`` is passed in),
so the :class:`~multiraft.placement.cluster.Cluster` drives it and tests drive it
with a simulated cluster.

* :meth:`OperatorController.tick` (every ``schedule_interval`` seconds): times
  out running operators, then asks the replica checker, balance-leader and
  balance-region (:mod:`regions.scheduling`) for new operators against a
  :class:`~regions.scheduling.cluster.ClusterSnapshot` built from heartbeats.
  With scheduling disabled it still runs the replica checker on the regions that
  have a replica on an ``offline`` store: a drain is an explicit request, like a
  manual operator.
* :meth:`OperatorController.on_region_heartbeat`: advances the region's operator
  with ``Operator.check(region, leader, now)`` and returns the step to send back
  in the heartbeat reply (None: nothing to do).
* :meth:`OperatorController.add` / :meth:`cancel`: manual operations.

Invariants: at most one running operator per region; at most ``store_limit``
running operators that put work on any one store (manual operators included);
every operator that ends is moved to a bounded history (newest last) and
counted in the metrics by kind and result. A stale operator (the region changed
under it) simply ends: its step carries the epoch it was made for, so a store
that still receives it refuses it with EpochNotMatch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

from multiraft.metrics.placement import PlacementMetrics
from regions.region import Peer, Region
from regions.scheduling import (
    BalanceConfig,
    ClusterSnapshot,
    Operator,
    OperatorError,
    OperatorStatus,
    OperatorTimeouts,
    ReplicaConfig,
    SchedulePass,
    Step,
    StoreState,
    balance_leaders,
    balance_regions,
    check_region,
    check_replicas,
)

__all__ = ["FinishedOperator", "OperatorController", "SchedulerConfig"]

#: Metric result label for each final status (the metrics spell "cancelled").
_RESULT_LABEL = {
    OperatorStatus.SUCCESS: "success",
    OperatorStatus.TIMEOUT: "timeout",
    OperatorStatus.CANCELED: "cancelled",
    OperatorStatus.STALE: "stale",
}


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Knobs of the scheduling loop (from :class:`multiraft.settings.PlacementConfig`)."""

    #: Whether :meth:`OperatorController.tick` creates operators (manual ones always work).
    enabled: bool = True
    max_replicas: int = 3
    #: Most running operators that put work on one store.
    store_limit: int = 2
    #: Most new operators per scheduler per tick.
    max_operators_per_tick: int = 4
    #: A store (or peer) silent this long has its replicas replaced.
    max_store_down_seconds: float = 30 * 60.0
    history_size: int = 256
    timeouts: OperatorTimeouts = field(default_factory=OperatorTimeouts)
    use_joint: bool = True

    def __post_init__(self) -> None:
        if self.store_limit < 1 or self.max_operators_per_tick < 0 or self.history_size < 1:
            raise ValueError(
                "store_limit and history_size must be >= 1, max_operators_per_tick >= 0"
            )


@dataclass(frozen=True, slots=True)
class FinishedOperator:
    """An operator that ended, as kept in the history."""

    operator: Operator
    status: OperatorStatus
    started_at: float
    finished_at: float

    @property
    def region_id(self) -> int:
        return self.operator.region_id

    @property
    def kind(self) -> str:
        return str(self.operator.kind)


class OperatorController:
    """Holds running operators; creates, advances, times out and records them."""

    def __init__(
        self, config: SchedulerConfig | None = None, *, metrics: PlacementMetrics | None = None
    ) -> None:
        self.config = config if config is not None else SchedulerConfig()
        self._metrics = metrics
        self._running: dict[int, Operator] = {}
        #: Called when an operator ends (the service starts its next scheduling pass early:
        #: the freed store slot should not wait for the pass interval).
        self.on_finish: Callable[[], None] | None = None
        self._history: deque[FinishedOperator] = deque(maxlen=self.config.history_size)

    # -- queries ------------------------------------------------------------------------------

    def running(self) -> list[Operator]:
        """Running operators, by region id."""
        return [self._running[k] for k in sorted(self._running)]

    def history(self) -> list[FinishedOperator]:
        """Finished operators, oldest first (bounded)."""
        return list(self._history)

    def get(self, region_id: int) -> Operator | None:
        """The region's running operator, else its most recent finished one, else None."""
        op = self._running.get(region_id)
        if op is not None:
            return op
        for f in reversed(self._history):
            if f.region_id == region_id:
                return f.operator
        return None

    def store_load(self) -> dict[int, int]:
        """Store id -> running operators putting work on it."""
        load: dict[int, int] = {}
        for op in self._running.values():
            for sid in op.store_ids():
                load[sid] = load.get(sid, 0) + 1
        return load

    # -- changes ------------------------------------------------------------------------------

    def add(self, op: Operator, now: float) -> None:
        """Start ``op`` (a manual operation, or a scheduler's).

        Raises:
            OperatorError: the region already has a running operator, or a store is at its limit.
        """
        if op.is_finished:
            raise OperatorError(f"region {op.region_id}: the operator already ended")
        if op.region_id in self._running:
            raise OperatorError(
                f"region {op.region_id} already has a running operator; cancel it first"
            )
        load = self.store_load()
        full = sorted(s for s in op.store_ids() if load.get(s, 0) >= self.config.store_limit)
        if full:
            raise OperatorError(
                f"store {full[0]} already runs {self.config.store_limit} operators (the limit)"
            )
        self._running[op.region_id] = op
        if self._metrics is not None:
            self._metrics.operators_in_progress.labels(str(op.kind)).inc()

    def cancel(self, region_id: int, now: float) -> Operator | None:
        """Cancel the region's running operator; it, or None if none was running."""
        op = self._running.get(region_id)
        if op is None:
            return None
        op.cancel(now)
        self._finish(op, now)
        return op

    def on_region_heartbeat(
        self, region: Region, leader: Peer | None, now: float, pending: Collection[int] = ()
    ) -> Step | None:
        """Advance the region's operator on a heartbeat; the step to send back, or None.

        ``pending``: ids of the peers the leader reports as catching up (see Operator.check).
        """
        op = self._running.get(region.id)
        if op is None:
            return None
        step = op.check(region, leader, now, pending)
        if op.is_finished:
            self._finish(op, now)
            return None
        return step

    def tick(
        self, snapshot: ClusterSnapshot, now: float, alloc_id: Callable[[], int]
    ) -> list[Operator]:
        """Time out operators, then (if enabled) create new ones; the operators created."""
        for op in list(self._running.values()):
            if op.check_timeout(now):
                self._finish(op, now)
        for rid in [r for r in self._running if r not in snapshot.regions]:
            self.cancel(rid, now)  # the region left the routing table (merged or replaced)
        made: list[Operator] = []
        cfg = self.config
        replica = ReplicaConfig(
            max_replicas=cfg.max_replicas,
            max_store_down_seconds=cfg.max_store_down_seconds,
            max_operators=max(cfg.max_operators_per_tick, 1) * 16,
            store_limit=cfg.store_limit,
            use_joint=cfg.use_joint,
            timeouts=cfg.timeouts,
        )
        if not cfg.enabled:
            self._start_all(self._drain(snapshot, now, alloc_id, replica), now, made)
            return made
        balance = BalanceConfig(
            max_operators=cfg.max_operators_per_tick,
            store_limit=cfg.store_limit,
            use_joint=cfg.use_joint,
            timeouts=cfg.timeouts,
        )
        self._start_all(
            check_replicas(
                snapshot, now=now, alloc_id=alloc_id, running=self.running(), config=replica
            ),
            now,
            made,
        )
        self._start_all(
            balance_leaders(snapshot, now=now, running=self.running(), config=balance), now, made
        )
        self._start_all(
            balance_regions(
                snapshot, now=now, alloc_id=alloc_id, running=self.running(), config=balance
            ),
            now,
            made,
        )
        return made

    def _drain(
        self,
        snapshot: ClusterSnapshot,
        now: float,
        alloc_id: Callable[[], int],
        config: ReplicaConfig,
    ) -> list[Operator]:
        """The replica checker's operators for regions with a replica on an offline store
        (as :func:`~regions.scheduling.check_replicas`, restricted to those regions)."""
        draining = {s.id for s in snapshot.stores.values() if s.state == StoreState.OFFLINE}
        if not draining:
            return []
        sp = SchedulePass(snapshot, self.running(), config.store_limit)
        for rv in snapshot.regions.values():
            if len(sp.made) >= config.max_operators:
                break
            if rv.id in sp.busy or not rv.store_ids() & draining:
                continue
            op = check_region(snapshot, rv, now=now, alloc_id=alloc_id, config=config, sp=sp)
            if op is not None and sp.has_room(op.store_ids()):
                sp.add(op)
        return sp.made

    def _start_all(self, ops: Iterable[Operator], now: float, made: list[Operator]) -> None:
        for op in ops:
            try:
                self.add(op, now)
            except OperatorError:
                continue
            made.append(op)

    def _finish(self, op: Operator, now: float) -> None:
        if self._running.get(op.region_id) is not op:
            return
        del self._running[op.region_id]
        if self.on_finish is not None:
            self.on_finish()
        end = op.finished_at if op.finished_at is not None else now
        self._history.append(FinishedOperator(op, op.status, op.created_at, end))
        m = self._metrics
        if m is not None:
            kind = str(op.kind)
            m.operators_in_progress.labels(kind).dec()
            m.operators.labels(kind, _RESULT_LABEL.get(op.status, "failed")).inc()
            m.operator_duration.labels(kind).observe(max(end - op.created_at, 0.0))
