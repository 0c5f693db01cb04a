"""Hypothesis strategies for the placement protocol's records."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from multiraft.wire.placement_messages import (
    AddOperator,
    AllocIds,
    CancelOperator,
    ClusterInfo,
    DownPeer,
    GetAllStores,
    GetClusterInfo,
    GetOperator,
    GetRegion,
    GetRegionById,
    GetRegionStatus,
    GetStore,
    GetStoreStatus,
    Ids,
    ListOperators,
    ManualOperator,
    Ok,
    OperatorInfo,
    OperatorList,
    PlacementError,
    PlacementErrorCode,
    PlacementRequest,
    PlacementResponse,
    PutStore,
    RegionHeartbeat,
    RegionHeartbeatReply,
    RegionRoute,
    RegionRoutes,
    RegionStatus,
    ScanRegions,
    SetStoreState,
    StoreHeartbeat,
    StoreHeartbeatReply,
    StoreInfo,
    StoreList,
    StoreState,
    StoreStats,
    StoreStatus,
    StoreStatusList,
)
from regions.region import RegionEpoch
from regions.scheduling.steps import (
    AddLearner,
    DemoteVoter,
    JointEnter,
    JointLeave,
    PromoteLearner,
    RemovePeer,
    SplitRegion,
    TransferLeader,
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
epochs = st.builds(RegionEpoch, u64, u64)
peer_tuples = st.lists(peers, max_size=3).map(tuple)
steps: st.SearchStrategy[Any] = st.one_of(
    st.builds(AddLearner, epochs, peers),
    st.builds(PromoteLearner, epochs, peers),
    st.builds(DemoteVoter, epochs, peers),
    st.builds(RemovePeer, epochs, peers),
    st.builds(JointEnter, epochs, peer_tuples, peer_tuples),
    st.builds(JointLeave, epochs, peer_tuples, peer_tuples),
    st.builds(TransferLeader, epochs, u64, u64),
    st.builds(SplitRegion, epochs, st.lists(small_bytes, max_size=3).map(tuple)),
)
times = st.floats(allow_nan=False, allow_infinity=False)
operator_infos = st.builds(
    OperatorInfo, u64, texts, texts, texts, u64, st.lists(steps, max_size=4), times,
    st.none() | times,
)  # fmt: skip
store_statuses = st.builds(
    StoreStatus, store_infos, texts, st.none() | times, st.none() | store_stats, u64, u64, u64,
    times, times,
)  # fmt: skip
routes = st.builds(RegionRoute, regions, st.none() | peers)
region_statuses = st.builds(
    RegionStatus, routes, st.lists(down_peers, max_size=3), st.lists(peers, max_size=3), u64,
    u64, st.none() | times, st.none() | operator_infos,
)  # fmt: skip
bodies: st.SearchStrategy[Any] = st.one_of(
    st.builds(SetStoreState, u64, st.sampled_from(StoreState)),
    st.builds(GetStoreStatus, u64),
    st.builds(GetRegionStatus, u64),
    st.just(ListOperators()),
    st.builds(GetOperator, u64),
    st.builds(CancelOperator, u64),
    st.builds(AddOperator, st.sampled_from(ManualOperator), u64, u64, u64, small_bytes),
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

results: st.SearchStrategy[Any] = st.one_of(
    st.builds(ClusterInfo, u64, st.booleans()),
    st.builds(Ids, u64, u64),
    st.just(Ok()),
    store_infos,
    st.builds(StoreList, st.lists(store_infos, max_size=4)),
    st.builds(StoreHeartbeatReply, st.lists(regions, max_size=2)),
    st.just(RegionHeartbeatReply()),
    st.builds(RegionHeartbeatReply, steps),
    operator_infos,
    st.builds(OperatorList, st.lists(operator_infos, max_size=3)),
    routes,
    st.none(),
    st.builds(RegionRoutes, st.lists(routes, max_size=4)),
    st.builds(StoreStatusList, st.lists(store_statuses, max_size=3)),
    region_statuses,
    st.builds(PlacementError, st.sampled_from(PlacementErrorCode), texts),
)
placement_responses = st.builds(PlacementResponse, u64, results)
