"""Real clusters for tests: a placement service and stores as subprocesses on 127.0.0.1.

:class:`Cluster` starts ``python -m multiraft placement start`` and ``server start`` (with
``--enable-fault-injection``) on ports the OS picked, each process in a data directory of
the test's ``tmp_path`` with its output in a log file, and offers what a fault test needs:
kill -9 and restart one store, find the leader, inject partitions, wait for a replica to
catch up. Every wait polls a condition under a deadline; nothing sleeps a fixed time to
synchronise.

Cleanup is unconditional: the ``cluster`` fixture (``conftest.py``) calls
:meth:`Cluster.kill_all` in its teardown, which SIGKILLs every process the cluster ever
started, whatever happened in the test. When a test fails, the tail of every process log
is attached to its report (section "cluster logs").
"""

from __future__ import annotations

import atexit
import contextlib
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from multiraft.client import Client, ClientError
from multiraft.cluster import ClusterSpec, ProcessSpec, placement_argv, store_argv, supervisor
from multiraft.placement.client import PlacementClient
from multiraft.placement.errors import PlacementClientError
from multiraft.settings import format_address
from multiraft.transport import RpcConnection, TransportError
from multiraft.wire import (
    AdminRequest,
    AdminResponse,
    AdminResult,
    InjectFaults,
    KvOp,
    KvRequest,
    KvResponse,
    ReadMode,
    RegionStatus,
    RegionStatusResult,
    RequestError,
    StoreStatus,
    StoreStatusResult,
)
from multiraft.wire.placement_messages import RegionRoute
from regions.region import RegionEpoch

HOST = "127.0.0.1"
#: Seconds a whole cluster gets to start and take a write.
START_TIMEOUT = 60.0
#: Seconds to poll between checks.
POLL = 0.05


@dataclass
class Node:
    """One process of a test cluster."""

    spec: ProcessSpec
    argv: list[str]
    popen: subprocess.Popen[bytes] | None = None
    #: Killed on purpose by the test (so its exit is not a failure).
    killed: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def address(self) -> str:
        return self.spec.address

    @property
    def store_id(self) -> int:
        assert self.spec.store_id is not None, f"{self.name} has no store id yet"
        return self.spec.store_id

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


class ClusterFailed(AssertionError):
    """A process of the test cluster died or a condition was not met in time."""


class Cluster:
    """A placement service and ``stores`` stores, as subprocesses (see the module docstring)."""

    def __init__(self, root: Path, *, stores: int = 3, fault_injection: bool = True) -> None:
        self.spec = ClusterSpec(root.resolve(), HOST)
        names = ["placement"] + [f"store{i}" for i in range(1, stores + 1)]
        ports = supervisor.free_ports(HOST, 2 * len(names))
        for i, name in enumerate(names):
            self.spec.processes.append(
                ProcessSpec(
                    name, "placement" if i == 0 else "store",
                    format_address(HOST, ports[2 * i]), format_address(HOST, ports[2 * i + 1]),
                    name, f"logs/{name}.log",
                )
            )  # fmt: skip
        (self.spec.root / "placement.toml").parent.mkdir(parents=True, exist_ok=True)
        (self.spec.root / "placement.toml").write_text("[placement]\nbootstrap_replicas = 3\n")
        self.placement = Node(self.spec.placement, placement_argv(self.spec, self.spec.placement))
        self.stores = [
            Node(p, store_argv(self.spec, p, fault_injection=fault_injection))
            for p in self.spec.stores
        ]
        self.cluster_id = 0
        #: The pids of every process ever started, for the final cleanup.
        self._spawned: list[subprocess.Popen[bytes]] = []

    @property
    def placement_address(self) -> str:
        return self.placement.address

    @property
    def nodes(self) -> list[Node]:
        return [self.placement, *self.stores]

    def store(self, store_id: int) -> Node:
        for n in self.stores:
            if n.spec.store_id == store_id:
                return n
        raise KeyError(store_id)

    # -- processes -------------------------------------------------------------------------

    def _spawn(self, node: Node) -> None:
        assert not node.alive, f"{node.name} is already running"
        self.spec.data_path(node.spec).mkdir(parents=True, exist_ok=True)
        node.popen = supervisor.spawn(node.argv, self.spec.log_path(node.spec), cwd=self.spec.root)
        node.killed = False
        self._spawned.append(node.popen)
        _ALL_SPAWNED.append(node.popen)

    def check_alive(self, nodes: list[Node] | None = None) -> None:
        """Raise ClusterFailed if a process that should run has exited."""
        for n in nodes if nodes is not None else self.nodes:
            if n.popen is not None and not n.killed and n.popen.poll() is not None:
                raise ClusterFailed(f"{n.name} exited with status {n.popen.returncode}")

    async def start(self, timeout: float = START_TIMEOUT) -> None:  # noqa: ASYNC109
        """Start every process; return once a write went through the client."""
        with fail_after(timeout, "the cluster to start"):
            self._spawn(self.placement)
            while True:
                self.check_alive()
                try:
                    async with PlacementClient(self.placement_address, timeout=1.0) as pd:
                        self.cluster_id = (await pd.cluster_info()).cluster_id
                    break
                except PlacementClientError:
                    await trio.sleep(POLL)
            for n in self.stores:
                self._spawn(n)
            await self.wait_writable()
            async with self.client() as client:
                stores = await client.list_stores()
            ids = {s.address: s.id for s in stores}
            for n in self.stores:
                n.spec.store_id = ids[n.address]

    async def wait_writable(self) -> None:
        """Poll until a write succeeds (under the caller's deadline)."""
        async with self.client(timeout=3.0) as client:
            while True:
                self.check_alive([n for n in self.nodes if n.popen is not None])
                try:
                    await client.cas(b"\x00ready", None, None)
                    return
                except ClientError:
                    await trio.sleep(POLL)

    def kill(self, node: Node) -> None:
        """kill -9 ``node`` and reap it."""
        assert node.popen is not None and node.alive, f"{node.name} is not running"
        node.killed = True
        node.popen.send_signal(signal.SIGKILL)
        node.popen.wait(timeout=10)

    async def restart(self, node: Node, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Start ``node`` again (same ports and data); return once it answers StoreStatus."""
        self._spawn(node)
        with fail_after(timeout, f"{node.name} to serve again"):
            while True:
                self.check_alive([node])
                try:
                    await self.store_status(node)
                    return
                except TransportError:
                    await trio.sleep(POLL)

    def kill_all(self) -> None:
        """SIGKILL every process this cluster ever started (teardown; idempotent)."""
        for p in self._spawned:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
        for p in self._spawned:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)

    def log_tails(self, lines: int = 40) -> str:
        out = []
        for n in self.nodes:
            path = self.spec.log_path(n.spec)
            out.append(f"--- {path}")
            out.extend(supervisor.tail(path, lines))
        return "\n".join(out)

    # -- talking to it ---------------------------------------------------------------------

    def client(self, **options: Any) -> Client:
        options.setdefault("timeout", 5.0)
        return Client(self.placement_address, **options)

    async def route(self) -> RegionRoute:
        """The route of the region holding b"" (the only region until splits exist)."""
        async with self.client() as client:
            return await client.locate(b"")

    async def admin(self, node: Node, command: Any, region_id: int = 0) -> AdminResult:
        """Send one admin command to ``node`` on a fresh connection."""
        resp = await self._rpc(node, lambda rpc: rpc.admin(
            AdminRequest(0, region_id, RegionEpoch(), command), timeout=5.0))  # fmt: skip
        assert isinstance(resp, AdminResponse)
        if isinstance(resp.result, RequestError):
            raise ClusterFailed(f"{node.name} refused {command!r}: {resp.result!r}")
        return resp.result

    async def kv(
        self, node: Node, region: RegionRoute, op: KvOp, *,
        read_mode: ReadMode = ReadMode.Linearizable, timeout: float = 5.0,  # noqa: ASYNC109
    ) -> KvResponse:  # fmt: skip
        """Send one KV request straight to ``node`` (no client retries)."""
        req = KvRequest(0, region.region.id, region.region.epoch, op, read_mode)
        resp = await self._rpc(node, lambda rpc: rpc.kv(req, timeout=timeout))
        assert isinstance(resp, KvResponse)
        return resp

    async def _rpc(self, node: Node, call: Any) -> KvResponse | AdminResponse:
        rpc = await RpcConnection.connect(node.address, cluster_id=self.cluster_id, timeout=2.0)
        async with rpc:
            result: KvResponse | AdminResponse = await call(rpc)
            return result

    async def store_status(self, node: Node) -> StoreStatusResult:
        result = await self.admin(node, StoreStatus())
        assert isinstance(result, StoreStatusResult)
        return result

    async def region_status(self, node: Node, region_id: int) -> RegionStatusResult | None:
        """What ``node``'s replica of the region says (None: unreachable or no replica)."""
        try:
            result = await self.admin(node, RegionStatus(), region_id)
        except (TransportError, ClusterFailed):
            return None
        assert isinstance(result, RegionStatusResult)
        return result

    async def leader(
        self, region_id: int, *, among: list[Node] | None = None, newer_than: int = 0,
        timeout: float = 20.0,  # noqa: ASYNC109
    ) -> tuple[Node, int]:  # fmt: skip
        """The store whose replica leads the region at a term above ``newer_than``, as that
        store says, polled until one does; returns it and its term."""
        nodes = among if among is not None else [n for n in self.stores if n.alive]
        with fail_after(timeout, f"a leader of region {region_id} among "
                        f"{[n.name for n in nodes]} (term > {newer_than})"):  # fmt: skip
            while True:
                best: tuple[Node, int] | None = None
                for n in nodes:
                    st = await self.region_status(n, region_id)
                    if (st is not None and st.leader is not None
                            and st.leader.store_id == n.store_id and st.term > newer_than
                            and (best is None or st.term > best[1])):  # fmt: skip
                        best = (n, st.term)
                if best is not None:
                    return best
                await trio.sleep(POLL)

    async def wait_caught_up(
        self,
        node: Node,
        region_id: int,
        *,
        timeout: float = 20.0,  # noqa: ASYNC109
    ) -> None:
        """Poll until ``node`` has applied everything the leader had committed when called."""
        leader, _ = await self.leader(region_id)
        st = await self.region_status(leader, region_id)
        assert st is not None
        target = st.commit_index
        with fail_after(timeout, f"{node.name} to apply up to index {target}"):
            while True:
                mine = await self.region_status(node, region_id)
                if mine is not None and mine.applied_index >= target:
                    return
                await trio.sleep(POLL)

    async def wait_converged(self, region_id: int, *, timeout: float = 20.0) -> int:  # noqa: ASYNC109
        """Poll until the leader has committed its whole log and every live store applied it;
        returns that index (call when no client writes are in flight)."""
        with fail_after(timeout, f"every replica of region {region_id} to apply the whole log"):
            while True:
                leader, _ = await self.leader(region_id)
                lst = await self.region_status(leader, region_id)
                if lst is not None and lst.commit_index == lst.last_index:
                    sts = [await self.region_status(n, region_id) for n in self.stores if n.alive]
                    if all(s is not None and s.applied_index == lst.commit_index for s in sts):
                        return lst.commit_index
                await trio.sleep(POLL)

    async def partition(self, isolated: Node) -> None:
        """Cut ``isolated`` off from every other store (both directions)."""
        others = [n for n in self.stores if n is not isolated]
        await self.admin(isolated, InjectFaults([n.store_id for n in others]))
        for n in others:
            await self.admin(n, InjectFaults([isolated.store_id]))

    async def heal(self) -> None:
        for n in self.stores:
            if n.alive:
                await self.admin(n, InjectFaults([]))


#: Every process any Cluster started in this test run: killed at exit as a last resort
#: (e.g. after a KeyboardInterrupt that skipped a teardown).
_ALL_SPAWNED: list[subprocess.Popen[bytes]] = []


@atexit.register
def _kill_leftovers() -> None:
    for p in _ALL_SPAWNED:
        if p.poll() is None:
            with contextlib.suppress(OSError):
                p.kill()


@contextlib.contextmanager
def fail_after(seconds: float, what: str) -> Iterator[None]:
    """``trio.fail_after`` whose timeout says what was awaited."""
    try:
        with trio.fail_after(seconds):
            yield
    except trio.TooSlowError:
        raise ClusterFailed(f"timed out after {seconds:g} s waiting for {what}") from None
