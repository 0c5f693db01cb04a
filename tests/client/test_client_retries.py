"""The client against an in-memory fake cluster: routing, retries, and which failures make
a write's outcome unknown. Time is a MockClock (``autojump_clock``): a test that expects
no backoff checks that no virtual time passed."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from multiraft.client import (
    ClusterUnavailable,
    IndeterminateWrite,
    RequestFailed,
)
from multiraft.wire import (
    Cas,
    Get,
    Internal,
    Put,
    RegionNotFound,
    ServerIsBusy,
    StaleCommand,
    Timeout,
)
from tests.client.harness import Harness


async def test_put_get_delete_cas(autojump_clock: trio.testing.MockClock) -> None:
    h = Harness()
    async with h.client() as c:
        assert c.cluster_id == h.placement.cluster_id
        assert await c.get(b"k") is None
        await c.put(b"k", b"v1")
        assert await c.get(b"k") == b"v1"
        assert await c.cas(b"k", b"nope", b"v2") == (False, b"v1")
        assert await c.cas(b"k", b"v1", b"v2") == (True, b"v1")
        assert await c.cas(b"new", None, b"x") == (True, None)  # expected absent
        assert await c.cas(b"new", b"x", None) == (True, b"x")  # new=None deletes
        await c.delete(b"k")
        await c.delete(b"k")  # deleting an absent key is fine
        assert await c.get(b"k") is None
    assert h.cluster.data == {}
    # One placement lookup, one connection, everything to the leader on store 1.
    assert h.placement.calls.count("GetRegion") == 1
    assert h.network.connects == [1]
    assert set(h.cluster.ops_to()) <= {"1:Get", "1:Put", "1:Cas", "1:Delete"}


async def test_keys_and_values_must_be_bytes(autojump_clock: trio.testing.MockClock) -> None:
    h = Harness()
    async with h.client() as c:
        with pytest.raises(TypeError):
            await c.put("k", b"v")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await c.put(b"k", "v")  # type: ignore[arg-type]


async def test_not_leader_retries_at_the_hint_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness()
    async with h.client() as c:
        await c.put(b"a", b"1")
        h.cluster.set_leader(1, 3)  # leadership moved; the client still believes store 1
        t0 = trio.current_time()
        await c.put(b"a", b"2")
        assert trio.current_time() == t0  # no backoff before the retry at the hint
        assert await c.get(b"a") == b"2"
    assert h.cluster.ops_to() == ["1:Put", "1:Put", "3:Put", "3:Get"]


async def test_not_leader_without_hint_tries_the_next_peer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness()
    async with h.client() as c:
        await c.put(b"a", b"1")
        h.cluster.set_leader(1, None)  # an election is under way
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.put, b"a", b"2")
            await trio.sleep(0.2)
            h.cluster.set_leader(1, 2)  # store 2 won
        assert h.cluster.data[b"a"] == b"2"
    stores = [sid for sid, _ in h.cluster.requests]
    assert stores[:4] == [1, 1, 2, 3]  # without a hint, the client goes round the peers
    assert stores[-1] == 2  # until the new leader takes the write


async def test_epoch_not_match_replaces_the_cached_regions(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness()
    async with h.client() as c:
        await c.put(b"a", b"1")  # caches region 1 = everything
        h.cluster.split(b"m")  # region 1 is now [, m), the new region [m, )
        h.cluster.freeze_placement()
        h.cluster.split(b"t")  # placement lags behind this one
        await c.put(b"x", b"2")
        assert h.cluster.data[b"x"] == b"2"
        routes = c.region_cache.routes()
        assert [(r.region.start_key, r.region.end_key) for r in routes] == [
            (b"", b"m"),
            (b"m", b"t"),
            (b"t", b""),
        ]
        assert await c.get(b"n") is None
    # The regions came from the store's EpochNotMatch, not from placement.
    assert h.placement.calls.count("GetRegion") == 1


async def test_region_not_found_reloads_from_placement(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness()
    async with h.client() as c:
        await c.put(b"a", b"1")
        h.cluster.inject(RegionNotFound(1))
        await c.put(b"a", b"2")
        assert h.cluster.data[b"a"] == b"2"
    assert h.placement.calls.count("GetRegion") == 2


async def test_server_is_busy_backs_off_at_least_as_asked(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness()
    async with h.client() as c:
        h.cluster.inject(ServerIsBusy("queue full", backoff_ms=300), times=2)
        t0 = trio.current_time()
        await c.put(b"a", b"1")
        assert trio.current_time() - t0 >= 0.6
    assert h.cluster.ops_to() == ["1:Put"] * 3


@pytest.mark.parametrize("error", [StaleCommand(), Timeout(), Internal("boom")])
async def test_write_with_unknown_outcome_is_not_retried(
    autojump_clock: trio.testing.MockClock, error: StaleCommand | Timeout | Internal
) -> None:
    h = Harness()
    async with h.client() as c:
        # The entry was proposed (and here even applied) before the error came back.
        h.cluster.inject(error, op=Put, apply_first=True)
        with pytest.raises(IndeterminateWrite) as info:
            await c.put(b"a", b"1")
        assert not info.value.definite
        assert "outcome unknown" in str(info.value)
    assert h.cluster.ops_to() == ["1:Put"]
    assert h.cluster.data == {b"a": b"1"}  # which is why it must not count as failed


async def test_cas_with_unknown_outcome_is_not_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness()
    async with h.client() as c:
        h.cluster.inject(StaleCommand(), op=Cas, apply_first=True)
        with pytest.raises(IndeterminateWrite):
            await c.cas(b"a", None, b"1")
        # A blind retry would have answered (False, b"1"): wrong, the first attempt won.
    assert h.cluster.ops_to() == ["1:Cas"]


@pytest.mark.parametrize("error", [StaleCommand(), Timeout()])
async def test_reads_retry_stale_command_and_timeout(
    autojump_clock: trio.testing.MockClock, error: StaleCommand | Timeout
) -> None:
    h = Harness()
    h.cluster.data[b"a"] = b"1"
    async with h.client() as c:
        h.cluster.inject(error, op=Get, times=2)
        assert await c.get(b"a") == b"1"
    assert h.cluster.ops_to() == ["1:Get"] * 3


async def test_internal_error_on_a_read_fails_definitely(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness()
    async with h.client() as c:
        h.cluster.inject(Internal("corrupt"), op=Get)
        with pytest.raises(RequestFailed) as info:
            await c.get(b"a")
        assert info.value.definite
        assert "corrupt" in str(info.value)


async def test_connection_lost_after_sending_a_write_is_indeterminate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness()
    async with h.client() as c:
        await c.put(b"a", b"0")
        h.network.lose_after_apply.add(1)
        with pytest.raises(IndeterminateWrite) as info:
            await c.put(b"a", b"1")
        assert not info.value.definite
        assert h.cluster.data[b"a"] == b"1"  # it was applied after all
        # A read after connection loss just retries (on a new connection).
        h.network.lose_after_apply.clear()
        assert await c.get(b"a") == b"1"
    assert h.network.connects == [1, 1]


async def test_read_retries_after_connection_loss(autojump_clock: trio.testing.MockClock) -> None:
    h = Harness()
    h.cluster.data[b"a"] = b"1"
    async with h.client() as c:
        await c.get(b"a")
        h.network.lose_after_apply.add(1)
        h.cluster.set_leader(1, 2)
        # Store 1's connection breaks; the client moves on to store 2, the leader.
        assert await c.get(b"a") == b"1"
    assert h.cluster.ops_to() == ["1:Get", "1:Get", "2:Get"]


async def test_unreachable_leader_store_is_a_definite_failure_so_writes_move_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness()
    h.network.down.add(1)  # the believed leader's store refuses connections
    h.cluster.freeze_placement()
    h.cluster.set_leader(1, 2)
    async with h.client() as c:
        await c.put(b"a", b"1")  # placement still says store 1 leads
    assert h.cluster.data[b"a"] == b"1"
    assert h.network.connects[:2] == [1, 2]
    assert h.cluster.ops_to() == ["2:Put"]


async def test_every_store_down_is_cluster_unavailable(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness()
    h.network.down.update({1, 2, 3})
    async with h.client(timeout=3.0) as c:
        t0 = trio.current_time()
        with pytest.raises(ClusterUnavailable) as info:
            await c.put(b"a", b"1")
        assert trio.current_time() - t0 == pytest.approx(3.0)
        assert info.value.definite  # nothing was ever sent
        assert "Connection refused" in str(info.value)
    assert h.cluster.requests == []


async def test_placement_unavailable(autojump_clock: trio.testing.MockClock) -> None:
    h = Harness()
    h.placement.unavailable = True
    with pytest.raises(ClusterUnavailable) as info:
        async with h.client():
            pass
    assert "did not answer" in str(info.value)
    h.placement.unavailable = False
    async with h.client(timeout=2.0) as c:
        h.placement.unavailable = True  # it goes away after the client connected
        with pytest.raises(ClusterUnavailable):
            await c.get(b"a")
        h.placement.unavailable = False
        assert await c.get(b"a") is None  # and comes back


async def test_not_bootstrapped_is_retried_until_it_is(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness()
    h.cluster.bootstrapped = False
    async with h.client(timeout=5.0) as c:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.put, b"a", b"1")
            await trio.sleep(1.0)
            h.cluster.bootstrapped = True
        assert h.cluster.data == {b"a": b"1"}
    h.cluster.bootstrapped = False
    async with h.client(timeout=1.0) as c:
        with pytest.raises(ClusterUnavailable) as info:
            await c.get(b"a")
        assert "not bootstrapped" in str(info.value)


async def test_a_closed_client_refuses_calls(autojump_clock: trio.testing.MockClock) -> None:
    h = Harness()
    async with h.client() as c:
        pass
    with pytest.raises(RuntimeError):
        await c.get(b"a")


async def test_statistics(autojump_clock: trio.testing.MockClock) -> None:
    h = Harness()
    h.cluster.freeze_placement()
    h.cluster.set_leader(1, 2)  # placement still says store 1
    async with h.client() as c:
        await c.put(b"a", b"1")
        s = c.statistics()
        assert (s.calls, s.attempts, s.retries, s.connections) == (1, 2, 1, 2)
        assert s.cache.regions == 1
