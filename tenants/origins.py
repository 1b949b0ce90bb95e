"""The web origins a tenant lets browsers call the HTTP door from. Pure logic, no I/O.

An origin is what a browser sends in its `Origin` header: `scheme://host[:port]`, nothing
more (no path, query, fragment or credentials), scheme `http` or `https`. Each one given is
kept in the browser's own spelling (lowercase scheme and host, the default port left out),
so the door compares the header with the list by plain equality. No wildcards: a tenant
names every site its pages are served from (docs/clients.md, "CORS").
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from magnetar.errors import FieldViolation

MAX_ALLOWED_ORIGINS = 32
MAX_ORIGIN_BYTES = 255
DEFAULT_PORTS = {"http": 80, "https": 443}


def canonical_origin(text: str) -> str:
    """`text` spelled as a browser's `Origin` header; ValueError saying why it is not one."""
    if not text or text != text.strip() or any(ord(c) < 33 or ord(c) > 126 for c in text):
        raise ValueError("printable ASCII without spaces, e.g. https://shop.example.com")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError("scheme must be http or https, e.g. https://shop.example.com")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "?" in text:
        raise ValueError("an origin has no path, query or fragment: scheme://host[:port]")
    if parts.username is not None or parts.password is not None:
        raise ValueError("an origin has no user or password")
    try:
        port = parts.port
    except ValueError as error:
        raise ValueError(f"bad port: {error}") from None
    host = (parts.hostname or "").lower()
    if not host:
        raise ValueError("a host is required: scheme://host[:port]")
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    suffix = "" if port is None or port == DEFAULT_PORTS[scheme] else f":{port}"
    return f"{scheme}://{host}{suffix}"


def origin_violations(
    origins: Sequence[str], field: str = "allowed_origins"
) -> tuple[tuple[str, ...], list[FieldViolation]]:
    """The canonical, de-duplicated origins in the given order, and what is wrong with them."""
    violations = []
    if len(origins) > MAX_ALLOWED_ORIGINS:
        violations.append(
            FieldViolation(field, f"at most {MAX_ALLOWED_ORIGINS} origins, got {len(origins)}")
        )
    kept: list[str] = []
    for i, origin in enumerate(origins):
        if len(origin.encode("utf-8")) > MAX_ORIGIN_BYTES:
            violations.append(FieldViolation(f"{field}[{i}]", f"at most {MAX_ORIGIN_BYTES} bytes"))
            continue
        try:
            canonical = canonical_origin(origin)
        except ValueError as error:
            violations.append(FieldViolation(f"{field}[{i}]", f"{origin!r}: {error}"))
            continue
        if canonical not in kept:
            kept.append(canonical)
    return tuple(kept), violations
