"""Benchmark of the raft transport: envelopes through RaftTransport -> TCP -> StoreServer.

What it measures: two store endpoints in one trio loop on loopback. Store 1's
:class:`~multiraft.transport.RaftTransport` sends to store 2's
:class:`~multiraft.transport.StoreServer`, whose handler counts what arrives. The
sender runs like a store's ready loop: each round it ``send``s ``batch`` envelopes
(MsgAppend, one 128-byte entry, regions in rotation), calls ``flush`` once, and
yields; it keeps at most ``WINDOW`` rounds unacknowledged by the receiver (the
back-pressure a real store gets from its own round time). Both ends run in the
same process and thread, so the figures are the *combined* CPU cost of encode,
framing, syscalls and decode; on two machines each side would pay about half.

Figures per batch size (envelopes per flush): envelopes/s and frames/s delivered,
envelopes per frame (above ``batch`` when the sender coalesced flushes that queued
up while it was writing), and microseconds per envelope.

Run: ``python -m multiraft.bench.transport`` (``--seconds S``, ``--json``).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from functools import partial
from typing import Final

import trio

from multiraft.raft.types import Entry, Message, MessageType
from multiraft.transport import RaftTransport, StoreServer
from multiraft.wire import (
    AdminRequest,
    AdminResponse,
    Internal,
    KvRequest,
    KvResponse,
    RaftBatch,
    RaftEnvelope,
    SnapshotAck,
    SnapshotAckStatus,
    SnapshotChunk,
)
from regions.region import Peer, RegionEpoch

BATCH_SIZES: Final = (1, 16, 256)
CLUSTER_ID: Final = 0xBE_4C
ENTRY_DATA: Final = bytes(range(128))
REGIONS: Final = 64
#: Rounds the sender may run ahead of what the receiver has handled.
WINDOW: Final = 8


@dataclass
class TransportBenchResult:
    batch: int
    seconds: float
    envelopes: int
    frames: int
    envelopes_per_second: float
    frames_per_second: float
    envelopes_per_frame: float
    us_per_envelope: float
    dropped: int


class _Sink:
    """Store 2's handler: counts envelopes and wakes the sender when it falls behind."""

    def __init__(self) -> None:
        self.envelopes = 0
        self.frames = 0
        self.progress = trio.Event()

    def on_raft_batch(self, batch: RaftBatch) -> None:
        self.envelopes += len(batch.envelopes)
        self.frames += 1
        self.progress.set()

    async def on_kv_request(self, req: KvRequest) -> KvResponse:
        return KvResponse(req.request_id, Internal("benchmark sink"))

    async def on_admin_request(self, req: AdminRequest) -> AdminResponse:
        return AdminResponse(req.request_id, Internal("benchmark sink"))

    async def on_snapshot(self, first: SnapshotChunk, rest: object) -> SnapshotAck:
        return SnapshotAck(first.region_id, first.snapshot_id, 0, SnapshotAckStatus.Rejected)


def _envelopes() -> list[RaftEnvelope]:
    """One MsgAppend per region, from store 1's leaders to store 2's followers."""
    out = []
    for r in range(REGIONS):
        msg = Message(
            MessageType.MsgAppend, to=2000 + r, from_=1000 + r, term=7, log_term=7,
            index=100_000, entries=[Entry(term=7, index=100_001, data=ENTRY_DATA)],
            commit=100_000, commit_term=7,
        )  # fmt: skip
        out.append(RaftEnvelope(1 + r, Peer(1000 + r, 1), Peer(2000 + r, 2), RegionEpoch(5, 12),
                                msg, start_key=b"k%04d" % r, end_key=b"k%04d" % (r + 1)))  # fmt: skip
    return out


async def _run_case(
    transport: RaftTransport, sink: _Sink, batch: int, seconds: float
) -> TransportBenchResult:
    envs = _envelopes()
    n_envs = len(envs)
    window = WINDOW * batch
    sent = 0
    base_envelopes, base_frames = sink.envelopes, sink.frames
    base_dropped = transport.statistics().envelopes_dropped
    start = trio.current_time()
    cpu0 = time.process_time()
    deadline = start + seconds
    i = 0
    while trio.current_time() < deadline:
        for _ in range(batch):
            transport.send(2, envs[i % n_envs])
            i += 1
        sent += batch
        transport.flush()
        await trio.lowlevel.checkpoint()
        while sent - (sink.envelopes - base_envelopes) > window:
            sink.progress = trio.Event()
            with trio.fail_after(10):
                await sink.progress.wait()
    with trio.fail_after(10):  # let the last rounds land
        while sink.envelopes - base_envelopes < sent:
            sink.progress = trio.Event()
            await sink.progress.wait()
    elapsed = trio.current_time() - start
    cpu = time.process_time() - cpu0
    got = sink.envelopes - base_envelopes
    frames = sink.frames - base_frames
    return TransportBenchResult(
        batch=batch,
        seconds=round(elapsed, 3),
        envelopes=got,
        frames=frames,
        envelopes_per_second=round(got / elapsed),
        frames_per_second=round(frames / elapsed),
        envelopes_per_frame=round(got / max(frames, 1), 1),
        us_per_envelope=round(cpu / max(got, 1) * 1e6, 2),
        dropped=transport.statistics().envelopes_dropped - base_dropped,
    )


async def run(seconds: float = 2.0) -> list[TransportBenchResult]:
    """Every batch size for about ``seconds`` each (after a short warm-up)."""
    sink = _Sink()
    server = StoreServer(sink, cluster_id=CLUSTER_ID, store_id=2)
    results = []
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)

        async def resolve(store_id: int) -> str:
            return f"127.0.0.1:{server.port}"

        def unreachable(store_id: int, dropped: list[RaftEnvelope]) -> None:
            raise RuntimeError(f"store {store_id} unreachable during the benchmark")

        transport = RaftTransport(1, CLUSTER_ID, resolve, unreachable)
        await nursery.start(transport.run)
        await _run_case(transport, sink, 16, min(0.2, seconds))  # connect and warm up
        for batch in BATCH_SIZES:
            results.append(await _run_case(transport, sink, batch, seconds))
        nursery.cancel_scope.cancel()
    return results


def format_table(results: list[TransportBenchResult]) -> str:
    head = (
        f"{'batch':>5} {'envelopes/s':>12} {'frames/s':>10} {'env/frame':>10} "
        f"{'cpu us/env':>11} {'dropped':>8}"
    )
    rows = [
        f"{r.batch:>5} {r.envelopes_per_second:>12,.0f} {r.frames_per_second:>10,.0f} "
        f"{r.envelopes_per_frame:>10} {r.us_per_envelope:>11} {r.dropped:>8}"
        for r in results
    ]
    return "\n".join([head, *rows])


def main(seconds: float = 2.0, as_json: bool = False) -> None:
    results = trio.run(partial(run, seconds))
    if as_json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        print("Raft transport: RaftTransport -> loopback TCP -> StoreServer, one process")
        print("(MsgAppend with one 128-byte entry; CPU of both ends together)")
        print(format_table(results))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="run time per batch size")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    main(seconds=args.seconds, as_json=args.json)
