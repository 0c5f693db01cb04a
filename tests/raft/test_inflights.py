# Covers raft-rs (src/tracker/inflights.rs): test_inflight_add, test_inflight_free_to,
# test_inflight_free_first_one, test_inflights_set_cap.
# Also the Inflights-level parts of test_disable_progress and
# test_msg_app_flow_control_with_freeing_resources (lazy buffer, maybe_free_buffer),
# plus etcd's optional byte limit and a model-based property test.
"""Unit tests of the Inflights ring buffer."""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multiraft.raft.errors import RaftFatal
from multiraft.raft.tracker import Inflights


def filled(cap: int, *indexes: int) -> Inflights:
    ins = Inflights(cap)
    for i in indexes:
        ins.add(i)
    return ins


def at_slot(cap: int, start: int) -> Inflights:
    """An empty window whose next entry goes to ring slot ``start``."""
    ins = Inflights(cap)
    for i in range(start):
        ins.add(i)
    ins.free_to(start - 1)
    assert (ins.start, ins.count()) == (start, 0)
    return ins


# -- add ------------------------------------------------------------------------


def test_add_fills_from_slot_zero() -> None:
    ins = filled(8, 10, 11, 12)
    assert (ins.start, ins.count(), ins.buffer()) == (0, 3, [10, 11, 12])
    assert not ins.full()
    for i in range(13, 18):
        ins.add(i)
    assert ins.count() == 8
    assert ins.full()
    assert ins.buffer() == list(range(10, 18))


def test_add_wraps_around_the_ring_end() -> None:
    ins = at_slot(6, 4)  # raw ring is now [0, 1, 2, 3]
    for i in (100, 101):
        ins.add(i)
    assert ins.buffer() == [0, 1, 2, 3, 100, 101]
    for i in (102, 103, 104, 105):
        ins.add(i)
    # Slots 0..3 are reused for the entries past the ring end.
    assert ins.buffer() == [102, 103, 104, 105, 100, 101]
    assert (ins.start, ins.count()) == (4, 6)
    assert ins.full()
    assert ins.inflights() == [100, 101, 102, 103, 104, 105]


def test_add_to_full_window_is_fatal() -> None:
    ins = filled(2, 1, 2)
    with pytest.raises(RaftFatal, match="full inflights"):
        ins.add(3)
    assert ins.inflights() == [1, 2]


def test_negative_cap_is_rejected() -> None:
    with pytest.raises(ValueError):
        Inflights(-1)


# -- free_to / free_first_one ----------------------------------------------------


def test_free_to_releases_acknowledged_prefix() -> None:
    ins = filled(10, *range(10))
    ins.free_to(3)
    assert (ins.start, ins.count()) == (4, 6)
    ins.free_to(7)
    assert (ins.start, ins.count()) == (8, 2)
    assert ins.inflights() == [8, 9]


def test_free_to_across_the_wrap_point() -> None:
    ins = filled(10, *range(10))
    ins.free_to(8)
    for i in range(10, 15):
        ins.add(i)
    assert ins.buffer() == [10, 11, 12, 13, 14, 5, 6, 7, 8, 9]
    ins.free_to(11)
    assert (ins.start, ins.count()) == (2, 3)
    ins.free_to(14)
    assert (ins.start, ins.count()) == (5, 0)
    # The raw ring keeps stale slots; only start/count matter.
    assert ins.buffer() == [10, 11, 12, 13, 14, 5, 6, 7, 8, 9]


def test_free_to_between_entries_stops_at_first_larger() -> None:
    ins = filled(5, 10, 20, 30)
    ins.free_to(25)
    assert ins.inflights() == [30]


def test_stale_free_to_is_ignored() -> None:
    ins = filled(5, 10, 20)
    ins.free_to(9)
    assert ins.inflights() == [10, 20]
    empty = Inflights(5)
    empty.free_to(100)
    assert empty.count() == 0


def test_free_first_one_releases_only_the_oldest() -> None:
    ins = filled(10, *range(10))
    ins.free_first_one()
    assert (ins.start, ins.count()) == (1, 9)
    assert not ins.full()


def test_free_first_one_on_empty_window_is_a_no_op() -> None:
    ins = Inflights(3)
    ins.free_first_one()
    assert ins.count() == 0


# -- reset / buffer lifecycle ----------------------------------------------------


def test_reset_drops_everything_and_the_buffer() -> None:
    ins = filled(4, 1, 2, 3)
    ins.reset()
    assert (ins.start, ins.count(), ins.buffer()) == (0, 0, [])
    assert not ins.buffer_is_allocated()
    ins.add(7)  # usable again: the buffer is re-reserved lazily
    assert ins.buffer_is_allocated()
    assert ins.buffer_capacity() == 4
    assert ins.inflights() == [7]


def test_new_window_reserves_cap_slots() -> None:
    assert Inflights(256).buffer_capacity() == 256
    assert not Inflights(0).buffer_is_allocated()


def test_maybe_free_buffer_only_when_idle() -> None:
    ins = filled(8, 1, 2)
    ins.maybe_free_buffer()
    assert ins.buffer_is_allocated()
    assert ins.inflights() == [1, 2]
    ins.free_to(2)
    ins.maybe_free_buffer()
    assert not ins.buffer_is_allocated()
    assert (ins.start, ins.buffer_capacity()) == (0, 0)
    ins.add(3)
    assert ins.buffer_capacity() == 8


def test_equality_ignores_reserved_capacity() -> None:
    a = Inflights(4)
    b = Inflights(4)
    b.reset()
    assert a == b
    a.add(1)
    assert a != b


# -- set_cap ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "relinearized"),
    [(16, False), (112, False), (120, True)],
    ids=["contiguous-low", "contiguous-high", "wrapped"],
)
def test_set_cap_grow(start: int, relinearized: bool) -> None:
    ins = at_slot(128, start)
    for i in range(16):
        ins.add(i)
    ins.set_cap(1024)
    assert (ins.cap, ins.incoming_cap) == (1024, None)
    assert ins.buffer_capacity() == 1024
    assert (ins.start == 0) is relinearized
    assert ins.inflights() == list(range(16))
    # The larger ring keeps working across its new end.
    for i in range(16, 1024):
        ins.add(i)
    assert ins.full()
    ins.free_to(1000)
    assert ins.inflights() == list(range(1001, 1024))


def test_set_cap_shrink_of_empty_allocated_window_is_immediate() -> None:
    ins = at_slot(128, 1)
    ins.set_cap(64)
    assert (ins.cap, ins.incoming_cap, ins.start) == (64, None, 0)
    assert ins.buffer_capacity() == 64


def test_set_cap_shrink_of_unallocated_window_stays_unallocated() -> None:
    ins = Inflights(128)
    ins.maybe_free_buffer()
    ins.set_cap(64)
    assert (ins.cap, ins.incoming_cap, ins.start) == (64, None, 0)
    assert ins.buffer_capacity() == 0


def busy_then_shrunk() -> Inflights:
    ins = at_slot(128, 1)
    for i in range(8):
        ins.add(i)
    ins.set_cap(64)
    return ins


def test_set_cap_shrink_of_busy_window_is_deferred() -> None:
    ins = busy_then_shrunk()
    assert (ins.cap, ins.incoming_cap, ins.start) == (128, 64, 1)
    assert ins.buffer_capacity() == 128
    # Draining the window applies the pending cap.
    ins.free_to(7)
    assert (ins.cap, ins.incoming_cap, ins.start) == (64, None, 0)
    assert ins.buffer_capacity() == 64


@pytest.mark.parametrize("new_cap", [128, 1024])
def test_set_cap_not_smaller_cancels_deferred_shrink(new_cap: int) -> None:
    ins = busy_then_shrunk()
    ins.set_cap(new_cap)
    assert (ins.cap, ins.incoming_cap) == (new_cap, None)
    assert ins.inflights() == list(range(8))


def test_deferred_shrink_counts_as_full_at_the_new_cap() -> None:
    ins = filled(8, 1, 2, 3)
    ins.set_cap(2)
    assert ins.full()  # 3 in flight >= pending cap 2
    ins.free_to(1)
    assert ins.full()  # 2 >= 2
    ins.free_to(3)
    assert (ins.cap, ins.count()) == (2, 0)
    assert not ins.full()


def test_reset_applies_deferred_shrink() -> None:
    ins = filled(8, 1, 2, 3)
    ins.set_cap(2)
    ins.reset()
    assert (ins.cap, ins.incoming_cap) == (2, None)


def test_cap_zero_disables_the_peer() -> None:
    ins = Inflights(4)
    ins.set_cap(0)
    assert ins.full()
    assert ins.count() == 0
    ins.free_first_one()  # freeing an empty, disabled window must not fail
    ins.free_to(10)
    with pytest.raises(RaftFatal):
        ins.add(1)
    ins.set_cap(10)
    assert not ins.full()
    ins.add(1)
    assert ins.inflights() == [1]


def test_cap_zero_on_busy_window_is_full_until_drained() -> None:
    ins = filled(4, 5, 6)
    ins.set_cap(0)
    assert ins.full()
    ins.free_to(6)
    assert (ins.cap, ins.count()) == (0, 0)
    assert ins.full()


# -- byte limit (etcd extension) ------------------------------------------------


def test_byte_limit_fills_window_before_count_does() -> None:
    ins = Inflights(10, max_bytes=100)
    ins.add(1, 60)
    assert not ins.full()
    ins.add(2, 50)
    assert ins.full()
    assert ins.bytes_in_flight() == 110
    ins.free_to(1)
    assert ins.bytes_in_flight() == 50
    assert not ins.full()


def test_byte_limit_admits_one_oversized_message() -> None:
    ins = Inflights(10, max_bytes=100)
    ins.add(1, 500)  # an empty window always accepts one message
    assert ins.full()
    ins.free_first_one()
    assert (ins.bytes_in_flight(), ins.full()) == (0, False)


def test_byte_sizes_survive_wrap_and_growth() -> None:
    ins = Inflights(4, max_bytes=1000)
    for i in range(1, 4):
        ins.add(i, 10)
    ins.free_to(2)
    for i in range(4, 7):
        ins.add(i, i * 100)  # wraps to slots 0 and 1
    ins.set_cap(8)  # relinearizes the ring
    assert ins.inflights() == [3, 4, 5, 6]
    assert ins.bytes_in_flight() == 10 + 400 + 500 + 600
    ins.free_to(4)
    assert ins.bytes_in_flight() == 1100
    ins.reset()
    assert ins.bytes_in_flight() == 0


def test_sizes_are_ignored_without_byte_limit() -> None:
    ins = Inflights(3)
    ins.add(1, 10**9)
    assert not ins.full()
    assert ins.bytes_in_flight() == 0


# -- model-based property --------------------------------------------------------

ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(1, 3), st.integers(0, 40)),
        st.tuples(st.just("free_to"), st.integers(-2, 6), st.just(0)),
        st.tuples(st.just("free_first_one"), st.just(0), st.just(0)),
        st.tuples(st.just("set_cap"), st.integers(0, 9), st.just(0)),
        st.tuples(st.just("reset"), st.just(0), st.just(0)),
        st.tuples(st.just("maybe_free_buffer"), st.just(0), st.just(0)),
    ),
    max_size=60,
)


@pytest.mark.slow
@settings(derandomize=True, max_examples=200, deadline=None)
@given(ops=ops, max_bytes=st.sampled_from([0, 50]))
def test_ring_matches_a_queue_model(ops: list[tuple[str, int, int]], max_bytes: int) -> None:
    ins = Inflights(4, max_bytes)
    model: deque[tuple[int, int]] = deque()
    cap = 4
    pending: int | None = None
    last = 0

    def model_full() -> bool:
        n = len(model)
        return (
            n == cap
            or (pending is not None and n >= pending)
            or (max_bytes > 0 and sum(s for _, s in model) >= max_bytes)
        )

    for op, arg, size in ops:
        if op == "add":
            if model_full():
                with pytest.raises(RaftFatal):
                    ins.add(last + arg, size)
                continue
            last += arg
            ins.add(last, size)
            model.append((last, size))
        elif op in ("free_to", "free_first_one"):
            to = model[0][0] if model and op == "free_first_one" else last + arg - 4
            if op == "free_to":
                ins.free_to(to)
            else:
                ins.free_first_one()
            if op == "free_to" or model:
                while model and model[0][0] <= to:
                    model.popleft()
                if not model and pending is not None:
                    cap, pending = pending, None
        elif op == "set_cap":
            ins.set_cap(arg)
            if arg >= cap or not model:
                cap, pending = arg, None
            else:
                pending = arg
        elif op == "reset":
            ins.reset()
            model.clear()
            if pending is not None:
                cap, pending = pending, None
        else:
            ins.maybe_free_buffer()
        assert ins.inflights() == [i for i, _ in model]
        assert ins.count() == len(model)
        assert (ins.cap, ins.incoming_cap) == (cap, pending)
        assert ins.full() == model_full()
        assert ins.bytes_in_flight() == (sum(s for _, s in model) if max_bytes else 0)
