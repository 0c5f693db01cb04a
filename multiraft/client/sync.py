"""A blocking client for scripts: the trio :class:`~multiraft.client.Client` run in a
background thread.

Theory of operation: :meth:`SyncClient.open` starts one daemon thread that runs its own
``trio.run``; inside it, a :class:`~multiraft.client.Client` is entered and the loop then
waits to be told to stop. Each blocking method hands its coroutine to that loop with
``trio.from_thread.run`` (through the loop's ``TrioToken``, the "portal") and waits for
the result; exceptions come back as they were raised, so the errors and their
``definite`` flags are those of :mod:`multiraft.client.errors`. Calls from several
threads at once run concurrently in the loop.

Do not call a ``SyncClient`` from inside a trio task: the task would block its own loop.
Use :class:`~multiraft.client.Client` there.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, TypeVar

import trio

from multiraft.client.client import Client, ClientStatistics
from multiraft.wire import ReadMode
from multiraft.wire.placement_messages import RegionRoute, StoreInfo

__all__ = ["SyncClient"]

_T = TypeVar("_T")


class SyncClient:
    """The blocking twin of :class:`~multiraft.client.Client`; same methods, same errors::

        with SyncClient("127.0.0.1:2379") as client:
            client.put(b"k", b"v")
            print(client.get(b"k"))

    Args:
        placement_address: ``host:port`` of the placement service.
        **options: passed to :class:`~multiraft.client.Client` (``timeout``,
            ``read_mode``, ``attempt_timeout``, ``rng``, ``placement``, ``connect_store``).

    Raises:
        ValueError: ``placement_address`` is not ``host:port`` (at construction).
    """

    def __init__(self, placement_address: str, **options: Any) -> None:
        self._client = Client(placement_address, **options)
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread: threading.Thread | None = None
        self._startup_error: BaseException | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def open(self) -> None:
        """Start the loop thread and connect (``with`` does this).

        Raises:
            ClusterUnavailable: the placement service cannot be reached.
            RuntimeError: already open.
        """
        if self._thread is not None:
            raise RuntimeError("SyncClient is already open")
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._thread_main, args=(ready,), name="multiraft-client", daemon=True
        )
        self._thread.start()
        ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            err, self._startup_error = self._startup_error, None
            raise err

    def close(self) -> None:
        """Close the client and stop its thread. Idempotent."""
        thread, token, stop = self._thread, self._token, self._stop
        if thread is None or token is None or stop is None:
            return
        self._token = None
        try:
            trio.from_thread.run_sync(stop.set, trio_token=token)
        except trio.RunFinishedError:
            pass
        thread.join()

    def __enter__(self) -> SyncClient:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _thread_main(self, ready: threading.Event) -> None:
        try:
            trio.run(self._main, ready)
        except BaseException as e:  # reported to open(), or lost with a dead loop
            if not ready.is_set():
                self._startup_error = e
        finally:
            ready.set()

    async def _main(self, ready: threading.Event) -> None:
        self._stop = trio.Event()
        async with self._client:
            self._token = trio.lowlevel.current_trio_token()
            ready.set()
            await self._stop.wait()

    def _run(self, fn: Callable[..., Awaitable[_T]], *args: Any) -> _T:
        token = self._token
        if token is None:
            raise RuntimeError("SyncClient is not open (use `with SyncClient(...)`)")
        try:
            return trio.from_thread.run(fn, *args, trio_token=token)
        except trio.RunFinishedError:
            raise RuntimeError("SyncClient's loop has stopped") from None

    # -- the API (see Client for the documentation of each) --------------------------------

    @property
    def cluster_id(self) -> int:
        return self._client.cluster_id

    def get(
        self, key: bytes, *, timeout: float | None = None, read_mode: ReadMode | None = None
    ) -> bytes | None:
        async def call() -> bytes | None:
            return await self._client.get(key, timeout=timeout, read_mode=read_mode)

        return self._run(call)

    def put(self, key: bytes, value: bytes, *, timeout: float | None = None) -> None:
        async def call() -> None:
            await self._client.put(key, value, timeout=timeout)

        self._run(call)

    def delete(self, key: bytes, *, timeout: float | None = None) -> None:
        async def call() -> None:
            await self._client.delete(key, timeout=timeout)

        self._run(call)

    def cas(
        self, key: bytes, expected: bytes | None, new: bytes | None, *, timeout: float | None = None
    ) -> tuple[bool, bytes | None]:
        async def call() -> tuple[bool, bytes | None]:
            return await self._client.cas(key, expected, new, timeout=timeout)

        return self._run(call)

    def scan(
        self,
        start: bytes = b"",
        end: bytes = b"",
        limit: int = 1000,
        *,
        timeout: float | None = None,
        read_mode: ReadMode | None = None,
    ) -> list[tuple[bytes, bytes]]:
        async def call() -> list[tuple[bytes, bytes]]:
            return await self._client.scan(start, end, limit, timeout=timeout, read_mode=read_mode)

        return self._run(call)

    def batch_put(
        self, pairs: Iterable[tuple[bytes, bytes]], *, timeout: float | None = None
    ) -> None:
        items = list(pairs)

        async def call() -> None:
            await self._client.batch_put(items, timeout=timeout)

        self._run(call)

    def locate(self, key: bytes, *, timeout: float | None = None) -> RegionRoute:
        async def call() -> RegionRoute:
            return await self._client.locate(key, timeout=timeout)

        return self._run(call)

    def list_stores(self, *, timeout: float | None = None) -> list[StoreInfo]:
        async def call() -> list[StoreInfo]:
            return await self._client.list_stores(timeout=timeout)

        return self._run(call)

    def list_regions(
        self, start: bytes = b"", end: bytes = b"", limit: int = 0, *, timeout: float | None = None
    ) -> list[RegionRoute]:
        async def call() -> list[RegionRoute]:
            return await self._client.list_regions(start, end, limit, timeout=timeout)

        return self._run(call)

    def statistics(self) -> ClientStatistics:
        return self._run(self._statistics)

    async def _statistics(self) -> ClientStatistics:
        return self._client.statistics()
