"""What a namespace's retention lets a rebuild find, said before any work, and when the
switch is refused after it."""

from __future__ import annotations

from magnetar.db.shadow_state import StateFigures
from tenants.plans import PLANS
from tenants.rebuild import refusal
from tenants.retention import UNBOUNDED, LedgerFacts, Retention, assess

NOW_MS = 1_800_000_000_000
DAY_MS = 24 * 3600 * 1000


def test_the_policy_is_read_as_the_admin_api_gives_it() -> None:
    policies = {"retention_policies": {"retentionTimeInMinutes": 10080, "retentionSizeInMB": 20480}}
    retention = Retention.from_policies(policies)
    assert retention == Retention(10080, 20480)
    assert retention.describe() == "7 days, 20,480 MiB per topic"
    assert Retention.from_policies({}) == Retention(0, 0)
    assert Retention(UNBOUNDED, UNBOUNDED).describe() == "unbounded time, unbounded size"


def test_unbounded_retention_loses_nothing() -> None:
    facts = LedgerFacts(counted=1_000, remembered=10, oldest_commit_ms=NOW_MS - 400 * DAY_MS)
    assert not assess(Retention(UNBOUNDED, UNBOUNDED), facts, NOW_MS).loses_history


def test_no_retention_finds_only_what_was_not_consumed() -> None:
    verdict = assess(Retention(0, 0), LedgerFacts(0, 0, None), NOW_MS)
    assert verdict.loses_history
    assert "no retention" in verdict.warnings[0]


def test_a_plan_retention_loses_what_the_ledger_has_forgotten() -> None:
    week = Retention(PLANS["standard"].retention_minutes, PLANS["standard"].retention_size_mb)
    fresh = LedgerFacts(counted=500, remembered=500, oldest_commit_ms=NOW_MS - DAY_MS)
    assert not assess(week, fresh, NOW_MS).loses_history
    # Ids expire from the ledger no sooner than the retention: a forgotten one is older.
    old = LedgerFacts(counted=800, remembered=500, oldest_commit_ms=NOW_MS - DAY_MS)
    [warning] = assess(week, old, NOW_MS).warnings
    assert "300 counted events are older than the ledger's memory" in warning
    assert "7 days" in warning


def test_a_retention_shorter_than_the_ledger_warns_by_the_oldest_commit() -> None:
    day = Retention(PLANS["free"].retention_minutes, PLANS["free"].retention_size_mb)
    facts = LedgerFacts(counted=500, remembered=500, oldest_commit_ms=NOW_MS - 3 * DAY_MS)
    [warning] = assess(day, facts, NOW_MS).warnings
    assert "older than the retention (1 day" in warning


def test_a_switch_is_refused_only_for_counted_history_the_topics_lack() -> None:
    live = StateFigures({}, counted=100)
    # More than the live state: what its pipeline had not reached yet.
    assert refusal(live, StateFigures({}, counted=130), unreplayed=0) == ""
    assert "counted 3 events the topics no longer hold" in refusal(
        live, StateFigures({}, counted=130), unreplayed=3
    )
    assert "counts 90 events, the live one 100" in refusal(
        live, StateFigures({}, counted=90), unreplayed=0
    )
