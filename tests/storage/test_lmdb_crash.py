"""Crash tests with real processes: SIGKILL a writer at random moments, reopen, check.

The child (``crash_child.py``) writes rounds: each round is one WriteBatch
carrying, for six regions, log entries (sometimes overwriting an uncommitted
tail), the hard state, the apply state, the data the applied entries produce
(puts and a range delete) and the round number; every tenth round a log is
compacted in its own transaction. The parent waits until the child has
committed a round in its current life, lets it run 5-50 ms more (random,
seeded), kills it with SIGKILL, and reopens the store. It then checks that

* every round the child reported as committed is on disk (nothing committed
  is lost),
* the store is exactly the model after the last durable round: every
  region's log (terms, payloads, no stray tail or gap), hard state, last
  index, apply state and data (no round partially applied),
* each region's apply state and its data agree.

A second test kills a child while it stages a received region snapshot (one
bounded transaction after another) or applies it, and checks that startup
recovery leaves either the old region or the new one, complete, and no staging.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from multiraft.raft.storage import GetEntriesContext
from multiraft.raft.types import ConfState, Entry, HardState, SnapshotMetadata
from multiraft.storage import Engine, RaftStorage, WriteBatch, recover, snapshot
from multiraft.storage import keys as K
from multiraft.wire.records import decode_apply_state, decode_region_local_state
from regions.local_state import ApplyState, PeerState, RegionLocalState
from regions.region import Peer, Region

try:
    from tests.storage.crash_child import (
        INIT,
        REGIONS,
        ROUND_KEY,
        expected,
        region_of,
        write_chunks,
    )
except ImportError:  # prepend import mode
    from crash_child import INIT, REGIONS, ROUND_KEY, expected, region_of, write_chunks  # type: ignore[no-redef]

CHILD = Path(__file__).with_name("crash_child.py")
SYNC = GetEntriesContext.empty(False)
KILLS = 50


def _spawn(tmp: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    err = tmp / "child.stderr"
    with err.open("wb") as f:
        child = subprocess.Popen(
            [sys.executable, str(CHILD), *args], stdout=subprocess.DEVNULL, stderr=f
        )
    return child, err


def _progress(path: Path) -> str:
    try:
        return path.read_bytes().decode(errors="replace").strip()
    except FileNotFoundError:
        return ""


def _wait(
    cond: Callable[[], bool], child: subprocess.Popen[bytes], err: Path, timeout: float = 60.0
) -> None:
    """Poll ``cond`` until true; fail if the child died or the time ran out."""
    deadline = time.monotonic() + timeout
    while not cond():
        # Waiting on the child for a moment doubles as the "did it die?" check.
        try:
            child.wait(timeout=0.002)
        except subprocess.TimeoutExpired:
            pass
        else:
            pytest.fail(f"child exited with {child.returncode}:\n{err.read_text()}")
        if time.monotonic() > deadline:
            pytest.fail("child made no progress in time")


def _kill_after(child: subprocess.Popen[bytes], seconds: float) -> None:
    """SIGKILL the child ``seconds`` from now: a random moment in its write loop."""
    try:
        child.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        pass
    child.kill()
    child.wait()


def _scan(engine: Engine, db: object, start: bytes, end: bytes | None) -> list[tuple[bytes, bytes]]:
    out = []
    with engine.read() as txn:
        cur = txn.cursor(db)  # type: ignore[arg-type]
        if cur.set_range(start):
            for k, v in cur.iternext():
                if end is not None and k >= end:
                    break
                out.append((k, v))
    return out


def _verify_rounds(datadir: Path, acked: int) -> int:
    with Engine.open(datadir) as engine:
        recs = recover(engine)
        with engine.read() as txn:
            durable = int(txn.get(ROUND_KEY, db=engine.dbs.data) or b"-1")
        assert durable >= acked, f"round {acked} was acknowledged but only {durable} is on disk"
        models = expected(durable)
        assert [r.region_id for r in recs] == list(range(1, REGIONS + 1))
        for rec in recs:
            m = models[rec.region_id]
            assert rec.peer_state == PeerState.Normal
            assert rec.region == region_of(rec.region_id)
            assert rec.hard_state == HardState(m.term, 1 if durable else 0, m.commit)
            assert rec.last_index == m.last
            apply = rec.apply_state
            assert apply.applied_index == m.commit
            assert INIT <= apply.truncated_index <= apply.applied_index
            st = RaftStorage.from_recovered(engine, rec, cache_max_entries=0)
            first = st.first_index()
            got = [(e.index, e.term, e.data) for e in st.entries(first, m.last + 1, None, SYNC)]
            assert got == [(i, *m.log[i]) for i in range(first, m.last + 1)]
            assert st.term(first - 1) == m.term_at(first - 1)
            start, end = K.region_log_range(rec.region_id)
            on_disk = [
                K.decode_log_key(k)[1] for k, _ in _scan(engine, engine.dbs.raft_log, start, end)
            ]
            assert on_disk == list(range(first, m.last + 1)), "stray or missing log entries"
            region = rec.region
            data = dict(_scan(engine, engine.dbs.data, region.start_key, region.end_key))
            assert data == m.data
            if durable:
                # The apply state and the data it covers never disagree.
                assert data[region.start_key + b"applied"] == b"%d" % apply.applied_index
        return durable


@pytest.mark.slow
def test_sigkill_during_rounds_loses_nothing_committed(tmp_path: Path) -> None:
    rng = random.Random(0x5EED)
    datadir = tmp_path / "store"
    progress = tmp_path / "progress"
    last_durable = 0
    for _ in range(KILLS):
        progress.write_bytes(b"")
        child, err = _spawn(tmp_path, "rounds", str(datadir), str(progress))
        try:
            # Kill only once the child is in its write loop (this life's first round is acked).
            _wait(lambda: _progress(progress) != "", child, err)
            _kill_after(child, rng.uniform(0.005, 0.050))
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        acked = int(_progress(progress))
        durable = _verify_rounds(datadir, acked)
        assert durable >= last_durable
        last_durable = durable
    # The kills landed at many different places, not always at one round boundary.
    assert last_durable > KILLS


# ----------------------------------------------------------------------
# Snapshot apply under SIGKILL

OLD = Region(id=1, start_key=b"a", end_key=b"m", peers=[Peer(11, 1)])
NEW = Region(id=1, start_key=b"f", end_key=b"t", peers=[Peer(11, 1), Peer(21, 2)])


def _build_source(path: Path, n: int) -> list[bytes]:
    with Engine.open(path, sync=False) as engine:
        batch = WriteBatch()
        batch.put_region_state(1, RegionLocalState(PeerState.Normal, NEW))
        batch.put_apply_state(1, ApplyState(200, 200, 9))
        batch.put_raft_state(1, HardState(9, 11, 200), 200)
        batch.put_conf_state(1, ConfState(voters=[11, 21]))
        for i in range(n):
            batch.put(b"g%06d" % i, b"new-%d" % i)
        batch.commit(engine)
        return list(snapshot.generate(engine, 1, chunk_bytes=8 << 10))


def _build_target(path: Path) -> dict[bytes, bytes]:
    old_data = {b"b%04d" % i: b"old" for i in range(2000)}
    old_data.update({b"h%04d" % i: b"old" for i in range(2000)})
    with Engine.open(path, sync=False) as engine:
        st = RaftStorage.open(engine, 1)
        batch = WriteBatch()
        batch.put_region_state(1, RegionLocalState(PeerState.Normal, OLD))
        st.apply_snapshot_meta(SnapshotMetadata(ConfState(voters=[11]), 40, 4), batch)
        st.append([Entry(term=4, index=i, data=b"e") for i in range(41, 60)], batch)
        for k, v in old_data.items():
            batch.put(k, v)
        batch.put(b"zz-other-region", b"keep")
        batch.commit(engine)
    return old_data


def _region_view(engine: Engine) -> tuple[RegionLocalState, ApplyState, dict[bytes, bytes]]:
    with engine.read() as txn:
        state = decode_region_local_state(
            txn.get(K.region_key(1), db=engine.dbs.region_state) or b""
        )
        apply = decode_apply_state(txn.get(K.region_key(1), db=engine.dbs.apply_state) or b"")
    data = dict(_scan(engine, engine.dbs.data, b"", None))
    return state, apply, data


@pytest.mark.slow
@pytest.mark.parametrize(
    "phase", ["started", "staging", "staged", "applying", "cleared", "written"]
)
def test_sigkill_during_snapshot_apply_is_recovered(tmp_path: Path, phase: str) -> None:
    rng = random.Random(phase)
    chunks = _build_source(tmp_path / "source", 30_000)
    chunk_file = tmp_path / "chunks"
    write_chunks(chunk_file, chunks)
    template = tmp_path / "template"
    old_data = _build_target(template)
    with Engine.open(tmp_path / "source", sync=False) as src:
        new_data = dict(_scan(src, src.dbs.data, b"", None))
    datadir = tmp_path / "store"
    shutil.copytree(template, datadir)
    os.remove(datadir / "LOCK")
    progress = tmp_path / "progress"
    order = ["started", "staging", "staged", "applying", "cleared", "written", "normal", "done"]
    child, err = _spawn(tmp_path, "snapshot", str(datadir), str(progress), str(chunk_file))
    try:
        _wait(lambda: _progress(progress) in order[order.index(phase) :], child, err)
        _kill_after(child, rng.uniform(0.0, 0.005))
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    seen = _progress(progress)
    with Engine.open(datadir) as engine:
        snapshot.recover_interrupted(engine)
        state, apply, data = _region_view(engine)
        with engine.read() as txn:
            assert txn.stat(engine.dbs.snap_staging)["entries"] == 0
        assert state.state == PeerState.Normal
        if state.region == NEW:
            # The old range's keys outside the new one are gone too; other regions' keys stay.
            assert apply == ApplyState(200, 200, 9)
            assert data == {**new_data, b"zz-other-region": b"keep"}
            rec = {r.region_id: r for r in recover(engine)}[1]
            assert (rec.hard_state.commit, rec.last_index, rec.first_index) == (200, 200, 201)
        else:
            # Killed before the Applying mark committed: the region is untouched.
            assert order.index(seen) < order.index("applying"), f"killed at {seen} but not applied"
            assert state.region == OLD
            assert apply == ApplyState(40, 40, 4)
            assert data == {**old_data, b"zz-other-region": b"keep"}
