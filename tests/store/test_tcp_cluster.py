"""Three stores and the placement service in one process over real TCP on 127.0.0.1 (ports from
the OS): the placement bootstraps region 1, the stores elect a leader, and the real client writes
and reads. Real time (sockets), with a fast raft tick to keep it short."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from multiraft.client import Client
from multiraft.placement import run_placement
from multiraft.settings import PlacementConfig, StoreConfig
from multiraft.store import StoreEndpoints, StoreStartError, run_store
from multiraft.transport import RpcConnection
from multiraft.wire.messages import AdminRequest, KvRequest, Put, RegionNotFound, StoreStatus
from regions.region import RegionEpoch

pytestmark = pytest.mark.slow


def store_config(tmp_path: Path, i: int, placement: str) -> StoreConfig:
    return StoreConfig(
        store_listen="127.0.0.1:0",
        placement=placement,
        data_dir=tmp_path / f"store{i}",
        metrics_listen="127.0.0.1:0",
        raft_tick_interval=0.02,
        store_heartbeat_interval=0.5,
        region_heartbeat_interval=0.5,
        sync=False,
    )


async def test_three_stores_and_placement_over_tcp(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            pd = await nursery.start(
                run_placement,
                PlacementConfig(listen="127.0.0.1:0", metrics_listen="", data_dir=tmp_path / "pd"),
            )
            stores: list[StoreEndpoints] = []
            for i in range(3):
                stores.append(await nursery.start(run_store, store_config(tmp_path, i, pd.address)))
            assert len({s.store_id for s in stores}) == 3
            assert all(s.cluster_id == pd.cluster_id for s in stores)

            async with Client(pd.address, timeout=20) as client:
                await client.put(b"hello", b"world")
                assert await client.get(b"hello") == b"world"
                for i in range(20):
                    await client.put(b"k%02d" % i, b"%d" % i)
                assert await client.cas(b"k00", b"0", b"zero") == (True, b"0")
                await client.delete(b"k01")
                pairs = await client.scan(b"k", b"l", 100)
                assert len(pairs) == 19 and pairs[0] == (b"k00", b"zero")

            # A store answers a request for an unknown region, and its status, over TCP.
            conn = await RpcConnection.connect(
                stores[0].address, cluster_id=pd.cluster_id, timeout=5
            )
            try:
                resp = await conn.kv(
                    KvRequest(1, 424242, RegionEpoch(), Put(b"x", b"y")), timeout=5
                )
                assert resp.result == RegionNotFound(424242)
                st = await conn.admin(AdminRequest(2, 0, RegionEpoch(), StoreStatus()), timeout=5)
                assert getattr(st.result, "store_id", None) == stores[0].store_id
                assert getattr(st.result, "region_count", None) == 1
            finally:
                await conn.aclose()

            # /metrics is served and counts the ready rounds.
            host, port = stores[0].metrics_address.rsplit(":", 1)
            stream = await trio.open_tcp_stream(host, int(port))
            await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            body = b""
            while chunk := await stream.receive_some(65536):
                body += chunk
            await stream.aclose()
            assert b"multiraft_raft_ready_rounds_total" in body
            assert b'multiraft_store_regions{role="leader"}' in body
            nursery.cancel_scope.cancel()


async def test_a_second_store_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            pd = await nursery.start(
                run_placement,
                PlacementConfig(listen="127.0.0.1:0", metrics_listen="", data_dir=tmp_path / "pd"),
            )
            cfg = store_config(tmp_path, 0, pd.address)
            await nursery.start(run_store, cfg)
            with pytest.raises(StoreStartError, match="locked"):
                await run_store(cfg)
            nursery.cancel_scope.cancel()
