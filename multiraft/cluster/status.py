"""What a local cluster is doing: its processes, and what placement and the stores say.

:func:`cluster_status` asks, concurrently and each under ``timeout``: the placement service
for its stores and regions (with their last reported leaders), and every running store for
its own StoreStatus (regions and leaders it holds now). A question that fails becomes a
one-line reason in the result rather than an exception, so a half-running cluster can
still be described.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from multiraft.client import Client, ClientError
from multiraft.cluster.spec import ClusterSpec, ProcessSpec
from multiraft.transport import RpcConnection, TransportError
from multiraft.wire import AdminRequest, StoreStatus, StoreStatusResult
from multiraft.wire.placement_messages import RegionRoute, StoreInfo
from regions.region import RegionEpoch

__all__ = ["ClusterStatus", "ProcessState", "cluster_status", "store_status"]


@dataclass(frozen=True, slots=True)
class ProcessState:
    spec: ProcessSpec
    running: bool
    #: For a running store: what it says of itself, or why it could not be asked.
    live: StoreStatusResult | str | None = None


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    spec: ClusterSpec
    processes: list[ProcessState]
    #: From the placement service (None when it could not be asked: see ``error``).
    stores: list[StoreInfo] | None = None
    regions: list[RegionRoute] | None = None
    error: str | None = None

    @property
    def state(self) -> str:
        """``running`` (every process), ``stopped`` (none) or ``degraded``."""
        up = sum(p.running for p in self.processes)
        if up == len(self.processes):
            return "running"
        return "stopped" if up == 0 else "degraded"


def cluster_status(spec: ClusterSpec, running: dict[str, bool], *, timeout: float) -> ClusterStatus:
    """The status of ``spec``'s cluster, given which of its processes run (by name)."""
    if not running[spec.placement.name]:
        return ClusterStatus(
            spec, [ProcessState(p, running[p.name]) for p in spec.processes],
            error="the placement service is not running",
        )  # fmt: skip
    return trio.run(_status, spec, running, timeout)


async def _status(
    spec: ClusterSpec,
    running: dict[str, bool],
    timeout: float,  # noqa: ASYNC109
) -> ClusterStatus:
    live: dict[str, StoreStatusResult | str] = {}
    stores: list[StoreInfo] | None = None
    regions: list[RegionRoute] | None = None
    error: str | None = None

    async def ask_store(p: ProcessSpec) -> None:
        live[p.name] = await store_status(p.address, spec.cluster_id or 0, timeout)

    async with trio.open_nursery() as nursery:
        for p in spec.stores:
            if running[p.name]:
                nursery.start_soon(ask_store, p)
        try:
            async with Client(spec.placement.address, timeout=timeout) as client:
                stores = await client.list_stores()
                regions = await client.list_regions()
        except ClientError as e:
            error = f"cannot ask the placement service: {e}"
    states = [ProcessState(p, running[p.name], live.get(p.name)) for p in spec.processes]
    return ClusterStatus(spec, states, stores, regions, error)


async def store_status(address: str, cluster_id: int, timeout: float) -> StoreStatusResult | str:  # noqa: ASYNC109
    """A store's own StoreStatus, or why it could not be had (one line)."""
    try:
        with trio.fail_after(timeout):
            rpc = await RpcConnection.connect(address, cluster_id=cluster_id, timeout=timeout)
            async with rpc:
                resp = await rpc.admin(
                    AdminRequest(0, 0, RegionEpoch(), StoreStatus()), timeout=timeout
                )
    except trio.TooSlowError:
        return f"no answer within {timeout:g} s"
    except TransportError as e:
        return str(e)
    if isinstance(resp.result, StoreStatusResult):
        return resp.result
    return f"unexpected answer: {resp.result!r}"
