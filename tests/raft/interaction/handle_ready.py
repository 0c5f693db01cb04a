"""``process-ready`` and ``persist``: the I/O shell of one node, per raft-rs's Ready contract.

Synchronous storage (the default), for one Ready::

    print the Ready
    send rd.messages                     (a leader's: before its own write)
    write rd.snapshot, rd.entries, rd.hs (durable at once)
    apply rd.committed_entries
    send rd.persisted_messages           (a follower's: only after the write)
    light = advance_append(rd)           (print it as a LightReady, if not empty)
    store light.commit_index; send light.messages; apply light.committed_entries
    advance_apply()

With ``async-storage-writes=true`` the write becomes visible to the core at
once (raft-rs requires that for ``advance_append_async``) but is not yet
durable: ``persisted_messages`` are held back, and the Ready is recorded with
``advance_append_async``. ``persist <id>`` later makes every written Ready
durable: ``on_persist_ready(number)``, then the held messages go out.

Applying a conf-change entry calls ``apply_conf_change`` and stores the new
ConfState; the result is printed as ``ConfState applied at <index>: ...``.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import TYPE_CHECKING

from multiraft.raft import (
    ConfChangeError,
    EntryType,
    LightReady,
    Message,
    RaftError,
)
from multiraft.raft.confchange_codec import decode_conf_change, decode_conf_change_v2
from multiraft.raft.describe import (
    describe_conf_state,
    describe_entry,
    describe_message,
    describe_ready,
)
from multiraft.raft.types import Entry
from tests.datadriven import TestData
from tests.raft.interaction.env import Node, decode_state

if TYPE_CHECKING:
    from tests.raft.interaction.env import InteractionEnv


def by_recipient(msgs: list[Message]) -> list[Message]:
    """Messages to different peers are unordered: list them by recipient (stable)."""
    return sorted(msgs, key=lambda m: m.to)


def handle_process_ready(env: InteractionEnv, d: TestData) -> None:
    """Handle one Ready on each given node (a header per node if more than one)."""
    ids = env.node_ids(d)
    for id in ids:
        with env.block(f"> {id} handling Ready" if len(ids) > 1 else None):
            process_ready(env, env.nodes[id])


def process_ready(env: InteractionEnv, node: Node) -> None:
    raw = node.raw
    if not raw.has_ready():
        env.write("<empty Ready>")
        return
    rd = raw.ready()
    shown = dataclasses.replace(
        rd,
        messages=by_recipient(rd.messages),
        persisted_messages=by_recipient(rd.persisted_messages),
    )
    env.write(describe_ready(shown))
    env.send(rd.messages)
    storage = node.storage
    if not rd.snapshot.is_empty():
        storage.apply_snapshot(rd.snapshot)
        meta = rd.snapshot.metadata
        storage.applied_index, storage.applied_term = meta.index, meta.term
        storage.applied_conf_state = copy.deepcopy(meta.conf_state)
        storage.applied_log = decode_state(rd.snapshot.data)
    storage.append(rd.entries)
    if rd.hs is not None:
        storage.set_hardstate(rd.hs)
    apply_entries(env, node, rd.committed_entries)
    if node.async_writes:
        node.held_messages += rd.persisted_messages
        node.unpersisted_ready = rd.number
        raw.advance_append_async(rd)
        raw.advance_apply()
        return
    env.send(rd.persisted_messages)
    light = raw.advance_append(rd)
    _finish_light_ready(env, node, light)


def _finish_light_ready(env: InteractionEnv, node: Node, light: LightReady) -> None:
    lines: list[str] = []
    if light.commit_index is not None:
        lines.append(f"Commit:{light.commit_index}")
        node.storage.mut_hard_state().commit = light.commit_index
    if light.committed_entries:
        lines += ["CommittedEntries:", *map(describe_entry, light.committed_entries)]
    if light.messages:
        lines += ["Messages:", *(describe_message(m) for m in by_recipient(light.messages))]
    if lines:
        env.write("\n".join(["LightReady:", *lines]))
    env.send(light.messages)
    apply_entries(env, node, light.committed_entries)
    node.raw.advance_apply()


def apply_entries(env: InteractionEnv, node: Node, entries: list[Entry]) -> None:
    """Apply committed entries to the node's state machine (an append-only list)."""
    storage = node.storage
    for e in entries:
        if e.index != storage.applied_index + 1:
            env.error(f"entry {e.index} applied out of order (applied {storage.applied_index})")
        if e.entry_type == EntryType.EntryNormal:
            if e.data:
                storage.applied_log.append(e.data)
        else:
            cc = (
                decode_conf_change(e.data)
                if e.entry_type == EntryType.EntryConfChange
                else decode_conf_change_v2(e.data)
            )
            try:
                cs = node.raw.apply_conf_change(cc)
            except (ConfChangeError, RaftError) as exc:
                env.error(f"applying {describe_entry(e)}: {exc}")
            else:
                storage.set_conf_state(cs)
                storage.applied_conf_state = copy.deepcopy(cs)
                env.write(f"ConfState applied at {e.index}: {describe_conf_state(cs)}")
        storage.applied_index, storage.applied_term = e.index, e.term


def handle_persist(env: InteractionEnv, d: TestData) -> None:
    """Make every written Ready of each given node durable and release its held messages."""
    ids = env.node_ids(d)
    for id in ids:
        with env.block(f"> {id} persisting" if len(ids) > 1 else None):
            persist(env, env.nodes[id])


def persist(env: InteractionEnv, node: Node) -> None:
    if not node.async_writes:
        env.error(f"node {node.id} writes synchronously: nothing to persist")
        return
    if not node.unpersisted_ready:
        env.write("nothing to persist")
        return
    number, node.unpersisted_ready = node.unpersisted_ready, 0
    msgs, node.held_messages = node.held_messages, []
    node.raw.on_persist_ready(number)
    lines = [f"Persisted up to Ready {number}"]
    if msgs:
        lines += ["Released:", *(describe_message(m) for m in by_recipient(msgs))]
    env.write("\n".join(lines))
    env.send(msgs)
