"""A deterministic in-memory network of ``Raft`` nodes (raft-rs's harness ``Network``).

Theory of operation
-------------------
``send(msgs)`` delivers messages in FIFO order: each is stepped into its target,
the target "persists" synchronously (unstable snapshot and entries go to its
MemStorage and are acknowledged with ``on_persist_*``), and whatever the target
queued is filtered and appended to the work list, until nothing is left.

Filters: ``drop(from, to, p)`` loses messages on one direction with probability
``p`` (drawn from a seeded generator, so runs are reproducible), ``cut`` both
directions, ``isolate`` a node from all others, ``ignore`` a message type, and
``recover`` clears every filter. A ``BlackHole`` peer swallows everything.

Because persistence is synchronous here, this harness cannot catch a violation
of persist-before-send; the Ready-level harness in the tests does.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Sequence

from multiraft.raft.config import Config
from multiraft.raft.errors import RaftError
from multiraft.raft.raft import Raft
from multiraft.raft.rng import Rng, SplitMix64
from multiraft.raft.storage import MemStorage
from multiraft.raft.types import NO_LIMIT, ConfState, Message, MessageType

_DROP_SCALE = 1_000_000


class BlackHole:
    """A peer that accepts every message and never answers (raft-rs ``NOP_STEPPER``)."""

    def step(self, m: Message) -> None:
        pass


Peer = Raft | BlackHole


def read_messages(peer: Peer) -> list[Message]:
    """Drain the messages a peer has queued."""
    if isinstance(peer, BlackHole):
        return []
    msgs, peer.msgs = peer.msgs, []
    return msgs


def persist(peer: Peer) -> None:
    """Make a peer's unstable snapshot and entries durable in its MemStorage, synchronously."""
    if isinstance(peer, BlackHole):
        return
    log = peer.raft_log
    store = log.store
    assert isinstance(store, MemStorage)
    snap = log.unstable_snapshot()
    if snap is not None:
        index = snap.metadata.index
        log.stable_snap(index)
        store.apply_snapshot(snap)
        peer.on_persist_snap(index)
        peer.commit_apply(index)
    unstable = list(log.unstable_entries())
    if unstable:
        last = unstable[-1]
        log.stable_entries(last.index, last.term)
        store.append(unstable)
        peer.on_persist_entries(last.index, last.term)


class Network:
    """Nodes ``1..n`` connected by a lossy, filterable, deterministic network."""

    @staticmethod
    def default_config() -> Config:
        return Config(
            election_tick=10, heartbeat_tick=1, max_size_per_msg=NO_LIMIT, max_inflight_msgs=256
        )

    def __init__(
        self,
        peers: Sequence[Peer | None],
        config: Config | None = None,
        rng: Rng | None = None,
    ) -> None:
        """``None`` entries become fresh nodes over MemStorage voting as ``1..len(peers)``.

        A given Raft must have the id of its position (1-based).
        """
        base = config if config is not None else Network.default_config()
        ids = list(range(1, len(peers) + 1))
        self.peers: dict[int, Peer] = {}
        self.storage: dict[int, MemStorage] = {}
        self._dropm: dict[tuple[int, int], float] = {}
        self._ignorem: set[MessageType] = set()
        self._rng: Rng = rng if rng is not None else SplitMix64(0x5EED)
        for id, p in zip(ids, peers):
            if p is None:
                store = MemStorage.new_with_conf_state(ConfState(voters=list(ids)))
                cfg = dataclasses.replace(base, id=id)
                self.storage[id] = store
                self.peers[id] = Raft(cfg, store, rng=SplitMix64(id))
            else:
                if isinstance(p, Raft):
                    if p.id != id:
                        raise ValueError(f"peer {p.id} in peers has a wrong position {id}")
                    given = p.raft_log.store
                    assert isinstance(given, MemStorage)
                    self.storage[id] = given
                self.peers[id] = p

    def raft(self, id: int) -> Raft:
        """The Raft node at ``id`` (not a black hole)."""
        peer = self.peers[id]
        assert isinstance(peer, Raft), f"peer {id} is a black hole"
        return peer

    # Filters ------------------------------------------------------------

    def ignore(self, t: MessageType) -> None:
        self._ignorem.add(t)

    def drop(self, from_: int, to: int, perc: float) -> None:
        self._dropm[(from_, to)] = perc

    def cut(self, one: int, other: int) -> None:
        self.drop(one, other, 1.0)
        self.drop(other, one, 1.0)

    def isolate(self, id: int) -> None:
        for nid in range(1, len(self.peers) + 1):
            if nid != id:
                self.drop(id, nid, 1.0)
                self.drop(nid, id, 1.0)

    def recover(self) -> None:
        self._dropm.clear()
        self._ignorem.clear()

    def filter(self, msgs: Iterable[Message]) -> list[Message]:
        out = []
        for m in msgs:
            if m.msg_type in self._ignorem:
                continue
            if m.msg_type == MessageType.MsgHup:
                raise AssertionError("unexpected MsgHup on the network")
            perc = self._dropm.get((m.from_, m.to), 0.0)
            if perc >= 1.0:
                continue
            if perc > 0.0 and self._rng.randrange(0, _DROP_SCALE) < perc * _DROP_SCALE:
                continue
            out.append(m)
        return out

    # Delivery -----------------------------------------------------------

    def read_messages(self) -> list[Message]:
        out: list[Message] = []
        for peer in self.peers.values():
            out.extend(read_messages(peer))
        return out

    def send(self, msgs: list[Message]) -> None:
        """Deliver until quiet; step errors are swallowed, as raft-rs's harness does."""
        queue = list(msgs)
        i = 0
        while i < len(queue):
            m = queue[i]
            i += 1
            p = self.peers[m.to]
            with contextlib.suppress(RaftError):
                p.step(m)
            persist(p)
            queue.extend(self.filter(read_messages(p)))

    def filter_and_send(self, msgs: list[Message]) -> None:
        self.send(self.filter(msgs))

    def dispatch(self, msgs: Iterable[Message]) -> None:
        """Step filtered messages without persisting or collecting replies; errors propagate."""
        for m in self.filter(msgs):
            self.peers[m.to].step(m)
