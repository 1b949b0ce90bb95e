"""What every Magnetar Function shares: forwarding with the key kept and the ack held back.

Functions run with ``autoAck: false``. The runtime's own output path would acknowledge an
input as soon as ``process`` returns ``None`` and publishes without a key; instead we publish
with ``context.publish`` (keeping the user as partition key, so the next stage's Key_Shared
subscription still routes one user to one instance) and acknowledge the input only in the
publish callback, once the broker has the output. A failed publish leaves the input
unacknowledged: the ack timeout redelivers it, and the stages downstream are idempotent.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import pulsar

from functions.serde import SERDE_CLASS
from functions.wire import UndecodablePayload

M = TypeVar("M")

# Names of message properties the platform sets.
# When the gateway's send reached Pulsar (ms): the raw message's publish time, carried along
# on so lateness and freshness are judged from acceptance, not from processing.
ACCEPTED_AT_PROPERTY = "magnetar-accepted-at"
# Dead letters carry why, as `functions.logic.enrichment.DeadLetter.properties` names it.
REASON_PROPERTY = "dlq_reason"
DETAIL_PROPERTY = "dlq_detail"
SOURCE_STAGE_PROPERTY = "dlq_stage"


def own_client() -> pulsar.Client:
    """A second client with the instance's own service URL and credentials.

    The runtime's client has one I/O and one listener thread, and the listener blocks while
    the instance's input queue is full; a reader on that client then never gets its
    messages. Side reads (the catalog) use a client of their own. The URL and the
    credentials (a token *file*, never the token itself) are the instance's arguments.
    """
    parser = argparse.ArgumentParser(add_help=False)
    for name in ("--pulsar_serviceurl", "--client_auth_plugin", "--client_auth_params"):
        parser.add_argument(name)
    args, _ = parser.parse_known_args(sys.argv[1:])
    auth = None
    if args.client_auth_plugin and args.client_auth_params:
        auth = pulsar.Authentication(args.client_auth_plugin, args.client_auth_params)
    return pulsar.Client(args.pulsar_serviceurl, authentication=auth, operation_timeout_seconds=30)


def segment_logs(context: Any, stage: str) -> tuple[Any, list[Any]]:
    """This instance's segment log for `stage`, and every instance's (to replay on start).

    Instances share the function's state table; each appends under its own prefix, and a
    starting instance replays all of them, since Key_Shared may hand it another's users.
    """
    from functions.logic.segment_log import SegmentLog
    from functions.logic.state_port import FunctionContextStore

    store = FunctionContextStore(context)
    parallelism = int(user_config(context).get("parallelism", 1))
    logs = [SegmentLog(store, f"{stage}/{n}") for n in range(max(1, parallelism))]
    own = SegmentLog(store, f"{stage}/{int(context.get_instance_id())}")
    return own, logs


def durable_state(context: Any) -> bool:
    return str(user_config(context).get("durable_state", "true")).lower() == "true"


def now_ms() -> int:
    return int(time.time() * 1000)


def user_config(context: Any) -> Mapping[str, Any]:
    return dict(context.get_user_config_map() or {})


def current_delivery(context: Any) -> tuple[Any, str]:
    """(message id, topic) of the message being processed, for acknowledging it later."""
    return context.get_message_id(), context.get_current_message_topic_name()


def accepted_at_ms(context: Any) -> int:
    """When the current event was accepted: the carried property, else the message's
    publish time (on the raw topic, that is the gateway's send), else now."""
    carried = (context.get_message_properties() or {}).get(ACCEPTED_AT_PROPERTY)
    if carried:
        return int(carried)
    message = getattr(context, "message", None)  # the runtime's current pulsar.Message
    published = int(message.publish_timestamp()) if message is not None else 0
    return published or now_ms()


def ack(context: Any, delivery: tuple[Any, str]) -> None:
    context.ack(delivery[0], delivery[1])


# Pulsar's event time is an unsigned 64-bit count of milliseconds, 0 meaning none.
_MAX_EVENT_TIME_MS = 2**63 - 1


def event_time(ms: int) -> int:
    """`ms` as a message's event time, or 0 (none) when Pulsar cannot carry it.

    A value the client library refuses raises — a nack, and the same message redelivered for
    ever — so whatever time a published message is given goes through here.
    """
    return ms if 0 < ms <= _MAX_EVENT_TIME_MS else 0


def forward(
    context: Any,
    topic: str,
    payload: bytes,
    *,
    key: str,
    event_time_ms: int,
    accepted_at: int,
    properties: Mapping[str, str] | None = None,
    delivery: tuple[Any, str] | None = None,
) -> None:
    """Publish `payload` keyed by `key`; acknowledge the input (`delivery`, by default the
    current one) once it is stored."""
    if delivery is None:
        delivery = current_delivery(context)

    def on_published(result: Any, _message_id: Any) -> None:
        if result == pulsar.Result.Ok:
            ack(context, delivery)
        # Otherwise: no ack, the ack timeout redelivers the input.

    conf: dict[str, Any] = {
        "partition_key": key or "",
        "event_timestamp": event_time(event_time_ms),
        "properties": {**(properties or {}), ACCEPTED_AT_PROPERTY: str(accepted_at)},
    }
    context.publish(
        topic, payload, serde_class_name=SERDE_CLASS, callback=on_published, message_conf=conf
    )


def dead_letter(
    context: Any,
    topic: str,
    payload: bytes,
    *,
    stage: str,
    reason: str,
    detail: str,
    key: str,
    extra: Mapping[str, str] | None = None,
    delivery: tuple[Any, str] | None = None,
    accepted_at: int | None = None,
) -> None:
    """Route a permanently bad input to the tenant's DLQ with why, then acknowledge it (by
    default the current input; a batch's input from another thread names its `delivery`)."""
    context.record_metric("events_dead_lettered", 1)
    forward(
        context,
        topic,
        payload,
        key=key,
        event_time_ms=now_ms(),
        accepted_at=accepted_at_ms(context) if accepted_at is None else accepted_at,
        delivery=delivery,
        properties={
            **(extra or {}),
            REASON_PROPERTY: reason,
            DETAIL_PROPERTY: detail[:500],
            SOURCE_STAGE_PROPERTY: stage,
        },
    )


def delivery_attempts(context: Any) -> int:
    """How many times the current input has been delivered, this time included."""
    message = getattr(context, "message", None)  # the runtime's current pulsar.Message
    return 1 + (int(message.redelivery_count()) if message is not None else 0)


def decode_or_dead_letter(
    context: Any, payload: bytes, decode: Callable[[bytes], M], *, dlq: str, stage: str
) -> M | None:
    """The decoded message, or None after routing an undecodable payload to the DLQ."""
    try:
        return decode(payload)
    except UndecodablePayload as exc:
        dead_letter(
            context,
            dlq,
            payload,
            stage=stage,
            reason="UNDECODABLE",
            detail=str(exc),
            key=context.get_partition_key() or "",
        )
        return None
