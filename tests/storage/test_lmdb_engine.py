"""Engine: opening, the data-directory lock, map growth, full maps, reads across a resize."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from multiraft.storage import (
    DataDirLocked,
    Engine,
    IncompatibleFormat,
    ReadInvalidated,
    StorageFull,
)
from multiraft.storage import keys as K
from multiraft.storage.engine import MIB, Txn
from multiraft.wire.records import encode_u64_list

REPO = Path(__file__).resolve().parents[2]


def _put_many(engine: Engine, prefix: bytes, n: int, size: int = 1000) -> None:
    def fn(txn: Txn) -> None:
        for i in range(n):
            txn.put(prefix + b"%08d" % i, b"v" * size, db=engine.dbs.data)

    engine.write(fn)


def _count(engine: Engine, prefix: bytes) -> int:
    with engine.read() as txn:
        cur = txn.cursor(engine.dbs.data)
        n = 0
        if cur.set_range(prefix):
            for k in cur.iternext(values=False):
                if not k.startswith(prefix):
                    break
                n += 1
        return n


def test_open_creates_every_sub_database_and_reports_stats(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "db") as engine:
        stats = engine.stats()
        assert set(stats.entries) == {name.decode() for name in K.ALL_DBS}
        assert stats.entries["meta"] == 1  # the format version
        assert stats.map_size == Engine.DEFAULT_MAP_SIZE
        assert 0 < engine.size() == stats.used_bytes <= stats.file_bytes
        assert stats.map_resizes == 0
        assert engine.env.flags()["sync"] is True
    assert engine.closed
    engine.close()  # idempotent


def test_second_engine_in_the_same_process_is_refused(tmp_path: Path) -> None:
    with (
        Engine.open(tmp_path / "db"),
        pytest.raises(DataDirLocked, match="locked by another store"),
    ):
        Engine.open(tmp_path / "db")
    # Released on close: a new open works.
    with Engine.open(tmp_path / "db") as again:
        assert not again.closed


def test_second_process_is_refused_and_the_lock_dies_with_its_holder(tmp_path: Path) -> None:
    path = tmp_path / "db"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from multiraft.storage import Engine, DataDirLocked
        try:
            Engine.open({str(path)!r})
        except DataDirLocked as exc:
            print("LOCKED", exc)
            sys.exit(3)
        print("OPENED")
        """
    )
    with Engine.open(path):
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 3, out.stderr
        assert "LOCKED" in out.stdout
    # A holder that is killed releases the lock with its process.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            script.replace('print("OPENED")', 'print("OPENED", flush=True); sys.stdin.read()'),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().startswith("OPENED")
        with pytest.raises(DataDirLocked, match=f"pid {holder.pid}"):
            Engine.open(path)
    finally:
        holder.kill()
        holder.wait()
    with Engine.open(path):
        pass


def test_map_grows_when_full_and_the_write_is_retried(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "db", map_size=MIB, max_map_size=256 * MIB) as engine:
        _put_many(engine, b"a", 5000)  # about 5 MB in one transaction
        assert engine.stats().map_resizes >= 1
        assert engine.map_size() > MIB
        assert _count(engine, b"a") == 5000
    # The grown map is kept by the file.
    with Engine.open(tmp_path / "db", map_size=MIB) as engine:
        assert _count(engine, b"a") == 5000


def test_storage_full_when_the_map_may_not_grow(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "db", map_size=MIB, max_map_size=2 * MIB) as engine:
        with pytest.raises(StorageFull, match="map is full"):
            _put_many(engine, b"a", 5000)
        assert _count(engine, b"a") == 0  # nothing of the failed transaction
        _put_many(engine, b"b", 10)  # and the engine still works
        assert _count(engine, b"b") == 10


def test_a_failing_write_function_commits_nothing(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "db") as engine:

        def fn(txn: Txn) -> None:
            txn.put(b"k", b"v", db=engine.dbs.data)
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            engine.write(fn)
        assert _count(engine, b"k") == 0


def test_incompatible_format_is_refused(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "db") as engine:
        engine.write(lambda txn: txn.put(K.FORMAT_KEY, encode_u64_list([99]), db=engine.dbs.meta))
    with pytest.raises(IncompatibleFormat):
        Engine.open(tmp_path / "db")
    # The failed open released the lock: the same error again, not DataDirLocked.
    with pytest.raises(IncompatibleFormat):
        Engine.open(tmp_path / "db")


def test_long_read_is_invalidated_by_a_resize(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "db", map_size=MIB) as engine:
        _put_many(engine, b"a", 10, size=10)
        with engine.long_read() as lr:
            with lr.step() as txn:
                assert txn.get(b"a00000000", db=engine.dbs.data) == b"v" * 10
            _put_many(engine, b"b", 5000)  # forces a resize
            with pytest.raises(ReadInvalidated), lr.step():
                pass
        # A new read sees everything.
        assert _count(engine, b"b") == 5000


def test_resize_waits_for_reads_in_other_threads(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "db", map_size=MIB, max_map_size=512 * MIB) as engine:
        _put_many(engine, b"a", 100, size=10)
        stop = threading.Event()
        errors: list[BaseException] = []
        reads = [0]

        def reader() -> None:
            try:
                while not stop.is_set():
                    with engine.read() as txn:
                        assert txn.get(b"a00000050", db=engine.dbs.data) == b"v" * 10
                    reads[0] += 1
                    # Pause: two threads spinning on the GIL would starve the writer.
                    stop.wait(0.0002)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=reader) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            for i in range(4):
                _put_many(engine, b"b%d" % i, 3000)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert not errors
        assert engine.stats().map_resizes >= 1
        assert reads[0] > 0
