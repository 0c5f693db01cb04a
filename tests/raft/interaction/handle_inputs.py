"""Inputs to one node: campaigns, proposals, ticks, transfers, reads, reports.

Each calls the RawNode API exactly as an application would. A refused call
(``ProposalDropped`` and friends) is printed as an ``error:`` line; the
scenario carries on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from multiraft.raft import (
    ConfChange,
    ConfChangeTransition,
    ConfChangeV2,
    RaftError,
)
from multiraft.raft.types import parse_conf_change
from tests.datadriven import TestData

if TYPE_CHECKING:
    from tests.raft.interaction.env import InteractionEnv

_TRANSITIONS = {
    "auto": ConfChangeTransition.Auto,
    "implicit": ConfChangeTransition.Implicit,
    "explicit": ConfChangeTransition.Explicit,
}


def _refused(env: InteractionEnv, exc: RaftError) -> None:
    env.error(type(exc).__name__)


def handle_campaign(env: InteractionEnv, d: TestData) -> None:
    node = env.first_node(d)
    node.raw.campaign()


def handle_propose(env: InteractionEnv, d: TestData) -> None:
    node = env.first_node(d)
    datas = [a.key for a in d.args[1:] if not a.vals]
    if len(datas) != 1:
        d.fail("propose needs a node id and one datum")
    try:
        node.raw.propose(b"", datas[0].encode())
    except RaftError as exc:
        _refused(env, exc)


def handle_propose_conf_change(env: InteractionEnv, d: TestData) -> None:
    """Propose the changes in the input; ``v1=true`` makes a single-step ConfChange."""
    node = env.first_node(d)
    transition = d.scan_str("transition", "auto")
    if transition not in _TRANSITIONS:
        d.fail(f"unknown transition {transition!r}")
    try:
        changes = parse_conf_change(d.input)
    except ValueError as exc:
        d.fail(str(exc))
    cc: ConfChange | ConfChangeV2
    if d.scan_str("v1", "false") == "true":
        if len(changes) != 1 or transition != "auto":
            d.fail("a v1 conf change has exactly one change and no transition")
        cc = ConfChange(change_type=changes[0].change_type, node_id=changes[0].node_id)
    else:
        cc = ConfChangeV2(transition=_TRANSITIONS[transition], changes=changes)
    try:
        node.raw.propose_conf_change(b"", cc)
    except RaftError as exc:
        _refused(env, exc)


def _tick(env: InteractionEnv, d: TestData, ticks: int) -> None:
    node = env.first_node(d)
    for _ in range(ticks):
        node.raw.tick()


def handle_tick_heartbeat(env: InteractionEnv, d: TestData) -> None:
    """Tick one heartbeat interval (``heartbeat_tick`` ticks)."""
    _tick(env, d, env.first_node(d).config.heartbeat_tick)


def handle_tick_election(env: InteractionEnv, d: TestData) -> None:
    """Tick one election timeout (``election_tick`` ticks; the timeout is not randomized)."""
    _tick(env, d, env.first_node(d).config.election_tick)


def handle_transfer_leadership(env: InteractionEnv, d: TestData) -> None:
    node = env.node(d, d.scan_int("from"))
    node.raw.transfer_leader(d.scan_int("to"))


def handle_read_index(env: InteractionEnv, d: TestData) -> None:
    """Request a read; the answer is a ReadState in a later Ready of this node."""
    node = env.first_node(d)
    ctxs = [a.key for a in d.args[1:] if not a.vals]
    if len(ctxs) != 1:
        d.fail("read-index needs a node id and a request context")
    try:
        node.raw.read_index(ctxs[0].encode())
    except RaftError as exc:
        _refused(env, exc)


def handle_report_unreachable(env: InteractionEnv, d: TestData) -> None:
    ids = d.positional_ints()
    if len(ids) != 2:
        d.fail("report-unreachable needs two node ids")
    env.node(d, ids[0]).raw.report_unreachable(ids[1])
