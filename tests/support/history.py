"""Recording client operations as a Jepsen-style history for the linearizability checker.

A cluster test wraps every client call with a :class:`HistoryRecorder`: ``invoke`` before the
request leaves, then exactly one outcome once the client knows it:

* ``complete(op_id, result)``: the operation took effect, once, between invoke and completion
  (``ok``). The result is the value read (``bytes`` or ``None`` for an absent key) for a read,
  whether the swap happened (``bool``) for a cas, and ``None`` for a write or delete.
* ``fail(op_id)``: the operation *definitely* did not take effect (e.g. ``NotLeader`` before the
  proposal was made). Only use it when certain: a wrong ``fail`` makes the checker unsound.
* ``info(op_id)``: indeterminate (timeout, connection loss, cancellation). The operation may take
  effect once at any time after its invocation, or never. An operation still pending when the
  history is read is reported as ``info`` too.

Invariants:

* Times are a logical clock: one counter, incremented under the lock for every invoke and every
  outcome, so events are totally ordered in the order the recorder saw them and no two events
  share a time. Wall-clock time is never used: it can go backwards and ties are ambiguous.
* Real-time order is what the recorder observed: if ``complete(a)`` returned before
  ``invoke(b)`` was called, then ``a.complete < b.invoke``. Callers must therefore call ``invoke``
  *before* sending and ``complete`` *after* receiving, never the other way round.
* A process (client id) has at most one unresolved operation. After ``info`` the process may go
  on; the checker ignores process identity, it only uses the invoke/complete times.
* Every method is synchronous, non-blocking and holds a ``threading.Lock`` for O(1) work, so the
  recorder is safe from threads and from trio tasks alike (it never awaits, so it cannot be
  interrupted by cancellation halfway through an update).

Histories round-trip through JSON lines (:func:`dump` / :func:`load`), one operation a line, with
byte strings encoded as latin-1 text: exact for every byte value and readable for ASCII keys.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias

OpKind: TypeAlias = Literal["read", "write", "delete", "cas"]
Status: TypeAlias = Literal["ok", "fail", "info"]
ProcessId: TypeAlias = int | str
#: A read's value (``bytes``/``None``), a cas's success (``bool``), ``None`` for write/delete.
Result: TypeAlias = bytes | bool | None

_KINDS: frozenset[str] = frozenset({"read", "write", "delete", "cas"})
_STATUSES: frozenset[str] = frozenset({"ok", "fail", "info"})


@dataclass(frozen=True)
class Op:
    """One client request on one key. Build it with the ``read``/``write``/``delete``/``cas``
    constructors; ``value`` is used by write, ``expected``/``new`` by cas (``None`` = absent)."""

    kind: OpKind
    key: bytes
    value: bytes | None = None
    expected: bytes | None = None
    new: bytes | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown op kind {self.kind!r}")
        if not isinstance(self.key, bytes):
            raise TypeError("key must be bytes")
        if self.kind == "write" and not isinstance(self.value, bytes):
            raise TypeError("write needs a bytes value (use delete to remove a key)")
        if self.kind != "write" and self.value is not None:
            raise ValueError(f"{self.kind} takes no value")
        if self.kind != "cas" and (self.expected is not None or self.new is not None):
            raise ValueError(f"{self.kind} takes no expected/new")

    @classmethod
    def read(cls, key: bytes) -> Op:
        return cls("read", key)

    @classmethod
    def write(cls, key: bytes, value: bytes) -> Op:
        return cls("write", key, value=value)

    @classmethod
    def delete(cls, key: bytes) -> Op:
        return cls("delete", key)

    @classmethod
    def cas(cls, key: bytes, expected: bytes | None, new: bytes | None) -> Op:
        return cls("cas", key, expected=expected, new=new)

    def describe(self) -> str:
        if self.kind == "write":
            return f"write({self.key!r}, {self.value!r})"
        if self.kind == "cas":
            return f"cas({self.key!r}, {self.expected!r} -> {self.new!r})"
        return f"{self.kind}({self.key!r})"


@dataclass(frozen=True)
class Operation:
    """One entry of a history: an op with its invoke time and its outcome.

    ``complete`` is the logical time of the outcome event (``ok``, ``fail`` or ``info``), or
    ``None`` if the op was still pending when the history was taken (then ``status`` is
    ``info``). For ``info`` ops it is informational only: the checker treats them as open forever.
    """

    id: int
    process: ProcessId
    op: Op
    invoke: int
    complete: int | None
    status: Status
    result: Result = None

    def describe(self) -> str:
        end = "..." if self.status == "info" else str(self.complete)
        shown = f" -> {self.result!r}" if self.op.kind in ("read", "cas") else ""
        return f"#{self.id} p{self.process} {self.op.describe()}{shown} {self.status} [{self.invoke}, {end}]"


def _check_result(op: Op, result: Result) -> None:
    # Catch wrapper bugs at the recording site, where the stack trace is useful, rather than as a
    # baffling verdict from the checker later.
    if op.kind == "read" and not (result is None or isinstance(result, bytes)):
        raise TypeError(f"a read completes with bytes or None, not {result!r}")
    if op.kind == "cas" and not isinstance(result, bool):
        raise TypeError(f"a cas completes with a bool (did it swap), not {result!r}")
    if op.kind in ("write", "delete") and result is not None:
        raise TypeError(f"a {op.kind} completes with None, not {result!r}")


@dataclass
class _Pending:
    process: ProcessId
    op: Op
    invoke: int


class HistoryRecorder:
    """Thread-safe, trio-friendly recorder of client operations (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clock = 0
        self._next_id = 0
        self._pending: dict[int, _Pending] = {}
        self._busy: dict[ProcessId, int] = {}  # process -> its unresolved op id
        self._done: list[Operation] = []

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def invoke(self, process: ProcessId, op: Op) -> int:
        """Record that ``process`` is about to send ``op``; returns the op id for the outcome."""
        with self._lock:
            if process in self._busy:
                raise RuntimeError(
                    f"process {process!r} invoked {op.describe()} while op "
                    f"#{self._busy[process]} is unresolved; processes are sequential"
                )
            op_id = self._next_id
            self._next_id += 1
            self._pending[op_id] = _Pending(process, op, self._tick())
            self._busy[process] = op_id
            return op_id

    def _resolve(self, op_id: int, status: Status, result: Result) -> None:
        with self._lock:
            pending = self._pending.pop(op_id, None)
            if pending is None:
                raise KeyError(f"op #{op_id} is unknown or already resolved")
            if status == "ok":
                try:
                    _check_result(pending.op, result)
                except TypeError:
                    self._pending[op_id] = pending  # leave the recorder as it was
                    raise
            del self._busy[pending.process]
            self._done.append(
                Operation(
                    op_id, pending.process, pending.op, pending.invoke, self._tick(), status, result
                )
            )

    def complete(self, op_id: int, result: Result = None) -> None:
        """The op took effect; ``result`` as described in the module docstring."""
        self._resolve(op_id, "ok", result)

    def fail(self, op_id: int) -> None:
        """The op definitely did not take effect."""
        self._resolve(op_id, "fail", None)

    def info(self, op_id: int) -> None:
        """The outcome is unknown: the op may take effect at any later time, or never."""
        self._resolve(op_id, "info", None)

    @contextmanager
    def recording(self, process: ProcessId, op: Op) -> Iterator[Call]:
        """Invoke ``op`` and yield a :class:`Call` on which the wrapper reports the outcome.

        Any exception escaping the block (including ``trio.Cancelled`` and timeouts) records the
        op as ``info`` and propagates: an unclassified error might have happened after the
        proposal, so only an explicit ``call.fail()`` may claim it did not take effect.
        """
        call = Call(self, self.invoke(process, op))
        try:
            yield call
        except BaseException:
            if not call.resolved:
                call.info()
            raise
        if not call.resolved:
            call.info()
            raise RuntimeError(f"op #{call.op_id} left the recording block without an outcome")

    def history(self) -> list[Operation]:
        """A snapshot of all operations ordered by invoke time; unresolved ones appear as info."""
        with self._lock:
            ops = list(self._done)
            ops.extend(
                Operation(op_id, p.process, p.op, p.invoke, None, "info")
                for op_id, p in self._pending.items()
            )
        ops.sort(key=lambda o: o.invoke)
        return ops

    def __len__(self) -> int:
        with self._lock:
            return len(self._done) + len(self._pending)

    def dump(self, path: str | Path) -> None:
        """Write the current history as JSON lines (see :func:`dump`)."""
        dump(self.history(), path)


class Call:
    """Handle yielded by :meth:`HistoryRecorder.recording` to report one op's outcome."""

    def __init__(self, recorder: HistoryRecorder, op_id: int) -> None:
        self._recorder = recorder
        self.op_id = op_id
        self.resolved = False

    def ok(self, result: Result = None) -> None:
        self._recorder.complete(self.op_id, result)
        self.resolved = True

    def fail(self) -> None:
        self._recorder.fail(self.op_id)
        self.resolved = True

    def info(self) -> None:
        self._recorder.info(self.op_id)
        self.resolved = True


def _enc(b: bytes | None) -> str | None:
    return None if b is None else b.decode("latin-1")


def _dec(s: Any) -> bytes | None:
    if s is None:
        return None
    if not isinstance(s, str):
        raise ValueError(f"expected a string or null, got {s!r}")
    return s.encode("latin-1")


def to_json(o: Operation) -> dict[str, Any]:
    """The JSON object for one operation (the line format of :func:`dump`)."""
    d: dict[str, Any] = {
        "id": o.id,
        "process": o.process,
        "kind": o.op.kind,
        "key": _enc(o.op.key),
        "invoke": o.invoke,
        "complete": o.complete,
        "status": o.status,
    }
    if o.op.kind == "write":
        d["value"] = _enc(o.op.value)
    if o.op.kind == "cas":
        d["expected"] = _enc(o.op.expected)
        d["new"] = _enc(o.op.new)
    if o.op.kind == "cas" and o.status == "ok":
        d["result"] = o.result
    elif o.op.kind == "read" and o.status == "ok":
        d["result"] = _enc(o.result if isinstance(o.result, bytes) else None)
    return d


def from_json(d: dict[str, Any]) -> Operation:
    """Inverse of :func:`to_json`; raises ``ValueError``/``TypeError`` on a malformed line."""
    kind = d["kind"]
    status = d["status"]
    if kind not in _KINDS or status not in _STATUSES:
        raise ValueError(f"bad kind/status in {d!r}")
    key = _dec(d["key"])
    if key is None:
        raise ValueError("key must not be null")
    op = Op(kind, key, _dec(d.get("value")), _dec(d.get("expected")), _dec(d.get("new")))
    raw = d.get("result")
    result: Result = raw if kind == "cas" else _dec(raw)
    if status == "ok":
        _check_result(op, result)
    return Operation(
        int(d["id"]), d["process"], op, int(d["invoke"]), d["complete"], status, result
    )


def dump(history: Iterable[Operation], path: str | Path) -> None:
    """Write ``history`` to ``path`` as JSON lines, one operation a line, in the given order."""
    with open(path, "w", encoding="utf-8") as f:
        for o in history:
            f.write(json.dumps(to_json(o), sort_keys=True) + "\n")


def load(path: str | Path) -> list[Operation]:
    """Read a history written by :func:`dump` (blank lines are skipped)."""
    with open(path, encoding="utf-8") as f:
        return [from_json(json.loads(line)) for line in f if line.strip()]
