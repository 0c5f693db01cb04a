"""Several stores in one trio run: real engines in tmp dirs, an in-memory transport, a fake
placement. Time is trio's (a MockClock in the tests), and commits run inline so that the
autojump clock never jumps while a round waits for a worker thread.

The fake transport checks the persist-before-send rule on every message it is handed:

* a message sent before the sending store's round committed must come from a leader;
* a granted vote is sent only once the vote is on disk (LMDB, read back);
* an accepting append response only once the entries it acknowledges are on disk.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio
from prometheus_client import CollectorRegistry

from multiraft.metrics import StoreServerMetrics
from multiraft.raft import MessageType, StateRole
from multiraft.settings import StoreConfig
from multiraft.storage import Engine, StorageWriter, WriteBatch, load_store_ident
from multiraft.storage import keys as K
from multiraft.store import Store
from multiraft.store.inbox import Inbox, UnreachableItem
from multiraft.wire.messages import (
    KvOp,
    KvRequest,
    KvResponse,
    RaftBatch,
    RaftEnvelope,
    ReadMode,
    SnapshotAck,
    SnapshotChunk,
)
from multiraft.wire.placement_messages import (
    DownPeer,
    RegionHeartbeatReply,
    StoreHeartbeatReply,
    StoreStats,
)
from multiraft.wire.records import decode_raft_local_state
from regions import Peer, Region, RegionEpoch, StoreIdent

CLUSTER_ID = 0x5EED


class InlineWriter(StorageWriter):
    """Commits in the event loop's thread (tests only: MockClock must not jump mid-commit)."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.engine = engine

    async def commit(self, batch: WriteBatch) -> None:
        # Let other tasks run while the batch is not yet written, as a real fsync would:
        # an answer delivered too early would be seen before the data is on disk.
        await trio.lowlevel.checkpoint()
        try:
            batch.write(self.engine)
        except BaseException:
            batch.abort()
            raise
        batch.finish()
        await trio.lowlevel.checkpoint()

    async def run(self, fn: Callable[..., object], *args: object) -> object:  # type: ignore[override]
        await trio.lowlevel.checkpoint()
        return fn(*args)


class PersistViolation(AssertionError):
    pass


class FakeTransport:
    """One store's outbound side of the in-memory network."""

    def __init__(self, net: FakeNetwork, store_id: int) -> None:
        self.net = net
        self.store_id = store_id
        self.pending: dict[int, list[RaftEnvelope]] = {}
        #: "round" from the start of a round until its commit returned, then "committed".
        self.phase = "committed"
        self.sent: list[RaftEnvelope] = []
        self.checked = 0

    def _check(self, env: RaftEnvelope) -> None:
        store = self.net.stores[self.store_id]
        m = env.message
        rep = store.router.get(env.region_id)
        leader = rep is not None and rep.raw_node.raft.state == StateRole.Leader
        if self.phase != "committed" and not leader:
            raise PersistViolation(f"{m.msg_type.name} from a non-leader before the commit")
        with store.engine.read() as txn:
            raw = txn.get(K.region_key(env.region_id), db=store.engine.dbs.raft_state)
        durable = decode_raft_local_state(raw) if raw is not None else None
        t = m.msg_type
        if t == MessageType.MsgRequestVoteResponse and not m.reject:
            assert durable is not None and durable.hard_state.vote == m.to, (
                f"vote for {m.to} sent before it was durable ({durable})"
            )
            assert durable.hard_state.term >= m.term
            self.checked += 1
        if t == MessageType.MsgAppendResponse and not m.reject:
            assert durable is not None and durable.last_index >= m.index, (
                f"append ack of {m.index} before it was durable ({durable})"
            )
            self.checked += 1

    def send(self, to_store_id: int, env: RaftEnvelope) -> bool:
        self._check(env)
        self.pending.setdefault(to_store_id, []).append(env)
        self.sent.append(env)
        return True

    def flush(self) -> None:
        pending, self.pending = self.pending, {}
        for to, envs in pending.items():
            dest = self.net.stores.get(to)
            if dest is None or self.net.blocked(self.store_id, to):
                src = self.net.stores.get(self.store_id)
                if src is not None:
                    src.inbox.put(UnreachableItem(to, envs))
                continue
            dest.service.on_raft_batch(RaftBatch(self.store_id, envs))

    async def send_snapshot(
        self, to_store_id: int, chunks: AsyncIterator[SnapshotChunk]
    ) -> SnapshotAck:
        dest = self.net.stores[to_store_id]
        first = await chunks.__anext__()
        return await dest.service.on_snapshot(first, chunks)


class FakePlacement:
    """Bootstraps region 1 over the first three stores; records region heartbeats."""

    def __init__(self, replicas: int = 3) -> None:
        self.replicas = replicas
        self.stores: list[int] = []
        self.region: Region | None = None
        self.heartbeats: list[tuple[Region, Peer, int]] = []
        self._ids = itertools.count(1000)

    async def cluster_info(self) -> object:
        @dataclass
        class Info:
            cluster_id: int = CLUSTER_ID
            bootstrapped: bool = False

        return Info(bootstrapped=self.region is not None)

    async def alloc_ids(self, n: int = 1) -> object:
        @dataclass
        class Ids:
            first: int
            count: int

        first = next(self._ids)
        for _ in range(n - 1):
            next(self._ids)
        return Ids(first, n)

    async def store_heartbeat(self, stats: StoreStats) -> StoreHeartbeatReply:
        if stats.store_id not in self.stores:
            self.stores.append(stats.store_id)
        if self.region is None and len(self.stores) >= self.replicas:
            peers = [Peer(100 + s, s) for s in sorted(self.stores)[: self.replicas]]
            self.region = Region(1, b"", b"", RegionEpoch(1, 1), peers)
        if self.region is not None and self.region.peer_on_store(stats.store_id):
            return StoreHeartbeatReply([self.region])
        return StoreHeartbeatReply([])

    async def region_heartbeat(
        self,
        region: Region,
        leader: Peer,
        term: int,
        *,
        down_peers: Sequence[DownPeer] = (),
        pending_peers: Sequence[Peer] = (),
        approximate_size: int = 0,
        approximate_keys: int = 0,
    ) -> RegionHeartbeatReply:
        self.heartbeats.append((region, leader, term))
        return RegionHeartbeatReply()


@dataclass
class FakeNetwork:
    """Stores by id, and the store pairs whose raft traffic is cut."""

    stores: dict[int, Store] = field(default_factory=dict)
    cuts: set[frozenset[int]] = field(default_factory=set)

    def blocked(self, a: int, b: int) -> bool:
        return frozenset((a, b)) in self.cuts

    def isolate(self, store_id: int) -> None:
        for other in self.stores:
            if other != store_id:
                self.cuts.add(frozenset((store_id, other)))

    def heal(self) -> None:
        self.cuts.clear()


def store_config(data_dir: Path, **kw: object) -> StoreConfig:
    return StoreConfig(data_dir=data_dir, sync=False, store_heartbeat_interval=1.0,
                       region_heartbeat_interval=1.0, **kw)  # type: ignore[arg-type]  # fmt: skip


class Cluster:
    """N stores over a FakeNetwork and a FakePlacement, each run in its own cancel scope."""

    def __init__(self, root: Path, nursery: trio.Nursery, n: int = 3, **config: object) -> None:
        self.root = root
        self.nursery = nursery
        self.n = n
        self.config = config
        self.net = FakeNetwork()
        self.placement = FakePlacement()
        self.engines: dict[int, Engine] = {}
        self.scopes: dict[int, trio.CancelScope] = {}
        self.transports: dict[int, FakeTransport] = {}
        self._req = itertools.count(1)

    def store(self, sid: int) -> Store:
        return self.net.stores[sid]

    async def start_store(self, sid: int) -> Store:
        engine = Engine.open(self.root / f"s{sid}", sync=False)
        ident = load_store_ident(engine)
        if ident is None:
            from multiraft.storage import bootstrap_store

            ident = StoreIdent(CLUSTER_ID, sid)
            bootstrap_store(engine, ident)
        cfg = store_config(self.root / f"s{sid}", **self.config)
        transport = FakeTransport(self.net, sid)
        inbox = Inbox(max_requests=cfg.max_pending_requests, max_messages=cfg.max_pending_messages)
        metrics = StoreServerMetrics(CollectorRegistry(), process_collectors=False)
        store = Store(cfg, engine, ident, transport, inbox=inbox, placement=self.placement,
                      metrics=metrics)  # fmt: skip
        writer = InlineWriter(engine)
        store.writer = store.loop.writer = store.log_gc.writer = store.cleaner.writer = writer
        take = inbox.take

        def take_and_mark() -> tuple[list[object], int]:
            transport.phase = "round"
            return take()  # type: ignore[return-value]

        inbox.take = take_and_mark  # type: ignore[method-assign]

        def committed() -> None:
            transport.phase = "committed"

        store.loop.after_commit = committed
        self.net.stores[sid] = store
        self.engines[sid] = engine
        self.transports[sid] = transport
        scope = trio.CancelScope()
        self.scopes[sid] = scope

        async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            with scope:
                await store.run(task_status=task_status)

        await self.nursery.start(run)
        return store

    async def start(self) -> None:
        for sid in range(1, self.n + 1):
            await self.start_store(sid)

    async def stop_store(self, sid: int) -> None:
        self.scopes.pop(sid).cancel()
        await trio.lowlevel.checkpoint()
        self.net.stores.pop(sid)
        self.engines.pop(sid).close()

    def leader(self, region_id: int = 1) -> Store | None:
        for s in self.net.stores.values():
            r = s.router.get(region_id)
            if r is not None and r.is_leader():
                return s
        return None

    async def wait_leader(self, region_id: int = 1, seconds: float = 60) -> Store:
        with trio.fail_after(seconds):
            while True:
                s = self.leader(region_id)
                if s is not None:
                    return s
                await trio.sleep(0.05)

    async def kv(self, store: Store, op: KvOp, *, mode: ReadMode = ReadMode.Linearizable,
                 region_id: int = 1, epoch: RegionEpoch | None = None) -> KvResponse:  # fmt: skip
        r = store.router.get(region_id)
        ep = epoch or (r.region.epoch if r is not None else RegionEpoch())
        req = KvRequest(next(self._req), region_id, ep, op, mode)
        return await store.service.on_kv_request(req)


async def wait_until(pred: Callable[[], bool], seconds: float = 60) -> None:
    """Poll ``pred`` in (mock) time until it holds: the conditions tests wait for (a leader,
    an applied index) have no event of their own, and under MockClock polling costs nothing."""
    with trio.fail_after(seconds):
        while not pred():  # noqa: ASYNC110
            await trio.sleep(0.05)


async def concurrently(*fns: Callable[[], Awaitable[object]]) -> list[object]:
    out: list[object] = [None] * len(fns)

    async def one(i: int, fn: Callable[[], Awaitable[object]]) -> None:
        out[i] = await fn()

    async with trio.open_nursery() as n:
        for i, fn in enumerate(fns):
            n.start_soon(one, i, fn)
    return out
