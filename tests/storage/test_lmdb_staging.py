"""Snapshot staging: streams checked and written part by part, kept apart by snap id, applied
from staging, deleted when abandoned, and recovered after a crash (also in the older layout)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from multiraft.raft.errors import SnapshotOutOfDate
from multiraft.storage import Engine, SnapshotError, WriteBatch, recover, snapshot, staging
from multiraft.storage import keys as K
from multiraft.storage.engine import Txn
from multiraft.storage.staging import SnapshotStager
from multiraft.wire.records import SnapshotData, encode_snapshot_part
from regions.local_state import ApplyState, PeerState, RegionLocalState
from regions.region import Peer, Region
from tests.storage.test_lmdb_snapshot import REGION, make_source, region_data, region_state


@pytest.fixture
def source(tmp_path: Path) -> Iterator[Engine]:
    with make_source(tmp_path / "src", 1000) as eng:
        yield eng


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Engine]:
    with Engine.open(tmp_path / "dst", sync=False) as eng:
        yield eng


def staged_keys(engine: Engine) -> list[bytes]:
    with engine.read() as txn:
        return list(txn.cursor(engine.dbs.snap_staging).iternext(keys=True, values=False))


def test_a_stream_is_staged_part_by_part_under_its_own_prefix(
    source: Engine, target: Engine
) -> None:
    chunks = list(snapshot.generate(source, 7, chunk_bytes=2048))
    assert len(chunks) > 10
    stager = SnapshotStager(7, 42)
    written = 0
    for i, raw in enumerate(chunks):
        stager.check(raw)
        if i % 3 == 2:  # a transaction every three parts
            written += stager.flush(target)
            # Only what was flushed is on disk, each part under region 7 / snap 42 / its seq.
            assert staged_keys(target) == [K.staging_key(7, 42, s) for s in range(i + 1)]
    written += stager.flush(target)
    staged = stager.finish()
    assert (staged.region_id, staged.snapshot_id, len(staged)) == (7, 42, len(chunks))
    assert staged.total_bytes == written == sum(map(len, chunks))
    assert staged.keys == 1000 and staged.header.index == 30
    assert staging.next_snapshot_id(target) == 43
    header = snapshot.apply_staged(target, staged)
    assert header.region == REGION
    assert region_data(target, REGION) == region_data(source, REGION)
    assert region_state(target, 7) == RegionLocalState(PeerState.Normal, REGION)
    assert staged_keys(target) == []


def test_two_streams_for_one_region_never_mix(source: Engine, target: Engine) -> None:
    older = list(snapshot.generate(source, 7, chunk_bytes=2048))
    b = WriteBatch()
    b.put(b"k0000003", b"newer")
    b.put_apply_state(7, ApplyState(31, 31, 2))
    b.commit(source)
    newer = list(snapshot.generate(source, 7, chunk_bytes=2048))
    a, n = SnapshotStager(7, 1), SnapshotStager(7, 2)
    # Interleaved, as two connections would deliver them.
    for x, y in zip(older, newer, strict=True):
        a.check(x)
        a.flush(target)
        n.check(y)
        n.flush(target)
    first, second = a.finish(), n.finish()
    snapshot.apply_staged(target, second)
    assert region_data(target, REGION)[b"k0000003"] == b"newer"
    # The other stream is intact: it still applies (here over the newer one) or is discarded.
    assert len(staged_keys(target)) == len(older)
    assert staging.discard(target, first)
    assert staged_keys(target) == []


def test_a_handle_is_consumed_once(source: Engine, target: Engine) -> None:
    staged = staging.stage(target, 7, snapshot.generate(source, 7))
    snapshot.apply_staged(target, staged)
    with pytest.raises(SnapshotError, match="already applied or discarded"):
        snapshot.apply_staged(target, staged)
    with pytest.raises(SnapshotError, match="already applied or discarded"):
        staging.discard(target, staged)


def test_a_bad_stream_leaves_no_staging(source: Engine, target: Engine) -> None:
    chunks = list(snapshot.generate(source, 7, chunk_bytes=2048))
    bad = [*chunks[:8], encode_snapshot_part(SnapshotData(8, [(b"a-outside", b"v")])), *chunks[9:]]
    flushed: list[int] = []
    with pytest.raises(SnapshotError, match="outside the region"):
        staging.stage(target, 7, bad, txn_bytes=4096, on_flush=lambda: flushed.append(1))
    assert flushed  # parts had reached the disk before the bad one...
    assert staged_keys(target) == []  # ...and are gone


def test_apply_refused_before_the_mark_deletes_the_staging(
    source: Engine, target: Engine
) -> None:
    staged = staging.stage(target, 7, snapshot.generate(source, 7))
    b = WriteBatch()
    b.put_apply_state(7, ApplyState(50, 40, 5))
    b.commit(target)
    with pytest.raises(SnapshotOutOfDate):
        snapshot.apply_staged(target, staged)
    assert staged_keys(target) == []


def test_apply_checks_the_stream_is_still_staged(source: Engine, target: Engine) -> None:
    old = RegionLocalState(PeerState.Normal, Region(id=7, start_key=b"a", end_key=b"b",
                                                    peers=[Peer(71, 1)]))  # fmt: skip
    b = WriteBatch()
    b.put_region_state(7, old)
    b.commit(target)
    staged = staging.stage(target, 7, snapshot.generate(source, 7))
    assert staging.delete_stream(target, 7, staged.snapshot_id)
    with pytest.raises(SnapshotError, match="lacks part 0"):
        snapshot.apply_staged(target, staged)
    assert region_state(target, 7) == old


class Interrupt(Exception):
    pass


def _interrupt_at(phase: str) -> snapshot.PhaseHook:
    def hook(name: str) -> None:
        if name == phase:
            raise Interrupt(name)

    return hook


def test_a_planned_stream_is_kept_until_recovery_finishes_it(
    source: Engine, target: Engine
) -> None:
    staged = staging.stage(target, 7, snapshot.generate(source, 7, chunk_bytes=2048))
    with pytest.raises(Interrupt):
        snapshot.apply_staged(target, staged, on_phase=_interrupt_at("cleared"))
    # The stream is now the redo log of an Applying region: a cleanup must not touch it.
    assert not staging.delete_stream(target, 7, staged.snapshot_id)
    leftover = staging.stage(target, 7, snapshot.generate(source, 7), snapshot_id=99)
    assert leftover.snapshot_id == 99
    assert snapshot.recover_interrupted(target) == [7]
    assert region_data(target, REGION) == region_data(source, REGION)
    assert region_state(target, 7) == RegionLocalState(PeerState.Normal, REGION)
    assert staged_keys(target) == []  # the finished stream and the unplanned one


def test_recovery_reads_the_older_staging_layout(source: Engine, target: Engine) -> None:
    """Staging written by builds before snap ids (``region_id | seq``) is still finished."""
    staged = staging.stage(target, 7, snapshot.generate(source, 7, chunk_bytes=2048))
    with pytest.raises(Interrupt):
        snapshot.apply_staged(target, staged, on_phase=_interrupt_at("applying"))
    db = target.dbs.snap_staging

    def to_old_layout(txn: Txn) -> None:
        items = list(txn.cursor(db).iternext())
        for key, _ in items:
            txn.delete(key, db=db)
        for key, value in items:
            rid, _, seq = K.decode_staging_key(key)
            txn.put(K.log_key(rid, seq), value, db=db)  # region_id:8 | seq:8

    target.write(to_old_layout)
    assert all(len(k) == 16 for k in staged_keys(target))
    (rec,) = recover(target)
    assert rec.peer_state == PeerState.Normal and rec.apply_state == ApplyState(30, 30, 2)
    assert region_data(target, REGION) == region_data(source, REGION)
    assert staged_keys(target) == []


def test_next_snapshot_id_is_past_every_staged_stream(source: Engine, target: Engine) -> None:
    assert staging.next_snapshot_id(target) == 1
    parts = list(snapshot.generate(source, 7))
    staging.stage(target, 7, parts, snapshot_id=5)
    staging.stage(target, 7, parts, snapshot_id=3)
    assert staging.next_snapshot_id(target) == 6
    # A lower region id with a higher snap id: every region's largest id counts.
    target.write(lambda txn: txn.put(K.staging_key(2, 9, 0), b"x", db=target.dbs.snap_staging))
    assert staging.next_snapshot_id(target) == 10
