"""Linearizability checker for per-key register histories (Wing & Gong search, Porcupine style).

Model: every key is an independent register whose state is ``bytes | None`` (``None`` = absent,
the initial state). ``read`` returns the state; ``write(v)`` sets it to ``v``; ``delete`` sets it
to ``None``; ``cas(expected, new)`` sets it to ``new`` and returns ``True`` iff the state equals
``expected`` (``None`` matching absence), otherwise leaves it and returns ``False``.

Semantics of a history (the same as Jepsen's, see reliability-anchors.md section 3.3):

* An ``ok`` operation took effect exactly once at some instant inside ``[invoke, complete]``.
  Op A *precedes* op B in real time iff ``A.complete < B.invoke``; otherwise they are
  *concurrent* and may be linearized in either order (equal times count as overlapping, as
  Porcupine's closed intervals do; :class:`~tests.support.history.HistoryRecorder` never produces
  ties anyway).
* A ``fail`` operation never took effect: it is dropped before the search.
* An ``info`` operation (timeout, crash, still pending) is treated as completing at +infinity: it
  may be linearized at any point after its invocation, or never (the search may skip it). An
  ``info`` read carries no information and is dropped. An ``info`` cas is only ever placed where
  it would succeed, because placing it where it fails is a no-op, the same as never placing it.
* A history is linearizable iff there is a total order of the ``ok`` ops plus a subset of the
  ``info`` ops that respects real-time precedence and is a legal sequential run of the model.

Partitioning by key is sound (P-compositionality, Horn & Kroening 2015): linearizability is
*local* (Herlihy & Wing 1990), so a history of several objects is linearizable iff each object's
sub-history is. Every op here touches exactly one key and the registers share no state, so each
key is checked alone, which turns one exponential search into many small ones.

Search (Lowe, "Testing for linearizability", 2017, as implemented by Porcupine): the key's calls
and returns form a doubly linked list sorted by time. Walking from the head, any call met before
the first return may be linearized next; if the model accepts it, it is "lifted" out of the list
(call and return) and the walk restarts from the head. Meeting a return whose op is not yet
linearized means the current prefix is a dead end: pop the last linearized op, unlift it, and try
the next candidate. A set of seen ``(linearized-bitset, state)`` pairs prunes configurations that
were already explored from another order, which is what makes the search fast in practice.
Info ops have no return node, so they never block the walk; the search succeeds once every ``ok``
op is linearized.

Budget: every model step and every backtrack counts as one step. When a key needs more than
``max_steps`` the verdict is "unknown" (``ok=None``) rather than a hang; a definite violation on
any key still wins over "unknown" on another. Cost grows with the number of ops that are
concurrent on one key, and above all with open ``info`` writes (each may be placed anywhere after
its invocation), so workloads should rotate keys, as Jepsen does (about 200 ops per key).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from .history import Operation

State = bytes | None

DEFAULT_MAX_STEPS = 2_000_000


@dataclass(frozen=True)
class CheckResult:
    """Verdict of :func:`check`.

    ``ok`` is True (linearizable), False (a key is not) or None (budget exhausted, no violation
    found). On False/None, ``key`` is the offending key, ``prefix`` the longest linearization of
    that key's ops found (in order), ``state`` the register value after it, and ``unplaced`` the
    ``ok`` ops that could be linearized next by real time but that the model rejects there.
    """

    ok: bool | None
    key: bytes | None = None
    prefix: tuple[Operation, ...] = ()
    state: State = None
    unplaced: tuple[Operation, ...] = ()
    steps: int = 0
    keys_checked: int = 0
    unknown_keys: tuple[bytes, ...] = field(default=())
    explanation: str = ""

    @property
    def verdict(self) -> Literal["linearizable", "not linearizable", "unknown"]:
        if self.ok is None:
            return "unknown"
        return "linearizable" if self.ok else "not linearizable"

    def __bool__(self) -> bool:
        # ``assert check(h)`` must not pass on "unknown".
        return self.ok is True


def step(state: State, o: Operation) -> tuple[bool, State]:
    """Apply ``o`` to a register in ``state``: (is this outcome legal here, next state)."""
    op = o.op
    kind = op.kind
    if kind == "read":
        return state == o.result, state
    if kind == "write":
        return True, op.value
    if kind == "delete":
        return True, None
    # cas
    if o.status == "info":
        # Unknown outcome: only the successful case changes anything (see module docstring).
        return state == op.expected, op.new
    if o.result:
        return state == op.expected, op.new
    return state != op.expected, state


class _Node:
    """A call or return event in the linked list; ``match`` links a call to its return."""

    __slots__ = ("index", "is_call", "match", "next", "prev")

    def __init__(self, index: int, is_call: bool) -> None:
        self.index = index
        self.is_call = is_call
        self.match: _Node | None = None
        self.prev: _Node | None = None
        self.next: _Node | None = None


@dataclass
class _KeyResult:
    ok: bool | None
    steps: int
    prefix: list[int]
    state: State
    unplaced: list[int]


def _build_list(ops: list[Operation]) -> tuple[_Node, list[_Node]]:
    """Linked list of events sorted by time; returns (head sentinel, call node per op)."""
    events: list[tuple[int, int, int, _Node]] = []
    calls: list[_Node] = []
    for i, o in enumerate(ops):
        call = _Node(i, True)
        calls.append(call)
        # At equal times calls sort before returns, so touching intervals stay concurrent.
        events.append((o.invoke, 0, i, call))
        if o.status == "ok":
            ret = _Node(i, False)
            call.match = ret
            assert o.complete is not None
            events.append((o.complete, 1, i, ret))
    events.sort(key=lambda e: e[:3])
    head = _Node(-1, False)
    prev = head
    for *_, node in events:
        prev.next = node
        node.prev = prev
        prev = node
    return head, calls


def _lift(call: _Node) -> None:
    # Unlink the call and its return; the nodes keep their own prev/next for _unlift.
    assert call.prev is not None
    call.prev.next = call.next
    if call.next is not None:
        call.next.prev = call.prev
    ret = call.match
    if ret is not None:
        assert ret.prev is not None
        ret.prev.next = ret.next
        if ret.next is not None:
            ret.next.prev = ret.prev


def _unlift(call: _Node) -> None:
    # Exact reverse of _lift (dancing links): valid because lifts are undone in LIFO order.
    ret = call.match
    if ret is not None:
        assert ret.prev is not None
        ret.prev.next = ret
        if ret.next is not None:
            ret.next.prev = ret
    assert call.prev is not None
    call.prev.next = call
    if call.next is not None:
        call.next.prev = call


def _frontier_unplaced(ops: list[Operation], prefix: list[int], state: State) -> list[int]:
    """The ok ops that real time allows next after ``prefix`` but the model rejects."""
    done = set(prefix)
    rest = [i for i in range(len(ops)) if i not in done]
    open_ok = [ops[i].complete for i in rest if ops[i].status == "ok"]
    horizon = min(c for c in open_ok if c is not None) if open_ok else None
    return [
        i
        for i in rest
        if ops[i].status == "ok"
        and (horizon is None or ops[i].invoke <= horizon)
        and not step(state, ops[i])[0]
    ]


def _check_key(ops: list[Operation], max_steps: int, deadline: float | None) -> _KeyResult:
    head, _ = _build_list(ops)
    remaining_ok = sum(1 for o in ops if o.status == "ok")
    linearized = 0  # bitset of op indexes
    state: State = None
    stack: list[tuple[_Node, State]] = []
    seen: set[tuple[int, State]] = set()
    steps = 0
    ok_depth = 0
    best_depth = 0
    best_prefix: list[int] = []
    best_state: State = None

    entry = head.next
    while remaining_ok > 0:
        steps += 1
        if steps > max_steps or (
            deadline is not None and steps % 4096 == 0 and time.monotonic() > deadline
        ):
            return _KeyResult(None, steps, best_prefix, best_state, [])
        # The walk cannot run off the end: an unlinearized ok op's return is still in the list.
        assert entry is not None
        if entry.is_call:
            o = ops[entry.index]
            legal, new_state = step(state, o)
            if legal:
                new_linearized = linearized | (1 << entry.index)
                config = (new_linearized, new_state)
                if config not in seen:
                    seen.add(config)
                    stack.append((entry, state))
                    state = new_state
                    linearized = new_linearized
                    _lift(entry)
                    if o.status == "ok":
                        remaining_ok -= 1
                        ok_depth += 1
                        if ok_depth > best_depth:
                            best_depth = ok_depth
                            best_prefix = [n.index for n, _ in stack]
                            best_state = state
                    entry = head.next
                    continue
            entry = entry.next
        else:
            # A return of an op not yet linearized: this prefix cannot be extended. Backtrack.
            if not stack:
                unplaced = _frontier_unplaced(ops, best_prefix, best_state)
                return _KeyResult(False, steps, best_prefix, best_state, unplaced)
            entry, state = stack.pop()
            linearized &= ~(1 << entry.index)
            _unlift(entry)
            if ops[entry.index].status == "ok":
                remaining_ok += 1
                ok_depth -= 1
            entry = entry.next
    return _KeyResult(True, steps, [], state, [])


def _key_ops(history: Iterable[Operation]) -> dict[bytes, list[Operation]]:
    """Validate and partition the history; drops fail ops and info reads (no information)."""
    by_key: dict[bytes, list[Operation]] = defaultdict(list)
    for o in history:
        if o.status == "fail" or (o.status == "info" and o.op.kind == "read"):
            continue
        if o.status == "ok":
            if o.complete is None or o.complete < o.invoke:
                raise ValueError(f"ok op needs complete >= invoke: {o.describe()}")
            if o.op.kind == "cas" and not isinstance(o.result, bool):
                raise ValueError(f"ok cas needs a bool result: {o.describe()}")
            if o.op.kind == "read" and not (o.result is None or isinstance(o.result, bytes)):
                raise ValueError(f"ok read needs a bytes/None result: {o.describe()}")
        by_key[o.op.key].append(o)
    return by_key


def _explain(key: bytes, ops: list[Operation], r: _KeyResult) -> str:
    lines = [f"key {key!r}: {'not linearizable' if r.ok is False else 'unknown (budget)'}"]
    lines.append(f"longest linearizable prefix ({len(r.prefix)} ops):")
    lines.extend(f"  {ops[i].describe()}" for i in r.prefix)
    lines.append(f"register after prefix: {r.state!r}")
    if r.ok is False:
        lines.append("ops that cannot be placed next:")
        lines.extend(f"  {ops[i].describe()}" for i in r.unplaced)
    return "\n".join(lines)


def check(
    history: Iterable[Operation],
    *,
    max_steps: int = DEFAULT_MAX_STEPS,
    timeout: float | None = None,
) -> CheckResult:
    """Check ``history`` for linearizability, key by key, in sorted key order.

    ``max_steps`` bounds the search per key; ``timeout`` (seconds, optional) bounds the whole
    check by wall time as a backstop. Exceeding either gives ``ok=None`` unless a violation was
    already found. Raises ``ValueError`` on a malformed history.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    by_key = _key_ops(history)
    total = 0
    unknown: list[tuple[bytes, list[Operation], _KeyResult]] = []
    for n, key in enumerate(sorted(by_key), start=1):
        ops = by_key[key]
        r = _check_key(ops, max_steps, deadline)
        total += r.steps
        if r.ok is False:
            return CheckResult(
                ok=False,
                key=key,
                prefix=tuple(ops[i] for i in r.prefix),
                state=r.state,
                unplaced=tuple(ops[i] for i in r.unplaced),
                steps=total,
                keys_checked=n,
                unknown_keys=tuple(k for k, _, _ in unknown),
                explanation=_explain(key, ops, r),
            )
        if r.ok is None:
            unknown.append((key, ops, r))
    if unknown:
        key, ops, r = unknown[0]
        return CheckResult(
            ok=None,
            key=key,
            prefix=tuple(ops[i] for i in r.prefix),
            state=r.state,
            steps=total,
            keys_checked=len(by_key),
            unknown_keys=tuple(k for k, _, _ in unknown),
            explanation=_explain(key, ops, r),
        )
    return CheckResult(ok=True, steps=total, keys_checked=len(by_key))
