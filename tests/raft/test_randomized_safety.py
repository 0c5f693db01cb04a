# Covers raft-rs tests: none. raft-rs has no randomized test; this complements its deterministic
# suite (test_raft.rs, test_raft_paper.rs, test_raw_node.rs) with random schedules on ReadyNetwork
# (tests/raft/ready_network.py).
# Skipped: none.
"""Randomized Raft safety: random schedules, checked after every step.

Each scenario builds a ReadyNetwork of 3-7 nodes (sync or async disk; with or
without pre-vote, check-quorum, skip-bcast-commit and batch-append; with
various flow-control windows, committed-entry paging, uncommitted-size limits
and max_apply_unpersisted_log_limit; either all nodes voters, or three voters plus
uninitialized spares bootstrapped TiKV-style from a snapshot at 5/5) and runs a
list of operations: ticks, forced campaigns, proposals, ReadIndex requests,
leader transfers, membership changes (simple, joint with each transition, and
leave-joint), delivering one message out of order or all in order, dropping and
duplicating messages, partitions and heals, fsyncs, log compaction (so lagging
nodes need snapshots), crashes and restarts.

After every operation ``check_invariants`` verifies, over every live node and
the whole history: at most one leader per term; log matching; leader
completeness (every committed entry is in the log of every leader of that term
or later); state machine safety (no two nodes apply different entries, or reach
different configurations, at one index; each entry is applied once, in order);
commit indexes never go backwards on a live node, and the durable commit never
goes backwards across restarts. The harness also asserts persist-before-send on
every message, and that every ReadIndex answer covers all commits known when the
read was asked. At the end the network heals, crashed nodes restart, and the
cluster runs until quiet: every committed entry must then be in the state
machine of every member.

Two drivers share ``run_scenario``: a hypothesis test (derandomized, so runs are
reproducible; ``MULTIRAFT_RANDOM_EXAMPLES`` raises the number of examples) and
a plain seeded loop (``MULTIRAFT_RANDOM_SEEDS`` seeds of ``random.Random``,
from ``MULTIRAFT_RANDOM_SEED_START``), which is the easier one for long runs.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multiraft.raft import (
    NO_LIMIT,
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfChangeV2,
    Config,
    MessageType,
    StateRole,
)
from multiraft.raft.log import RaftLog

try:
    from ready_network import ASYNC, SYNC, ReadyNetwork
except ImportError:  # collected as part of a package
    from tests.raft.ready_network import ASYNC, SYNC, ReadyNetwork

EXAMPLES = int(os.environ.get("MULTIRAFT_RANDOM_EXAMPLES", "80"))
SEEDS = int(os.environ.get("MULTIRAFT_RANDOM_SEEDS", "30"))
SEED_START = int(os.environ.get("MULTIRAFT_RANDOM_SEED_START", "0"))
MAX_STEPS = 200
ELECTION_TICK = 5

# Operation names, repeated to weight them.
OPS: tuple[str, ...] = (
    ("tick_all",) * 8
    + ("tick_one",) * 2
    + ("campaign",)
    + ("propose",) * 3
    + ("propose_leader",) * 5
    + ("deliver_one",) * 10
    + ("deliver_all",) * 6
    + ("drop_one",)
    + ("dup_one",) * 2
    + ("partition", "isolate")
    + ("heal",) * 3
    + ("fsync",) * 6
    + ("fsync_all",) * 6
    + ("crash",)
    + ("restart",) * 2
    + ("compact",) * 4
    + ("settle",) * 3
    + ("read",) * 2
    + ("transfer",)
    + ("conf_change",) * 2
)


@dataclass(frozen=True)
class Params:
    n: int
    mode: str
    pre_vote: bool
    check_quorum: bool
    seed: int
    #: Flow-control and batching knobs (raft-rs defaults unless varied).
    max_inflight: int = 256
    max_size_per_msg: int = 0
    skip_bcast_commit: bool = False
    batch_append: bool = False
    #: How many of the nodes are initial voters (0: all); the rest start uninitialized.
    voters: int = 0
    #: Paging of committed entries (0: one entry per Ready) and of uncommitted data.
    max_committed_size_per_ready: int = NO_LIMIT
    max_uncommitted_size: int = NO_LIMIT
    #: How far a leader may apply committed entries it has not persisted itself (set on
    #: every new leader; raft-rs resets it to 0 when a node becomes follower).
    max_apply_unpersisted_log_limit: int = 0

    def config(self) -> Config:
        return Config(
            election_tick=ELECTION_TICK,
            heartbeat_tick=1,
            pre_vote=self.pre_vote,
            check_quorum=self.check_quorum,
            max_inflight_msgs=self.max_inflight,
            max_size_per_msg=self.max_size_per_msg,
            skip_bcast_commit=self.skip_bcast_commit,
            batch_append=self.batch_append,
            max_committed_size_per_ready=self.max_committed_size_per_ready,
            max_uncommitted_size=max(self.max_uncommitted_size, self.max_size_per_msg),
        )


class Scenario:
    """Applies operations to a ReadyNetwork and checks the invariants after each."""

    def __init__(self, p: Params) -> None:
        self.p = p
        voters = list(range(1, (p.voters or p.n) + 1))
        # With nodes outside the initial configuration, bootstrap from a snapshot
        # (as TiKV does, at 5/5) so that joining nodes must take a snapshot first.
        self.net = ReadyNetwork(
            p.n,
            p.mode,
            seed=p.seed,
            config=p.config(),
            voters=voters,
            bootstrap=5 if p.voters else 0,
            apply_unpersisted_limit=p.max_apply_unpersisted_log_limit,
        )
        self.proposals = 0
        self.reads = 0
        self.trace: list[str] = []

    def _pick(self, arg: int) -> int:
        return self.net.ids[arg % len(self.net.ids)]

    def apply(self, op: str, arg: int) -> None:
        net = self.net
        self.trace.append(f"{op}({arg})")
        if op == "tick_all":
            net.tick_all()
        elif op == "tick_one":
            net.tick(self._pick(arg))
        elif op == "campaign":
            id = self._pick(arg)
            if net.nodes[id].up:
                net.campaign(id)
        elif op in ("propose", "propose_leader"):
            id = net.leader() if op == "propose_leader" else self._pick(arg)
            if id is not None and net.nodes[id].up:
                self.proposals += 1
                net.propose(id, b"v%d" % self.proposals)
        elif op == "read":
            id = self._pick(arg)
            if net.nodes[id].up:
                self.reads += 1
                net.read_index(id, b"r%d" % self.reads)
        elif op == "transfer":
            id = self._pick(arg)
            if net.nodes[id].up:
                net.transfer_leader(id, self._pick(arg >> 4))
        elif op == "conf_change":
            self._conf_change(arg)
        elif op == "deliver_one":
            if net.in_flight:
                net.deliver(arg % len(net.in_flight))
        elif op == "deliver_all":
            net.deliver_all()
        elif op == "settle":
            # A round of healthy operation: one tick, then deliver and fsync until quiet.
            net.tick_all()
            net.stabilize()
        elif op == "drop_one":
            if net.in_flight:
                net.drop_in_flight(arg % len(net.in_flight))
        elif op == "dup_one":
            if net.in_flight:
                net.duplicate(arg % len(net.in_flight))
        elif op == "partition":
            net.recover()
            side = {id for id in net.ids if (arg >> id) & 1}
            for a in side:
                for b in net.ids:
                    if b not in side:
                        net.cut(a, b)
        elif op == "isolate":
            net.isolate(self._pick(arg))
        elif op == "heal":
            net.recover()
        elif op == "fsync":
            # Half the time only the oldest one or two pending Readies become durable.
            count = None if (arg >> 8) & 1 else 1 + (arg >> 9) % 2
            net.fsync(self._pick(arg), count)
        elif op == "fsync_all":
            net.fsync_all()
        elif op == "compact":
            id = self._pick(arg)
            if net.nodes[id].up:
                first = net.storage(id).first_index()
                bound = net.compact_bound(id)
                if bound > first:
                    net.compact(id, first + 1 + arg % (bound - first))
        elif op == "crash":
            up = net.up_ids()
            if up:
                net.crash(up[arg % len(up)])
        elif op == "restart":
            down = [id for id in net.ids if not net.nodes[id].up]
            if down:
                net.restart(down[arg % len(down)])
        else:  # pragma: no cover
            raise AssertionError(op)
        net.check_invariants()

    def _conf_change(self, arg: int) -> None:
        """Propose a random simple, joint or leave-joint change on the leader.

        Changes that would leave fewer than two incoming voters are not proposed:
        a single voter wins an election on its own vote, and raft-rs (hence this
        port) then asserts it has no unpersisted entries, which a follower of a
        removed leader may have (see test_single_voter_campaign_with_unpersisted_entries).
        """
        net = self.net
        lead = net.leader()
        if lead is None:
            return
        cs = net.nodes[lead].conf_state
        voters = {*cs.voters, *cs.voters_outgoing}
        learners = {*cs.learners, *cs.learners_next}
        self.trace.append(f"  conf {cs}")

        def change(target: int, bit: int) -> ConfChangeSingle:
            if target in voters:
                t = ConfChangeType.RemoveNode if bit else ConfChangeType.AddLearnerNode
            elif target in learners:
                t = ConfChangeType.RemoveNode if bit else ConfChangeType.AddNode
            else:
                t = ConfChangeType.AddLearnerNode if bit else ConfChangeType.AddNode
            return ConfChangeSingle(t, target)

        kind = arg % 6
        cc: ConfChange | ConfChangeV2
        if cs.voters_outgoing and kind < 3:
            cc = ConfChangeV2()  # leave the joint configuration
        elif kind < 2:
            one = change(self._pick(arg >> 3), (arg >> 2) & 1)
            cc = ConfChange(change_type=one.change_type, node_id=one.node_id)
        elif kind < 4:
            cc = ConfChangeV2(changes=[change(self._pick(arg >> 3), (arg >> 2) & 1)])
        else:
            a, b = self._pick(arg >> 3), self._pick(arg >> 6)
            transition = [
                ConfChangeTransition.Auto,
                ConfChangeTransition.Implicit,
                ConfChangeTransition.Explicit,
            ][(arg >> 9) % 3]
            changes = [change(a, (arg >> 2) & 1)]
            if b != a:
                changes.append(change(b, (arg >> 12) & 1))
            cc = ConfChangeV2(transition=transition, changes=changes)
        incoming = set(cs.voters)
        for ch in cc.as_v2().changes:
            if ch.change_type == ConfChangeType.AddNode:
                incoming.add(ch.node_id)
            else:
                incoming.discard(ch.node_id)
        if len(incoming) < 2:
            return
        self.trace.append(f"  cc {cc}")
        net.propose_conf_change(lead, cc)

    def _quiet(self) -> bool:
        net = self.net
        lead = net.leader()
        if lead is None or net.in_flight:
            return False
        r = net.raft(lead)
        last = r.raft_log.last_index()
        if r.raft_log.term(r.raft_log.committed) != r.term or r.raft_log.committed != last:
            return False
        for id in net.members():
            node = net.nodes[id]
            if not node.up or node.pending or node.applied_index != last:
                return False
            if net.raft(id).raft_log.last_index() != last:
                return False
        return True

    def finish(self, max_rounds: int = 2000) -> None:
        """Heal, restart everything, run until quiet, and check convergence.

        Each round every node ticks with probability 1/2, so clocks drift apart:
        without pre-vote, a member with a stale configuration can keep its term
        just ahead of a candidate whose lower-term vote requests it ignores
        (raft-rs, like etcd, does not answer them), and lockstep ticking can
        hold that pattern for hundreds of rounds.
        """
        net = self.net
        rng = random.Random(self.p.seed)
        net.recover()
        for id in net.ids:
            net.restart(id)
        net.check_invariants()
        for _ in range(max_rounds):
            for id in net.up_ids():
                if rng.random() < 0.5:
                    net.tick(id)
            net.stabilize()
            net.check_invariants()
            if self._quiet():
                break
        else:
            raise AssertionError(f"cluster did not converge; trace: {self.trace}")
        lead = net.leader()
        assert lead is not None
        assert net.raft(lead).state == StateRole.Leader
        # Every committed entry is in the state machine of every member.
        net.assert_converged(sorted(net.members()))


def run_scenario(p: Params, ops: Sequence[tuple[str, int]]) -> Scenario:
    s = Scenario(p)
    for op, arg in ops:
        s.apply(op, arg)
    s.finish()
    return s


params_strategy = st.builds(
    Params,
    n=st.integers(3, 7),
    mode=st.sampled_from([SYNC, ASYNC]),
    pre_vote=st.booleans(),
    check_quorum=st.booleans(),
    seed=st.integers(0, 2**16),
    max_inflight=st.sampled_from([256, 1, 3]),
    max_size_per_msg=st.sampled_from([0, NO_LIMIT]),
    skip_bcast_commit=st.booleans(),
    batch_append=st.booleans(),
    voters=st.sampled_from([0, 0, 3]),
    max_committed_size_per_ready=st.sampled_from([NO_LIMIT, 0]),
    max_uncommitted_size=st.sampled_from([NO_LIMIT, 10]),
    max_apply_unpersisted_log_limit=st.sampled_from([0, 3]),
)
ops_strategy = st.lists(
    st.tuples(st.sampled_from(OPS), st.integers(0, 2**16)),
    min_size=MAX_STEPS // 2,
    max_size=MAX_STEPS,
)


@settings(
    derandomize=True,
    deadline=None,
    max_examples=EXAMPLES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(params_strategy, ops_strategy)
def test_randomized_safety(p: Params, ops: list[tuple[str, int]]) -> None:
    """Raft paper §5.4 (election safety, log matching, leader completeness, state machine
    safety) under random schedules with crashes and asynchronous persistence."""
    run_scenario(p, ops)


def random_params(rng: random.Random, seed: int) -> Params:
    return Params(
        n=rng.randint(3, 7),
        mode=rng.choice([SYNC, ASYNC]),
        pre_vote=rng.random() < 0.5,
        check_quorum=rng.random() < 0.5,
        seed=seed,
        max_inflight=rng.choice([256, 1, 3]),
        max_size_per_msg=rng.choice([0, NO_LIMIT]),
        skip_bcast_commit=rng.random() < 0.5,
        batch_append=rng.random() < 0.5,
        voters=rng.choice([0, 0, 3]),
        max_committed_size_per_ready=rng.choice([NO_LIMIT, 0]),
        max_uncommitted_size=rng.choice([NO_LIMIT, 10]),
        max_apply_unpersisted_log_limit=rng.choice([0, 3]),
    )


def random_ops(rng: random.Random, steps: int) -> list[tuple[str, int]]:
    return [(rng.choice(OPS), rng.randrange(2**16)) for _ in range(steps)]


def test_randomized_safety_seeded() -> None:
    """The same properties over plain seeded schedules (longer than hypothesis's)."""
    for seed in range(SEED_START, SEED_START + SEEDS):
        rng = random.Random(seed)
        p = random_params(rng, seed)
        ops = random_ops(rng, 300)
        try:
            run_scenario(p, ops)
        except AssertionError as exc:
            raise AssertionError(f"seed {seed} params {p}: {exc}") from exc


def test_random_schedules_reach_interesting_states() -> None:
    """The generator is not vacuous: schedules elect, commit, crash, read, snapshot and
    reconfigure."""
    seen = dict.fromkeys(("terms", "commits", "crashes", "reads", "snapshots", "confs"), 0)
    for seed in range(4):
        rng = random.Random(1000 + seed)
        p = Params(
            n=5,
            mode=ASYNC if seed % 2 else SYNC,
            pre_vote=False,
            check_quorum=False,
            seed=seed,
            voters=3 if seed >= 2 else 0,
        )
        net = run_scenario(p, random_ops(rng, 300)).net
        seen["terms"] += len(net.leaders)
        seen["commits"] += len(net.committed)
        seen["crashes"] += sum(net.nodes[i].incarnation for i in net.ids)
        seen["reads"] += len(net.read_answers)
        seen["snapshots"] += len(net.sent_by_type(MessageType.MsgSnapshot))
        seen["confs"] += sum(1 for cs in net.conf_after.values() if cs is not None)
    minimum = {"terms": 8, "commits": 40, "crashes": 8, "reads": 2, "snapshots": 2, "confs": 3}
    assert all(seen[k] >= v for k, v in minimum.items()), seen


def test_randomized_checker_catches_an_unsafe_vote(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks have teeth: with voters granting votes to candidates whose logs are not up to
    date (breaking Raft paper §5.4.1), the seeded schedules find a safety violation."""
    monkeypatch.setattr(RaftLog, "is_up_to_date", lambda self, index, term: True)
    for seed in range(20):
        rng = random.Random(seed)
        p = random_params(rng, seed)
        try:
            run_scenario(p, random_ops(rng, 300))
        except AssertionError as exc:
            assert "safety" in str(exc) or "committed" in str(exc) or "completeness" in str(exc)
            return
    raise AssertionError("no violation found with an unsafe vote rule")
