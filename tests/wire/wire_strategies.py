"""Hypothesis strategies for every type the wire codec carries.

Values lean small (as real ids and indexes are) but reach the edges of their
ranges: u64 up to 2**64-1, i64 priorities down to -2**63. Entry lists mix the
common short form (Normal entries without context) with the full form.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from multiraft.raft.types import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
)
from multiraft.wire import (
    AddPeer,
    AdminOk,
    AdminRequest,
    AdminResponse,
    BatchPut,
    Cas,
    CasResult,
    Delete,
    EpochNotMatch,
    ErrorCode,
    ErrorNotice,
    Get,
    GetResult,
    Hello,
    InjectFaults,
    Internal,
    KeyNotInRegion,
    KvRequest,
    KvResponse,
    NotLeader,
    PromoteLearner,
    Put,
    RaftBatch,
    RaftEnvelope,
    ReadMode,
    RegionNotFound,
    RegionStatus,
    RegionStatusResult,
    RemovePeer,
    Scan,
    ScanResult,
    ServerIsBusy,
    SnapshotAck,
    SnapshotAckStatus,
    SnapshotChunk,
    SplitRegion,
    SplitResult,
    StaleCommand,
    StoreStatus,
    StoreStatusResult,
    Timeout,
    TransferLeader,
    WriteOk,
)
from regions.region import Peer, PeerRole, Region, RegionEpoch

U64_MAX = 2**64 - 1

u64 = st.one_of(st.integers(0, 300), st.integers(0, U64_MAX), st.just(U64_MAX))
i64 = st.one_of(st.integers(-5, 5), st.integers(-(2**63), 2**63 - 1))
small_bytes = st.binary(max_size=48)
opt_bytes = st.none() | small_bytes
texts = st.text(max_size=24)

plain_entries = st.builds(Entry, st.just(EntryType.EntryNormal), u64, u64, small_bytes)
any_entries = st.builds(
    Entry, st.sampled_from(EntryType), u64, u64, small_bytes, small_bytes, st.booleans()
)
entry_lists = st.one_of(
    st.lists(plain_entries, max_size=6), st.lists(any_entries | plain_entries, max_size=6)
)
id_lists = st.lists(u64, max_size=5)
conf_states = st.builds(ConfState, id_lists, id_lists, id_lists, id_lists, st.booleans())
snapshots = st.builds(Snapshot, small_bytes, st.builds(SnapshotMetadata, conf_states, u64, u64))
hard_states = st.builds(HardState, u64, u64, u64)

messages = st.builds(
    Message,
    msg_type=st.sampled_from(MessageType),
    to=u64,
    from_=u64,
    term=u64,
    log_term=u64,
    index=u64,
    entries=entry_lists,
    commit=u64,
    commit_term=u64,
    snapshot=st.none() | snapshots,
    request_snapshot=u64,
    reject=st.booleans(),
    reject_hint=u64,
    context=small_bytes,
    deprecated_priority=u64,
    priority=i64,
)

peers = st.builds(Peer, u64, u64, st.sampled_from(PeerRole))
epochs = st.builds(RegionEpoch, u64, u64)
regions = st.builds(Region, u64, small_bytes, small_bytes, epochs, st.lists(peers, max_size=4))

envelopes = st.builds(
    RaftEnvelope, u64, peers, peers, epochs, messages, st.booleans(), small_bytes, small_bytes
)
raft_batches = st.builds(RaftBatch, u64, st.lists(envelopes, max_size=4))

pairs = st.lists(st.tuples(small_bytes, small_bytes), max_size=5)
kv_ops = st.one_of(
    st.builds(Get, small_bytes),
    st.builds(Put, small_bytes, small_bytes),
    st.builds(Delete, small_bytes),
    st.builds(Scan, small_bytes, small_bytes, u64),
    st.builds(Cas, small_bytes, opt_bytes, opt_bytes),
    st.builds(BatchPut, pairs),
)
kv_requests = st.builds(KvRequest, u64, u64, epochs, kv_ops, st.sampled_from(ReadMode))

request_errors = st.one_of(
    st.builds(NotLeader, u64, st.none() | peers),
    st.builds(EpochNotMatch, st.lists(regions, max_size=3)),
    st.builds(RegionNotFound, u64),
    st.builds(KeyNotInRegion, small_bytes, u64, small_bytes, small_bytes),
    st.builds(ServerIsBusy, texts, u64),
    st.builds(StaleCommand),
    st.builds(Timeout),
    st.builds(Internal, texts),
)
kv_results = st.one_of(
    st.builds(GetResult, opt_bytes),
    st.builds(ScanResult, pairs),
    st.builds(CasResult, st.booleans(), opt_bytes),
    st.builds(WriteOk),
)
kv_responses = st.builds(KvResponse, u64, kv_results | request_errors)

admin_commands = st.one_of(
    st.builds(SplitRegion, small_bytes),
    st.builds(TransferLeader, peers),
    st.builds(AddPeer, peers),
    st.builds(RemovePeer, peers),
    st.builds(PromoteLearner, peers),
    st.builds(RegionStatus),
    st.builds(StoreStatus),
    st.builds(InjectFaults, st.lists(u64, max_size=4)),
)
admin_requests = st.builds(AdminRequest, u64, u64, epochs, admin_commands)
admin_results = st.one_of(
    st.builds(AdminOk),
    st.builds(SplitResult, st.lists(regions, max_size=3)),
    st.builds(RegionStatusResult, regions, st.none() | peers, u64, u64, u64, u64),
    st.builds(StoreStatusResult, u64, texts, u64, u64, u64),
)
admin_responses = st.builds(AdminResponse, u64, admin_results | request_errors)

snapshot_chunks = st.builds(
    SnapshotChunk, u64, u64, u64, small_bytes, st.booleans(), st.none() | envelopes
)
snapshot_acks = st.builds(SnapshotAck, u64, u64, u64, st.sampled_from(SnapshotAckStatus), texts)
hellos = st.builds(Hello, u64, u64, texts)
error_notices = st.builds(ErrorNotice, st.sampled_from(ErrorCode), texts)

#: Every frame payload type.
payloads: st.SearchStrategy[Any] = st.one_of(
    raft_batches,
    kv_requests,
    kv_responses,
    admin_requests,
    admin_responses,
    snapshot_chunks,
    snapshot_acks,
    hellos,
    error_notices,
)
