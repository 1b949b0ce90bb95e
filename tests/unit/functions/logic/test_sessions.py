from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.logic.sessions import (
    DEFAULT_INACTIVITY_GAP_MS,
    SessionConfig,
    SessionSpan,
    SessionTracker,
    decode_spans,
    encode_spans,
    session_id_for,
)
from tests.unit.functions.logic.factories import MINUTE_MS, NOW_MS

GAP = DEFAULT_INACTIVITY_GAP_MS
T = NOW_MS


def ids(tracker: SessionTracker, times: list[int], user: str = "u:1") -> list[str]:
    return [tracker.assign("acme", user, t).session_id for t in times]


def test_default_inactivity_gap_is_30_minutes() -> None:
    assert SessionConfig().inactivity_gap_ms == GAP == 30 * MINUTE_MS


def test_first_event_opens_a_session_named_by_its_time() -> None:
    assignment = SessionTracker().assign("acme", "u:1", T)

    assert assignment.opened
    assert assignment.started_at_ms == T
    assert assignment.session_id == session_id_for("acme", "u:1", T)


def test_session_id_is_stable_and_distinguishes_tenant_user_and_start() -> None:
    base = session_id_for("acme", "u:1", T)

    assert base == session_id_for("acme", "u:1", T)
    assert len({base, session_id_for("zeta", "u:1", T), session_id_for("acme", "u:2", T)}) == 3
    assert base != session_id_for("acme", "u:1", T + 1)


def test_events_within_30_minutes_of_the_last_one_share_the_session() -> None:
    # Each event is 20 minutes after the previous: hours of activity, one session.
    times = [T + n * 20 * MINUTE_MS for n in range(10)]

    assert len(set(ids(SessionTracker(), times))) == 1


def test_exactly_30_minutes_of_inactivity_continues_the_session() -> None:
    first, second = ids(SessionTracker(), [T, T + GAP])

    assert first == second


def test_more_than_30_minutes_of_inactivity_starts_a_new_session() -> None:
    tracker = SessionTracker()
    first = tracker.assign("acme", "u:1", T)
    second = tracker.assign("acme", "u:1", T + GAP + 1)

    assert second.opened
    assert second.session_id != first.session_id
    assert second.session_id == session_id_for("acme", "u:1", T + GAP + 1)


def test_users_and_tenants_have_separate_sessions() -> None:
    tracker = SessionTracker()
    a = tracker.assign("acme", "u:1", T)
    b = tracker.assign("acme", "u:2", T)
    c = tracker.assign("zeta", "u:1", T)

    assert len({a.session_id, b.session_id, c.session_id}) == 3
    assert a.opened and b.opened and c.opened


def test_late_event_inside_a_session_joins_it_without_a_change() -> None:
    tracker = SessionTracker()
    first = tracker.assign("acme", "u:1", T)
    tracker.assign("acme", "u:1", T + 10 * MINUTE_MS)
    tracker.take_dirty()

    late = tracker.assign("acme", "u:1", T + 5 * MINUTE_MS)

    assert late.session_id == first.session_id
    assert late.out_of_order
    assert not late.opened
    assert tracker.take_dirty() == {}


def test_late_event_shortly_before_a_session_joins_it_and_keeps_its_id() -> None:
    tracker = SessionTracker()
    first = tracker.assign("acme", "u:1", T)

    late = tracker.assign("acme", "u:1", T - 20 * MINUTE_MS)

    assert late.session_id == first.session_id
    assert late.started_at_ms == T


def test_straggler_far_from_any_session_opens_its_own_which_later_stragglers_join() -> None:
    tracker = SessionTracker()
    current = tracker.assign("acme", "u:1", T)

    old = tracker.assign("acme", "u:1", T - 3 * 60 * MINUTE_MS)
    older_neighbour = tracker.assign("acme", "u:1", T - 3 * 60 * MINUTE_MS - 10 * MINUTE_MS)

    assert old.opened and old.out_of_order
    assert old.session_id not in (current.session_id,)
    assert older_neighbour.session_id == old.session_id
    # The current session is untouched by the stragglers.
    assert tracker.assign("acme", "u:1", T + MINUTE_MS).session_id == current.session_id


def test_event_between_two_sessions_joins_the_nearer_one() -> None:
    tracker = SessionTracker()
    early = tracker.assign("acme", "u:1", T)
    later = tracker.assign("acme", "u:1", T + 50 * MINUTE_MS)

    near_early = tracker.assign("acme", "u:1", T + 15 * MINUTE_MS)
    near_later = tracker.assign("acme", "u:1", T + 40 * MINUTE_MS)

    assert near_early.session_id == early.session_id
    assert near_later.session_id == later.session_id


def test_event_equally_near_two_sessions_joins_the_newer_one() -> None:
    tracker = SessionTracker()
    tracker.assign("acme", "u:1", T)
    later = tracker.assign("acme", "u:1", T + 50 * MINUTE_MS)

    middle = tracker.assign("acme", "u:1", T + 25 * MINUTE_MS)

    assert middle.session_id == later.session_id


def restarted(persisted: dict[str, bytes], config: SessionConfig | None = None) -> SessionTracker:
    """A new instance seeded with what the last one handed out, as the pipeline does."""
    tracker = SessionTracker(config)
    for key, raw in persisted.items():
        tracker.restore(key, raw)
    return tracker


def test_session_continues_across_a_restart_from_what_take_dirty_handed_out() -> None:
    first = SessionTracker()
    opened = first.assign("acme", "u:1", T)
    changed = first.take_dirty()
    assert list(changed) == ["sessions/acme/u:1"] and first.take_dirty() == {}

    after = restarted(changed).assign("acme", "u:1", T + 20 * MINUTE_MS)

    assert after.session_id == opened.session_id
    assert not after.opened


def test_memory_holds_at_most_max_users() -> None:
    tracker = SessionTracker(SessionConfig(max_users=3))

    for n in range(10):
        tracker.assign("acme", f"u:{n}", T)

    assert len(tracker) == 3
    assert tracker.stats.users_evicted == 7


def test_a_changed_user_evicted_before_take_dirty_is_still_handed_out() -> None:
    tracker = SessionTracker(SessionConfig(max_users=1))
    first = tracker.assign("acme", "u:1", T)
    tracker.assign("acme", "u:2", T)  # evicts u:1 before its change was handed out

    changed = tracker.take_dirty()

    assert sorted(changed) == ["sessions/acme/u:1", "sessions/acme/u:2"]
    after = restarted(changed).assign("acme", "u:1", T + MINUTE_MS)
    assert after.session_id == first.session_id
    assert tracker.take_dirty() == {}


def test_an_evicted_user_starts_afresh() -> None:
    tracker = SessionTracker(SessionConfig(max_users=1))
    first = tracker.assign("acme", "u:1", T)
    tracker.assign("acme", "u:2", T)

    resumed = tracker.assign("acme", "u:1", T + MINUTE_MS)

    assert resumed.opened
    assert resumed.session_id != first.session_id


def test_only_the_newest_sessions_per_user_are_kept() -> None:
    tracker = SessionTracker(SessionConfig(max_sessions_per_user=2))
    oldest = tracker.assign("acme", "u:1", T)
    tracker.assign("acme", "u:1", T + 2 * GAP)
    tracker.assign("acme", "u:1", T + 4 * GAP)

    spans = decode_spans(tracker.take_dirty()["sessions/acme/u:1"])
    again = tracker.assign("acme", "u:1", T + MINUTE_MS)

    assert spans is not None and [s.started_at_ms for s in spans] == [T + 2 * GAP, T + 4 * GAP]
    # The forgotten session cannot be found any more; a straggler opens a new one.
    assert again.opened and again.session_id != oldest.session_id


def test_unreadable_record_starts_the_user_afresh() -> None:
    tracker = restarted({"sessions/acme/u:1": b"{not json"})

    assignment = tracker.assign("acme", "u:1", T)

    assert assignment.opened
    assert tracker.stats.unreadable_records == 1
    assert decode_spans(tracker.take_dirty()["sessions/acme/u:1"]) == [SessionSpan(T, T, T)]


@pytest.mark.parametrize(
    "config", [{"inactivity_gap_ms": 0}, {"max_users": 0}, {"max_sessions_per_user": 0}]
)
def test_config_rejects_non_positive_bounds(config: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        SessionConfig(**config)  # type: ignore[arg-type]


@given(st.lists(st.tuples(st.integers(), st.integers(), st.integers()), max_size=8))
def test_span_record_round_trips(rows: list[tuple[int, int, int]]) -> None:
    spans = sorted((SessionSpan(*row) for row in rows), key=lambda s: s.earliest_ms)

    assert decode_spans(encode_spans(spans)) == spans


# --- properties -----------------------------------------------------------------------

_steps = st.lists(st.integers(min_value=0, max_value=2 * GAP), min_size=1, max_size=40)


def offline_sessions(times: list[int]) -> list[str]:
    """Sessions as a batch job would cut sorted events: split where the gap exceeds 30 min."""
    result = []
    start = last = None
    for t in times:
        if last is None or t - last > GAP:
            start = t
        last = t
        assert start is not None
        result.append(session_id_for("acme", "u:1", start))
    return result


@given(_steps)
def test_in_order_events_get_exactly_the_offline_sessions(steps: list[int]) -> None:
    times = [T + sum(steps[: n + 1]) for n in range(len(steps))]

    assert ids(SessionTracker(), times) == offline_sessions(times)


# (user, time offset, restart before this event?) — any order, including out of order.
_mixed_streams = st.lists(
    st.tuples(
        st.sampled_from(["u:1", "u:2", "a:3"]),
        st.integers(min_value=0, max_value=180).map(lambda m: m * MINUTE_MS),
        st.booleans(),
    ),
    max_size=50,
)


@settings(max_examples=200)
@given(_mixed_streams)
def test_restarts_from_what_take_dirty_handed_out_change_no_session_id(
    stream: list[tuple[str, int, bool]],
) -> None:
    uninterrupted = SessionTracker()
    expected = [uninterrupted.assign("acme", user, T + t).session_id for user, t, _ in stream]

    persisted: dict[str, bytes] = {}  # the segment log: a later record of a key wins
    tracker = SessionTracker()
    actual = []
    for user, t, restart in stream:
        if restart:
            tracker = restarted(persisted)
        actual.append(tracker.assign("acme", user, T + t).session_id)
        persisted.update(tracker.take_dirty())

    assert actual == expected


# Whole minutes: coarse times make ties and near-gap distances common.
_minutes = st.integers(min_value=0, max_value=180).map(lambda m: m * MINUTE_MS)


@settings(max_examples=300)
@given(st.lists(_minutes, min_size=1, max_size=40))
def test_reprocessing_an_event_returns_the_session_it_was_given(offsets: list[int]) -> None:
    # Enough remembered sessions that none is forgotten: the guarantee is about known ones.
    tracker = SessionTracker(SessionConfig(max_sessions_per_user=1000))
    first = [tracker.assign("acme", "u:1", T + t).session_id for t in offsets]

    again = [tracker.assign("acme", "u:1", T + t).session_id for t in offsets]

    assert again == first


def test_session_ids_do_not_depend_on_the_process() -> None:
    # A literal: Python's salted hash() would give another value in every process.
    assert session_id_for("acme", "u:1", T) == "537aa3b560aea52a48d325dc6c134be5"


def test_straggler_that_widened_a_session_backwards_still_finds_it_later() -> None:
    tracker = SessionTracker()
    session = tracker.assign("acme", "u:1", T + 60 * MINUTE_MS)
    widened = tracker.assign("acme", "u:1", T + 35 * MINUTE_MS)
    tracker.assign("acme", "u:1", T)  # too far from the session: a session of its own
    tracker.assign("acme", "u:1", T + 12 * MINUTE_MS)  # joins that one, 23 min from 35

    again = tracker.assign("acme", "u:1", T + 35 * MINUTE_MS)

    assert widened.session_id == session.session_id
    assert again.session_id == session.session_id
