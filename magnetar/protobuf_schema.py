"""Pulsar schema for Protobuf messages: type PROTOBUF_NATIVE, registered in the registry.

PROTOBUF_NATIVE carries the message's real FileDescriptorSet, so any language's client can
decode the topic from the registry alone and the broker can check compatibility of new
versions of the contract; the older PROTOBUF type stores an Avro translation of the message
that only the Java client derives. The Python client has no built-in Protobuf schema, so
this class supplies the schema info and the (de)serialization.
"""

from __future__ import annotations

import base64
from typing import Any, Generic, TypeVar

import _pulsar
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, FileDescriptor
from google.protobuf.message import Message
from pulsar.schema import Schema

M = TypeVar("M", bound=Message)


def file_descriptor_set(root: FileDescriptor) -> descriptor_pb2.FileDescriptorSet:
    """The root file and every file it imports, dependencies first."""
    ordered: list[FileDescriptor] = []
    seen: set[str] = set()

    def visit(fd: FileDescriptor) -> None:
        if fd.name in seen:
            return
        seen.add(fd.name)
        for dependency in fd.dependencies:
            visit(dependency)
        ordered.append(fd)

    visit(root)
    descriptor_set = descriptor_pb2.FileDescriptorSet()
    for fd in ordered:
        proto = descriptor_set.file.add()
        fd.CopyToProto(proto)
    return descriptor_set


def schema_definition(descriptor: Descriptor) -> dict[str, str]:
    """The JSON document Pulsar expects for a PROTOBUF_NATIVE schema."""
    return {
        "fileDescriptorSet": base64.b64encode(
            file_descriptor_set(descriptor.file).SerializeToString()
        ).decode("ascii"),
        "rootMessageTypeName": descriptor.full_name,
        "rootFileDescriptorName": descriptor.file.name,
    }


class ProtobufNativeSchema(Schema, Generic[M]):  # type: ignore[misc]
    """Encode/decode one Protobuf message type on a topic whose schema is registered."""

    def __init__(self, message_cls: type[M]) -> None:
        descriptor: Descriptor = message_cls.DESCRIPTOR  # type: ignore[assignment]
        super().__init__(
            message_cls,
            _pulsar.SchemaType.PROTOBUF_NATIVE,
            schema_definition(descriptor),
            descriptor.full_name,
        )
        self._message_cls = message_cls

    def encode(self, obj: M) -> bytes:
        self._validate_object_type(obj)
        return obj.SerializeToString()

    def decode(self, data: bytes) -> M:
        message = self._message_cls()
        message.ParseFromString(data)
        return message

    def admin_payload(self) -> tuple[str, str]:
        """(type, definition) as the admin REST API's schema upload takes them."""
        info: Any = self.schema_info()
        return "PROTOBUF_NATIVE", info.schema()
