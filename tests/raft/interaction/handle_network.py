"""The network: ``deliver-msgs``, ``stabilize``, ``isolate`` and ``heal``.

Messages wait in one FIFO queue per recipient until delivered or dropped.
Delivery steps a message into its recipient with ``RawNode.step``; an error
(e.g. ``StepPeerNotFound`` for a response from a peer the node does not know)
is printed and the delivery carries on. A message to or from an isolated node
is dropped when it is sent, and ``isolate`` drops what is already in flight
to or from the node.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from multiraft.raft import MessageType, RaftError
from multiraft.raft.describe import describe_message
from tests.datadriven import TestData
from tests.raft.interaction.handle_ready import persist, process_ready

if TYPE_CHECKING:
    from tests.raft.interaction.env import InteractionEnv

#: A stabilize that has not settled after this many rounds is a livelock.
MAX_ROUNDS = 1000


def deliver(env: InteractionEnv, to: int, drop: bool, msg_type: MessageType | None = None) -> int:
    """Deliver (or drop) the queued messages to ``to``; returns how many were handled."""
    queue = env.queues.get(to, [])
    take = [m for m in queue if msg_type is None or m.msg_type == msg_type]
    env.queues[to] = [m for m in queue if not (msg_type is None or m.msg_type == msg_type)]
    for m in take:
        if drop or env.cut_off(m):
            env.write(f"dropped: {describe_message(m)}")
            continue
        env.write(describe_message(m))
        node = env.nodes.get(to)
        if node is None:
            env.error(f"no node {to}")
            continue
        try:
            node.raw.step(m)
        except RaftError as exc:
            env.error(type(exc).__name__)
    return len(take)


def handle_deliver_msgs(env: InteractionEnv, d: TestData) -> None:
    """Deliver the queued messages to each given node, then drop those to ``drop=(...)``."""
    type_name = d.scan_str("type", "")
    msg_type = None
    if type_name:
        if type_name not in MessageType.__members__:
            d.fail(f"unknown message type {type_name}")
        msg_type = MessageType[type_name]
    to_deliver = d.positional_ints()
    to_drop = d.scan_ints("drop", [])
    if set(to_deliver) & set(to_drop):
        d.fail("cannot both deliver and drop messages to the same node")
    handled = 0
    for id in to_deliver:
        env.node(d, id)
        handled += deliver(env, id, False, msg_type)
    for id in to_drop:
        handled += deliver(env, id, True, msg_type)
    if handled == 0:
        env.write("no messages")


def handle_stabilize(env: InteractionEnv, d: TestData) -> None:
    """Handle Readies and deliver messages among the given nodes until nothing moves.

    Each round: every node with a Ready handles one (in id order), then every
    node receives its queued messages (in id order), then every node with
    unpersisted async writes persists them. Messages to nodes outside the set
    stay queued.
    """
    ids = env.node_ids(d)
    for _ in range(MAX_ROUNDS):
        done = True
        for id in ids:
            node = env.nodes[id]
            if node.raw.has_ready():
                with env.block(f"> {id} handling Ready"):
                    process_ready(env, node)
                done = False
        for id in ids:
            if env.pending(id):
                with env.block(f"> {id} receiving messages"):
                    deliver(env, id, False)
                done = False
        for id in ids:
            node = env.nodes[id]
            if node.unpersisted_ready:
                with env.block(f"> {id} persisting"):
                    persist(env, node)
                done = False
        if done:
            return
    env.error(f"not stable after {MAX_ROUNDS} rounds")


def handle_isolate(env: InteractionEnv, d: TestData) -> None:
    """Cut the given nodes off: messages to or from them are dropped from now on.

    What is already in flight to or from them is lost too (and printed).
    """
    for id in d.positional_ints():
        env.node(d, id)
        env.isolated.add(id)
    for to in sorted(env.queues):
        queue = env.queues[to]
        for m in queue:
            if env.cut_off(m):
                env.write(f"dropped: {describe_message(m)}")
        env.queues[to] = [m for m in queue if not env.cut_off(m)]


def handle_heal(env: InteractionEnv, d: TestData) -> None:
    """Reconnect every isolated node."""
    env.isolated.clear()
