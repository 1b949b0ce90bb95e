"""Imported history goes through the one pipeline: the import topic is provisioned with the
tenant and read by the pipeline Function, whose validation accepts old events from it (and
only from it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from functions import runtime
from functions.deployment import PipelineOptions, function_config
from functions.logic.validation import (
    DEFAULT_POLICY,
    IMPORT_POLICY,
    Accepted,
    DlqReason,
    Rejected,
    is_import_topic,
    policy_for_topic,
    validate,
)
from functions.pipeline import Pipeline
from magnetar.topics import TenantTopics
from magnetar.v1 import events_pb2
from tenants.functions_deploy import apply_function
from tenants.pulsar_setup import provision_pulsar
from tests.fuzz.strategies import NOW_MS
from tests.fuzz.test_function_classes_fuzz import CONFIG, DLQ, CountingSink, FakeContext, run_once
from tests.tenant_fakes import FakePulsarAdmin
from tests.unit.functions.logic.factories import make_event

YEAR_MS = 365 * 24 * 3600 * 1000


@dataclass
class TopicContext(FakeContext):
    topic: str = "persistent://fuzz/events/raw-partition-0"

    def get_current_message_topic_name(self) -> str:
        return self.topic


def test_the_import_topic_and_its_partitions_are_told_apart_from_raw() -> None:
    assert is_import_topic("persistent://acme/events/import")
    assert is_import_topic("persistent://acme/events/import-partition-3")
    assert not is_import_topic("persistent://acme/events/raw-partition-0")
    assert not is_import_topic("persistent://acme/events/important-partition-0")
    assert policy_for_topic("persistent://acme/events/import-partition-1") is IMPORT_POLICY
    assert policy_for_topic("persistent://acme/events/raw-partition-1") is DEFAULT_POLICY


def test_the_import_policy_accepts_any_age_but_not_the_future() -> None:
    old = make_event(occurred_at_ms=NOW_MS - YEAR_MS)
    assert validate(old, NOW_MS, IMPORT_POLICY) == Accepted(late=False, lateness_ms=YEAR_MS)
    verdict = validate(old, NOW_MS, DEFAULT_POLICY)
    assert isinstance(verdict, Rejected) and verdict.reason is DlqReason.TOO_OLD
    future = make_event(occurred_at_ms=NOW_MS + 3_600_000)
    verdict = validate(future, NOW_MS, IMPORT_POLICY)
    assert isinstance(verdict, Rejected) and verdict.reason is DlqReason.FUTURE_TIMESTAMP


def _old_purchase(event_id: str) -> bytes:
    event = events_pb2.Event(event_id=event_id, user_id="u1", item_id="mug")
    event.type = events_pb2.EVENT_TYPE_PURCHASE
    event.occurred_at.FromMilliseconds(NOW_MS - YEAR_MS)
    return event.SerializeToString()


def test_the_pipeline_counts_old_events_from_the_import_topic_only() -> None:
    context = TopicContext(dict(CONFIG))
    sink = CountingSink(context)
    pipeline = Pipeline(sink=sink)
    context.topic = "persistent://fuzz/events/import-partition-2"
    assert run_once(pipeline, context, sink, _old_purchase("h1")) == "counted"
    context.topic = "persistent://fuzz/events/raw-partition-2"
    assert run_once(pipeline, context, sink, _old_purchase("h2")) == "dead-lettered"
    _, _, conf = context.published[-1]
    assert conf["properties"][runtime.REASON_PROPERTY] == "TOO_OLD"
    assert [e.event_id for e in sink.counted] == ["h1"]
    assert context.published[-1][0] == DLQ


def test_the_pipeline_reads_the_raw_and_the_import_topic() -> None:
    topics = TenantTopics("acme")
    config = function_config("pipeline", topics, PipelineOptions())
    assert set(config["inputSpecs"]) == {topics.raw, topics.imports}
    assert topics.imports == "persistent://acme/events/import"


def test_onboarding_provisions_the_import_topic_like_raw() -> None:
    admin = FakePulsarAdmin()
    topics = provision_pulsar(admin, "acme")
    assert admin.partitioned[topics.imports] == admin.partitioned[topics.raw]
    assert admin.get_schema(topics.imports) == admin.get_schema(topics.raw)


class RecordingFunctions:
    """The functions worker's admin calls a deployment makes, in order."""

    def __init__(self, deployed: dict[str, Any] | None) -> None:
        self.deployed = deployed
        self.calls: list[str] = []

    def function_config(self, tenant: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.deployed

    def delete_function(self, tenant: str, namespace: str, name: str) -> None:
        self.calls.append("delete")
        self.deployed = None

    def create_function(self, config: Any, package: Any, *, update: bool = False) -> None:
        self.calls.append("update" if update else "create")
        self.deployed = dict(config)


def test_a_pipeline_without_the_import_input_is_recreated_not_updated() -> None:
    topics = TenantTopics("acme")
    config = function_config("pipeline", topics, PipelineOptions())
    before = dict(config, inputSpecs={topics.raw: config["inputSpecs"][topics.raw]})
    worker = RecordingFunctions(before)
    apply_function(worker, "acme", config)  # type: ignore[arg-type]
    assert worker.calls == ["delete", "create"]
    worker.calls.clear()
    apply_function(worker, "acme", dict(config, parallelism=2))  # type: ignore[arg-type]
    assert worker.calls == ["update"]
