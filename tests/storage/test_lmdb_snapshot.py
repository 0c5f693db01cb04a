"""Region snapshots: generate -> apply round trips, bad streams, interrupted applies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from multiraft.raft.errors import SnapshotOutOfDate
from multiraft.raft.storage import GetEntriesContext
from multiraft.raft.types import ConfState, Entry, HardState
from multiraft.storage import (
    Engine,
    RaftStorage,
    ReadInvalidated,
    SnapshotError,
    WriteBatch,
    recover,
    snapshot,
)
from multiraft.storage import keys as K
from multiraft.storage.engine import MIB
from multiraft.storage.recovery import read_region_records
from multiraft.wire.records import (
    SnapshotData,
    SnapshotFooter,
    SnapshotHeader,
    decode_region_local_state,
    decode_snapshot_part,
    encode_snapshot_part,
)
from regions.local_state import ApplyState, PeerState, RegionLocalState
from regions.region import Peer, Region, RegionEpoch

SYNC = GetEntriesContext.empty(False)
REGION = Region(
    id=7, start_key=b"k", end_key=b"l", epoch=RegionEpoch(3, 4), peers=[Peer(71, 1), Peer(72, 2)]
)


def make_source(path: Path, n: int, **kw: int) -> Engine:
    """A store with region 7 (keys k...) at applied index 30, plus neighbours' keys."""
    engine = Engine.open(path, sync=False, **kw)
    st = RaftStorage.open(engine, 7)
    b = WriteBatch()
    b.put_region_state(7, RegionLocalState(PeerState.Normal, REGION))
    st.set_conf_state(ConfState(voters=[71, 72]), b)
    st.stage_ready(
        [Entry(term=1 + i // 20, index=i, data=b"e") for i in range(1, 41)], HardState(2, 71, 35), b
    )
    st.set_applied_index(30, b)
    for i in range(n):
        b.put(b"k%07d" % i, b"value-%d" % i)
    b.put(b"j-before", b"x")
    b.put(b"l-after", b"x")
    b.commit(engine)
    return engine


def region_data(engine: Engine, region: Region) -> dict[bytes, bytes]:
    out = {}
    with engine.read() as txn:
        cur = txn.cursor(engine.dbs.data)
        if cur.set_range(region.start_key):
            for k, v in cur.iternext():
                if region.end_key and k >= region.end_key:
                    break
                out[k] = v
    return out


def region_state(engine: Engine, rid: int) -> RegionLocalState:
    with engine.read() as txn:
        raw = txn.get(K.region_key(rid), db=engine.dbs.region_state)
    assert raw is not None
    return decode_region_local_state(raw)


@pytest.fixture
def source(tmp_path: Path) -> Iterator[Engine]:
    with make_source(tmp_path / "src", 1000) as eng:
        yield eng


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Engine]:
    with Engine.open(tmp_path / "dst", sync=False) as eng:
        yield eng


def test_round_trip_of_100k_keys(tmp_path: Path, target: Engine) -> None:
    with make_source(tmp_path / "big", 100_000) as src:
        chunks = list(snapshot.generate(src, 7, chunk_bytes=256 << 10))
        want = region_data(src, REGION)
    assert len(want) == 100_000
    assert all(len(c) <= (256 << 10) + 64 for c in chunks)  # bounded: budget + one pair
    header = snapshot.apply(target, 7, chunks)
    # term of index 30 is 2 (entries 20..39 have term 2)
    assert (header.index, header.term, header.region) == (30, 2, REGION)
    assert region_data(target, REGION) == want
    assert region_state(target, 7) == RegionLocalState(PeerState.Normal, REGION)
    with target.read() as txn:
        raft, apply, conf = read_region_records(txn, target.dbs, 7)
        assert txn.stat(target.dbs.snap_staging)["entries"] == 0
    assert apply == ApplyState(30, 30, 2)
    assert (raft.hard_state, raft.last_index) == (HardState(2, 0, 30), 30)
    assert conf == ConfState(voters=[71, 72])
    st = RaftStorage.open(target, 7)
    assert (st.first_index(), st.last_index(), st.term(30)) == (31, 30, 2)


def test_round_trip_of_an_unbounded_region(tmp_path: Path, target: Engine) -> None:
    whole = Region(id=1, peers=[Peer(11, 1)])  # empty start and end: the whole key space
    with Engine.open(tmp_path / "whole", sync=False) as src:
        b = WriteBatch()
        b.put_region_state(1, RegionLocalState(PeerState.Normal, whole))
        b.put_apply_state(1, ApplyState(9, 9, 2))
        for k in (b"\x00", b"a", b"\xff" * 10):
            b.put(k, k)
        b.commit(src)
        chunks = list(snapshot.generate(src, 1))
    b = WriteBatch()
    b.put(b"stale", b"x")
    b.commit(target)
    snapshot.apply(target, 1, chunks)
    assert region_data(target, whole) == {k: k for k in (b"\x00", b"a", b"\xff" * 10)}


def test_generate_is_one_consistent_read(source: Engine) -> None:
    gen = snapshot.generate(source, 7, chunk_bytes=4096)
    header = decode_snapshot_part(next(gen))
    assert isinstance(header, SnapshotHeader) and header.index == 30
    b = WriteBatch()  # written while the snapshot is being streamed
    b.put(b"k9999999", b"late")
    b.delete(b"k0000500")
    b.commit(source)
    parts = [decode_snapshot_part(c) for c in gen]
    keys = [k for p in parts if isinstance(p, SnapshotData) for k, _ in p.pairs]
    assert len(keys) == 1000 and b"k0000500" in keys and b"k9999999" not in keys
    footer = parts[-1]
    assert isinstance(footer, SnapshotFooter) and footer.keys == 1000


def test_generate_refuses_a_missing_or_uninitialized_region(source: Engine) -> None:
    with pytest.raises(SnapshotError, match="does not exist"):
        list(snapshot.generate(source, 99))
    b = WriteBatch()
    b.put_region_state(8, RegionLocalState(PeerState.Normal, Region(id=8)))
    b.commit(source)
    with pytest.raises(SnapshotError, match="not an initialized"):
        list(snapshot.generate(source, 8))


def test_generate_restarts_after_a_resize(tmp_path: Path) -> None:
    with make_source(tmp_path / "src", 200, map_size=MIB) as src:
        gen = snapshot.generate(src, 7, chunk_bytes=1024)
        next(gen)
        b = WriteBatch()
        for i in range(3000):
            b.put(b"z%06d" % i, b"x" * 1000)  # grows the map
        b.commit(src)
        with pytest.raises(ReadInvalidated):
            list(gen)
        assert len(list(snapshot.generate(src, 7))) == 3


def _mutated(chunks: list[bytes], how: str) -> list[bytes]:
    if how == "no footer":
        return chunks[:-1]
    if how == "missing chunk":
        return chunks[:2] + chunks[3:]
    if how == "bad checksum":
        p = decode_snapshot_part(chunks[-1])
        assert isinstance(p, SnapshotFooter)
        return [
            *chunks[:-1],
            encode_snapshot_part(SnapshotFooter(p.data_chunks, p.keys, p.checksum ^ 1)),
        ]
    if how == "other region":
        h = decode_snapshot_part(chunks[0])
        assert isinstance(h, SnapshotHeader)
        return [
            encode_snapshot_part(SnapshotHeader(8, h.region, h.index, h.term, h.conf_state)),
            *chunks[1:],
        ]
    if how == "key outside":
        return [chunks[0], encode_snapshot_part(SnapshotData(1, [(b"zzz", b"v")])), chunks[-1]]
    if how == "garbage":
        return [chunks[0], b"\xff\x00garbage", *chunks[1:]]
    if how == "after footer":
        return [*chunks, chunks[1]]
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "no footer",
        "missing chunk",
        "bad checksum",
        "other region",
        "key outside",
        "garbage",
        "after footer",
    ],
)
def test_bad_streams_change_nothing(source: Engine, target: Engine, how: str) -> None:
    chunks = list(snapshot.generate(source, 7, chunk_bytes=2048))
    old = RegionLocalState(
        PeerState.Normal, Region(id=7, start_key=b"a", end_key=b"b", peers=[Peer(71, 1)])
    )
    b = WriteBatch()
    b.put_region_state(7, old)
    b.put(b"a1", b"old")
    b.commit(target)
    with pytest.raises(SnapshotError):
        snapshot.apply(target, 7, _mutated(chunks, how))
    assert region_state(target, 7) == old
    assert region_data(target, Region(id=0)) == {b"a1": b"old"}
    with target.read() as txn:
        assert txn.stat(target.dbs.snap_staging)["entries"] == 0


def test_out_of_date_snapshot_is_refused(source: Engine, target: Engine) -> None:
    chunks = list(snapshot.generate(source, 7))
    b = WriteBatch()
    b.put_apply_state(7, ApplyState(50, 40, 5))
    b.commit(target)
    with pytest.raises(SnapshotOutOfDate):
        snapshot.apply(target, 7, chunks)


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("phase", ["applying", "cleared", "written"])
def test_interrupted_apply_is_finished_by_recovery(
    source: Engine, target: Engine, phase: str
) -> None:
    chunks = list(snapshot.generate(source, 7, chunk_bytes=2048))
    # The replica had an older, wider range and a log; other regions' data must survive.
    old_region = Region(id=7, start_key=b"a", end_key=b"m", peers=[Peer(71, 1)])
    st = RaftStorage.open(target, 7)
    b = WriteBatch()
    b.put_region_state(7, RegionLocalState(PeerState.Normal, old_region))
    st.stage_ready([Entry(term=1, index=i) for i in range(1, 11)], HardState(1, 71, 10), b)
    st.set_applied_index(10, b)
    b.put(b"c-old", b"x")
    b.put(b"k0000001", b"stale")
    b.put(b"x-other", b"keep")
    b.commit(target)

    def hook(name: str) -> None:
        if name == phase:
            raise Interrupt(name)

    with pytest.raises(Interrupt):
        snapshot.apply(target, 7, chunks, txn_bytes=4096, delete_batch=100, on_phase=hook)
    assert region_state(target, 7).state == PeerState.Applying
    # Startup: recover() finishes the apply before listing.
    recs = {r.region_id: r for r in recover(target)}
    assert recs[7].peer_state == PeerState.Normal and recs[7].region == REGION
    assert recs[7].apply_state == ApplyState(30, 30, 2)
    assert (recs[7].first_index, recs[7].last_index) == (31, 30)
    assert region_data(target, Region(id=0)) == {**region_data(source, REGION), b"x-other": b"keep"}
    with target.read() as txn:
        assert txn.stat(target.dbs.snap_staging)["entries"] == 0
        assert txn.stat(target.dbs.raft_log)["entries"] == 0


def test_a_second_apply_keeps_the_interrupted_one_recoverable(
    source: Engine, target: Engine
) -> None:
    chunks = list(snapshot.generate(source, 7, chunk_bytes=2048))

    def hook(name: str) -> None:
        if name == "applying":
            raise Interrupt(name)

    with pytest.raises(Interrupt):
        snapshot.apply(target, 7, chunks, on_phase=hook)
    with pytest.raises(SnapshotError, match="already applying"):
        snapshot.apply(target, 7, chunks)
    assert snapshot.recover_interrupted(target) == [7]
    assert region_data(target, REGION) == region_data(source, REGION)


def test_tombstones_are_written_with_the_applying_mark(source: Engine, target: Engine) -> None:
    chunks = list(snapshot.generate(source, 7))
    gone = RegionLocalState(
        PeerState.Tombstone, Region(id=5, start_key=b"k", end_key=b"k5", peers=[Peer(51, 1)])
    )
    snapshot.apply(target, 7, chunks, tombstones=[gone])
    assert region_state(target, 5) == gone


def test_abandoned_staging_is_dropped_at_startup(source: Engine, target: Engine) -> None:
    chunks = list(snapshot.generate(source, 7))

    def hook(name: str) -> None:
        if name == "staged":
            raise Interrupt(name)

    with pytest.raises(Interrupt):
        snapshot.apply(target, 7, chunks, on_phase=hook)
    with target.read() as txn:
        assert txn.stat(target.dbs.snap_staging)["entries"] == len(chunks)
    assert snapshot.recover_interrupted(target) == []
    with target.read() as txn:
        assert txn.stat(target.dbs.snap_staging)["entries"] == 0
