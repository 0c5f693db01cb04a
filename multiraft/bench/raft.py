"""Micro-benchmark of the Raft core: a 3-node group over MemStorage, in one process.

What it measures: the CPU cost of consensus alone. Every node runs the
canonical synchronous Ready loop (persist to MemStorage, send, advance, apply),
messages are delivered in memory, and nothing touches a disk or a socket.
For each batch size the leader proposes ``batch`` entries, then the group runs
Ready rounds until every node has applied them; the figures are

* committed entries per second (applied on the leader),
* messages stepped per second (all nodes),
* CPU microseconds per committed entry, summed over the three nodes.

Run: ``multiraft bench raft`` or ``python -m multiraft.bench.raft``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from multiraft.raft import Config, ConfState, MemStorage, Message, RawNode

PAYLOAD = b"x" * 64


@dataclass
class RaftBenchResult:
    batch: int
    entries: int
    seconds: float
    entries_per_second: float
    messages: int
    messages_per_second: float
    cpu_us_per_entry: float


class _Group:
    """Three RawNodes wired together in memory."""

    def __init__(self, size: int = 3) -> None:
        ids = list(range(1, size + 1))
        self.stores = {i: MemStorage.new_with_conf_state(ConfState(voters=ids)) for i in ids}
        self.nodes = {
            i: RawNode(
                Config(id=i, election_tick=10, heartbeat_tick=1, max_size_per_msg=1 << 20,
                       max_inflight_msgs=256, check_quorum=True, pre_vote=True,
                       skip_bcast_commit=True),
                self.stores[i],
            )
            for i in ids
        }
        self.applied = dict.fromkeys(ids, 0)
        self.messages = 0

    def _handle_ready(self, id: int, out: list[Message]) -> None:
        node, store = self.nodes[id], self.stores[id]
        while node.has_ready():
            rd = node.ready()
            out.extend(rd.messages)
            if not rd.snapshot.is_empty():
                store.apply_snapshot(rd.snapshot)
            if rd.entries:
                store.append(rd.entries)
            if rd.hs is not None:
                store.set_hardstate(rd.hs)
            out.extend(rd.persisted_messages)
            applied = len(rd.committed_entries)
            light = node.advance(rd)
            if light.commit_index is not None:
                store.mut_hard_state().commit = light.commit_index
            out.extend(light.messages)
            applied += len(light.committed_entries)
            node.advance_apply()
            self.applied[id] += applied

    def run_until_quiet(self) -> None:
        pending: list[Message] = []
        for id in self.nodes:
            self._handle_ready(id, pending)
        while pending:
            batch, pending = pending, []
            touched = set()
            for m in batch:
                self.nodes[m.to].step(m)
                touched.add(m.to)
            self.messages += len(batch)
            for id in sorted(touched):
                self._handle_ready(id, pending)

    def elect(self, id: int = 1) -> None:
        self.nodes[id].campaign()
        self.run_until_quiet()


def run_batch(batch: int, min_seconds: float) -> RaftBenchResult:
    group = _Group()
    group.elect(1)
    leader = group.nodes[1]
    start_applied = group.applied[1]
    start_msgs = group.messages
    entries = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    while True:
        leader.propose_batch([PAYLOAD] * batch)
        entries += batch
        group.run_until_quiet()
        if time.perf_counter() - wall0 >= min_seconds:
            break
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    committed = group.applied[1] - start_applied
    if committed < entries:
        raise RuntimeError(f"only {committed} of {entries} entries committed")
    msgs = group.messages - start_msgs
    return RaftBenchResult(
        batch=batch,
        entries=committed,
        seconds=round(wall, 3),
        entries_per_second=round(committed / wall),
        messages=msgs,
        messages_per_second=round(msgs / wall),
        cpu_us_per_entry=round(cpu / committed * 1e6, 2),
    )


def run(batches: tuple[int, ...] = (1, 16, 256), seconds: float = 3.0) -> list[RaftBenchResult]:
    run_batch(16, 0.2)  # warm-up
    return [run_batch(b, seconds) for b in batches]


def format_table(results: list[RaftBenchResult]) -> str:
    head = f"{'batch':>6} {'entries/s':>11} {'msgs/s':>10} {'CPU us/entry':>13} {'entries':>9}"
    rows = [
        f"{r.batch:>6} {r.entries_per_second:>11,} {r.messages_per_second:>10,} "
        f"{r.cpu_us_per_entry:>13} {r.entries:>9,}"
        for r in results
    ]
    return "\n".join([head, *rows])


def main(seconds: float = 3.0, as_json: bool = False) -> None:
    results = run(seconds=seconds)
    if as_json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        print("Raft core, 3 nodes, MemStorage, in-process (CPU summed over all nodes)")
        print(format_table(results))


if __name__ == "__main__":
    main()
