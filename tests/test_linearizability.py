"""Tests of the history recorder and the linearizability checker in ``tests/support``.

The checker guards every cluster test, so these tests aim at the ways a checker goes wrong:
accepting a violation (hand-written non-linearizable histories, and mutated random histories that
are impossible by construction) and rejecting a correct run (hand-written linearizable histories,
and random sequential runs stretched into overlapping intervals around their true linearization
points, which are linearizable by construction). All randomness is seeded or derandomized.
"""

from __future__ import annotations

import itertools
import random
import threading
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.support.history import HistoryRecorder, Op, Operation, Result, Status, dump, load
from tests.support.linearizability import CheckResult, check

K = b"k"
_ids = itertools.count()


def h(
    op: Op, invoke: int, complete: int | None, result: Result = None, status: Status = "ok"
) -> Operation:
    """A hand-written history entry; process ids are unique since the checker ignores them."""
    i = next(_ids)
    return Operation(i, i, op, invoke, complete, status, result)


def w(v: bytes, t0: int, t1: int | None, status: Status = "ok", key: bytes = K) -> Operation:
    return h(Op.write(key, v), t0, t1, None, status)


def r(v: bytes | None, t0: int, t1: int, key: bytes = K) -> Operation:
    return h(Op.read(key), t0, t1, v)


def d(t0: int, t1: int | None, status: Status = "ok") -> Operation:
    return h(Op.delete(K), t0, t1, None, status)


def c(exp: bytes | None, new: bytes | None, swapped: bool, t0: int, t1: int | None,
      status: Status = "ok") -> Operation:  # fmt: skip
    return h(Op.cas(K, exp, new), t0, t1, swapped if status == "ok" else None, status)


LINEARIZABLE: dict[str, list[Operation]] = {
    "empty": [],
    "initial read is None": [r(None, 1, 2)],
    "sequential": [w(b"a", 1, 2), r(b"a", 3, 4), d(5, 6), r(None, 7, 8), w(b"b", 9, 10),
                   r(b"b", 11, 12)],
    "overlapping writes, reads see the first": [w(b"a", 1, 10), w(b"b", 2, 11),
                                                r(b"a", 3, 12), r(b"b", 13, 14)],
    "overlapping writes, reads see the second": [w(b"a", 1, 10), w(b"b", 2, 11),
                                                 r(b"b", 3, 12), r(b"b", 13, 14)],
    "read overlapping a write sees old or new": [w(b"a", 1, 2), w(b"b", 3, 8), r(b"a", 4, 5),
                                                 r(b"b", 6, 7)],
    "cas successes and failures consistent": [c(None, b"a", True, 1, 2), c(None, b"b", False, 3, 4),
                                              c(b"a", b"b", True, 5, 6), c(b"a", b"c", False, 7, 8),
                                              r(b"b", 9, 10), c(b"b", None, True, 11, 12),
                                              r(None, 13, 14)],
    "concurrent cas: exactly one wins": [c(None, b"a", True, 1, 5), c(None, b"b", False, 2, 6),
                                         r(b"a", 7, 8)],
    "info write that took effect": [w(b"a", 1, 2), w(b"b", 3, None, "info"), r(b"b", 10, 11)],
    "info write that took effect late": [w(b"b", 1, None, "info"), r(None, 2, 3), r(None, 4, 5),
                                         r(b"b", 6, 7)],
    "info write that never took effect": [w(b"a", 1, 2), w(b"b", 3, 4, "info"), r(b"a", 5, 6),
                                          r(b"a", 7, 8)],
    "pending op (no outcome) is info": [w(b"a", 1, None, "info"), r(b"a", 2, 3)],
    "info cas that swapped": [w(b"a", 1, 2), c(b"a", b"b", False, 3, None, "info"),
                              r(b"b", 9, 10)],
    "failed write never observed": [w(b"a", 1, 2), w(b"b", 3, 4, "fail"), r(b"a", 5, 6)],
    "info read carries nothing": [w(b"a", 1, 2), h(Op.read(K), 3, None, None, "info")],
    "touching intervals are concurrent": [w(b"a", 1, 5), r(None, 5, 6)],
}  # fmt: skip

NOT_LINEARIZABLE: dict[str, list[Operation]] = {
    "stale read after a completed write": [w(b"a", 1, 2), w(b"b", 3, 4), r(b"a", 5, 6)],
    "read of a value never written": [w(b"a", 1, 2), r(b"x", 3, 4)],
    "reads observe writes in opposite orders": [w(b"a", 1, 20), w(b"b", 2, 21), r(b"a", 3, 4),
                                                r(b"b", 5, 6), r(b"b", 7, 8), r(b"a", 9, 10)],
    "cas succeeds against a value not current": [w(b"a", 1, 2), w(b"b", 3, 4),
                                                 c(b"a", b"c", True, 5, 6)],
    "cas fails although the value was current": [w(b"a", 1, 2), c(b"a", b"c", False, 3, 4)],
    "lost acknowledged write": [w(b"a", 1, 2), r(None, 3, 4)],
    "lost write after overwrite": [w(b"a", 1, 2), w(b"b", 3, 4), d(5, 6), r(b"b", 7, 8)],
    "failed write observed": [w(b"a", 1, 2), w(b"b", 3, 4, "fail"), r(b"b", 5, 6)],
    "info write visible before its invoke": [r(b"a", 1, 2), w(b"a", 3, None, "info")],
    "info write takes effect twice": [w(b"a", 1, None, "info"), r(b"a", 2, 3), w(b"b", 4, 5),
                                      r(b"a", 6, 7)],
    "info cas that could never swap": [c(b"x", b"a", False, 1, None, "info"), r(b"a", 2, 3)],
    "two cas both win from the same value": [c(None, b"a", True, 1, 5), c(None, b"b", True, 2, 6)],
    "read None after a completed write, no delete": [w(b"a", 1, 2), r(b"a", 3, 4),
                                                     r(None, 5, 6)],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(LINEARIZABLE))
def test_linearizable_histories(name: str) -> None:
    result = check(LINEARIZABLE[name])
    assert result.ok is True, result.explanation
    assert result.verdict == "linearizable"


@pytest.mark.parametrize("name", sorted(NOT_LINEARIZABLE))
def test_non_linearizable_histories(name: str) -> None:
    result = check(NOT_LINEARIZABLE[name])
    assert result.ok is False
    assert result.key == K
    assert not result
    assert result.unplaced, result.explanation


def test_failure_explanation_names_the_stale_read() -> None:
    wa, wb, stale = w(b"a", 1, 2), w(b"b", 3, 4), r(b"a", 5, 6)
    result = check([wa, wb, stale, w(b"z", 1, 9, key=b"other")])
    assert result.ok is False and result.key == K
    assert result.prefix == (wa, wb)
    assert result.state == b"b"
    assert result.unplaced == (stale,)
    assert "not linearizable" in result.explanation and f"#{stale.id}" in result.explanation


def test_keys_are_checked_independently() -> None:
    # Each key alone is fine; mixing them up as one register would not be.
    ops = [w(b"a", 1, 2, key=b"x"), w(b"b", 3, 4, key=b"y"), r(b"a", 5, 6, key=b"x"),
           r(b"b", 7, 8, key=b"y")]  # fmt: skip
    assert check(ops).ok is True
    bad = [*ops, r(b"b", 9, 10, key=b"x")]
    result = check(bad)
    assert result.ok is False and result.key == b"x" and result.keys_checked == 1


def test_step_budget_gives_unknown_not_a_hang() -> None:
    # Many concurrent writes of the same values plus reads: more than a handful of steps.
    hard = [w(bytes([97 + i % 3]), i, 100 + i) for i in range(12)]
    hard += [r(bytes([97 + i % 3]), 10 + i, 90 + i) for i in range(12)]
    result = check(hard, max_steps=5)
    assert result.ok is None and result.verdict == "unknown" and not result
    assert result.key == K and result.unknown_keys == (K,)
    assert check(hard).ok is True
    # A definite violation on another key wins over "unknown".
    broken = [r(b"x", 1, 2, key=b"z")]
    assert check(hard + broken, max_steps=5).ok is False


def test_malformed_history_is_rejected() -> None:
    with pytest.raises(ValueError):
        check([h(Op.read(K), 5, 3, None)])
    with pytest.raises(ValueError):
        check([h(Op.cas(K, None, b"a"), 1, 2, None)])


# --- the recorder -----------------------------------------------------------------------------


def test_recorder_logical_clock_and_outcomes(tmp_path: Path) -> None:
    rec = HistoryRecorder()
    a = rec.invoke(1, Op.write(K, b'\x00\xff\n"v'))
    b = rec.invoke(2, Op.read(K))
    rec.complete(a)
    rec.complete(b, b'\x00\xff\n"v')
    f = rec.invoke(1, Op.cas(K, None, b"x"))
    rec.fail(f)
    i = rec.invoke(1, Op.delete(K))
    rec.info(i)
    rec.invoke(3, Op.write(K, b"pending"))
    hist = rec.history()
    times = [t for o in hist for t in (o.invoke, o.complete) if t is not None]
    assert sorted(times) == list(range(1, len(times) + 1))  # one tick per event, no ties
    assert [o.status for o in hist] == ["ok", "ok", "fail", "info", "info"]
    assert hist[-1].complete is None and len(rec) == 5
    rec.dump(tmp_path / "h.jsonl")
    assert load(tmp_path / "h.jsonl") == hist
    assert check(hist).ok is True


def test_recorder_rejects_misuse() -> None:
    rec = HistoryRecorder()
    op_id = rec.invoke(1, Op.read(K))
    with pytest.raises(RuntimeError):
        rec.invoke(1, Op.read(K))  # a process is sequential
    with pytest.raises(TypeError):
        rec.complete(op_id, True)  # a read returns bytes/None
    rec.complete(op_id, None)
    with pytest.raises(KeyError):
        rec.complete(op_id, None)
    with pytest.raises(TypeError):
        Op.write(K, None)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError), rec.recording(2, Op.delete(K)):
        pass  # no outcome reported
    assert rec.history()[-1].status == "info"


def test_recorder_from_threads() -> None:
    rec, lock, store = HistoryRecorder(), threading.Lock(), {}

    def client(p: int) -> None:
        rng = random.Random(p)
        for n in range(200):
            key = rng.choice([b"x", b"y"])
            if rng.random() < 0.5:
                op_id = rec.invoke(p, Op.write(key, f"{p}-{n}".encode()))
                with lock:
                    store[key] = f"{p}-{n}".encode()
                rec.complete(op_id)
            else:
                op_id = rec.invoke(p, Op.read(key))
                with lock:
                    value = store.get(key)
                rec.complete(op_id, value)

    threads = [threading.Thread(target=client, args=(p,)) for p in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    hist = rec.history()
    assert len(hist) == 800 and len({o.invoke for o in hist} | {o.complete for o in hist}) == 1600
    assert check(hist).ok is True


async def test_recorder_with_trio_tasks_and_timeouts(autojump_clock: trio.abc.Clock) -> None:
    """Trio clients of an atomic in-memory register, some timing out: must check linearizable."""
    rec, store = HistoryRecorder(), {K: b""}
    rng = random.Random(7)

    async def client(p: int) -> None:
        for n in range(30):
            op = rng.choice([Op.read(K), Op.write(K, f"{p}.{n}".encode()), Op.cas(K, b"", b"z")])
            with trio.move_on_after(0.5), rec.recording(p, op) as call:
                await trio.sleep(rng.random() * 0.4)  # request in flight
                result: Result = None
                if op.kind == "read":
                    result = store.get(K)
                elif op.kind == "write":
                    store[K] = op.value or b""
                else:
                    result = store.get(K) == op.expected
                    if result:
                        store[K] = op.new or b""
                await trio.sleep(rng.random() * 0.4)  # reply in flight: may time out
                call.ok(result)

    async with trio.open_nursery() as nursery:
        for p in range(5):
            nursery.start_soon(client, p)
    hist = rec.history()
    assert any(o.status == "info" for o in hist) and any(o.status == "ok" for o in hist)
    # The register starts at b"" here, not None: prepend the write that set it up.
    setup = Operation(-1, "setup", Op.write(K, b""), -1, 0, "ok")
    assert check([setup, *hist]).ok is True


# --- generated histories ----------------------------------------------------------------------

VALUES = [b"a", b"b", b"c", b"d", b"e"]
Fate = str  # "ok" | "info" (took effect, unacknowledged) | "lost" (info, no effect) | "fail"


def generate(
    rng: random.Random, n_ops: int, keys: list[bytes], n_procs: int, spread: int,
    p_unsure: float = 0.1, rotate: int = 0,
) -> list[Operation]:  # fmt: skip
    """A run linearizable by construction, recorded through a HistoryRecorder.

    Op ``i`` takes effect at time ``100 * (i + 1)`` (its linearization point) on a true register;
    its interval is stretched up to ``spread`` either side, but never past the neighbouring ops of
    its own process, so processes stay sequential and every interval contains its point.
    ``rotate > 0`` sends all processes to one key for ``rotate`` ops, then the next (as Jepsen's
    independent generator does), so that every process contends on the same key.
    """
    procs = [rng.randrange(n_procs) for _ in range(n_ops)]
    point = [100 * (i + 1) for i in range(n_ops)]
    next_point = [0] * n_ops  # linearization point of the same process's next op
    upcoming: dict[int, int] = {}
    for i in reversed(range(n_ops)):
        next_point[i] = upcoming.get(procs[i], point[i] + spread + 1)
        upcoming[procs[i]] = point[i]
    state: dict[bytes, bytes | None] = dict.fromkeys(keys)
    last_complete: dict[int, int] = {}
    events: list[tuple[int, int, int]] = []  # (time, 0=invoke/1=outcome, op index)
    plan: list[tuple[Op, Fate, Result]] = []
    for i in range(n_ops):
        key = keys[i // rotate % len(keys)] if rotate else rng.choice(keys)
        kind = rng.choice(["read", "read", "write", "write", "delete", "cas", "cas"])
        op = {"read": Op.read(key), "write": Op.write(key, rng.choice(VALUES)),
              "delete": Op.delete(key),
              "cas": Op.cas(key, rng.choice([None, *VALUES]), rng.choice([None, *VALUES]))}[kind]  # fmt: skip
        roll = rng.random()
        fate = "ok" if roll >= p_unsure else rng.choice(["info", "lost", "fail"])
        result: Result = None
        if fate in ("ok", "info"):  # the op takes effect at its point
            if op.kind == "read":
                result = state[key]
            elif op.kind == "write":
                state[key] = op.value
            elif op.kind == "delete":
                state[key] = None
            else:
                result = state[key] == op.expected
                if result:
                    state[key] = op.new
        plan.append((op, fate, result))
        lo = max(last_complete.get(procs[i], 0) + 1, point[i] - rng.randrange(spread + 1))
        hi = min(next_point[i] - 1, point[i] + rng.randrange(spread + 1))
        last_complete[procs[i]] = hi
        events += [(lo, 0, i), (hi, 1, i)]
    rec, ids = HistoryRecorder(), {}
    for _, is_outcome, i in sorted(events):  # invokes before outcomes at equal times: overlap
        op, fate, result = plan[i]
        if not is_outcome:
            ids[i] = rec.invoke(procs[i], op)
        elif fate == "ok":
            rec.complete(ids[i], result)
        elif fate == "fail":
            rec.fail(ids[i])
        else:
            rec.info(ids[i])
    return rec.history()


DETERMINISTIC = settings(
    derandomize=True, database=None, deadline=None, max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)  # fmt: skip

histories = st.builds(
    generate,
    st.randoms(use_true_random=False),
    n_ops=st.integers(0, 40),
    keys=st.sampled_from([[b"k0"], [b"k0", b"k1"], [b"k0", b"k1", b"k2"]]),
    n_procs=st.integers(1, 5),
    spread=st.sampled_from([0, 50, 150, 400]),
    rotate=st.sampled_from([0, 0, 8]),
)


@DETERMINISTIC
@given(histories)
def test_stretched_sequential_runs_are_linearizable(hist: list[Operation]) -> None:
    result = check(hist)
    assert result.ok is True, result.explanation


@DETERMINISTIC
@given(histories, st.data())
def test_impossible_read_is_rejected(hist: list[Operation], data: st.DataObject) -> None:
    reads = [o for o in hist if o.op.kind == "read" and o.status == "ok"]
    assume(reads)
    victim = data.draw(st.sampled_from(reads))
    key = victim.op.key
    end = victim.complete
    assert end is not None

    def could_have_written(v: bytes, o: Operation) -> bool:
        # Any op that might have put ``v`` in the register before the read completed.
        writes_v = (o.op.kind == "write" and o.op.value == v) or (
            o.op.kind == "cas" and o.op.new == v)  # fmt: skip
        return o.op.key == key and o.status != "fail" and writes_v and o.invoke <= end

    # Impossible values: never written to this key, or only by ops invoked after the read ended.
    impossible = [v for v in [*VALUES, b"never"] if not any(could_have_written(v, o) for o in hist)]
    bad = data.draw(st.sampled_from(impossible))
    mutated = [
        Operation(o.id, o.process, o.op, o.invoke, o.complete, o.status, bad) if o is victim else o
        for o in hist
    ]
    result = check(mutated)
    assert result.ok is False and result.key == key
    assert check(hist).ok is True


def test_dump_load_round_trip_preserves_verdict(tmp_path: Path) -> None:
    hist = generate(random.Random(3), 300, [b"k0", b"k\x00\xff"], 6, 300, p_unsure=0.2)
    dump(hist, tmp_path / "h.jsonl")
    assert load(tmp_path / "h.jsonl") == hist
    assert check(load(tmp_path / "h.jsonl")).ok is True


def test_performance_2000_ops_10_keys_8_processes() -> None:
    keys = [f"key{i}".encode() for i in range(10)]
    # Jepsen-like: all 8 processes contend on one key for 200 ops, then move to the next key;
    # intervals stretch as far as the neighbouring ops of the same process allow.
    hist = generate(random.Random(2024), 2000, keys, 8, 800, p_unsure=0.05, rotate=200)
    assert len(hist) == 2000
    budget = 200_000
    result: CheckResult = check(hist, max_steps=budget)
    assert result.ok is True, result.explanation
    assert result.keys_checked == 10
