"""One LMDB environment per store: opening, locking, growing, reading and writing it.

Theory of operation
-------------------
:meth:`Engine.open` takes an exclusive ``fcntl.flock`` on ``<dir>/LOCK``
*before* LMDB opens the files. LMDB itself lets several processes share an
environment; a store must not, so a second store process (or a second
``Engine`` in the same process: ``flock`` locks belong to the open file
description) gets :class:`DataDirLocked` naming the holder's pid. The lock
dies with the process, so a killed store leaves nothing to clean up.

Durability: ``sync=True`` (the default) keeps LMDB's own fsync of data pages
then of the meta page at every commit, so a committed transaction survives a
process kill and a power loss. ``sync=False`` survives a process kill only;
call :meth:`Engine.sync` at the points that must be durable.

Writes go through :meth:`Engine.write`: one write transaction that begins,
runs the caller's function and commits in the calling thread (LMDB pins a
write transaction to the thread that began it), serialised by a lock so that
the round writer, compaction and snapshot apply can share the engine from
different threads. If the map is full, the transaction is aborted, the map
is doubled and the function is run again (so it must be re-runnable: it only
writes what it was given). The map stops growing at ``max_map_size``; then,
or when the disk itself is full (ENOSPC), the caller gets :class:`StorageFull`.

Growing the map replaces the memory map, which invalidates every transaction
of this process. Short reads therefore go through :meth:`Engine.read` (or
:meth:`begin_read`/:meth:`end_read`), which hold a shared gate; a resize takes
the gate exclusively, waiting for in-flight reads to finish and holding off
new ones. A read that must span many calls (snapshot generation) uses
:meth:`long_read`: it holds the gate only inside each step and raises
:class:`ReadInvalidated` if the map was resized in between, so the caller
can start over. py-lmdb also refuses to use an invalidated transaction, so a
mistake fails loudly instead of touching unmapped memory.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias, TypeVar

import lmdb

from multiraft.storage import keys
from multiraft.wire.records import decode_u64_list, encode_u64_list

__all__ = [
    "DataDirLocked",
    "Db",
    "Dbs",
    "Engine",
    "EngineError",
    "EngineStats",
    "IncompatibleFormat",
    "LongRead",
    "ReadInvalidated",
    "StorageFull",
    "Txn",
]

T = TypeVar("T")
if TYPE_CHECKING:
    #: The LMDB transaction type the storage modules handle (values as ``bytes``).
    Txn: TypeAlias = lmdb.Transaction[bytes]
else:  # the C type is not subscriptable at run time
    Txn = lmdb.Transaction
#: A named sub-database handle.
Db: TypeAlias = lmdb._Database

MIB = 1 << 20
GIB = 1 << 30
LOCK_FILE = "LOCK"


class EngineError(Exception):
    """Base of the storage engine's own errors."""


class DataDirLocked(EngineError):
    """Another process (or another Engine in this one) has this data directory open."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(
            f"data directory {path} is locked by another store ({holder}); "
            "only one process may open a store's data directory"
        )
        self.path = path


class StorageFull(EngineError):
    """The map cannot grow any further, or the disk is full: the write was not committed."""


class IncompatibleFormat(EngineError):
    """The data directory was written with another key/record layout version."""


class ReadInvalidated(EngineError):
    """A long read lost its snapshot because the map was resized; start it again."""


@dataclass(frozen=True, slots=True)
class EngineStats:
    """A point-in-time summary, cheap enough for a metrics scrape."""

    path: str
    map_size: int
    used_bytes: int
    file_bytes: int
    page_size: int
    last_txn_id: int
    readers: int
    map_resizes: int
    writes: int
    entries: dict[str, int]


class Dbs:
    """The handles of the named sub-databases (see :mod:`multiraft.storage.keys`)."""

    __slots__ = (
        "apply_state",
        "conf_state",
        "data",
        "meta",
        "raft_log",
        "raft_state",
        "region_state",
        "snap_staging",
    )

    def __init__(self, env: lmdb.Environment) -> None:
        self.meta = env.open_db(keys.DB_META)
        self.raft_log = env.open_db(keys.DB_RAFT_LOG)
        self.raft_state = env.open_db(keys.DB_RAFT_STATE)
        self.apply_state = env.open_db(keys.DB_APPLY_STATE)
        self.conf_state = env.open_db(keys.DB_CONF_STATE)
        self.region_state = env.open_db(keys.DB_REGION_STATE)
        self.data = env.open_db(keys.DB_DATA)
        self.snap_staging = env.open_db(keys.DB_SNAP_STAGING)


class Engine:
    """One store's LMDB environment. Build with :meth:`open`; thread-safe for reads and writes."""

    DEFAULT_MAP_SIZE = 256 * MIB
    DEFAULT_MAX_MAP_SIZE = 1 << 40
    #: How long a resize waits for in-flight reads (they are single LMDB calls).
    RESIZE_WAIT_SECONDS = 30.0

    def __init__(
        self,
        path: Path,
        env: lmdb.Environment,
        lock_fd: int,
        max_map_size: int,
    ) -> None:
        self.path = path
        self.env = env
        self.dbs = Dbs(env)
        self._lock_fd = lock_fd
        self._max_map_size = max_map_size
        self._write_lock = threading.Lock()
        self._gate = threading.Condition(threading.Lock())
        self._readers = 0
        self._resizing = False
        #: Bumped by every resize; a long read compares it to know it is stale.
        self.map_epoch = 0
        self._resizes = 0
        self._writes = 0
        self._closed = False

    # ------------------------------------------------------------------
    # Opening and closing

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        map_size: int = DEFAULT_MAP_SIZE,
        max_map_size: int = DEFAULT_MAX_MAP_SIZE,
        max_dbs: int = 16,
        sync: bool = True,
        max_readers: int = 126,
    ) -> Engine:
        """Open (creating if needed) the store's environment in directory ``path``.

        Raises:
            DataDirLocked: another process or Engine holds the directory.
            IncompatibleFormat: the directory has another format version.
        """
        if max_dbs < len(keys.ALL_DBS):
            raise ValueError(f"max_dbs must be at least {len(keys.ALL_DBS)}")
        p = Path(path)
        created = not p.exists()
        p.mkdir(parents=True, exist_ok=True)
        fd = _lock_dir(p)
        try:
            env = lmdb.open(
                str(p),
                map_size=max(map_size, MIB),
                max_dbs=max_dbs,
                sync=sync,
                metasync=sync,
                # Random point reads over a large file: read-ahead only pollutes the cache.
                readahead=False,
                max_readers=max_readers,
                max_spare_txns=8,
            )
        except BaseException:
            os.close(fd)
            raise
        if created:
            # A new directory entry is durable only once its parent is synced.
            _fsync_dir(p.parent)
        engine = cls(p, env, fd, max(max_map_size, map_size))
        try:
            engine._check_format()
        except BaseException:
            engine.close()
            raise
        return engine

    def _check_format(self) -> None:
        def check(txn: Txn) -> None:
            raw = txn.get(keys.FORMAT_KEY, db=self.dbs.meta)
            if raw is None:
                txn.put(keys.FORMAT_KEY, encode_u64_list([keys.FORMAT_VERSION]), db=self.dbs.meta)
                return
            got = decode_u64_list(raw)
            if got != [keys.FORMAT_VERSION]:
                raise IncompatibleFormat(
                    f"{self.path}: format {got}, this build reads [{keys.FORMAT_VERSION}]"
                )

        self.write(check)

    def close(self) -> None:
        """Close the environment and release the directory lock. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with self._write_lock:
            self.env.close()
        os.close(self._lock_fd)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------
    # Writes

    def write(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn(txn)`` in one write transaction and commit it; return what ``fn`` returned.

        ``fn`` may run more than once (after the map grows), so it must only
        write what it was given. Do not call :meth:`read` or :meth:`write` from
        inside it: read through ``txn``.

        Raises:
            StorageFull: the map is at ``max_map_size`` or the disk is full.
            Any exception of ``fn``: the transaction is aborted.
        """
        with self._write_lock:
            for _ in range(64):
                txn = self.env.begin(write=True)
                try:
                    result = fn(txn)
                    txn.commit()
                except lmdb.MapFullError:
                    _abort_quietly(txn)
                    self._grow()
                    continue
                except lmdb.DiskError as exc:
                    _abort_quietly(txn)
                    raise StorageFull(f"{self.path}: disk full while committing ({exc})") from exc
                except OSError as exc:
                    _abort_quietly(txn)
                    if exc.errno == errno.ENOSPC:
                        raise StorageFull(f"{self.path}: disk full ({exc})") from exc
                    raise
                except BaseException:
                    _abort_quietly(txn)
                    raise
                self._writes += 1
                return result
        raise StorageFull(f"{self.path}: the map kept filling up after 64 resizes")

    def _grow(self) -> None:
        current = self.env.info()["map_size"]
        if current >= self._max_map_size:
            raise StorageFull(
                f"{self.path}: the map is full at {current} bytes (max_map_size {self._max_map_size})"
            )
        new = min(self._max_map_size, max(current * 2, current + 64 * MIB))
        with self._gate:
            self._resizing = True
            try:
                if not self._gate.wait_for(lambda: self._readers == 0, self.RESIZE_WAIT_SECONDS):
                    raise EngineError(f"{self.path}: reads did not drain for a map resize")
                self.env.set_mapsize(new)
                self.map_epoch += 1
                self._resizes += 1
            finally:
                self._resizing = False
                self._gate.notify_all()

    # ------------------------------------------------------------------
    # Reads

    def begin_read(self) -> Txn:
        """A fresh read transaction; pair with :meth:`end_read` (keep the span short)."""
        with self._gate:
            while self._resizing:
                self._gate.wait()
            self._readers += 1
        try:
            return self.env.begin()
        except BaseException:
            self._leave_gate()
            raise

    def end_read(self, txn: Txn) -> None:
        """Finish a transaction from :meth:`begin_read`."""
        try:
            txn.abort()
        finally:
            self._leave_gate()

    def _leave_gate(self) -> None:
        with self._gate:
            self._readers -= 1
            if self._resizing and self._readers == 0:
                self._gate.notify_all()

    @contextmanager
    def read(self) -> Iterator[Txn]:
        """``with engine.read() as txn:`` a short, consistent read."""
        txn = self.begin_read()
        try:
            yield txn
        finally:
            self.end_read(txn)

    def long_read(self) -> LongRead:
        """A read transaction that spans many steps (see :class:`LongRead`)."""
        return LongRead(self)

    # ------------------------------------------------------------------
    # Introspection

    def size(self) -> int:
        """Bytes of the map in use (pages up to the last one written)."""
        info = self.env.info()
        return (info["last_pgno"] + 1) * self.env.stat()["psize"]

    def map_size(self) -> int:
        return self.env.info()["map_size"]

    def stats(self) -> EngineStats:
        """Sizes, counters and the number of records in each sub-database."""
        info = self.env.info()
        psize = self.env.stat()["psize"]
        with self.read() as txn:
            entries = {name: txn.stat(getattr(self.dbs, name))["entries"] for name in Dbs.__slots__}
        try:
            file_bytes = (self.path / "data.mdb").stat().st_size
        except OSError:
            file_bytes = 0
        return EngineStats(
            path=str(self.path),
            map_size=info["map_size"],
            used_bytes=(info["last_pgno"] + 1) * psize,
            file_bytes=file_bytes,
            page_size=psize,
            last_txn_id=info["last_txnid"],
            readers=info["num_readers"],
            map_resizes=self._resizes,
            writes=self._writes,
            entries=entries,
        )

    def sync(self) -> None:
        """Force everything committed to disk (needed only with ``sync=False``)."""
        self.env.sync(True)


class LongRead:
    """One read transaction used across many steps, released between them.

    Each :meth:`step` holds the engine's read gate (so no resize runs inside a
    step) and checks that no resize ran since the transaction began; if one
    did, it raises :class:`ReadInvalidated`. Use as a context manager.
    """

    __slots__ = ("_engine", "_epoch", "_txn")

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._txn: Txn | None = None
        with self._gate_held():
            self._epoch = engine.map_epoch
            self._txn = engine.env.begin()

    @contextmanager
    def _gate_held(self) -> Iterator[None]:
        eng = self._engine
        with eng._gate:
            while eng._resizing:
                eng._gate.wait()
            eng._readers += 1
        try:
            yield
        finally:
            eng._leave_gate()

    @contextmanager
    def step(self) -> Iterator[Txn]:
        """``with lr.step() as txn:`` use the transaction (and its cursors) briefly.

        Raises:
            ReadInvalidated: the map was resized since the read began.
        """
        with self._gate_held():
            if self._txn is None:
                raise ReadInvalidated("the long read is closed")
            if self._engine.map_epoch != self._epoch:
                raise ReadInvalidated("the map was resized during a long read; start again")
            yield self._txn

    def close(self) -> None:
        txn, self._txn = self._txn, None
        if txn is None:
            return
        with self._gate_held():
            if self._engine.map_epoch == self._epoch and not self._engine.closed:
                txn.abort()

    def __enter__(self) -> LongRead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _abort_quietly(txn: Txn) -> None:
    # After a failed commit LMDB has already freed the transaction.
    try:
        txn.abort()
    except lmdb.Error:
        pass


def _lock_dir(path: Path) -> int:
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        finally:
            os.close(fd)
        raise DataDirLocked(path, f"pid {holder}") from None
    except BaseException:
        os.close(fd)
        raise
    # The pid is informational (for the error message); the flock is the lock.
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
