"""Hypothesis strategies for the placement protocol's records."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from multiraft.wire.placement_messages import (
    AllocIds,
    ClusterInfo,
    DownPeer,
    GetAllStores,
    GetClusterInfo,
    GetRegion,
    GetRegionById,
    GetStore,
    Ids,
    Ok,
    PlacementError,
    PlacementErrorCode,
    PlacementRequest,
    PlacementResponse,
    PutStore,
    RegionHeartbeat,
    RegionHeartbeatReply,
    RegionRoute,
    RegionRoutes,
    ScanRegions,
    StoreHeartbeat,
    StoreHeartbeatReply,
    StoreInfo,
    StoreList,
    StoreState,
    StoreStats,
)
from tests.wire.wire_strategies import peers, regions, small_bytes, texts, u64

store_infos = st.builds(StoreInfo, u64, texts, texts, st.sampled_from(StoreState), texts)
store_stats = st.builds(StoreStats, u64, u64, u64, u64, u64, u64, u64, u64, u64, st.booleans(), u64)
down_peers = st.builds(DownPeer, peers, u64)
region_heartbeats = st.builds(
    RegionHeartbeat,
    regions,
    peers,
    u64,
    st.lists(down_peers, max_size=3),
    st.lists(peers, max_size=3),
    u64,
    u64,
)
bodies: st.SearchStrategy[Any] = st.one_of(
    st.just(GetClusterInfo()),
    st.builds(AllocIds, u64),
    st.builds(PutStore, store_infos),
    st.builds(GetStore, u64),
    st.just(GetAllStores()),
    st.builds(StoreHeartbeat, store_stats),
    region_heartbeats,
    st.builds(GetRegion, small_bytes),
    st.builds(GetRegionById, u64),
    st.builds(ScanRegions, small_bytes, small_bytes, u64),
)
placement_requests = st.builds(PlacementRequest, u64, bodies)

routes = st.builds(RegionRoute, regions, st.none() | peers)
results: st.SearchStrategy[Any] = st.one_of(
    st.builds(ClusterInfo, u64, st.booleans()),
    st.builds(Ids, u64, u64),
    st.just(Ok()),
    store_infos,
    st.builds(StoreList, st.lists(store_infos, max_size=4)),
    st.builds(StoreHeartbeatReply, st.lists(regions, max_size=2)),
    st.just(RegionHeartbeatReply()),
    routes,
    st.none(),
    st.builds(RegionRoutes, st.lists(routes, max_size=4)),
    st.builds(PlacementError, st.sampled_from(PlacementErrorCode), texts),
)
placement_responses = st.builds(PlacementResponse, u64, results)
