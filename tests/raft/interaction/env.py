"""InteractionEnv: a deterministic harness that drives RawNodes from scenario files.

Theory of operation
-------------------
The environment owns a group of ``RawNode`` s (ids 1, 2, ... in the order they
were added), each over its own :class:`EnvStorage` (a MemStorage), plus a
"network": one FIFO queue of in-flight messages per *recipient*. Nothing moves
by itself. A scenario file says exactly when a node handles a Ready
(``process-ready``), when queued messages are stepped into their recipient
(``deliver-msgs``), and when time passes (``tick-heartbeat``); ``stabilize``
repeats the first two until nothing is left to do. ``isolate`` cuts a node off
(messages to or from it are dropped, and printed as ``dropped:``) until ``heal``.

The I/O shell follows raft-rs's Ready contract (see ``handle_ready.py``): a
leader's ``messages`` enter the network when the Ready is handled, a
follower's ``persisted_messages`` only after that Ready's writes are durable.
With ``async-storage-writes=true`` durability is a separate ``persist`` step,
so a scenario can show a message held back until its Ready is persisted.

Every handler writes its output here. Each node logs into its own
``ListLogger``; the records are drained into the output, prefixed with the
level and the node id (``INFO 2 became follower at term 1``), each time
anything else is written, so log lines appear right after the action that
caused them. ``log-level`` filters them; ``quiet`` (etcd's ``NONE``) hides
everything but errors, for chatty set-up steps.

Determinism: ids are iterated in sorted order, each node's election timeout is
fixed at ``election_tick`` (the randomized range is ``[election_tick,
election_tick + 1)``), and messages in a Ready are listed by recipient.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from multiraft.raft import (
    Config,
    ConfState,
    ListLogger,
    MemStorage,
    Message,
    RawNode,
    Snapshot,
    SnapshotMetadata,
)
from multiraft.raft.describe import describe_message
from tests.datadriven import TestData

#: Log levels, lowest first. ``none`` hides log lines; ``quiet`` also hides handler output.
LEVELS = ("debug", "info", "warn", "error", "none", "quiet")
_RECORD_LEVELS = {"debug": 0, "info": 1, "warning": 2, "error": 3}
_RECORD_NAMES = {"debug": "DEBUG", "info": "INFO", "warning": "WARN", "error": "ERROR"}


def encode_state(applied: list[bytes]) -> bytes:
    """The snapshot form of a node's state machine: its applied commands, one a line."""
    return b"\n".join(applied)


def decode_state(data: bytes) -> list[bytes]:
    return data.split(b"\n") if data else []


class EnvStorage(MemStorage):
    """A MemStorage that behaves like a real store's in two respects.

    * Snapshots are images of the node's *applied* state. MemStorage builds a
      metadata-only snapshot at ``hs.commit``; a store snapshots what it has
      applied, with the matching data and membership, which is what this
      override returns (so a follower restoring it can be checked with
      ``applied-log``).
    * After ``compact``, ``term(first_index() - 1)`` still answers, as the
      Storage contract requires and as TiKV keeps its truncated state.
      MemStorage (like raft-rs's) forgets it, and a leader whose log was
      compacted up to its last index could then never send an append again:
      every one needs the term of the entry before it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.applied_index = 0
        self.applied_term = 0
        self.applied_conf_state = ConfState()
        self.applied_log: list[bytes] = []
        #: (index, term) of the last entry removed by ``compact``.
        self.truncated = (0, 0)

    def compact(self, compact_index: int) -> None:
        if compact_index > self.first_index():
            self.truncated = (compact_index - 1, self.term(compact_index - 1))
        super().compact(compact_index)

    def term(self, idx: int) -> int:
        if idx == self.truncated[0] and idx == self.first_index() - 1:
            return self.truncated[1]
        return super().term(idx)

    def snapshot(self, request_index: int = 0, to: int = 0) -> Snapshot:
        meta = SnapshotMetadata(
            copy.deepcopy(self.applied_conf_state),
            max(self.applied_index, request_index),
            self.applied_term,
        )
        return Snapshot(data=encode_state(self.applied_log), metadata=meta)


@dataclass
class Node:
    """A member of the group: the RawNode, its storage and its I/O bookkeeping."""

    id: int
    raw: RawNode
    storage: EnvStorage
    logger: ListLogger
    config: Config
    #: Asynchronous storage writes: Readies are made durable by ``persist``.
    async_writes: bool = False
    #: Async mode: the number of the last Ready written but not yet persisted (0: none).
    unpersisted_ready: int = 0
    #: Async mode: persisted_messages held until their Ready is durable.
    held_messages: list[Message] = field(default_factory=list)


Handler = Callable[["InteractionEnv", TestData], None]


class InteractionEnv:
    """The nodes, the network and the output buffer of one scenario file."""

    def __init__(self) -> None:
        #: id -> node; ids are 1..n in order of creation.
        self.nodes: dict[int, Node] = {}
        #: recipient id -> in-flight messages, oldest first.
        self.queues: dict[int, list[Message]] = {}
        #: Nodes cut off from the network: messages to or from them are dropped.
        self.isolated: set[int] = set()
        self.level = LEVELS.index("info")
        self._out: list[str] = []
        self._indent = ""

    # ------------------------------------------------------------------
    # Dispatch

    def handle(self, d: TestData) -> str:
        """Run one directive and return its output ("ok" if it printed nothing)."""
        # Imported here: the handler modules import this one.
        from tests.raft.interaction.commands import COMMANDS

        self._out = []
        self._indent = ""
        handler = COMMANDS.get(d.cmd)
        if handler is None:
            d.fail("unknown command")
        handler(self, d)
        self.flush_logs()
        return "\n".join(self._out) if self._out else "ok"

    # ------------------------------------------------------------------
    # Output

    def quiet(self) -> bool:
        return self.level == LEVELS.index("quiet")

    def write(self, text: str) -> None:
        """Append lines (after any pending log lines), indented by the current block."""
        self.flush_logs()
        if self.quiet():
            return
        for line in text.split("\n"):
            self._out.append(self._indent + line)

    def error(self, text: str) -> None:
        """Errors are written even in quiet mode."""
        self.flush_logs()
        self._out.append(self._indent + f"error: {text}")

    @contextmanager
    def block(self, header: str | None) -> Iterator[None]:
        """Indent what is written inside under ``header`` (None: no header, no indent)."""
        if header is None:
            yield
            return
        self.write(header)
        saved = self._indent
        self._indent = saved + "  "
        try:
            yield
        finally:
            self.flush_logs()
            self._indent = saved

    def flush_logs(self) -> None:
        """Move every node's new log records into the output, filtered by level."""
        for id in sorted(self.nodes):
            records = self.nodes[id].logger.records
            if not records:
                continue
            for level, msg in records:
                if _RECORD_LEVELS[level] >= self.level and not self.quiet():
                    self._out.append(f"{self._indent}{_RECORD_NAMES[level]} {id} {msg}")
            records.clear()

    # ------------------------------------------------------------------
    # Nodes and network

    def node(self, d: TestData, id: int) -> Node:
        n = self.nodes.get(id)
        if n is None:
            d.fail(f"no node {id}")
        return n

    def first_node(self, d: TestData) -> Node:
        """The node named by the first argument (``propose 1 foo``)."""
        if not d.args or d.args[0].vals or not d.args[0].key.isdigit():
            d.fail("needs a node id first")
        return self.node(d, int(d.args[0].key))

    def node_ids(self, d: TestData) -> list[int]:
        """The positional node ids of ``d``, or every node if there are none."""
        ids = d.positional_ints()
        for id in ids:
            self.node(d, id)
        return ids or sorted(self.nodes)

    def cut_off(self, m: Message) -> bool:
        return m.from_ in self.isolated or m.to in self.isolated

    def send(self, msgs: list[Message]) -> None:
        """Put messages on the network (copied, as serialization would).

        A message to or from an isolated node is dropped (and says so).
        """
        for m in msgs:
            if self.cut_off(m):
                self.write(f"dropped: {describe_message(m)}")
                continue
            self.queues.setdefault(m.to, []).append(copy.deepcopy(m))

    def pending(self, to: int) -> int:
        return len(self.queues.get(to, []))
