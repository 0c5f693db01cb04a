"""A throwaway local cluster for benchmarks: a placement service and N stores as real processes.

What ``multiraft bench regions`` runs against. The processes are the ones ``multiraft
cluster up`` starts (:func:`~multiraft.cluster.placement_argv`,
:func:`~multiraft.cluster.store_argv`), on ports the OS picked, with their data and
logs under ``root`` (``placement/``, ``store1/``..., ``logs/``), plus:

* ``placement.toml``: the local cluster's defaults (:mod:`multiraft.cluster.placement_settings`)
  with the caller's ``[placement]`` overrides;
* ``store.toml``: the caller's ``[store]`` settings, passed to every store with ``--config``
  (only written when there are any); where ``cluster up``'s command line sets one of them
  with a flag (``--region-split-size``...), the flag gets the caller's value instead.

:meth:`BenchCluster.start` returns once a write went through the client (so the first
region exists and has a leader) and the store ids are known. :meth:`BenchCluster.stop`
stops every process this object started (SIGTERM, then SIGKILL), whatever happened; it is
idempotent, and the caller runs it in a ``finally``. Data stays under ``root``: removing
it is the caller's choice.

Besides the client and the placement client, a benchmark reads what each store says of
itself: :meth:`region_status` and :meth:`store_status` (admin requests over one cached
connection per store; :meth:`admin` sends any other) and :meth:`metric` (a sample from the
store's ``/metrics``).
"""

from __future__ import annotations

import contextlib
import subprocess
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import trio

from multiraft.client import Client, ClientError
from multiraft.cluster import ClusterSpec, ProcessSpec, placement_argv, store_argv, supervisor
from multiraft.cluster.placement_settings import write_placement_config
from multiraft.placement.client import PlacementClient
from multiraft.placement.errors import PlacementClientError
from multiraft.settings import ConfigError, StoreConfig, format_address
from multiraft.transport import RpcConnection, TransportError
from multiraft.wire import (
    AdminRequest,
    RegionStatus,
    RegionStatusResult,
    StoreStatus,
    StoreStatusResult,
)
from regions.region import RegionEpoch

__all__ = ["HOST", "BenchCluster", "BenchClusterError"]

HOST: Final = "127.0.0.1"
#: Seconds between polls while starting.
_POLL: Final = 0.1
#: Log lines per process in an error's details.
_TAIL: Final = 8


class BenchClusterError(Exception):
    """The benchmark cluster failed (a process exited, or a wait timed out).

    ``details`` are the last lines of every process log."""

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise ConfigError(f"store setting {v!r} cannot be written to TOML")


class BenchCluster:
    """A placement service and ``stores`` stores under ``root`` (see the module docstring).

    Args:
        placement_settings: ``[placement]`` keys to set (None values are ignored).
        store_settings: ``[store]`` keys for every store; checked against
            :class:`~multiraft.settings.StoreConfig` at construction.

    Raises:
        ConfigError: a bad setting.
    """

    def __init__(
        self,
        root: Path,
        *,
        stores: int = 4,
        placement_settings: Mapping[str, Any] | None = None,
        store_settings: Mapping[str, Any] | None = None,
    ) -> None:
        if stores < 1:
            raise ValueError("a cluster needs at least one store")
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.spec = ClusterSpec(self.root, HOST)
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
        write_placement_config(self.root, stores, placement_settings or {})
        self._store_settings = dict(store_settings or {})
        self._store_config: Path | None = None
        if store_settings:
            StoreConfig.from_mapping({"store": dict(store_settings)})  # ConfigError early
            lines = ["[store]"] + [f"{k} = {_toml_value(v)}" for k, v in store_settings.items()]
            self._store_config = self.root / "store.toml"
            self._store_config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self._popens: list[tuple[ProcessSpec, subprocess.Popen[bytes]]] = []
        self._rpcs: dict[int, RpcConnection] = {}
        self.cluster_id = 0
        #: store id -> its process.
        self.stores: dict[int, ProcessSpec] = {}

    @property
    def placement_address(self) -> str:
        return self.spec.placement.address

    def client(self, timeout: float = 10.0) -> Client:
        return Client(self.placement_address, timeout=timeout)

    def placement(self, timeout: float = 5.0) -> PlacementClient:
        return PlacementClient(self.placement_address, timeout=timeout)

    # -- processes -------------------------------------------------------------------------

    def _spawn(self, p: ProcessSpec, argv: list[str]) -> None:
        self.spec.data_path(p).mkdir(parents=True, exist_ok=True)
        popen = supervisor.spawn(argv, self.spec.log_path(p), cwd=self.root)
        p.pid = popen.pid
        self._popens.append((p, popen))

    def check_alive(self) -> None:
        """Raise BenchClusterError if a process this cluster started has exited."""
        for p, popen in self._popens:
            code = popen.poll()
            if code is not None:
                raise BenchClusterError(f"{p.name} exited with status {code}", self.log_tails())

    def log_tails(self, lines: int = _TAIL) -> list[str]:
        out = []
        for p in self.spec.processes:
            path = self.spec.log_path(p)
            out.append(f"--- {path}")
            out.extend(supervisor.tail(path, lines))
        return out

    def _store_argv(self, p: ProcessSpec) -> list[str]:
        """``cluster up``'s command for the store, with ``--config store.toml``; a setting
        that command also gives as a flag (flags override the file) replaces the flag's value."""
        argv = store_argv(self.spec, p)
        for key, value in self._store_settings.items():
            flag = "--" + key.replace("_", "-")
            if flag in argv[:-1] and not isinstance(value, bool):
                argv[argv.index(flag) + 1] = str(value)
        if self._store_config is not None:
            argv += ["--config", str(self._store_config)]
        return argv

    async def start(self, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        """Start every process; return once a write succeeded and the store ids are known.

        Raises:
            BenchClusterError: a process exited, or the cluster took no write in time.
        """
        with trio.move_on_after(timeout) as scope:
            self._spawn(self.spec.placement, placement_argv(self.spec, self.spec.placement))
            while True:
                self.check_alive()
                try:
                    async with self.placement(timeout=1.0) as pd:
                        self.cluster_id = (await pd.cluster_info()).cluster_id
                    break
                except PlacementClientError:
                    await trio.sleep(_POLL)
            for p in self.spec.stores:
                self._spawn(p, self._store_argv(p))
            async with self.client(timeout=3.0) as client:
                while True:
                    self.check_alive()
                    try:
                        await client.cas(b"\x00bench-ready", None, None)
                        break
                    except ClientError:
                        await trio.sleep(_POLL)
                ids = {s.address: s.id for s in await client.list_stores()}
            for p in self.spec.stores:
                p.store_id = ids[p.address]
                self.stores[p.store_id] = p
        if scope.cancelled_caught:
            raise BenchClusterError(
                f"the cluster in {self.root} took no write within {timeout:g} s", self.log_tails()
            )
        self.spec.save()  # so that `multiraft ... --data-dir ROOT` commands find it

    async def aclose(self) -> None:
        """Close the admin connections (the processes keep running)."""
        rpcs, self._rpcs = self._rpcs, {}
        with trio.CancelScope(shield=True):
            for rpc in rpcs.values():
                await rpc.aclose()

    def stop(self) -> None:
        """Stop every process this cluster started (SIGTERM, then SIGKILL); idempotent."""
        live = [(popen.pid, str(self.spec.data_path(p))) for p, popen in self._popens
                if popen.poll() is None]  # fmt: skip
        supervisor.stop(live, timeout=10.0)
        for _, popen in self._popens:
            if popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    popen.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=10.0)
        for p, _ in self._popens:
            p.pid = None

    # -- what the stores say ---------------------------------------------------------------

    async def admin(
        self, store_id: int, command: Any, region_id: int = 0, epoch: RegionEpoch | None = None,
        *, timeout: float = 5.0,  # noqa: ASYNC109
    ) -> object:  # fmt: skip
        """Send an admin command to a store; its result (an AdminResult or a RequestError).

        Raises:
            TransportError: no connection, or no answer within ``timeout``.
        """
        rpc = self._rpcs.get(store_id)
        if rpc is None or rpc.closed:
            rpc = await RpcConnection.connect(
                self.stores[store_id].address, cluster_id=self.cluster_id, timeout=2.0
            )
            self._rpcs[store_id] = rpc
        req = AdminRequest(0, region_id, epoch or RegionEpoch(), command)
        resp = await rpc.admin(req, timeout=timeout)
        return resp.result

    async def region_status(self, store_id: int, region_id: int) -> RegionStatusResult | None:
        """What the store's replica of the region says (None: no replica, or no answer)."""
        try:
            got = await self.admin(store_id, RegionStatus(), region_id)
        except TransportError:
            return None
        return got if isinstance(got, RegionStatusResult) else None

    async def store_status(self, store_id: int) -> StoreStatusResult | None:
        """The store's own status (None: no answer)."""
        try:
            got = await self.admin(store_id, StoreStatus())
        except TransportError:
            return None
        return got if isinstance(got, StoreStatusResult) else None

    async def metric(self, store_id: int, name: str) -> float | None:
        """The sum of the samples of metric ``name`` on the store's ``/metrics`` (None: the
        store does not export it, or did not answer)."""
        url = f"http://{self.stores[store_id].metrics_address}/metrics"

        def fetch() -> str:
            with urllib.request.urlopen(url, timeout=5.0) as resp:
                body: bytes = resp.read()
                return body.decode("utf-8", "replace")

        try:
            text = await trio.to_thread.run_sync(fetch)
        except OSError:
            return None
        total: float | None = None
        for line in text.splitlines():
            head, _, value = line.rpartition(" ")
            if head == name or head.startswith(name + "{"):
                with contextlib.suppress(ValueError):
                    total = (total or 0.0) + float(value)
        return total
