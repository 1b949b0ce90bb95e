from __future__ import annotations

from magnetar.personalization import records
from magnetar.personalization.decay import DAY_MS, HOUR_MS
from magnetar.personalization.fold import fold_events
from magnetar.personalization.memory_state import MemoryState
from magnetar.personalization.records import EnrichedEvent
from magnetar.personalization.settings import SignalSettings
from tests.unit.personalization.builders import T0, event

SETTINGS = SignalSettings()


def _state(events: list[EnrichedEvent], settings: SignalSettings = SETTINGS) -> MemoryState:
    state = MemoryState(settings)
    state.apply(fold_events(events, settings))
    return state


def test_a_short_window_ranks_a_fresh_burst_above_a_steady_seller() -> None:
    now = T0 + 7 * DAY_MS
    steady = [
        event(records.VIEW, "steady", user_id=f"s{n}", at=T0 + n * DAY_MS // 2) for n in range(12)
    ]
    burst = [event(records.VIEW, "burst", user_id=f"b{n}", at=now - HOUR_MS) for n in range(4)]
    state = _state(steady + burst)
    assert [s.item_id for s in state.trending("acme", "1h", now, 2)] == ["burst", "steady"]
    assert [s.item_id for s in state.trending("acme", "7d", now, 2)] == ["steady", "burst"]


def test_trending_in_categories_only_returns_members_of_each_category() -> None:
    state = _state(
        [
            event(records.VIEW, "shoe", categories=("shoes",)),
            event(records.VIEW, "hat", categories=("hats",)),
            event(records.VIEW, "shoehat", categories=("shoes", "hats")),
        ]
    )
    found = state.trending_in_categories("acme", "24h", ["shoes", "none"], T0, 10)
    assert {s.item_id for s in found["shoes"]} == {"shoe", "shoehat"}
    assert found["none"] == []


def test_neighbours_are_returned_for_many_items_at_once_best_first() -> None:
    state = _state(
        [
            event(records.PURCHASE, "a", session_id="s1", at=T0),
            event(records.PURCHASE, "b", session_id="s1", at=T0 + 1),
            event(records.VIEW, "a", session_id="s2", at=T0 + 2),
            event(records.VIEW, "c", session_id="s2", at=T0 + 3),
            event(records.VIEW, "lonely", session_id="s3", at=T0 + 4),
        ]
    )
    found = state.neighbours("acme", ["a", "c", "lonely", "unknown"], T0 + 10, 5)
    assert [s.item_id for s in found["a"]] == ["b", "c"]
    assert [s.item_id for s in found["c"]] == ["a"]
    assert set(found) == {"a", "c"}


def test_a_cancelled_purchase_is_not_a_purchased_item() -> None:
    state = _state(
        [
            event(records.PURCHASE, "kept", at=T0),
            event(records.PURCHASE, "returned", at=T0),
            event(records.CANCEL, "returned", at=T0 + 1),
        ]
    )
    assert state.purchased_items("acme", "u1") == frozenset({"kept"})
    assert [s.item_id for s in state.user_item_affinities("acme", "u1", T0 + 1, 10)] == ["kept"]


def test_affinities_are_decayed_to_the_read_instant() -> None:
    state = _state([event(records.PURCHASE, "a", at=T0)])
    half_life = SETTINGS.affinity_half_life_ms
    (scored,) = state.user_item_affinities("acme", "u1", T0 + half_life, 10)
    assert scored.score == SETTINGS.weights.purchase / 2


def test_recent_items_show_each_item_once_across_sessions() -> None:
    state = _state(
        [
            event(records.VIEW, "a", session_id="s1", at=T0),
            event(records.VIEW, "a", session_id="s2", at=T0 + 2),
            event(records.VIEW, "b", session_id="s2", at=T0 + 1),
        ]
    )
    recent = state.recent_items("acme", "u1", 10)
    assert [(r.item_id, r.session_id) for r in recent] == [("a", "s2"), ("b", "s2")]


def test_tenants_do_not_see_each_others_state() -> None:
    state = _state([event(records.PURCHASE, "a", tenant_id="acme")])
    assert state.trending("globex", "24h", T0, 10) == []
    assert state.user_activity("globex", "u1") is None
    assert state.item_categories("globex", ["a"]) == {}


def test_each_tenant_decays_with_its_own_half_life() -> None:
    fast = SignalSettings(affinity_half_life_ms=HOUR_MS)
    state = MemoryState(SETTINGS, per_tenant={"fast": fast})
    state.apply(fold_events([event(records.PURCHASE, "a", tenant_id="fast")], fast))
    state.apply(fold_events([event(records.PURCHASE, "a", tenant_id="slow")], SETTINGS))
    (fast_score,) = state.user_item_affinities("fast", "u1", T0 + HOUR_MS, 1)
    (slow_score,) = state.user_item_affinities("slow", "u1", T0 + HOUR_MS, 1)
    assert fast_score.score == 4.0
    assert slow_score.score > 7.9
