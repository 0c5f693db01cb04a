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
import itertools
import signal
import subprocess
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

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
    Scan,
    ScanResult,
    StoreStatus,
    StoreStatusResult,
)
from multiraft.wire.placement_messages import ManualOperator, OperatorInfo, RegionRoute
from regions.region import RegionEpoch
from regions.scheduling import OperatorStatus

_T = TypeVar("_T")

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

    def __init__(
        self, root: Path, *, stores: int = 3, fault_injection: bool = True,
        placement_settings: Mapping[str, object] | None = None,
        store_settings: Mapping[str, object] | None = None,
    ) -> None:  # fmt: skip
        """``placement_settings`` and ``store_settings`` go to the ``[placement]`` and
        ``[store]`` tables of the config files the processes read (``--config``)."""
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
        settings = {"bootstrap_replicas": 3, **(placement_settings or {})}
        (self.spec.root / "placement.toml").write_text(_toml("placement", settings))
        self.placement = Node(self.spec.placement, placement_argv(self.spec, self.spec.placement))
        self.stores = [
            Node(p, store_argv(self.spec, p, fault_injection=fault_injection))
            for p in self.spec.stores
        ]
        if store_settings:
            path = self.spec.root / "store.toml"
            path.write_text(_toml("store", store_settings))
            for n in self.stores:
                n.argv = [*_without_flags(n.argv, store_settings), "--config", str(path)]
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
                while True:  # beyond the bootstrap replicas, stores may register later
                    ids = {s.address: s.id for s in await client.list_stores()}
                    if all(n.address in ids for n in self.stores):
                        break
                    self.check_alive()
                    await trio.sleep(POLL)
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

    async def wait_exit(self, node: Node, timeout: float = 30.0) -> int:  # noqa: ASYNC109
        """Wait for ``node`` to exit by itself (a retired store stops); its exit status.
        From then on its exit is not a failure."""
        assert node.popen is not None, f"{node.name} was never started"
        popen = node.popen

        async def exited() -> int | None:
            return popen.poll()

        status = await wait_until(exited, f"{node.name} to exit", timeout=timeout)
        node.killed = True
        return status

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

    def pd(self) -> PlacementClient:
        """A client of the placement service (``async with cluster.pd() as pd``)."""
        return PlacementClient(self.placement_address, timeout=5.0)

    async def admin(
        self, node: Node, command: Any, region_id: int = 0, epoch: RegionEpoch | None = None
    ) -> AdminResult:
        """Send one admin command (made for ``epoch``) to ``node`` on a fresh connection;
        raise ClusterFailed if the store refuses it."""
        result = await self.admin_answer(node, command, region_id, epoch)
        if isinstance(result, RequestError):
            raise ClusterFailed(f"{node.name} refused {command!r}: {result!r}")
        return result

    async def admin_answer(
        self, node: Node, command: Any, region_id: int = 0, epoch: RegionEpoch | None = None
    ) -> AdminResult | RequestError:
        """:meth:`admin`, returning the store's refusal instead of raising it."""
        req = AdminRequest(0, region_id, epoch if epoch is not None else RegionEpoch(), command)
        resp = await self._rpc(node, lambda rpc: rpc.admin(req, timeout=5.0))
        assert isinstance(resp, AdminResponse)
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

    async def wait_converged(
        self, region_id: int, *, among: list[Node] | None = None,
        timeout: float = 20.0,  # noqa: ASYNC109
    ) -> int:  # fmt: skip
        """Poll until the leader has committed its whole log and every live store (of
        ``among``, default all) applied it; returns that index (call when no client writes
        are in flight)."""
        nodes = [n for n in (among if among is not None else self.stores) if n.alive]
        with fail_after(timeout, f"every replica of region {region_id} to apply the whole log"):
            while True:
                leader, _ = await self.leader(region_id, among=nodes)
                lst = await self.region_status(leader, region_id)
                if lst is not None and lst.commit_index == lst.last_index:
                    sts = [await self.region_status(n, region_id) for n in nodes]
                    if all(s is not None and s.applied_index == lst.commit_index for s in sts):
                        return lst.commit_index
                await trio.sleep(POLL)

    # -- regions and operators -------------------------------------------------------------

    async def wait_region_table(self, *, timeout: float = 30.0) -> list[RegionRoute]:  # noqa: ASYNC109
        """Poll until placement's region table covers the key space without overlap or gap
        and every live store agrees with it (``region_checks.region_table_problems``);
        returns the table. On timeout the last problems found are in the error."""
        problems: list[str] = []
        try:
            with fail_after(timeout, "a consistent region table"):
                while True:
                    self.check_alive()
                    routes, problems = await self.region_table_problems()
                    if not problems:
                        return routes
                    await trio.sleep(POLL * 4)
        except ClusterFailed as e:
            raise ClusterFailed(f"{e}; still wrong:\n  " + "\n  ".join(problems)) from None

    async def region_table_problems(self) -> tuple[list[RegionRoute], list[str]]:
        """Placement's region table, and what is wrong with it: a gap, an overlap, a range
        out of order, or a live store that disagrees (a replica missing, left over, or with
        another descriptor than placement's; a store counting other replicas than the table
        puts on it)."""
        async with self.pd() as pd:
            routes = await pd.scan_regions(b"", b"")
        problems: list[str] = []
        if not routes:
            return routes, ["placement knows no region"]
        if routes[0].region.start_key != b"" or routes[-1].region.end_key != b"":
            problems.append(f"the table does not span the key space: it starts at "
                            f"{routes[0].region.start_key!r} and ends at "
                            f"{routes[-1].region.end_key!r}")  # fmt: skip
        for left, right in itertools.pairwise(routes):
            a, b = left.region, right.region
            if not a.end_key or a.end_key != b.start_key:
                problems.append(f"region {a.id} ends at {a.end_key!r} but the next one, "
                                f"{b.id}, starts at {b.start_key!r}")  # fmt: skip
        for r in routes:
            g = r.region
            if g.end_key and g.start_key >= g.end_key:
                problems.append(f"region {g.id} has an empty range [{g.start_key!r}, "
                                f"{g.end_key!r})")  # fmt: skip
            if r.leader is None or g.peer_by_id(r.leader.id) is None:
                problems.append(f"region {g.id}: leader {r.leader} is not one of its peers")
        if len({r.region.id for r in routes}) != len(routes):
            problems.append(f"region ids repeat: {[r.region.id for r in routes]}")
        for node in self.stores:
            if not node.alive:
                continue
            mine = [r.region for r in routes if r.region.peer_on_store(node.store_id)]
            count = (await self.store_status(node)).region_count
            if count != len(mine):
                problems.append(f"{node.name} holds {count} replicas, the table puts "
                                f"{len(mine)} there ({[g.id for g in mine]})")  # fmt: skip
            for r in routes:
                st = await self.region_status(node, r.region.id)
                expected = r.region if r.region.peer_on_store(node.store_id) else None
                got = st.region if st is not None else None
                if got != expected:
                    problems.append(f"{node.name} has region {r.region.id} as {got}, "
                                    f"placement as {expected}")  # fmt: skip
        return routes, problems

    async def replicas_agree(self, *, timeout: float = 30.0) -> dict[bytes, bytes]:  # noqa: ASYNC109
        """Wait for a consistent region table and for every region's live replicas to apply
        its whole log (call with no writes in flight); then check that a stale scan of each
        replica (its applied state) returns exactly what a linearizable scan through the
        client returns for the region's range. Returns the cluster's whole content."""
        routes = await self.wait_region_table(timeout=timeout)
        holders = {r.region.id: [n for n in self.stores if n.alive
                                 and r.region.peer_on_store(n.store_id)] for r in routes}  # fmt: skip
        for r in routes:
            await self.wait_converged(r.region.id, among=holders[r.region.id], timeout=timeout)
        async with self.client(timeout=15.0) as client:
            everything = await client.scan(b"", b"", 10**6)
        for r in routes:
            g = r.region
            want = [(k, v) for k, v in everything
                    if g.start_key <= k and (not g.end_key or k < g.end_key)]  # fmt: skip
            for node in holders[g.id]:
                resp = await self.kv(node, r, Scan(g.start_key, g.end_key, 0),
                                     read_mode=ReadMode.Stale)  # fmt: skip
                assert isinstance(resp.result, ScanResult), (node.name, g.id, resp.result)
                got = resp.result.pairs
                if got != want:
                    missing = sorted(set(want) - set(got))[:5]
                    extra = sorted(set(got) - set(want))[:5]
                    raise ClusterFailed(f"{node.name}'s replica of region {g.id} differs from a "
                                        f"linearizable scan: missing {missing}, extra {extra}")  # fmt: skip
        return dict(everything)

    async def run_operator(
        self, kind: ManualOperator, region_id: int, *, from_store: int = 0, to_store: int = 0,
        split_key: bytes = b"", timeout: float = 30.0,  # noqa: ASYNC109
    ) -> OperatorInfo:  # fmt: skip
        """Add a manual operator through placement and wait until it ends; it must succeed.
        Returns its final state."""
        async with self.pd() as pd:
            started = await pd.add_operator(kind, region_id, from_store=from_store,
                                            to_store=to_store, split_key=split_key)  # fmt: skip
            what = f"{kind.name} on region {region_id} ({started.desc}) to end"
            info: OperatorInfo | None = started
            with fail_after(timeout, what):
                while True:
                    # Not get_operator: the scheduler may start another operator on the
                    # region as soon as this one ends, and that one would hide it.
                    info = next((op for op in await pd.list_operators()
                                 if op.region_id == region_id
                                 and op.created_at == started.created_at), None)  # fmt: skip
                    if info is not None and info.finished_at is not None:
                        break
                    await trio.sleep(POLL)
        assert info is not None
        if info.status != OperatorStatus.SUCCESS:
            raise ClusterFailed(f"{kind.name} on region {region_id} ended {info.status} at step "
                                f"{info.step_index} of {[s.describe() for s in info.steps]}")  # fmt: skip
        return info

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


def _without_flags(argv: list[str], settings: Mapping[str, object]) -> list[str]:
    """``argv`` without the ``--flag value`` pairs of ``settings`` (a flag would override the
    config file, e.g. the local cluster's ``--region-split-size``)."""
    flags = {"--" + key.replace("_", "-") for key in settings}
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in flags:
            skip = True
        else:
            out.append(arg)
    return out


def _toml(table: str, settings: Mapping[str, object]) -> str:
    """A TOML document with one table of scalar settings."""
    lines = [f"[{table}]"]
    for key, v in settings.items():
        if isinstance(v, bool):
            text = "true" if v else "false"
        elif isinstance(v, int | float):
            text = repr(v)
        else:
            text = '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"


async def wait_until(
    check: Callable[[], Awaitable[_T | None]],
    what: str,
    *,
    timeout: float = 30.0,  # noqa: ASYNC109
) -> _T:
    """Poll ``check`` until it returns something other than None or False; return that."""
    with fail_after(timeout, what):
        while True:
            got = await check()
            if got is not None and got is not False:
                return got
            await trio.sleep(POLL)


@contextlib.contextmanager
def fail_after(seconds: float, what: str) -> Iterator[None]:
    """``trio.fail_after`` whose timeout says what was awaited."""
    try:
        with trio.fail_after(seconds):
            yield
    except trio.TooSlowError:
        raise ClusterFailed(f"timed out after {seconds:g} s waiting for {what}") from None
