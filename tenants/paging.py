"""Page sizes and opaque page tokens for the tenant service's lists.

A token is URL-safe base64 of a small JSON document naming the list it continues, so a
token from one list (or one tenant's keys) is refused by another instead of silently
returning the wrong page.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from magnetar.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def page_size(requested: int) -> int:
    if requested > MAX_PAGE_SIZE or requested < 0:
        raise InvalidArgument(
            f"page_size must be 0 to {MAX_PAGE_SIZE}, got {requested}",
            [FieldViolation("page_size", f"must be 0 to {MAX_PAGE_SIZE}")],
            reason="PAGE_SIZE_INVALID",
        )
    return requested or DEFAULT_PAGE_SIZE


def encode_token(kind: str, **position: Any) -> str:
    document = json.dumps({"kind": kind, **position}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(document.encode()).decode().rstrip("=")


def decode_token(token: str, kind: str, **expected: Any) -> dict[str, Any]:
    """The position inside `token`; {} for an empty token; InvalidArgument if foreign."""
    if not token:
        return {}
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        document = json.loads(raw)
    except (binascii.Error, ValueError):
        document = None
    valid = (
        isinstance(document, dict)
        and document.get("kind") == kind
        and all(document.get(k) == v for k, v in expected.items())
    )
    if not valid:
        raise InvalidArgument(
            "page_token is not one this service issued for this list",
            [FieldViolation("page_token", "pass the next_page_token of the previous call")],
            reason="PAGE_TOKEN_INVALID",
        )
    assert isinstance(document, dict)
    return document
