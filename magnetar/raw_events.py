"""The raw events topic of a tenant: its name, its schema, and how to provision it.

Schema choice: PROTOBUF_NATIVE. Pulsar's registry then holds the `magnetar.v1.Event`
FileDescriptorSet itself, so any client (Java, Go, Python, Pulsar SQL, a function) can
decode a raw message with nothing but the registry, and the broker enforces the namespace's
compatibility strategy on new versions of the contract. The alternatives lose that:
PROTOBUF (without NATIVE) is Java-only — its definition is an Avro schema derived from a
Java class, which pulsar-client for Python cannot produce — and BYTES registers nothing.

pulsar-client's `ProtobufNativeSchema` serializes message objects itself and checks their
class. The gateway has the serialized form anyway, so `SerializedEventSchema` registers the
same schema info while passing bytes through (one serialization per event, not two).
"""

from __future__ import annotations

from typing import Any

from pulsar.schema import ProtobufNativeSchema, Schema

from magnetar.pulsar_admin import PulsarAdmin
from magnetar.pulsar_tokens import tenant_role
from magnetar.v1 import events_pb2

EVENTS_NAMESPACE = "events"
RAW_TOPIC = "raw"
# Imported history (EventService.ImportEvents): same schema, partitions and keys as raw.
IMPORT_TOPIC = "import"
SCHEMA_TYPE = "PROTOBUF_NATIVE"
DEFAULT_PARTITIONS = 4


# An erasure marker: an Event with no event_id (which Ingest always refuses) and this
# attribute, sent by DeleteUser down the raw topic keyed by the subject, so it reaches the
# pipeline instance holding the subject's sessions, after the subject's earlier events.
ERASURE_MARKER_ATTRIBUTE = "magnetar.erase-subject"


def erasure_marker(user_id: str = "", anonymous_id: str = "") -> events_pb2.Event:
    """The marker DeleteUser sends for one subject (one of the two ids)."""
    marker = events_pb2.Event(user_id=user_id, anonymous_id=anonymous_id)
    marker.attributes[ERASURE_MARKER_ATTRIBUTE] = "1"
    return marker


def raw_events_topic(tenant_id: str) -> str:
    return f"persistent://{tenant_id}/{EVENTS_NAMESPACE}/{RAW_TOPIC}"


def import_events_topic(tenant_id: str) -> str:
    return f"persistent://{tenant_id}/{EVENTS_NAMESPACE}/{IMPORT_TOPIC}"


def event_schema_definition() -> str:
    """The registry definition (JSON: descriptor set, root message) of magnetar.v1.Event."""
    return str(ProtobufNativeSchema(events_pb2.Event).schema_info().schema())


class SerializedEventSchema(Schema):  # type: ignore[misc]  # pulsar ships no type hints
    """PROTOBUF_NATIVE schema of magnetar.v1.Event whose payloads are already serialized."""

    def __init__(self) -> None:
        native = ProtobufNativeSchema(events_pb2.Event)
        self._record_cls = bytes
        self._schema_info = native.schema_info()

    def encode(self, obj: bytes) -> bytes:
        return obj

    def decode(self, data: bytes) -> Any:
        return events_pb2.Event.FromString(data)

    def __str__(self) -> str:
        return "SerializedEventSchema(magnetar.v1.Event)"


def provision_raw_topic(
    admin: PulsarAdmin, tenant_id: str, *, partitions: int = DEFAULT_PARTITIONS
) -> str:
    """Create the partitioned raw topic and register its schema; safe to repeat.

    The tenant and its `events` namespace (deduplication on) must exist: onboarding
    creates them (`tenants.pulsar_setup`, which takes this module's name, schema and
    default partition count). Registering the schema here, rather than on the gateway's
    first send, keeps producers from ever needing the right to evolve a schema.
    """
    topic = raw_events_topic(tenant_id)
    admin.create_partitioned_topic(topic, partitions)
    admin.upload_schema(topic, SCHEMA_TYPE, event_schema_definition())
    # The gateway produces as the tenant's own role (tenants.credentials), never as superuser.
    admin.grant_namespace_permission(
        f"{tenant_id}/{EVENTS_NAMESPACE}", tenant_role(tenant_id), ("consume", "produce")
    )
    return topic


def provision_import_topic(
    admin: PulsarAdmin, tenant_id: str, *, partitions: int = DEFAULT_PARTITIONS
) -> str:
    """The import topic, as `provision_raw_topic` makes raw (after it: same namespace)."""
    topic = import_events_topic(tenant_id)
    admin.create_partitioned_topic(topic, partitions)
    admin.upload_schema(topic, SCHEMA_TYPE, event_schema_definition())
    return topic
