"""A local cluster: one placement service and N stores on this machine, in one data directory.

Theory of operation
-------------------
:meth:`LocalCluster.up` reads ``<data-dir>/cluster.json`` (see :mod:`.spec`), or plans a
new cluster: ``placement/``, ``store1/`` ... ``storeN/`` under the data directory, and
two ports per process (service and ``/metrics``), from ``--base-port`` or free ports the
OS picked. Then it starts what is not running, in order:

1. the placement service, and waits until it answers ``cluster_info``;
2. every store at once (``--placement`` is the service's address), writing the cluster
   file as soon as they are spawned, so ``cluster down`` can stop them even if step 3
   fails;
3. waits until every store started serves (answers a StoreStatus admin request, which
   also tells its store id), then until a *write* goes through the client: a
   compare-and-swap of a reserved key from "absent" to "absent", which is proposed,
   replicated and applied like any write but leaves no data behind. It succeeds only
   once the first region exists (placement bootstraps it when enough stores have
   joined), has a leader, and a quorum of stores persists and applies entries.

Every wait has a deadline, and each poll also checks that the processes started are still
alive: a process that exits, or a deadline that passes, stops the processes this call
started and raises :class:`ClusterError` with the last lines of the relevant logs.

A second ``up`` on the same directory finds the processes that still run (pids from the
cluster file, checked against their command lines) and starts only the others, on the
same ports when they are free; its stores reopen their data directories, so the data
survives ``down`` + ``up``. :meth:`LocalCluster.down` stops every recorded process
(SIGTERM, then SIGKILL after a bounded wait) and clears the pids; data stays.
:meth:`LocalCluster.status` reports the processes, and, when placement runs, its stores
and regions plus each store's own count of regions and leaders.

Commands that change the cluster hold ``<data-dir>/cluster.lock`` (``flock``), so two
``up``/``down`` on one directory cannot interleave.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import trio

from multiraft.client import Client, ClientError
from multiraft.cluster import supervisor
from multiraft.cluster.placement_settings import write_placement_config
from multiraft.cluster.spec import CLUSTER_FILE, ClusterFileError, ClusterSpec, ProcessSpec
from multiraft.cluster.status import ClusterStatus, cluster_status, store_status
from multiraft.placement.client import PlacementClient
from multiraft.placement.errors import PlacementClientError
from multiraft.settings import ConfigError, format_address, parse_address
from multiraft.wire import StoreStatusResult
from multiraft.wire.placement_messages import StoreState

__all__ = [
    "READY_KEY",
    "ClusterError",
    "DownResult",
    "LocalCluster",
    "UpResult",
    "placement_argv",
    "store_argv",
]

#: The key of ``up``'s readiness write (a cas from absent to absent: it leaves nothing).
READY_KEY: Final = b"\x00multiraft/cluster-up"
#: Stores ``up`` starts by default, and the most it accepts.
DEFAULT_STORES: Final = 3
MAX_STORES: Final = 64
#: Log lines shown when a process fails to start, and per process when a wait times out.
TAIL_FAILED: Final = 20
TAIL_EACH: Final = 5
#: Seconds between readiness polls.
_POLL: Final = 0.2

Progress = Callable[[str], None]


class ClusterError(Exception):
    """A ``cluster`` command cannot do what was asked.

    ``message`` is one line; ``details`` are extra lines for the user (log tails).
    """

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


def placement_argv(spec: ClusterSpec, p: ProcessSpec) -> list[str]:
    """The command that runs the placement service ``p`` of ``spec``."""
    return supervisor.multiraft_command(
        "placement", "start", "--listen", p.address, "--metrics-listen", p.metrics_address,
        "--data-dir", str(spec.data_path(p)), "--config", str(spec.root / "placement.toml"),
    )  # fmt: skip


#: Region split size of a local cluster's stores (TiKV's rules applied to 1 MiB: checked from
#: 1.5 MiB or 15k keys).
LOCAL_REGION_SPLIT_SIZE = 1024 * 1024


def store_argv(
    spec: ClusterSpec, p: ProcessSpec, *, fault_injection: bool = False, log_level: str = "info"
) -> list[str]:
    """The command that runs store ``p`` of ``spec``."""
    argv = supervisor.multiraft_command(
        "server", "start", "--store-listen", p.address, "--metrics-listen", p.metrics_address,
        "--placement", spec.placement.address, "--data-dir", str(spec.data_path(p)),
        "--log-level", log_level,
        # Small regions, checked often: a local cluster shows splits within seconds.
        "--region-split-size", str(LOCAL_REGION_SPLIT_SIZE), "--split-check-interval", "2",
    )  # fmt: skip
    if fault_injection:
        argv.append("--enable-fault-injection")
    return argv


@dataclass(frozen=True, slots=True)
class UpResult:
    spec: ClusterSpec
    #: Names of the processes this call started (empty: all were running already).
    started: list[str]
    #: Seconds from the first process started to the first successful write.
    elapsed: float
    #: Things the user should know (e.g. a port that had to change).
    notes: list[str] = field(default_factory=list)

    @property
    def already_running(self) -> bool:
        return not self.started


@dataclass(frozen=True, slots=True)
class DownResult:
    spec: ClusterSpec
    #: name -> "stopped" (after SIGTERM), "killed" (SIGKILL), or "not running".
    outcome: dict[str, str]


@dataclass
class _Started:
    """A process this ``up`` call spawned."""

    spec: ProcessSpec
    popen: subprocess.Popen[bytes]


class LocalCluster:
    """The local cluster whose data directory is ``data_dir`` (see the module docstring)."""

    def __init__(self, data_dir: Path | str) -> None:
        self.root = Path(data_dir).expanduser().resolve()

    # -- reading ---------------------------------------------------------------------------

    def load(self) -> ClusterSpec | None:
        """The recorded cluster, or None. Raises ClusterError on a damaged file."""
        try:
            return ClusterSpec.load(self.root)
        except ClusterFileError as e:
            raise ClusterError(str(e)) from None

    def require(self) -> ClusterSpec:
        """The recorded cluster. Raises ClusterError if there is none."""
        spec = self.load()
        if spec is None:
            raise ClusterError(
                f"no cluster in {self.root} (no {CLUSTER_FILE}); start one with "
                "`multiraft cluster up`"
            )
        return spec

    def status(self, *, timeout: float = 5.0) -> ClusterStatus:
        """What runs, and what the placement service and the stores say (see
        :func:`~multiraft.cluster.status.cluster_status`).

        Raises:
            ClusterError: there is no cluster in the directory.
        """
        spec = self.require()
        running = {p.name: self.running(spec, p) for p in spec.processes}
        return cluster_status(spec, running, timeout=timeout)

    def running(self, spec: ClusterSpec, p: ProcessSpec) -> bool:
        return supervisor.is_running(p.pid, str(spec.data_path(p)))

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold ``cluster.lock`` (raises ClusterError if another command holds it)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root / "cluster.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ClusterError(f"cannot use {self.root}: {e.strerror or e}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ClusterError(
                    f"another `multiraft cluster` command is working on {self.root}"
                ) from None
            yield
        finally:
            os.close(fd)

    # -- up --------------------------------------------------------------------------------

    def up(
        self,
        *,
        stores: int | None = None,
        host: str | None = None,
        base_port: int | None = None,
        timeout: float = 60.0,
        progress: Progress | None = None,
        placement_settings: Mapping[str, Any] | None = None,
    ) -> UpResult:
        """Start the cluster (or what of it is not running) and wait until a write succeeds.

        ``placement_settings`` (``[placement]`` keys, None values ignored) go into
        ``placement.toml`` (:mod:`~multiraft.cluster.placement_settings`).

        Raises:
            ClusterError: bad arguments, a port or directory that cannot be used, a process
                that exits while starting, or no successful write within ``timeout``.
        """
        say = progress or (lambda _line: None)
        if stores is not None and not 1 <= stores <= MAX_STORES:
            raise ClusterError(f"--stores must be between 1 and {MAX_STORES}, got {stores}")
        if host is not None:
            _check_host(host)
        created = not self.root.exists()
        try:
            return self._up(stores, host, base_port, timeout, say, placement_settings or {})
        except BaseException:
            if created:
                self._remove_if_empty()
            raise

    def _remove_if_empty(self) -> None:
        """Undo the creation of the data directory by an ``up`` that started nothing."""
        with contextlib.suppress(OSError):
            if [e.name for e in self.root.iterdir()] == ["cluster.lock"]:
                (self.root / "cluster.lock").unlink()
                self.root.rmdir()

    def _up(
        self,
        stores: int | None,
        host: str | None,
        base_port: int | None,
        timeout: float,
        say: Progress,
        settings: Mapping[str, Any],
    ) -> UpResult:
        if not (self.root / CLUSTER_FILE).exists():
            self._check_fresh_dir()  # before the lock file is created in it
        with self.locked():
            spec = self.load()
            notes: list[str] = []
            if spec is None:
                self._check_fresh_dir()
                spec = self._plan_new(stores or DEFAULT_STORES, host or "127.0.0.1", base_port)
            else:
                notes = self._plan_existing(spec, stores, host, base_port)
            try:
                write_placement_config(spec.root, len(spec.stores), settings)
            except ConfigError as e:
                raise ClusterError(str(e)) from None
            if self.running(spec, spec.placement) and any(v is not None for v in settings.values()):
                notes.append("the placement service is already running: the new settings apply "
                             "when it restarts (`cluster down`, then `cluster up`)")  # fmt: skip
            for note in notes:
                say(f"note: {note}")
            todo = [p for p in spec.processes if not self.running(spec, p)]
            if not todo:
                return UpResult(spec, [], 0.0, notes)
            for p in spec.processes:
                if p in todo:
                    p.pid = None
            spec.save()
            started: list[_Started] = []
            t0 = time.monotonic()
            try:
                trio.run(self._start, spec, todo, started, timeout, say)
            except BaseException:
                self._abort(spec, started)
                raise
            return UpResult(spec, [s.spec.name for s in started], time.monotonic() - t0, notes)

    def _check_fresh_dir(self) -> None:
        if not self.root.exists():
            return
        if not self.root.is_dir():
            raise ClusterError(f"{self.root} is not a directory")
        entries = [e.name for e in self.root.iterdir() if e.name != "cluster.lock"]
        if entries:
            raise ClusterError(
                f"{self.root} is not empty and holds no {CLUSTER_FILE}: choose a new or empty "
                "directory with --data-dir"
            )

    def _plan_new(self, stores: int, host: str, base_port: int | None) -> ClusterSpec:
        spec = ClusterSpec(self.root, host)
        names = ["placement"] + [f"store{i}" for i in range(1, stores + 1)]
        ports = self._ports(host, 2 * len(names), base_port)
        for i, name in enumerate(names):
            spec.processes.append(
                ProcessSpec(
                    name, "placement" if i == 0 else "store",
                    format_address(host, ports[2 * i]), format_address(host, ports[2 * i + 1]),
                    name, f"logs/{name}.log",
                )
            )  # fmt: skip
        return spec

    def _plan_existing(
        self, spec: ClusterSpec, stores: int | None, host: str | None, base_port: int | None
    ) -> list[str]:
        """Adjust ``spec`` for this ``up``: new stores, new host or ports. Returns notes."""
        notes: list[str] = []
        have = len(spec.stores)
        if stores is not None and stores < have:
            raise ClusterError(
                f"the cluster in {self.root} has {have} stores; removing stores is not "
                f"supported (use --stores {have} or more)"
            )
        any_running = any(self.running(spec, p) for p in spec.processes)
        if any_running and ((host is not None and host != spec.host) or base_port is not None):
            raise ClusterError(
                f"the cluster in {self.root} is running; stop it with `multiraft cluster down` "
                "before changing --host or --base-port"
            )
        if host is not None and host != spec.host:
            spec.host = host
            notes.append(f"the cluster now listens on {host}")
        names = [f"store{i}" for i in range(have + 1, (stores or have) + 1)]
        for name in names:
            spec.processes.append(ProcessSpec(name, "store", "", "", name, f"logs/{name}.log"))
        if base_port is not None:
            ports = self._ports(spec.host, 2 * len(spec.processes), base_port)
            for i, p in enumerate(spec.processes):
                p.address = format_address(spec.host, ports[2 * i])
                p.metrics_address = format_address(spec.host, ports[2 * i + 1])
            return notes
        # Same ports as last time when they are free; fresh ones otherwise.
        stale: list[tuple[ProcessSpec, str, str]] = []
        for p in spec.processes:
            if self.running(spec, p):
                continue
            for attr in ("address", "metrics_address"):
                old = getattr(p, attr)
                port = _port_of(old)
                if port and supervisor.port_is_free(spec.host, port):
                    setattr(p, attr, format_address(spec.host, port))
                else:
                    stale.append((p, attr, old))
        planned = {
            _port_of(getattr(p, a)) for p in spec.processes for a in ("address", "metrics_address")
        }
        fresh = self._fresh_ports(spec.host, len(stale), planned)
        for (p, attr, old), port in zip(stale, fresh, strict=True):
            new = format_address(spec.host, port)
            setattr(p, attr, new)
            if old:
                notes.append(f"{p.name}: {old} is in use, using {new} instead")
        return notes

    def _fresh_ports(self, host: str, count: int, avoid: set[int]) -> list[int]:
        """``count`` free ports the OS chose, none of them in ``avoid``."""
        got: list[int] = []
        while len(got) < count:
            try:
                more = supervisor.free_ports(host, count - len(got) + len(avoid))
            except OSError as e:
                raise ClusterError(f"cannot listen on {host}: {e.strerror or e}") from None
            got += [p for p in more if p not in avoid and p not in got][: count - len(got)]
        return got

    def _ports(self, host: str, count: int, base_port: int | None) -> list[int]:
        if base_port is None:
            return self._fresh_ports(host, count, set())
        if not 1 <= base_port <= 65535 - count + 1:
            raise ClusterError(
                f"--base-port {base_port} leaves no room for {count} ports (1..{65536 - count})"
            )
        ports = list(range(base_port, base_port + count))
        busy = [p for p in ports if not supervisor.port_is_free(host, p)]
        if busy:
            raise ClusterError(
                f"port {busy[0]} on {host} is in use (--base-port {base_port} needs ports "
                f"{ports[0]}..{ports[-1]})"
            )
        return ports

    async def _start(
        self,
        spec: ClusterSpec,
        todo: list[ProcessSpec],
        started: list[_Started],
        timeout: float,  # noqa: ASYNC109
        say: Progress,
    ) -> None:
        deadline = trio.current_time() + timeout
        placement = spec.placement
        if placement in todo:
            self._spawn(spec, placement, placement_argv(spec, placement), started)
            say(f"started the placement service (pid {placement.pid}) on {placement.address}")
        spec.cluster_id = await self._wait_placement(spec, started, deadline, timeout)
        spec.save()
        retired = await self._tombstoned_stores(spec)
        for p in todo:
            if p.role != "store":
                continue
            if p.store_id is not None and p.store_id in retired:
                # A drained store was removed for good: placement refuses it (PD semantics).
                say(f"{p.name} (store {p.store_id}) was drained and removed: not started")
                continue
            self._spawn(spec, p, store_argv(spec, p), started)
        spec.save()
        stores = [s for s in started if s.spec.role == "store"]
        if stores:
            say(f"started {len(stores)} store(s) (pids "
                f"{', '.join(str(s.spec.pid) for s in stores)})")  # fmt: skip
        say("waiting for the stores to serve and a write to succeed...")
        await self._wait_ready(spec, started, deadline, timeout)
        spec.save()

    async def _tombstoned_stores(self, spec: ClusterSpec) -> set[int]:
        """Ids of the stores placement has retired (tombstone); empty if it cannot say."""
        try:
            async with PlacementClient(spec.placement.address, timeout=2.0) as pd:
                stores = await pd.get_all_stores()
        except PlacementClientError:
            return set()
        return {s.id for s in stores if s.state == StoreState.Tombstone}

    def _spawn(
        self, spec: ClusterSpec, p: ProcessSpec, argv: list[str], started: list[_Started]
    ) -> None:
        spec.data_path(p).mkdir(parents=True, exist_ok=True)
        try:
            popen = supervisor.spawn(argv, spec.log_path(p), cwd=spec.root)
        except OSError as e:
            raise ClusterError(f"cannot start {p.name}: {e.strerror or e}") from None
        p.pid = popen.pid
        started.append(_Started(p, popen))

    def _check_alive(self, spec: ClusterSpec, started: list[_Started]) -> None:
        for s in started:
            code = s.popen.poll()
            if code is not None:
                log = spec.log_path(s.spec)
                raise ClusterError(
                    f"{s.spec.name} exited with status {code} while starting; the last lines of "
                    f"{log}:",
                    _last_run(supervisor.tail(log, TAIL_FAILED)),
                )
        for p in spec.processes:
            ours = any(s.spec is p for s in started)
            if p.pid is not None and not ours and not self.running(spec, p):
                raise ClusterError(f"{p.name} (pid {p.pid}) stopped while the cluster started")

    def _timed_out(self, spec: ClusterSpec, what: str, timeout: float) -> ClusterError:
        details: list[str] = []
        for p in spec.processes:
            log = spec.log_path(p)
            lines = supervisor.tail(log, TAIL_EACH)
            details.append(f"--- {log} (last {len(lines)} lines)")
            details.extend(lines)
        return ClusterError(f"{what} within {timeout:g} s", details)

    async def _wait_placement(
        self,
        spec: ClusterSpec,
        started: list[_Started],
        deadline: float,
        timeout: float,  # noqa: ASYNC109
    ) -> int:
        address = spec.placement.address
        last = ""
        while True:
            self._check_alive(spec, started)
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                break
            try:
                async with PlacementClient(address, timeout=min(1.0, remaining)) as pd:
                    info = await pd.cluster_info()
                if spec.cluster_id is not None and info.cluster_id != spec.cluster_id:
                    raise ClusterError(
                        f"the placement service at {address} is cluster {info.cluster_id:#x}, "
                        f"but {spec.path} records cluster {spec.cluster_id:#x}"
                    )
                return info.cluster_id
            except PlacementClientError as e:
                last = str(e)
            await trio.sleep(_POLL)
        raise self._timed_out(
            spec, f"the placement service at {address} did not answer (last error: {last})",
            timeout,
        )  # fmt: skip

    async def _wait_ready(
        self,
        spec: ClusterSpec,
        started: list[_Started],
        deadline: float,
        timeout: float,  # noqa: ASYNC109
    ) -> None:
        """Poll until every store started serves (answers StoreStatus), then until a write
        succeeds through the client."""
        waiting = [s.spec for s in started if s.spec.role == "store"]
        last = "no attempt finished"
        client = Client(spec.placement.address, timeout=5.0, placement_timeout=1.0)
        try:
            while True:
                self._check_alive(spec, started)
                remaining = deadline - trio.current_time()
                if remaining <= 0:
                    break
                for p in list(waiting):
                    got = await store_status(p.address, spec.cluster_id or 0, min(1.0, remaining))
                    if isinstance(got, StoreStatusResult):
                        p.store_id = got.store_id
                        waiting.remove(p)
                    else:
                        last = f"{p.name}: {got}"
                if waiting:
                    await trio.sleep(_POLL)
                    continue
                try:
                    if client.cluster_id == 0:
                        await client.connect()
                    await client.cas(READY_KEY, None, None, timeout=min(5.0, remaining))
                    return
                except ClientError as e:
                    last = str(e)
                await trio.sleep(_POLL)
        finally:
            await client.aclose()
        what = "a store did not serve" if waiting else "no write succeeded"
        raise self._timed_out(spec, f"{what} (last error: {last})", timeout)

    def _abort(self, spec: ClusterSpec, started: list[_Started]) -> None:
        """Stop what this ``up`` started (data stays) and record that it is not running."""
        pids = [(s.popen.pid, None) for s in started if s.popen.poll() is None]
        supervisor.stop(pids, timeout=5.0)
        for s in started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                s.popen.wait(timeout=1.0)
            s.spec.pid = None
        with contextlib.suppress(OSError):
            spec.save()

    # -- down ------------------------------------------------------------------------------

    def down(self, *, timeout: float = 10.0) -> DownResult:
        """Stop every process of the cluster; keep its data.

        Raises:
            ClusterError: there is no cluster in the directory.
        """
        self.require()
        with self.locked():
            spec = self.require()
            live = [
                (p, p.pid, str(spec.data_path(p)))
                for p in spec.processes
                if p.pid is not None and self.running(spec, p)
            ]
            result = supervisor.stop([(pid, marker) for _, pid, marker in live], timeout=timeout)
            outcome = {p.name: "not running" for p in spec.processes}
            for p, pid, _ in live:
                outcome[p.name] = result.get(pid, "stopped")
            for p in spec.processes:
                p.pid = None
            spec.save()
            return DownResult(spec, outcome)

    # -- status ----------------------------------------------------------------------------


def _last_run(lines: list[str]) -> list[str]:
    """The lines of a log tail from the last ``=== ... starting`` banner on."""
    starts = [i for i, line in enumerate(lines) if line.startswith("=== ")]
    return lines[starts[-1] :] if starts else lines


def _port_of(address: str) -> int:
    if not address:
        return 0
    try:
        return parse_address(address)[1]
    except ConfigError:
        return 0


def _check_host(host: str) -> None:
    try:
        parse_address(format_address(host, 1))
    except ConfigError:
        raise ClusterError(f"bad --host {host!r}: expected an IP address or a host name") from None
    if host in ("0.0.0.0", "::", ""):
        raise ClusterError(
            f"--host {host} is a wildcard; give an address clients can connect to, e.g. 127.0.0.1"
        )
