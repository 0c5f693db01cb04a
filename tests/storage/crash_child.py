"""Child process for the crash tests, plus the deterministic model they check against.

Run as a script, it writes to a store's data directory until it is killed:

``python crash_child.py rounds DATADIR PROGRESS``
    Continues the round workload from whatever round is on disk. Each round
    is ONE WriteBatch for every region: log entries (every fifth round
    overwrites the two uncommitted tail entries with a higher term), the hard
    state, the apply state, the data the applied entries "produce", a range
    delete every seventh round, and the round number. Every tenth round a
    region's log is compacted in its own transaction. After each commit the
    round number goes to PROGRESS, so the parent knows which rounds were
    acknowledged as committed.

``python crash_child.py snapshot DATADIR PROGRESS CHUNKS``
    Applies the snapshot stream stored in CHUNKS (a file of
    length-prefixed chunks) to region 1 of DATADIR, writing each apply phase
    to PROGRESS.

The test imports :func:`expected` to know what a store that committed
exactly ``n`` rounds must contain.
"""

from __future__ import annotations

import os
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from multiraft.raft.types import ConfState, Entry, HardState, SnapshotMetadata  # noqa: E402
from multiraft.storage import Engine, RaftStorage, WriteBatch, recover, snapshot  # noqa: E402
from regions.local_state import PeerState, RegionLocalState  # noqa: E402
from regions.region import Peer, Region  # noqa: E402

REGIONS = 6
ENTRIES_PER_ROUND = 3
KEYS_PER_REGION = 12
ROUND_KEY = b"\x00round"
INIT = 5  # RAFT_INIT_LOG_INDEX / TERM


def region_of(rid: int) -> Region:
    return Region(
        id=rid,
        start_key=b"r%03d/" % rid,
        end_key=b"r%03d0" % rid,  # "0" follows "/": the range holds exactly the r%03d/ keys
        peers=[Peer(rid * 10 + 1, 1)],
    )


@dataclass
class RegionModel:
    """What region ``rid`` holds after some rounds."""

    rid: int
    term: int = INIT
    last: int = INIT
    commit: int = INIT
    #: index -> (term, data) of the live log entries above INIT.
    log: dict[int, tuple[int, bytes]] = field(default_factory=dict)
    data: dict[bytes, bytes] = field(default_factory=dict)

    def round(self, r: int) -> tuple[list[Entry], HardState]:
        """Advance to round ``r``; return the entries it appends and the new hard state."""
        if r % 5 == 0 and self.last - self.commit >= 2:
            self.term += 1
            start = self.last - 1
        else:
            start = self.last + 1
        ents = [
            Entry(term=self.term, index=i, data=b"%d/%d/%d" % (self.rid, r, i))
            for i in range(start, start + ENTRIES_PER_ROUND)
        ]
        for i in range(start, self.last + 1):
            self.log.pop(i, None)
        for e in ents:
            self.log[e.index] = (e.term, e.data)
        self.last = ents[-1].index
        self.commit = max(self.commit, self.last - 2)
        # The same order as the child's batch: range delete, put, applied marker.
        prefix = b"r%03d/" % self.rid
        if r % 7 == 0:
            for j in range(3, 6):
                self.data.pop(prefix + b"k%02d" % j, None)
        self.data[prefix + b"k%02d" % (r % KEYS_PER_REGION)] = b"%d" % r
        self.data[prefix + b"applied"] = b"%d" % self.commit
        return ents, HardState(self.term, 1, self.commit)

    def delete_range(self, r: int) -> tuple[bytes, bytes] | None:
        prefix = b"r%03d/" % self.rid
        return (prefix + b"k03", prefix + b"k06") if r % 7 == 0 else None

    def term_at(self, index: int) -> int:
        return INIT if index == INIT else self.log[index][0]


def expected(rounds: int) -> dict[int, RegionModel]:
    models = {rid: RegionModel(rid) for rid in range(1, REGIONS + 1)}
    for r in range(1, rounds + 1):
        for m in models.values():
            m.round(r)
    return models


def _bootstrap(engine: Engine) -> None:
    batch = WriteBatch()
    for rid in range(1, REGIONS + 1):
        st = RaftStorage(engine, rid)
        region = region_of(rid)
        batch.put_region_state(rid, RegionLocalState(PeerState.Normal, region))
        st.apply_snapshot_meta(
            SnapshotMetadata(ConfState(voters=[p.id for p in region.peers]), INIT, INIT), batch
        )
    batch.put(ROUND_KEY, b"0")
    batch.commit(engine)


def run_rounds(datadir: str, progress: str) -> None:
    fd = os.open(progress, os.O_WRONLY | os.O_CREAT, 0o644)
    engine = Engine.open(datadir, sync=True)
    recovered = recover(engine)
    if not recovered:
        _bootstrap(engine)
        recovered = recover(engine)
    with engine.read() as txn:
        done = int(txn.get(ROUND_KEY, db=engine.dbs.data) or b"0")
    models = expected(done)
    stores = {rec.region_id: RaftStorage.from_recovered(engine, rec) for rec in recovered}
    r = done
    while True:
        r += 1
        batch = WriteBatch()
        for rid, st in stores.items():
            m = models[rid]
            ents, hs = m.round(r)
            st.stage_ready(ents, hs, batch)
            rng = m.delete_range(r)
            if rng is not None:
                batch.delete_range(*rng)
            prefix = b"r%03d/" % rid
            batch.put(prefix + b"k%02d" % (r % KEYS_PER_REGION), b"%d" % r)
            batch.put(prefix + b"applied", b"%d" % m.commit)
            st.set_applied_index(m.commit, batch)
        batch.put(ROUND_KEY, b"%d" % r)
        batch.commit(engine)
        os.pwrite(fd, b"%-20d" % r, 0)
        if r % 10 == 0:
            st = stores[r // 10 % REGIONS + 1]
            st.compact(st.applied_index() - 2)


def _read_chunks(path: str) -> list[bytes]:
    raw = Path(path).read_bytes()
    out, pos = [], 0
    while pos < len(raw):
        (n,) = struct.unpack_from(">I", raw, pos)
        out.append(raw[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return out


def write_chunks(path: Path, chunks: list[bytes]) -> None:
    path.write_bytes(b"".join(struct.pack(">I", len(c)) + c for c in chunks))


def run_snapshot(datadir: str, progress: str, chunks_file: str) -> None:
    fd = os.open(progress, os.O_WRONLY | os.O_CREAT, 0o644)
    chunks = _read_chunks(chunks_file)
    engine = Engine.open(datadir, sync=True)

    def phase(name: str) -> None:
        os.pwrite(fd, b"%-20s" % name.encode(), 0)

    phase("started")
    snapshot.apply(engine, 1, chunks, txn_bytes=32 << 10, delete_batch=500, on_phase=phase)
    phase("done")


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "rounds":
        run_rounds(sys.argv[2], sys.argv[3])
    elif mode == "snapshot":
        run_snapshot(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        raise SystemExit(f"unknown mode {mode}")
