"""Deadlines: every call ends by its deadline, and says whether a write is in doubt.

MockClock (``autojump_clock``) makes the waits instant and the times exact."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from multiraft.client import ClusterUnavailable, RequestTimeout
from tests.client.harness import Harness


async def test_write_to_a_hung_leader_times_out_in_doubt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness()
    h.network.hang.add(1)
    async with h.client(timeout=4.0) as c:
        t0 = trio.current_time()
        with pytest.raises(RequestTimeout) as info:
            await c.put(b"a", b"1")
        assert trio.current_time() - t0 == pytest.approx(4.0)
        assert not info.value.definite  # the request reached the leader: it may commit
        assert "may or may not have been applied" in str(info.value)


async def test_a_call_timeout_overrides_the_client_default(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness()
    h.network.hang.add(1)
    async with h.client(timeout=10.0) as c:
        t0 = trio.current_time()
        with pytest.raises(RequestTimeout):
            await c.delete(b"a", timeout=0.5)
        assert trio.current_time() - t0 == pytest.approx(0.5)
        with pytest.raises(ValueError):
            await c.get(b"a", timeout=0)


async def test_write_without_a_leader_times_out_definitely(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness()
    h.cluster.set_all_leaders(None)  # every store answers NotLeader: nothing is proposed
    async with h.client(timeout=3.0) as c:
        t0 = trio.current_time()
        with pytest.raises(RequestTimeout) as info:
            await c.put(b"a", b"1")
        assert trio.current_time() - t0 == pytest.approx(3.0)
        assert info.value.definite
        assert "not leader" in info.value.last_error
    assert h.cluster.data == {}
    # It kept trying (with backoff) until the deadline, round the peers.
    assert {sid for sid, _ in h.cluster.requests} == {1, 2, 3}


async def test_read_from_a_hung_leader_moves_on_after_the_attempt_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness()
    h.cluster.data[b"a"] = b"1"
    async with h.client(timeout=5.0, attempt_timeout=1.5) as c:
        await c.get(b"a")
        # The leader hangs (partitioned) and store 2 takes over.
        h.network.hang.add(1)
        h.cluster.set_leader(1, 2)
        t0 = trio.current_time()
        assert await c.get(b"a") == b"1"
        assert trio.current_time() - t0 == pytest.approx(1.5)


async def test_read_timeout_is_definite(autojump_clock: trio.testing.MockClock) -> None:
    h = Harness()
    h.network.hang.update({1, 2, 3})
    async with h.client(timeout=2.5, attempt_timeout=1.0) as c:
        t0 = trio.current_time()
        with pytest.raises(RequestTimeout) as info:
            await c.get(b"a")
        assert trio.current_time() - t0 == pytest.approx(2.5)
        assert info.value.definite


async def test_scan_has_one_deadline_for_all_regions(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness()
    h.cluster.split(b"m")
    h.cluster.set_leader(h.cluster.region_for(b"m").id, 2)
    h.network.hang.add(2)  # the second region's leader hangs, and stays leader
    async with h.client(timeout=3.0, attempt_timeout=1.0) as c:
        t0 = trio.current_time()
        with pytest.raises(RequestTimeout):
            await c.scan()
        assert trio.current_time() - t0 == pytest.approx(3.0)


async def test_connect_to_an_unavailable_placement_is_bounded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness()
    hung = trio.Event()

    async def never(*_: object) -> None:
        await hung.wait()

    h.placement.cluster_info = never  # type: ignore[method-assign,assignment]
    t0 = trio.current_time()
    with pytest.raises(ClusterUnavailable) as info:
        async with h.client(timeout=2.0):
            pass
    assert trio.current_time() - t0 == pytest.approx(2.0)
    assert "fake-placement:1" in str(info.value)


async def test_callers_waiting_on_a_lost_store_fail_over_together(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness()
    h.network.blackholed.add(1)  # placement says store 1 leads; it is unreachable
    h.cluster.freeze_placement()
    h.cluster.set_leader(1, 2)
    async with h.client(timeout=5.0, attempt_timeout=1.0) as c:
        t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(c.put, b"k%d" % i, b"v")
        # One connection attempt waited for its timeout; the others did not queue behind
        # it one by one, they failed over with it.
        assert trio.current_time() - t0 == pytest.approx(1.0)
    assert len(h.cluster.data) == 10
    assert h.network.connects.count(1) == 1
