"""Micro-benchmark of the wire codec: encode + decode of RAFT_BATCH payloads.

What it measures: the CPU cost of turning a ``RaftBatch`` into payload bytes and
back (``encode_raft_batch`` / ``decode_raft_batch``), the codec work every Raft
message pays twice. Framing (header, crc32) and sockets are not included.

Cases:

* ``append xN``: one MsgAppend envelope carrying N entries of 128-byte data
  (N = 1, 10, 100), the shape of a leader replicating a batch of proposals;
* ``heartbeat x64``: 64 MsgHeartbeat envelopes for 64 regions, the shape of a
  store's coalesced heartbeat flush.

Each case runs ``ROUNDS`` rounds; a round times a loop of encodes, then a loop
of decodes, of the same payload, then plain ``cbor2.dumps`` + ``cbor2.loads`` of
the same CBOR item ("raw"): the floor any cbor2-based codec pays. The table
shows the median round and the best one (the machine is shared, and
interference only ever slows a round); ``x raw`` is the median ratio of our
codec to raw cbor2 in the same rounds, a figure that load on the machine
barely moves. MB/s counts payload bytes encoded and decoded once per op.

Run: ``python -m multiraft.bench.codec`` (``--json``, ``--seconds S``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from multiraft.raft.types import Entry, Message, MessageType
from multiraft.wire import RaftBatch, RaftEnvelope, decode_raft_batch, encode_raft_batch
from multiraft.wire._cbor import baseline_round_trip, loads
from regions.region import Peer, RegionEpoch

ROUNDS = 7
ENTRY_DATA = bytes(range(128))


@dataclass
class CodecBenchResult:
    case: str
    payload_bytes: int
    ops: int
    encode_us: float  # median round
    decode_us: float
    us_per_op: float  # encode + decode, median round
    best_us_per_op: float
    ops_per_second: float
    mb_per_second: float
    raw_cbor2_us: float  # cbor2.dumps + cbor2.loads of the same item, median round
    x_raw: float  # median of (codec / raw) over the rounds


def append_batch(entries: int) -> RaftBatch:
    """One MsgAppend envelope from a leader on store 1 to its follower on store 2."""
    msg = Message(
        MessageType.MsgAppend, to=2002, from_=1001, term=7, log_term=7, index=100_000,
        entries=[Entry(term=7, index=100_001 + i, data=ENTRY_DATA) for i in range(entries)],
        commit=100_000, commit_term=7,
    )  # fmt: skip
    env = RaftEnvelope(
        region_id=42, from_peer=Peer(1001, 1), to_peer=Peer(2002, 2),
        region_epoch=RegionEpoch(5, 12), message=msg,
        start_key=b"user/00001000", end_key=b"user/00002000",
    )  # fmt: skip
    return RaftBatch(from_store_id=1, envelopes=[env])


def heartbeat_batch(regions: int) -> RaftBatch:
    envs = []
    for r in range(regions):
        msg = Message(
            MessageType.MsgHeartbeat, to=20_000 + r, from_=10_000 + r, term=9, commit=5_000 + r
        )
        env = RaftEnvelope(
            region_id=1000 + r, from_peer=Peer(10_000 + r, 1), to_peer=Peer(20_000 + r, 2),
            region_epoch=RegionEpoch(3, 7 + r % 5), message=msg,
            start_key=b"user/%08d" % (r * 1000), end_key=b"user/%08d" % ((r + 1) * 1000),
        )  # fmt: skip
        envs.append(env)
    return RaftBatch(from_store_id=1, envelopes=envs)


def _time_loop(fn: Callable[[], object], n: int) -> float:
    """Seconds per call of ``fn`` over ``n`` calls."""
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def run_case(case: str, batch: RaftBatch, seconds: float) -> CodecBenchResult:
    payload = encode_raft_batch(batch)
    if decode_raft_batch(payload) != batch:
        raise RuntimeError(f"{case}: the codec does not round-trip")

    def enc() -> object:
        return encode_raft_batch(batch)

    def dec() -> object:
        return decode_raft_batch(payload)

    item = loads(payload, "RaftBatch")

    def raw() -> object:
        return baseline_round_trip(item)

    # Calibrate: as many ops per round as fit in seconds / ROUNDS.
    per_op = _time_loop(enc, 20) + _time_loop(dec, 20)
    n = max(10, int(seconds / ROUNDS / per_op))
    encs, decs, raws = [], [], []
    for _ in range(ROUNDS):
        encs.append(_time_loop(enc, n))
        decs.append(_time_loop(dec, n))
        raws.append(_time_loop(raw, n))
    totals = [e + d for e, d in zip(encs, decs)]
    med = statistics.median(totals)
    return CodecBenchResult(
        case=case,
        payload_bytes=len(payload),
        ops=n * ROUNDS,
        encode_us=round(statistics.median(encs) * 1e6, 2),
        decode_us=round(statistics.median(decs) * 1e6, 2),
        us_per_op=round(med * 1e6, 2),
        best_us_per_op=round(min(totals) * 1e6, 2),
        ops_per_second=round(1 / med),
        mb_per_second=round(len(payload) / med / 1e6, 1),
        raw_cbor2_us=round(statistics.median(raws) * 1e6, 2),
        x_raw=round(statistics.median(t / r for t, r in zip(totals, raws)), 2),
    )


def cases() -> list[tuple[str, RaftBatch]]:
    return [
        ("append x1", append_batch(1)),
        ("append x10", append_batch(10)),
        ("append x100", append_batch(100)),
        ("heartbeat x64", heartbeat_batch(64)),
    ]


def run(seconds: float = 2.0) -> list[CodecBenchResult]:
    """Run every case for about ``seconds`` each."""
    run_case("warm-up", append_batch(10), 0.1)
    return [run_case(name, batch, seconds) for name, batch in cases()]


def format_table(results: list[CodecBenchResult]) -> str:
    head = (
        f"{'case':<14} {'bytes':>7} {'enc us':>8} {'dec us':>8} {'enc+dec us':>11} "
        f"{'best us':>8} {'ops/s':>9} {'MB/s':>7} {'raw us':>8} {'x raw':>6}"
    )
    rows = [
        f"{r.case:<14} {r.payload_bytes:>7,} {r.encode_us:>8} {r.decode_us:>8} "
        f"{r.us_per_op:>11} {r.best_us_per_op:>8} {r.ops_per_second:>9,} {r.mb_per_second:>7} "
        f"{r.raw_cbor2_us:>8} {r.x_raw:>6}"
        for r in results
    ]
    return "\n".join([head, *rows])


def main(seconds: float = 2.0, as_json: bool = False) -> None:
    results = run(seconds=seconds)
    if as_json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        print("Wire codec: RaftBatch encode + decode (cbor2 payload only, no framing)")
        print(format_table(results))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="run time per case")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    main(seconds=args.seconds, as_json=args.json)
