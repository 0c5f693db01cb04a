"""A store that placement reports as drained and removed (tombstone) stops instead of
treating the refusal as a placement outage and heartbeating forever."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from multiraft.placement.errors import PlacementRequestError
from multiraft.store.placement_loop import StoreRetired
from multiraft.wire.placement_messages import PlacementErrorCode, StoreHeartbeatReply, StoreStats
from tests.store.harness import Cluster


async def test_a_tombstoned_store_stops(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    c = Cluster(tmp_path, nursery=None, n=3)  # type: ignore[arg-type]
    original = c.placement.store_heartbeat
    retired: set[int] = set()

    async def store_heartbeat(stats: StoreStats) -> StoreHeartbeatReply:
        if stats.store_id in retired:
            raise PlacementRequestError(PlacementErrorCode.StoreTombstoned, "removed")
        return await original(stats)

    c.placement.store_heartbeat = store_heartbeat  # type: ignore[method-assign]
    with pytest.RaisesGroup(StoreRetired, flatten_subgroups=True, allow_unwrapped=True):
        async with trio.open_nursery() as nursery:
            c.nursery = nursery
            await c.start()
            await c.wait_leader()
            store = c.store(3)
            beats = store.placement_loop.store_heartbeats  # type: ignore[union-attr]
            assert beats > 0
            retired.add(3)
            await trio.sleep(60)  # mock time: dozens of heartbeats
            pytest.fail("the tombstoned store kept running")
    assert c.store(3).placement_loop.store_heartbeats == beats  # type: ignore[union-attr]
