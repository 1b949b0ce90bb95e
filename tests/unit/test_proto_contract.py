"""The contract's conventions (CONVENTIONS.md, AIP-191): checked, not hoped for."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from magnetar.v1 import (
    catalog_service_pb2,
    enriched_event_pb2,
    event_service_pb2,
    events_pb2,
    personalization_service_pb2,
    tenant_service_pb2,
    user_service_pb2,
)

PROTO_DIR = Path(__file__).resolve().parents[2] / "proto" / "magnetar" / "v1"
MODULES = [
    catalog_service_pb2,
    enriched_event_pb2,
    event_service_pb2,
    events_pb2,
    personalization_service_pb2,
    tenant_service_pb2,
    user_service_pb2,
]
DECLARATION = re.compile(
    r"^\s*(message|enum|service|rpc|repeated|map<|[A-Za-z_][\w.]*\s+\w+\s*=|[A-Z][A-Z0-9_]*\s*=)"
)


@pytest.mark.parametrize("path", sorted(PROTO_DIR.glob("*.proto")), ids=lambda p: p.name)
def test_every_element_has_a_comment(path: Path) -> None:
    lines = path.read_text().splitlines()
    missing = []
    for number, line in enumerate(lines):
        if not DECLARATION.match(line) or line.strip().startswith(("option", "//")):
            continue
        previous = next(
            (lines[i].strip() for i in range(number - 1, -1, -1) if lines[i].strip()), ""
        )
        if not previous.startswith("//"):
            missing.append(f"{path.name}:{number + 1}: {line.strip()}")
    assert missing == []


def test_package_is_versioned_and_files_live_in_its_folder() -> None:
    for module in MODULES:
        assert module.DESCRIPTOR.package == "magnetar.v1"
        assert module.DESCRIPTOR.name.startswith("magnetar/v1/")


def test_enums_start_unspecified_and_prefix_their_values() -> None:
    for module in MODULES:
        for enum in module.DESCRIPTOR.enum_types_by_name.values():
            prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"
            assert enum.values_by_number[0].name == prefix + "UNSPECIFIED"
            assert all(v.name.startswith(prefix) for v in enum.values)


def test_each_rpc_has_its_own_request_and_response() -> None:
    for module in MODULES:
        for service in module.DESCRIPTOR.services_by_name.values():
            assert service.name.endswith("Service")
            for method in service.methods:
                assert method.input_type.name == f"{method.name}Request"
                assert method.output_type.name == f"{method.name}Response"


def test_list_methods_page() -> None:
    for module in MODULES:
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                if method.name.startswith("List"):
                    assert {"page_size", "page_token"} <= set(method.input_type.fields_by_name)
                    assert "next_page_token" in method.output_type.fields_by_name
