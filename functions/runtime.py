"""What every Magnetar Function shares: forwarding with the key kept and the ack held back.

Functions run with ``autoAck: false``. The runtime's own output path would acknowledge an
input as soon as ``process`` returns ``None`` and publishes without a key; instead we publish
with ``context.publish`` (keeping the user as partition key, so the next stage's Key_Shared
subscription still routes one user to one instance) and acknowledge the input only in the
publish callback, once the broker has the output. A failed publish leaves the input
unacknowledged: the ack timeout redelivers it, and the stages downstream are idempotent.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pulsar

from functions.serde import SERDE_CLASS

# Names of message properties the platform sets.
REASON_PROPERTY = "magnetar-dlq-reason"
DETAIL_PROPERTY = "magnetar-dlq-detail"
SOURCE_STAGE_PROPERTY = "magnetar-dlq-stage"


def now_ms() -> int:
    return int(time.time() * 1000)


def user_config(context: Any) -> Mapping[str, Any]:
    return dict(context.get_user_config_map() or {})


def current_delivery(context: Any) -> tuple[Any, str]:
    """(message id, topic) of the message being processed, for acknowledging it later."""
    return context.get_message_id(), context.get_current_message_topic_name()


def ack(context: Any, delivery: tuple[Any, str]) -> None:
    context.ack(delivery[0], delivery[1])


def forward(
    context: Any,
    topic: str,
    payload: bytes,
    *,
    key: str,
    event_time_ms: int,
    properties: Mapping[str, str] | None = None,
) -> None:
    """Publish `payload` keyed by `key`; acknowledge the current input once it is stored."""
    delivery = current_delivery(context)

    def on_published(result: Any, _message_id: Any) -> None:
        if result == pulsar.Result.Ok:
            ack(context, delivery)
        # Otherwise: no ack, the ack timeout redelivers the input.

    conf: dict[str, Any] = {"partition_key": key or "", "event_timestamp": max(0, event_time_ms)}
    if properties:
        conf["properties"] = dict(properties)
    context.publish(
        topic, payload, serde_class_name=SERDE_CLASS, callback=on_published, message_conf=conf
    )


def dead_letter(
    context: Any, topic: str, payload: bytes, *, stage: str, reason: str, detail: str, key: str
) -> None:
    """Route a permanently bad input to the tenant's DLQ with why, then acknowledge it."""
    forward(
        context,
        topic,
        payload,
        key=key,
        event_time_ms=now_ms(),
        properties={
            REASON_PROPERTY: reason,
            DETAIL_PROPERTY: detail[:500],
            SOURCE_STAGE_PROPERTY: stage,
        },
    )
