"""The catalog topic's one writer against the real broker, and the schema it writes under.

pulsar-client's `ProtobufNativeSchema` replaced our own class (magnetar/protobuf_schema.py).
Every tenant onboarded before has the catalog schema that class registered: Java's
ProtobufNativeSchemaData (the FileDescriptorSet of the message's file and its imports,
dependencies first, base64) as indented JSON. The library must register the very same
definition, or onboarding would upload a new version and the broker would judge the writer's
schema as a change. Checked here against a topic registered the old way.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pulsar
import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.message import Message
from pulsar.schema import ProtobufNativeSchema

from magnetar import catalog_topic
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.pulsar_client import make_client
from magnetar.settings import Settings
from magnetar.topics import TenantTopics
from magnetar.v1 import catalog_service_pb2, events_pb2
from tenants.pulsar_setup import SCHEMA_COMPATIBILITY, schema_payload
from tests.integration.conftest import ScratchTenant

pytestmark = pytest.mark.integration

MUG = catalog_service_pb2.Item(item_id="mug", title="Mug", categories=["kitchen"], price=4.5)


def definition_registered_before(message: type[Message]) -> str:
    """The schema definition onboarding registered before the library's class was used."""
    files: list[Any] = []  # FileDescriptor, as protobuf's C and Python builds type it

    def visit(file: Any) -> None:
        for dependency in file.dependencies:
            visit(dependency)
        if all(known.name != file.name for known in files):
            files.append(file)

    descriptor = message.DESCRIPTOR
    visit(descriptor.file)
    descriptor_set = descriptor_pb2.FileDescriptorSet()
    for file in files:
        file.CopyToProto(descriptor_set.file.add())
    return json.dumps(
        {
            "fileDescriptorSet": base64.b64encode(descriptor_set.SerializeToString()).decode(),
            "rootMessageTypeName": descriptor.full_name,
            "rootFileDescriptorName": descriptor.file.name,
        },
        indent=True,
    )


@pytest.mark.parametrize("message", [catalog_service_pb2.Item, events_pb2.Event])
def test_the_library_registers_the_definition_tenants_already_have(
    message: type[Message],
) -> None:
    before = definition_registered_before(message)
    assert ProtobufNativeSchema(message).schema_info().schema() == before
    # Onboarding compares and uploads this one: an existing tenant's schema stays as it is.
    assert schema_payload(message) == ("PROTOBUF_NATIVE", before)


@pytest.fixture
def topic_registered_before(
    pulsar_admin: PulsarAdmin, unique_tenant: ScratchTenant
) -> Iterator[str]:
    """A catalog topic as onboarding left it before the change (the tenant goes afterwards)."""
    topics = TenantTopics(unique_tenant.name)
    pulsar_admin.create_namespace(topics.catalog_namespace)
    pulsar_admin.set_schema_compatibility(topics.catalog_namespace, SCHEMA_COMPATIBILITY)
    pulsar_admin.create_topic(topics.catalog)
    pulsar_admin.upload_schema(
        topics.catalog, "PROTOBUF_NATIVE", definition_registered_before(catalog_service_pb2.Item)
    )
    yield topics.catalog


def test_the_writer_keeps_the_registered_schema_and_the_bytes(
    settings: Settings,
    pulsar_admin: PulsarAdmin,
    unique_tenant: ScratchTenant,
    topic_registered_before: str,
) -> None:
    registered = pulsar_admin.get_schema(topic_registered_before)
    assert registered is not None
    client = make_client(settings.pulsar_service_url, settings.pulsar_admin_token)
    try:
        typed = client.create_reader(
            topic_registered_before,
            pulsar.MessageId.earliest,
            schema=ProtobufNativeSchema(catalog_service_pb2.Item),
        )
        raw = client.create_reader(topic_registered_before, pulsar.MessageId.earliest)
        assert catalog_topic.publish_items(client, unique_tenant.name, [MUG]) == 1
        catalog_topic.write(client, unique_tenant.name, [catalog_topic.tombstone("mug")])
        item, deleted = typed.read_next(10_000), typed.read_next(10_000)
        item_bytes = raw.read_next(10_000)
    finally:
        client.close()

    # No new schema version: the writer's schema is the one registered before.
    after = pulsar_admin.get_schema(topic_registered_before)
    assert after is not None and after["version"] == registered["version"]
    # Written under that schema (a writer without one leaves the version empty) ...
    assert item.schema_version() and item.schema_version() == deleted.schema_version()
    # ... as the same bytes, keyed by item id, and decoded to the same item.
    assert item_bytes.data() == item.data() == MUG.SerializeToString()
    assert item.value() == MUG and item.partition_key() == "mug"
    # The tombstone: no bytes at all under the item's key.
    assert deleted.data() == b"" and deleted.partition_key() == "mug"
