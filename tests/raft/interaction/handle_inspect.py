"""Read-only views: ``raft-state``, ``raft-log``, ``status``, ``applied-log``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from multiraft.raft import NO_LIMIT, GetEntriesContext, StateRole
from multiraft.raft.describe import describe_entries, quote
from multiraft.raft.tracker import ProgressState
from tests.datadriven import TestData

if TYPE_CHECKING:
    from tests.raft.interaction.env import InteractionEnv, Node


def handle_raft_state(env: InteractionEnv, d: TestData) -> None:
    """One line per node, from its own point of view::

    1: StateLeader (Voter) Term:2 Lead:1 Commit:4 Applied:4
    """
    for id in sorted(env.nodes):
        raft = env.nodes[id].raw.raft
        conf = raft.prs().conf()
        if id in conf.voters.ids():
            member = "Voter"
        elif id in conf.learners:
            member = "Learner"
        else:
            member = "Non-Member"
        env.write(
            f"{id}: State{StateRole(raft.state).name} ({member}) Term:{raft.term} "
            f"Lead:{raft.leader_id} Commit:{raft.raft_log.committed} "
            f"Applied:{raft.raft_log.applied}"
        )


def write_log(env: InteractionEnv, node: Node) -> None:
    """The entries in the node's storage (unstable entries are not shown)."""
    s = node.storage
    first, last = s.first_index(), s.last_index()
    if last < first:
        env.write(f"log is empty: first index={first}, last index={last}")
        return
    ents = s.entries(first, last + 1, NO_LIMIT, GetEntriesContext.empty(False))
    env.write(describe_entries(ents))


def handle_raft_log(env: InteractionEnv, d: TestData) -> None:
    write_log(env, env.first_node(d))


def handle_status(env: InteractionEnv, d: TestData) -> None:
    """The leader's view of every peer's replication, by id::

    3: StateReplicate match=14 next=17 paused inflight=2[full]

    Flags: ``paused`` (nothing may be sent now), ``inflight=n`` (appends not yet
    acknowledged, ``[full]`` when the window is full), ``pendingSnap=i`` (the
    snapshot in flight), ``inactive`` (not heard from since the last quorum
    check; never shown for the leader itself, which always counts as active),
    ``learner``.
    """
    node = env.first_node(d)
    raft = node.raw.raft
    if raft.state != StateRole.Leader:
        env.write(f"{node.id} is not the leader (State{StateRole(raft.state).name})")
        return
    prs = raft.prs()
    learners = prs.conf().learners
    for id, pr in sorted(prs.iter()):
        parts = [f"{id}: {pr.state} match={pr.matched} next={pr.next_idx}"]
        if pr.is_paused():
            parts.append("paused")
        if pr.ins.count():
            parts.append(f"inflight={pr.ins.count()}" + ("[full]" if pr.ins.full() else ""))
        if pr.state == ProgressState.Snapshot:
            parts.append(f"pendingSnap={pr.pending_snapshot}")
        if not pr.recent_active and id != raft.id:
            parts.append("inactive")
        if id in learners:
            parts.append("learner")
        env.write(" ".join(parts))


def handle_applied_log(env: InteractionEnv, d: TestData) -> None:
    """What the node's state machine holds: ``applied=<index>: "cmd1" "cmd2" ...``."""
    node = env.first_node(d)
    s = node.storage
    cmds = " ".join(quote(c) for c in s.applied_log)
    env.write(f"applied={s.applied_index}: {cmds}".rstrip())
