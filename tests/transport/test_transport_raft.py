"""RaftTransport: batching per flush, order per destination, bounded queues, reconnects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from multiraft.raft.types import MessageType
from multiraft.transport import Backoff, PeerState, RaftTransport, TransportStatistics
from multiraft.wire import RaftEnvelope
from tests.transport.transport_support import (
    CID,
    Changes,
    RecordingHandler,
    envelope,
    new_metrics,
    sample,
    serving,
    settle,
)


class Unreachable:
    """Records ``on_unreachable`` calls and lets a test wait for them."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, list[RaftEnvelope]]] = []
        self.changes = Changes()

    def __call__(self, store_id: int, dropped: list[RaftEnvelope]) -> None:
        self.calls.append((store_id, list(dropped)))
        self.changes.notify()


@asynccontextmanager
async def transport(
    ports: dict[int, int], unreachable: Unreachable | None = None, **kw: object
) -> AsyncIterator[RaftTransport]:
    """A running RaftTransport of store 1 that resolves store ids through ``ports``."""

    async def resolve(store_id: int) -> str:
        return f"127.0.0.1:{ports[store_id]}"

    t = RaftTransport(1, CID, resolve, unreachable or Unreachable(), **kw)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(t.run)
        yield t
        nursery.cancel_scope.cancel()


def order(envs: list[RaftEnvelope]) -> list[tuple[int, int]]:
    return [(e.region_id, e.message.index) for e in envs]


async def test_one_flush_is_one_frame_with_every_envelope_in_order() -> None:
    metrics, registry = new_metrics()
    handler = RecordingHandler()
    async with serving(handler) as server, transport({2: server.port}, metrics=metrics) as t:
        sent = [envelope(region_id=r, n=i) for i in range(100) for r in (1, 2, 3)]
        assert all(t.send(2, e) for e in sent)
        assert handler.batches == []  # nothing leaves before the flush
        t.flush()
        await handler.changes.wait_until(lambda: len(handler.envelopes) == len(sent))
        assert len(handler.batches) == 1
        assert handler.batches[0].from_store_id == 1
        assert order(handler.batches[0].envelopes) == order(sent)
        assert handler.batches[0].envelopes[5] == sent[5]

        await settle()
        assert t.statistics().queued == 0  # the sender has done its count
        stats = t.statistics()
        assert (stats.envelopes_sent, stats.frames_sent, stats.queued) == (300, 1, 0)
        assert sample(registry, "multiraft_transport_frames_sent_total") == 1
        assert sample(registry, "multiraft_transport_frame_messages_sum") == 300
        assert sample(registry, "multiraft_transport_messages_sent_total", type="MsgAppend") == 300
        assert sample(registry, "multiraft_transport_send_queue_length", to_store="2") == 0


async def test_order_is_kept_across_many_flushes() -> None:
    handler = RecordingHandler()
    async with serving(handler) as server, transport({2: server.port}, max_batch=64) as t:
        sent = []
        for round_ in range(50):
            for r in range(1, 4):
                e = envelope(region_id=r, n=round_, data=b"d" * round_)
                sent.append(e)
                assert t.send(2, e)
            t.flush()
            if round_ % 7 == 0:
                await trio.lowlevel.checkpoint()  # let some rounds go out alone
        await handler.changes.wait_until(lambda: len(handler.envelopes) == len(sent))
        assert order(handler.envelopes) == order(sent)
        assert [e.message.entries for e in handler.envelopes] == [e.message.entries for e in sent]
        assert len(handler.batches) <= 50  # never more than one frame per flush
        assert all(len(b.envelopes) <= 64 for b in handler.batches)


async def test_a_full_queue_refuses_and_counts_the_drop() -> None:
    metrics, registry = new_metrics()
    handler = RecordingHandler()
    async with (
        serving(handler) as server,
        transport({2: server.port}, queue_size=3, metrics=metrics) as t,
    ):
        assert [t.send(2, envelope(n=i)) for i in range(4)] == [True, True, True, False]
        stats = t.statistics()
        assert stats.dropped_by_reason == {"queue_full": 1}
        assert stats.queued == 3
        assert (
            sample(registry, "multiraft_transport_messages_dropped_total", reason="queue_full") == 1
        )
        t.flush()
        await handler.changes.wait_until(lambda: len(handler.envelopes) == 3)
        assert order(handler.envelopes) == [(1, 0), (1, 1), (1, 2)]
        # Written envelopes leave the queue: there is room again.
        await settle()
        assert t.statistics().queued == 0
        assert t.send(2, envelope(n=9))


async def test_destination_going_away_is_reported_and_the_sender_reconnects_with_backoff(
    mock_clock: trio.testing.MockClock,
) -> None:
    """Virtual time: the backoff delays pass when the test jumps the clock."""
    metrics, registry = new_metrics()
    handler = RecordingHandler()
    unreachable = Unreachable()
    backoff = Backoff(initial=0.2, maximum=0.4, multiplier=2.0, jitter=0.0)
    ports: dict[int, int] = {}
    async with trio.open_nursery() as nursery:

        async def run_store_2(port: int, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
            with trio.CancelScope() as scope:
                async with serving(handler, port=port) as server:
                    ports[2] = server.port
                    task_status.started(scope)
                    await trio.sleep_forever()

        store_2 = await nursery.start(run_store_2, 0)
        async with transport(ports, unreachable, backoff=backoff, metrics=metrics) as t:
            t.send(2, envelope(n=1))
            t.flush()
            await handler.changes.wait_until(lambda: len(handler.envelopes) == 1)

            # Store 2 goes away: the idle connection's loss is reported (nothing was queued).
            store_2.cancel()
            await unreachable.changes.wait_until(lambda: len(unreachable.calls) == 1)
            assert unreachable.calls[0] == (2, [])
            assert t.statistics().peers[2].state is PeerState.IDLE

            # The next flush finds nobody: its envelopes are dropped and reported.
            lost = [envelope(n=2), envelope(region_id=5, n=3)]
            for e in lost:
                assert t.send(2, e)
            t.flush()
            await unreachable.changes.wait_until(lambda: len(unreachable.calls) == 2)
            assert unreachable.calls[1] == (2, lost)
            peer = t.statistics().peers[2]
            assert (peer.state, peer.backoff) == (PeerState.BACKOFF, 0.2)
            # While backing off, sends are refused at once.
            assert not t.send(2, envelope(n=4))
            assert t.statistics().dropped_by_reason == {"disconnected": 3}

            # After the delay, one more failed attempt doubles it.
            mock_clock.jump(peer.retry_at - trio.current_time())
            assert t.send(2, envelope(n=5))
            t.flush()
            await unreachable.changes.wait_until(lambda: len(unreachable.calls) == 3)
            peer = t.statistics().peers[2]
            assert peer.backoff == 0.4
            assert peer.retry_at - trio.current_time() == pytest.approx(0.4)

            # Store 2 comes back on the same port; the first send after the delay gets through.
            await nursery.start(run_store_2, ports[2])
            assert not t.send(2, envelope(n=99))  # not yet
            mock_clock.jump(peer.retry_at - trio.current_time())
            assert t.send(2, envelope(n=6))
            t.flush()
            await handler.changes.wait_until(lambda: len(handler.envelopes) == 2)
            assert order(handler.envelopes) == [(1, 1), (1, 6)]
            peer = t.statistics().peers[2]
            assert (peer.state, peer.reconnects, peer.backoff) == (PeerState.CONNECTED, 1, 0.0)
            assert sample(registry, "multiraft_transport_reconnects_total") == 1
            assert (
                sample(registry, "multiraft_transport_connection_errors_total", kind="connect") == 2
            )
            assert (
                sample(registry, "multiraft_transport_connection_errors_total", kind="closed") == 1
            )
        nursery.cancel_scope.cancel()


async def test_an_unresolvable_store_is_reported() -> None:
    unreachable = Unreachable()
    async with transport({}, unreachable) as t:  # resolve raises KeyError
        e = envelope()
        assert t.send(3, e)
        t.flush()
        await unreachable.changes.wait_until(lambda: len(unreachable.calls) == 1)
        assert unreachable.calls == [(3, [e])]
        assert t.statistics().dropped_by_reason == {"unresolved": 1}


async def test_the_wrong_store_behind_an_address_is_not_used() -> None:
    unreachable = Unreachable()
    handler = RecordingHandler()
    async with (
        serving(handler, store_id=9) as server,
        transport({2: server.port}, unreachable) as t,
    ):
        assert t.send(2, envelope())
        t.flush()
        await unreachable.changes.wait_until(lambda: len(unreachable.calls) == 1)
        assert handler.batches == []
        assert t.statistics().peers[2].state is PeerState.BACKOFF


async def test_a_message_larger_than_a_frame_is_dropped_alone() -> None:
    unreachable = Unreachable()
    handler = RecordingHandler()
    async with (
        serving(handler) as server,
        transport({2: server.port}, unreachable, max_frame_size=4096) as t,
    ):
        small_1, big, small_2 = envelope(n=1), envelope(n=2, data=b"x" * 5000), envelope(n=3)
        for e in (small_1, big, small_2):
            assert t.send(2, e)
        t.flush()
        await handler.changes.wait_until(lambda: len(handler.envelopes) == 2)
        assert order(handler.envelopes) == [(1, 1), (1, 3)]
        assert unreachable.calls == [(2, [big])]
        assert t.statistics().dropped_by_reason == {"frame_too_large": 1}


async def test_sends_before_run_wait_for_it_and_shutdown_drops_the_rest() -> None:
    handler = RecordingHandler()
    async with serving(handler) as server:

        async def resolve(store_id: int) -> str:
            return f"127.0.0.1:{server.port}"

        t = RaftTransport(1, CID, resolve, Unreachable())
        assert t.send(2, envelope(n=1))
        t.flush()
        async with trio.open_nursery() as nursery:
            await nursery.start(t.run)
            await handler.changes.wait_until(lambda: len(handler.envelopes) == 1)
            assert t.send(2, envelope(n=2))  # pushed, never flushed
            nursery.cancel_scope.cancel()
        stats: TransportStatistics = t.statistics()
        assert stats.dropped_by_reason == {"shutdown": 1}
        assert not t.send(2, envelope(n=3))
        with pytest.raises(RuntimeError):
            await t.run()


async def test_heartbeats_of_many_regions_share_a_frame() -> None:
    handler = RecordingHandler()
    async with serving(handler) as server, transport({2: server.port}) as t:
        for r in range(1, 1001):
            t.send(2, envelope(region_id=r, msg_type=MessageType.MsgHeartbeat))
        t.flush()
        await handler.changes.wait_until(lambda: len(handler.envelopes) == 1000)
        assert len(handler.batches) == 1
        assert server.statistics().raft_envelopes == 1000
