"""A placement service and fake stores in a background thread, for the operation CLI tests.

:func:`ops_cluster` starts, in a thread of its own running trio, a real placement
service on 127.0.0.1 (an :class:`ObservedCluster` behind a
:class:`~multiraft.placement.service.PlacementServer`, with a scheduling pass every
few milliseconds) and :class:`~tests.placement.fake_stores.FakeStores` that heartbeat
every few milliseconds and execute the steps they are given. The test then runs CLI
commands with typer's ``CliRunner`` in the main thread against that address.

**Determinism.** A CLI command polls placement while the stores work. So that what it
prints does not depend on thread timing, the fake stores wait for the CLI to have seen
each state before leaving it:

* a step of an operator a CLI command started (an ``AddOperator``) is executed only once
  a ``GetOperator`` answer showed it as the current step, so every step appears in the
  progress output exactly once, in order;
* a store being drained loses replicas (``RemovePeer`` steps on it) one at a time, one
  per replica count a ``GetStoreStatus`` answer showed, so every count from the start
  down to 1 appears exactly once.

Hooks for failures: ``frozen`` regions never execute steps (their operator runs until
it times out); ``cancel_regions`` have their operator cancelled when its first step
comes; ``stale_regions`` are split under their operator instead (it goes stale).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import trio

from multiraft.placement.client import PlacementClient
from multiraft.placement.cluster import Cluster
from multiraft.placement.scheduler import SchedulerConfig
from multiraft.placement.service import PlacementServer
from multiraft.wire.placement_messages import (
    AddOperator,
    GetOperator,
    GetStoreStatus,
    OperatorInfo,
    PlacementBody,
    PlacementResult,
    SetStoreState,
    StoreState,
    StoreStatusList,
)
from regions.scheduling import OperatorTimeouts, RemovePeer, Step
from tests.placement.fake_stores import ClientApi, FakeStores

T = TypeVar("T")

#: Seconds between the fake stores' heartbeat rounds, and between scheduling passes.
ROUND = 0.01


class ObservedCluster(Cluster):
    """A :class:`Cluster` that records what its clients were shown (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: (region, step) of every operator started by an AddOperator request.
        self.followed: set[tuple[int, Step]] = set()
        #: (region, step) pairs a GetOperator answer showed as current.
        self.seen_steps: set[tuple[int, Step]] = set()
        #: Draining store -> RemovePeer steps it may still execute; and the last count shown.
        self.tokens: dict[int, int] = {}
        self.shown_count: dict[int, int] = {}

    async def handle(self, body: PlacementBody) -> PlacementResult:
        result = await super().handle(body)
        match body:
            case AddOperator() if isinstance(result, OperatorInfo):
                self.followed.update((result.region_id, step) for step in result.steps)
            case GetOperator() if isinstance(result, OperatorInfo) and result.status == "running":
                self.seen_steps.add((result.region_id, result.steps[result.step_index]))
            case SetStoreState(store_id, StoreState.Offline):
                self.tokens.setdefault(store_id, 0)
            case GetStoreStatus() if isinstance(result, StoreStatusList):
                for st in result.statuses:
                    sid = st.info.id
                    if sid in self.tokens and self.shown_count.get(sid) != st.region_count:
                        self.shown_count[sid] = st.region_count
                        self.tokens[sid] = 1
        return result


@dataclass
class OpsCluster:
    """What a test gets: the service's address, and a way into the service's thread."""

    address: str
    stores: list[int]
    cluster: ObservedCluster
    fake: FakeStores
    _token: trio.lowlevel.TrioToken
    cancel_regions: set[int] = field(default_factory=set)
    stale_regions: set[int] = field(default_factory=set)

    def run(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` in the service's thread (everything there is touched only there)."""
        return trio.from_thread.run(fn, trio_token=self._token)

    def call(self, fn: Callable[[], T]) -> T:
        return trio.from_thread.run_sync(fn, trio_token=self._token)

    async def gate(self, rid: int, step: Step) -> bool:
        """The fake stores' ``on_step``: True holds the step back (see the module)."""
        c = self.cluster
        if isinstance(step, RemovePeer) and step.peer.store_id in c.tokens:
            sid = step.peer.store_id
            if c.tokens[sid] <= 0:
                return True
            c.tokens[sid] -= 1
            return False
        if (rid, step) in c.followed and (rid, step) not in c.seen_steps:
            return True
        if rid in self.cancel_regions:
            c.cancel_operator(rid)
            return True
        if rid in self.stale_regions:
            region = self.fake.regions[rid]
            await self.fake.split(rid, [region.start_key + b"\x01"])
            return True
        return False


@contextmanager
def ops_cluster(
    data_dir: Path, stores: int = 4, **scheduler: Any
) -> Iterator[OpsCluster]:
    """A service and ``stores`` fake stores in a background thread (see the module)."""
    started: queue.Queue[OpsCluster | BaseException] = queue.Queue()
    stop = threading.Event()

    async def main() -> None:
        config = SchedulerConfig(**{"enabled": False, **scheduler})
        cluster = await ObservedCluster.open(data_dir, sync=False, scheduler=config)
        try:
            async with trio.open_nursery() as nursery:
                listeners = await nursery.start(PlacementServer(cluster).serve, "127.0.0.1", 0)
                address = f"127.0.0.1:{listeners[0].socket.getsockname()[1]}"
                client = PlacementClient(address)
                fake = FakeStores(ClientApi(client))
                ids = await fake.bootstrap(stores)
                oc = OpsCluster(address, ids, cluster, fake, trio.lowlevel.current_trio_token())
                fake.on_step = oc.gate
                nursery.start_soon(fake.run, ROUND)
                nursery.start_soon(_schedule, cluster)
                started.put(oc)
                await trio.to_thread.run_sync(stop.wait)
                nursery.cancel_scope.cancel()
                await client.aclose()
        finally:
            cluster.close()

    def thread_main() -> None:
        try:
            trio.run(main)
        except BaseException as e:  # reported to the test
            started.put(e)

    thread = threading.Thread(target=thread_main, daemon=True)
    thread.start()
    got = started.get(timeout=30)
    if isinstance(got, BaseException):
        raise got
    try:
        yield got
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), "the placement thread did not stop"


async def _schedule(cluster: Cluster) -> None:
    while True:
        await trio.sleep(ROUND)
        await cluster.schedule_tick()


def fast_timeouts(step: float) -> OperatorTimeouts:
    return OperatorTimeouts(fast_step=step, slow_step=step)
