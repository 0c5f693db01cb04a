"""TiKV's epoch table (multiraft-design §4.1), the checks and bumps, and the proposal guard."""

from __future__ import annotations

import pytest

from regions.epoch import (
    EPOCH_RULES,
    CommandKind,
    EpochChangeTracker,
    EpochRule,
    bump_epoch,
    check_epoch,
    is_stale,
)
from regions.region import RegionEpoch

K = CommandKind

#: (check ver, check conf_ver, bump ver, bump conf_ver), copied from the reference table.
TABLE = {
    K.NORMAL: (True, False, False, False),
    K.CHANGE_PEER: (False, True, False, True),
    K.CHANGE_PEER_V2: (False, True, False, True),
    K.SPLIT: (True, True, True, False),
    K.BATCH_SPLIT: (True, True, True, False),
    K.PREPARE_MERGE: (True, True, True, True),
    K.COMMIT_MERGE: (True, True, True, False),
    K.ROLLBACK_MERGE: (True, True, True, False),
    K.TRANSFER_LEADER: (False, False, False, False),
    K.COMPACT_LOG: (False, False, False, False),
    K.COMPUTE_HASH: (False, False, False, False),
    K.VERIFY_HASH: (False, False, False, False),
}


def test_the_table_is_tikvs() -> None:
    assert set(EPOCH_RULES) == set(CommandKind)
    for kind, row in TABLE.items():
        assert EPOCH_RULES[kind] == EpochRule(*row), kind
    with pytest.raises(TypeError):
        EPOCH_RULES[K.NORMAL] = EpochRule(False, False, False, False)  # type: ignore[index]


@pytest.mark.parametrize("kind", list(CommandKind))
def test_check_compares_only_the_checked_fields_for_equality(kind: CommandKind) -> None:
    current = RegionEpoch(conf_ver=5, version=7)
    check_ver, check_conf, _, _ = TABLE[kind]
    assert check_epoch(kind, current, current)
    for other in (RegionEpoch(5, 6), RegionEpoch(5, 8)):  # older and newer version
        assert check_epoch(kind, other, current) is not check_ver
    for other in (RegionEpoch(4, 7), RegionEpoch(6, 7)):
        assert check_epoch(kind, other, current) is not check_conf


def test_bumps() -> None:
    e = RegionEpoch(conf_ver=3, version=10)
    assert bump_epoch(K.CHANGE_PEER, e) == RegionEpoch(4, 10)
    assert bump_epoch(K.CHANGE_PEER_V2, e, 2) == RegionEpoch(5, 10)
    assert bump_epoch(K.BATCH_SPLIT, e, 3) == RegionEpoch(3, 13)
    assert bump_epoch(K.SPLIT, e) == RegionEpoch(3, 11)
    assert bump_epoch(K.PREPARE_MERGE, e) == RegionEpoch(4, 11)
    assert bump_epoch(K.ROLLBACK_MERGE, e) == RegionEpoch(3, 11)
    assert bump_epoch(K.COMMIT_MERGE, e, merge_source=RegionEpoch(1, 20)) == RegionEpoch(3, 21)
    assert bump_epoch(K.COMMIT_MERGE, e, merge_source=RegionEpoch(9, 2)) == RegionEpoch(3, 11)
    for kind in (K.NORMAL, K.TRANSFER_LEADER, K.COMPACT_LOG, K.COMPUTE_HASH, K.VERIFY_HASH):
        assert bump_epoch(kind, e, 5) == e
    with pytest.raises(ValueError, match="source"):
        bump_epoch(K.COMMIT_MERGE, e)
    with pytest.raises(ValueError, match="at least 1"):
        bump_epoch(K.BATCH_SPLIT, e, 0)


@pytest.mark.parametrize("kind", list(CommandKind))
def test_bumps_follow_the_table(kind: CommandKind) -> None:
    e = RegionEpoch(conf_ver=3, version=10)
    after = bump_epoch(kind, e, merge_source=RegionEpoch(1, 1))
    _, _, bumps_ver, bumps_conf = TABLE[kind]
    assert (after.version > e.version) is bumps_ver
    assert (after.conf_ver > e.conf_ver) is bumps_conf
    # A command made for the old epoch no longer matches when it checks what was bumped.
    if (bumps_ver and TABLE[kind][0]) or (bumps_conf and TABLE[kind][1]):
        assert not check_epoch(kind, e, after)


def test_is_stale_compares_fields_separately() -> None:
    cur = RegionEpoch(conf_ver=5, version=5)
    assert is_stale(RegionEpoch(4, 9), cur)
    assert is_stale(RegionEpoch(9, 4), cur)
    assert not is_stale(cur, cur)
    assert not is_stale(RegionEpoch(6, 6), cur)
    assert is_stale(RegionEpoch(4, 9), cur) == RegionEpoch(4, 9).is_stale_against(cur)


def test_tracker_blocks_what_an_unapplied_proposal_bumps() -> None:
    t = EpochChangeTracker()
    assert t.conflict_index(K.BATCH_SPLIT, term=2) is None
    t.proposed(K.NORMAL, 10, term=2)  # changes nothing: not kept
    t.proposed(K.TRANSFER_LEADER, 11, term=2)
    assert len(t) == 0
    t.proposed(K.BATCH_SPLIT, 12, term=2)
    # A split bumps the version, so writes (which check it) wait; a conf change checks
    # only conf_ver, which a split leaves alone.
    assert t.conflict_index(K.NORMAL, term=2) == 12
    assert t.conflict_index(K.BATCH_SPLIT, term=2) == 12
    assert t.conflict_index(K.CHANGE_PEER_V2, term=2) is None
    assert t.conflict_index(K.TRANSFER_LEADER, term=2) is None
    t.proposed(K.CHANGE_PEER, 13, term=2)
    assert t.conflict_index(K.CHANGE_PEER, term=2) == 13  # one pending conf change
    assert t.conflict_index(K.NORMAL, term=2) == 12
    assert t.conflict_index(K.BATCH_SPLIT, term=2) == 13  # a split checks conf_ver too
    t.applied(12)
    assert t.conflict_index(K.NORMAL, term=2) is None
    assert t.conflict_index(K.BATCH_SPLIT, term=2) == 13
    t.applied(13)
    assert len(t) == 0
    with pytest.raises(ValueError, match="does not follow"):
        t.proposed(K.SPLIT, 20, term=2)
        t.proposed(K.SPLIT, 20, term=2)


def test_tracker_forgets_on_a_new_term_and_ignores_older_terms() -> None:
    t = EpochChangeTracker()
    t.proposed(K.PREPARE_MERGE, 5, term=3)
    assert t.conflict_index(K.NORMAL, term=3) == 5
    assert t.conflict_index(K.NORMAL, term=4) is None
    assert len(t) == 0
    t.proposed(K.SPLIT, 6, term=3)  # a proposal of an older term is not kept
    assert len(t) == 0
    t.proposed(K.SPLIT, 7, term=4)
    t.clear()
    assert t.conflict_index(K.SPLIT, term=4) is None
