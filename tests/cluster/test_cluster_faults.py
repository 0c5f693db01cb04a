"""Faults under a running workload, on a real 3-store cluster, checked for linearizability.

Each test runs :class:`~tests.cluster.workload.Workload` (4 concurrent clients doing
get/put/cas/delete on 5 keys at a time, seeded choices) while a nemesis acts, step by step, each step
waiting on a condition (a new leader, N more acknowledged operations, a replica caught up)
under a deadline. Afterwards every key is read once more (linearizably, recorded), and the
whole history must be linearizable (``tests/support/linearizability.py``): no acknowledged
write lost, no read of a value never written or older than a completed write. The replicas
must also converge: once the log is fully applied everywhere, a stale read of every key on
every store returns the final value.
"""

from __future__ import annotations

import time

import pytest
import trio

from multiraft.transport import TransportError
from multiraft.wire import Get, GetResult, NotLeader, ReadMode
from multiraft.wire.placement_messages import RegionRoute
from tests.cluster.harness import Cluster, Node, fail_after
from tests.cluster.workload import Workload, final_reads
from tests.support.history import HistoryRecorder
from tests.support.linearizability import check

pytestmark = pytest.mark.slow

#: Acknowledged operations the workload must complete in each phase of a nemesis.
PHASE_OPS = 40


async def _check_history(cluster: Cluster, workload: Workload, region_id: int) -> None:
    recorder = workload.recorder
    await cluster.wait_converged(region_id)
    final = await final_reads(cluster.placement_address, recorder, workload.keys)
    history = recorder.history()
    t0 = time.monotonic()
    result = check(history, timeout=60)
    print(f"checked {len(history)} ops in {time.monotonic() - t0:.2f}s")
    assert result.ok is True, f"{result.verdict}:\n{result.explanation}"
    # Every replica holds the same data: stale reads (any replica's applied state) of every
    # key on every store return what the linearizable final read returned.
    route = await cluster.route()
    for node in cluster.stores:
        for key in workload.keys:
            resp = await cluster.kv(node, route, Get(key), read_mode=ReadMode.Stale)
            assert resp.result == GetResult(final[key]), (node.name, key, resp.result)


async def _read_from(
    cluster: Cluster, node: Node, route: RegionRoute, out: trio.MemorySendChannel[object]
) -> None:
    """A linearizable Get straight to ``node``; sends its answer, or the transport error
    (no answer within the deadline), to ``out``."""
    try:
        resp = await cluster.kv(node, route, Get(b"reg/0/0"), timeout=8.0)
    except TransportError as e:
        await out.send(e)
    else:
        await out.send(resp.result)


def _followers(cluster: Cluster, leader: Node) -> list[Node]:
    return [n for n in cluster.stores if n is not leader]


async def test_kill_follower_then_leader_under_load(cluster: Cluster) -> None:
    """kill -9 a follower, restart it; then kill -9 the leader, restart it; all while four
    clients read and write. The majority keeps serving throughout, a new leader is elected
    after the leader dies, and the restarted stores recover their data from disk."""
    await cluster.start()
    region_id = (await cluster.route()).region.id
    recorder = HistoryRecorder()
    workload = Workload(cluster.placement_address, recorder, seed=4)
    async with trio.open_nursery() as nursery:
        await nursery.start(workload.run)
        await workload.wait_ok(PHASE_OPS, at_least=1.5, what="before any fault")

        leader, term = await cluster.leader(region_id)
        follower = _followers(cluster, leader)[0]
        cluster.kill(follower)
        await workload.wait_ok(PHASE_OPS, at_least=2.0, what=f"with {follower.name} dead")
        await cluster.restart(follower)
        await cluster.wait_caught_up(follower, region_id)
        await workload.wait_ok(PHASE_OPS, at_least=1.0, what=f"after {follower.name} came back")

        leader, term = await cluster.leader(region_id)
        cluster.kill(leader)
        survivors = _followers(cluster, leader)
        new_leader, new_term = await cluster.leader(region_id, among=survivors, newer_than=term)
        assert new_leader is not leader and new_term > term
        await workload.wait_ok(
            PHASE_OPS, at_least=2.0, what=f"with the old leader {leader.name} dead"
        )
        await cluster.restart(leader)
        await cluster.wait_caught_up(leader, region_id)
        await workload.wait_ok(PHASE_OPS, at_least=1.0, what=f"after {leader.name} came back")
        workload.stop()
    assert workload.stats.ok >= 5 * PHASE_OPS, workload.stats.describe()
    print(workload.stats.describe(), f"{len(workload.keys)} keys")
    await _check_history(cluster, workload, region_id)


async def test_partitioned_leader_stops_serving(cluster: Cluster) -> None:
    """Cut the leader off from both followers (fault injection on every store): the majority
    elects a new leader and keeps serving; the old leader cannot complete a ReadIndex, so a
    linearizable read sent straight to it never returns a value; after the heal it rejoins."""
    await cluster.start()
    route = await cluster.route()
    region_id = route.region.id
    recorder = HistoryRecorder()
    workload = Workload(cluster.placement_address, recorder, seed=7)
    async with trio.open_nursery() as nursery:
        await nursery.start(workload.run)
        await workload.wait_ok(PHASE_OPS, at_least=1.5, what="before the partition")

        old, term = await cluster.leader(region_id)
        await cluster.partition(old)
        # A linearizable read sent to the old leader while it still believes it leads: its
        # ReadIndex needs a quorum's heartbeat answers, which cannot come.
        answers_in, answers_out = trio.open_memory_channel[object](2)
        nursery.start_soon(_read_from, cluster, old, route, answers_in)
        majority = _followers(cluster, old)
        new, new_term = await cluster.leader(region_id, among=majority, newer_than=term)
        assert new is not old and new_term > term
        await workload.wait_ok(PHASE_OPS, at_least=2.5, what=f"with {old.name} cut off")
        # Once check-quorum made it step down, it answers NotLeader at once.
        nursery.start_soon(_read_from, cluster, old, route, answers_in)
        with fail_after(15, "the old leader's answers to two reads"):
            answers = [await answers_out.receive() for _ in range(2)]
        for answer in answers:
            assert not isinstance(answer, GetResult), (
                f"the partitioned old leader served a linearizable read: {answer}"
            )
        assert isinstance(answers[1], NotLeader), answers
        st = await cluster.region_status(old, region_id)
        assert st is not None and (st.leader is None or st.leader.store_id != old.store_id), st

        await cluster.heal()
        await cluster.wait_caught_up(old, region_id)
        await workload.wait_ok(PHASE_OPS, at_least=1.5, what="after the heal")
        workload.stop()
    print(workload.stats.describe(), f"{len(workload.keys)} keys")
    await _check_history(cluster, workload, region_id)
