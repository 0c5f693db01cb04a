"""Creating a replica for a region this store does not host yet (multiraft-design §2.2).

Theory of operation
-------------------
A raft envelope for an unknown region is either the first sign that this store
was given a new peer (the leader's vote, pre-vote or first heartbeat) or a
leftover from a peer that no longer exists here. Creating a replica from the
wrong message resurrects a removed peer, or makes two regions claim the same
keys, so :func:`check_create` refuses unless every rule holds:

1. the envelope is addressed to this store and is not a tombstone notice;
2. the region is not tombstoned here with an epoch at least as new as the
   message's, nor with a peer id at least as large as the target's (peer ids
   only grow; a re-added peer has a new, larger id and a newer ``conf_ver``);
3. the message is an *initial* message: ``MsgRequestVote``,
   ``MsgRequestPreVote``, or ``MsgHeartbeat`` with commit 0 (TiKV
   ``is_initial_msg``); anything else for an unknown region is stale;
4. the sender's range does not overlap an initialized region of this store.

The replica created is *uninitialized*: region id and peer only, empty
ConfState, log at index 0. It can vote but not campaign, serves nothing, and
becomes initialized only by a snapshot. Its ``RegionLocalState`` and first raft
state are staged in the round's batch, so its vote survives a restart (an
uninitialized replica found on disk at startup stays *dormant* in the router,
and a later message re-creates it from those records).
"""

from __future__ import annotations

from multiraft.raft import HardState, Message, MessageType
from multiraft.storage.engine import Engine
from multiraft.storage.raft_storage import RaftStorage, SnapshotProducer
from multiraft.storage.write_batch import WriteBatch
from multiraft.store.replica import RaftSettings, Replica
from multiraft.store.router import Router
from multiraft.wire.messages import RaftEnvelope
from regions.local_state import PeerState, RegionLocalState
from regions.region import Region, RegionEpoch

__all__ = ["check_create", "create_replica", "is_initial_msg"]


def is_initial_msg(m: Message) -> bool:
    """Whether a leader or candidate may send ``m`` to a peer that does not exist yet."""
    t = m.msg_type
    return (
        t == MessageType.MsgRequestVote
        or t == MessageType.MsgRequestPreVote
        or (t == MessageType.MsgHeartbeat and m.commit == 0)
    )


def check_create(env: RaftEnvelope, *, store_id: int, router: Router) -> str | None:
    """None if ``env`` may create its region's replica here, else the drop reason.

    The reasons are ``multiraft_raft_messages_dropped_total`` labels.
    """
    if env.to_peer.store_id != store_id:
        return "mismatch_store"
    if env.is_tombstone:
        return "region_not_found"  # a removal notice for a peer that does not exist anyway
    tomb = router.tombstones.get(env.region_id)
    if tomb is not None:
        local = tomb.region.epoch
        epoch = env.region_epoch
        if epoch.conf_ver <= local.conf_ver or epoch.version < local.version:
            return "stale_epoch"
        own = tomb.region.peer_on_store(store_id)
        if own is not None and env.to_peer.id <= own.id:
            return "region_tombstone"
    if not is_initial_msg(env.message):
        return "region_not_found"
    if router.overlapping(env.start_key, env.end_key, exclude=env.region_id):
        return "region_overlap"
    return None


def create_replica(
    env: RaftEnvelope,
    *,
    engine: Engine,
    settings: RaftSettings,
    router: Router,
    batch: WriteBatch,
    producer: SnapshotProducer | None,
) -> Replica:
    """Create, register and return the uninitialized replica ``env`` is addressed to.

    Call only after :func:`check_create` said yes. A dormant replica's records are
    reused; otherwise its region state and zero raft state are staged in ``batch``.
    """
    rid = env.region_id
    rec = router.dormant.pop(rid, None)
    router.tombstones.pop(rid, None)
    if rec is not None:
        storage = RaftStorage.from_recovered(engine, rec, snapshot_producer=producer)
        region = rec.region
    else:
        storage = RaftStorage(engine, rid, snapshot_producer=producer)
        region = Region(rid, epoch=RegionEpoch(0, 0))
        batch.put_region_state(rid, RegionLocalState(PeerState.Normal, region))
        storage.set_hard_state(HardState(), batch)
    replica = Replica(env.to_peer, region, storage, settings)
    replica.remember_peer(env.from_peer)
    router.add(replica)
    return replica
