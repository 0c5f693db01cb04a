"""Proposing admin commands: the checks a leader runs before an admin entry enters its log.

Theory of operation
-------------------
Admin commands (BatchSplit, membership changes, CompactLog) reach the ready loop
as :class:`~multiraft.store.inbox.AdminProposeItem`, built by whoever decided on
them (an operator step from placement, an admin request, the split checker, log
GC) with the region epoch *they* saw. :func:`propose_admin_cmd` runs TiKV's
propose-time checks, in order (multiraft-design §4.1, §4.4):

1. the replica is initialized, not applying a snapshot, and leads;
2. the epoch matches in the fields the command checks (EpochNotMatch, with the
   current region, otherwise): a step made for an older region fails harmlessly;
3. no earlier, unapplied proposal of this leader changes a field this command
   checks (:class:`regions.epoch.EpochChangeTracker`, TiKV ``CmdEpochChecker``),
   and for a membership change Raft has no pending conf change: one pending
   conf change per region. These answer ServerIsBusy (retry later);
4. a dry run of the pure apply (:func:`regions.split.apply_batch_split`,
   :func:`regions.conf_change.apply_conf_change`) refuses what can never apply
   with a clear error instead of a log entry every replica skips.

Then the command is appended: a normal entry for a split or a compaction, a
``ConfChangeV2`` entry (with the membership command as its context) for a
membership change, and a :class:`~multiraft.store.proposals.Proposal` waits for
its apply like a write. :func:`propose_admin` is the async side used by tasks
outside the loop.
"""

from __future__ import annotations

import trio

from multiraft.raft import ProposalDropped
from multiraft.store.admin_apply import admin_kind, peer_changes
from multiraft.store.inbox import AdminProposeItem, Inbox
from multiraft.store.proposals import Answer, Proposal, Waiter
from multiraft.store.replica import Replica
from multiraft.wire.command_codec import BatchSplit, ChangePeer, ChangePeerV2, RaftCmd, encode_cmd
from multiraft.wire.messages import (
    EpochNotMatch,
    Internal,
    RegionNotFound,
    RequestError,
    ServerIsBusy,
    Timeout,
)
from regions.conf_change import MembershipError, apply_conf_change, to_conf_change_v2
from regions.epoch import check_epoch
from regions.local_state import PeerState
from regions.region import PeerRole
from regions.split import SplitError, apply_batch_split

__all__ = ["BUSY_BACKOFF_MS", "propose_admin", "propose_admin_cmd"]

#: Back-off suggested when an earlier admin command must apply first.
BUSY_BACKOFF_MS = 100


async def propose_admin(inbox: Inbox, cmd: RaftCmd, *, timeout: float) -> Answer:  # noqa: ASYNC109
    """Have the ready loop propose ``cmd``; its apply answer (WriteOk on success), or an error.

    ``Timeout`` when no answer came in time: the command may still apply later.
    """
    waiter: Waiter[Answer] = Waiter()
    inbox.put(AdminProposeItem(cmd, waiter))
    with trio.move_on_after(timeout):
        return await waiter.wait()
    waiter.abandon()
    return Timeout()


def _dry_run(r: Replica, cmd: RaftCmd) -> RequestError | None:
    admin = cmd.admin
    try:
        if isinstance(admin, BatchSplit):
            apply_batch_split(r.region, [s.split_key for s in admin.requests],
                              [s.new_region_id for s in admin.requests],
                              [s.new_peer_ids for s in admin.requests])  # fmt: skip
        elif isinstance(admin, ChangePeer | ChangePeerV2):
            after = apply_conf_change(r.region, peer_changes(admin))
            own = after.peer_by_id(r.peer.id)
            if own is None or own.role in (PeerRole.Learner, PeerRole.DemotingVoter):
                # TiKV refuses too: a leader that demotes or removes itself leaves the region
                # leaderless until an election; transfer leadership first.
                return Internal(f"peer {r.peer.id} leads region {r.region_id}: transfer "
                                "leadership before removing or demoting it")  # fmt: skip
    except (SplitError, MembershipError) as exc:
        return Internal(str(exc))
    return None


def propose_admin_cmd(r: Replica, cmd: RaftCmd, waiter: Waiter[Answer], now: float) -> Answer | None:
    """Check and propose ``cmd`` on ``r``; None once proposed (``waiter`` then waits for the
    apply), else the error to answer at once. Runs inside the ready loop only."""
    if cmd.admin is None:
        return Internal("not an admin command")
    if not r.initialized or r.peer_state != PeerState.Normal or r.destroyed:
        return RegionNotFound(r.region_id)
    if not r.is_leader():
        return r.not_leader()
    kind = admin_kind(cmd)
    if not check_epoch(kind, cmd.header.epoch, r.region.epoch):
        return EpochNotMatch([r.region_copy()])
    raft = r.raw_node.raft
    if r.epoch_tracker.conflict_index(kind, raft.term) is not None:
        return ServerIsBusy("an earlier split or membership change is not applied yet",
                            BUSY_BACKOFF_MS)  # fmt: skip
    membership = isinstance(cmd.admin, ChangePeer | ChangePeerV2)
    if membership and raft.has_pending_conf():
        return ServerIsBusy("a membership change is pending", BUSY_BACKOFF_MS)
    err = _dry_run(r, cmd)
    if err is not None:
        return err
    data = encode_cmd(cmd)
    before = raft.raft_log.last_index()
    try:
        if isinstance(cmd.admin, ChangePeer | ChangePeerV2):
            r.raw_node.propose_conf_change(data, to_conf_change_v2(peer_changes(cmd.admin)))
        else:
            r.raw_node.propose(b"", data)
    except ProposalDropped:
        return r.not_leader()
    index = raft.raft_log.last_index()
    if index != before + 1:
        return Internal("the proposal was not appended")
    r.proposals.push(Proposal(index, raft.term, cmd, waiter, now))
    r.epoch_tracker.proposed(kind, index, raft.term)
    if isinstance(cmd.admin, BatchSplit):
        r.split_index = index
    return None
