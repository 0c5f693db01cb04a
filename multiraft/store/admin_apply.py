"""Applying admin commands: splits, membership changes and log compaction.

Theory of operation
-------------------
``apply.py`` hands every committed entry that carries an admin command here.
Like the apply of writes, everything is **deterministic** (multiraft-design
§11.2): each replica decides from the entry and the region as *it* has applied
it, never from clocks, sizes or configuration, and a refused command is refused
identically everywhere (it applies nothing, the applied index still advances).

* **BatchSplit** (TiKV ``exec_batch_split``): the epoch must match in both
  fields (§4.1); :func:`regions.split.apply_batch_split` computes the regions
  (``version += n``, peers mapped by position, the rightmost range keeps the
  parent's id). The parent's new ``RegionLocalState`` is staged in the round's
  batch, and the ready loop's split hook (:attr:`ApplyContext.on_split`)
  stages every new region's initial state *in the same batch* and creates its
  replica before the next entry is applied, so the router and the ranges are
  right for whatever follows (§11.3).
* **Membership changes** (TiKV ``exec_change_peer[_v2]``): a conf-change entry
  carries the raft-level change in its data and the region-level change list
  (``ChangePeerV2``, or a v1 ``ChangePeer`` written by older versions) in its
  context. ``conf_ver`` must match; :func:`regions.conf_change.apply_conf_change`
  checks the rules (one pending change, demote before remove, never the last
  voter) and computes the new descriptor; only then is the change applied to
  Raft, and the new region and conf state are staged together. A replica that
  applied its own removal is destroyed in the same batch.
* **CompactLog** is handed to :mod:`multiraft.store.log_gc`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from multiraft.raft.confchange_codec import (
    ConfChangeDecodeError,
    decode_conf_change,
    decode_conf_change_v2,
)
from multiraft.raft.errors import ConfChangeError
from multiraft.raft.types import ConfChange, ConfChangeV2, Entry, EntryType
from multiraft.store.proposals import Answer
from multiraft.wire.command_codec import (
    BatchSplit,
    ChangePeer,
    ChangePeerV2,
    CompactLog,
    RaftCmd,
    decode_cmd,
)
from multiraft.wire.errors import WireError
from multiraft.wire.messages import EpochNotMatch, Internal, RegionNotFound, WriteOk
from regions.conf_change import MembershipError, PeerChange, apply_conf_change
from regions.epoch import CommandKind, check_epoch
from regions.local_state import PeerState, RegionLocalState
from regions.split import SplitError, apply_batch_split

if TYPE_CHECKING:
    from multiraft.store.apply import ApplyContext
    from multiraft.store.replica import Replica

__all__ = ["admin_kind", "apply_admin", "apply_conf_change_entry", "peer_changes"]

log = logging.getLogger(__name__)


def admin_kind(cmd: RaftCmd) -> CommandKind:
    """The epoch-table kind of an admin command."""
    match cmd.admin:
        case BatchSplit():
            return CommandKind.BATCH_SPLIT
        case ChangePeer() | ChangePeerV2():
            return CommandKind.CHANGE_PEER_V2
        case CompactLog():
            return CommandKind.COMPACT_LOG
    return CommandKind.NORMAL


def peer_changes(admin: ChangePeer | ChangePeerV2) -> list[PeerChange]:
    """The region-level change list of a membership command."""
    if isinstance(admin, ChangePeer):
        return [PeerChange(admin.change_type, admin.peer)]
    return [PeerChange(c.change_type, c.peer) for c in admin.changes]


def apply_admin(r: Replica, cmd: RaftCmd, ctx: ApplyContext) -> Answer:
    """Apply a normal entry's admin command (the header's region id already matched)."""
    admin = cmd.admin
    if isinstance(admin, BatchSplit):
        return _apply_split(r, cmd, admin, ctx)
    if isinstance(admin, CompactLog):
        from multiraft.store.log_gc import apply_compact_log

        return apply_compact_log(r, admin, ctx)
    # A membership change in a normal entry never reached Raft's configuration: refuse it.
    return Internal(f"{type(admin).__name__} must be a conf-change entry")


def _apply_split(r: Replica, cmd: RaftCmd, split: BatchSplit, ctx: ApplyContext) -> Answer:
    region = r.region
    if not check_epoch(CommandKind.BATCH_SPLIT, cmd.header.epoch, region.epoch):
        return EpochNotMatch([r.region_copy()])
    try:
        regions = apply_batch_split(
            region,
            [s.split_key for s in split.requests],
            [s.new_region_id for s in split.requests],
            [s.new_peer_ids for s in split.requests],
        )
    except SplitError as exc:
        log.warning("region %d: split refused: %s", r.region_id, exc)
        return Internal(f"split refused: {exc}")
    parent = next(g for g in regions if g.id == r.region_id)
    r.set_region(parent)
    ctx.batch.put_region_state(r.region_id, RegionLocalState(PeerState.Normal, parent))
    new = [g for g in regions if g.id != r.region_id]
    if ctx.on_split is not None:
        ctx.on_split(r, new, ctx.batch)
    ctx.splits += 1
    log.info("region %d: split into %s", r.region_id, [(g.id, g.start_key) for g in regions])
    return WriteOk()


def _decode(e: Entry) -> tuple[ConfChange | ConfChangeV2, RaftCmd]:
    if e.entry_type == EntryType.EntryConfChange:
        cc: ConfChange | ConfChangeV2 = decode_conf_change(e.data)
    else:
        cc = decode_conf_change_v2(e.data)
    return cc, decode_cmd(e.context)


def apply_conf_change_entry(r: Replica, e: Entry, ctx: ApplyContext) -> Answer:
    """A conf-change entry (v1 or v2) whose context is this region's membership command.

    Anything that does not check out (no or a bad context, a change list that does
    not match the raft-level change, a stale ``conf_ver``, a change the region rules
    refuse) leaves Raft's configuration and the region as they are, on every replica.
    """
    try:
        cc, cmd = _decode(e)
    except (ConfChangeDecodeError, WireError) as exc:
        log.error("region %d: undecodable conf change at %d: %s", r.region_id, e.index, exc)
        return Internal("undecodable conf change")
    admin = cmd.admin
    region = r.region
    if not isinstance(admin, ChangePeer | ChangePeerV2):
        return Internal("conf change without a membership command")
    if cmd.header.region_id != region.id:
        return RegionNotFound(cmd.header.region_id)
    changes = peer_changes(admin)
    v2 = cc.as_v2()
    if [(c.change_type, c.peer.id) for c in changes] != [
        (s.change_type, s.node_id) for s in v2.changes
    ]:
        return Internal("the conf change does not match its membership command")
    if not check_epoch(CommandKind.CHANGE_PEER_V2, cmd.header.epoch, region.epoch):
        return EpochNotMatch([r.region_copy()])
    try:
        new_region = apply_conf_change(region, changes)
    except MembershipError as exc:
        log.warning("region %d: conf change at %d refused: %s", r.region_id, e.index, exc)
        return Internal(f"conf change refused: {exc}")
    try:
        cs = r.raw_node.apply_conf_change(cc)
    except ConfChangeError as exc:
        log.warning("region %d: raft refused conf change at %d: %s", r.region_id, e.index, exc)
        return Internal(f"conf change refused: {exc}")
    r.storage.set_conf_state(cs, ctx.batch)
    r.set_region(new_region)
    ctx.batch.put_region_state(r.region_id, RegionLocalState(PeerState.Normal, new_region))
    for c in changes:
        name = c.change_type.name
        ctx.conf_changes[name] = ctx.conf_changes.get(name, 0) + 1
    if new_region.peer_by_id(r.peer.id) is None:
        r.destroy_pending = True
        ctx.removed.append(r)
    else:
        own = new_region.peer_by_id(r.peer.id)
        if own is not None and own != r.peer:
            r.peer = own  # our role changed (promoted, demoted)
    log.info("region %d: membership now %s (conf_ver %d)", r.region_id,
             [(p.id, p.store_id, p.role.name) for p in new_region.peers],
             new_region.epoch.conf_ver)  # fmt: skip
    return WriteOk()
