"""API keys: their format, their hash, their scopes. Pure logic, no I/O.

A key's secret reads ``mgk.<tenant_id>.<key_id>.<random>``:

* the tenant travels inside the key, so the gateway can open a transaction scoped to that
  tenant (row-level security on) *before* it looks the key up: authentication never needs
  a query that bypasses RLS, and a key can only ever match rows of the tenant it names;
* ``key_id`` (16 hex characters) is public: it names the key in listings and revocations;
* ``random`` is 32 bytes from the OS's CSPRNG, URL-safe base64.

Only SHA-256 of the whole secret is stored. A slow password hash (argon2, bcrypt) protects
low-entropy secrets chosen by people; these have 256 bits of entropy, so brute force is out
of reach whatever the hash's speed, and a fast hash keeps a cache miss on the request path
to microseconds. Hashing the whole string binds the tenant and key id to the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from magnetar.errors import InvalidArgument, Unauthenticated

KEY_PREFIX = "mgk"
_TENANT_IN_KEY = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_RANDOM = re.compile(r"[A-Za-z0-9_-]{43}")


class Scope(StrEnum):
    """What a key may do (mirrors magnetar.v1.ApiKeyScope without its prefix)."""

    INGEST = "ingest"
    READ = "read"
    ADMIN = "admin"
    MANAGE = "manage"


# Tenants' keys never get ADMIN: that scope belongs to the platform's key alone. INGEST is
# the key a client app carries; MANAGE (catalog writes, user erasure) stays on the
# tenant's servers (see docs/serving.md).
TENANT_SCOPES = frozenset({Scope.INGEST, Scope.READ, Scope.MANAGE})


@dataclass(frozen=True)
class Principal:
    """Who is calling: a tenant's key, or the platform (tenant_id None, scope ADMIN)."""

    tenant_id: str | None
    key_id: str
    scopes: frozenset[Scope]

    def allows(self, scope: Scope) -> bool:
        return scope in self.scopes


PLATFORM = Principal(tenant_id=None, key_id="platform", scopes=frozenset({Scope.ADMIN}))


@dataclass(frozen=True)
class ParsedKey:
    """The public parts of a presented secret."""

    tenant_id: str
    key_id: str
    secret: str


@dataclass(frozen=True)
class NewKey:
    """A freshly minted key: the secret (shown once) and what is stored."""

    tenant_id: str
    key_id: str
    secret: str
    secret_sha256: bytes


def mint_key(tenant_id: str) -> NewKey:
    if not _TENANT_IN_KEY.fullmatch(tenant_id):
        raise InvalidArgument(f"not a tenant id: {tenant_id!r}")
    key_id = secrets.token_hex(8)
    random = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")
    secret = f"{KEY_PREFIX}.{tenant_id}.{key_id}.{random}"
    return NewKey(tenant_id, key_id, secret, secret_sha256(secret))


def parse_key(secret: str) -> ParsedKey:
    """Split a presented secret; Unauthenticated when it cannot be one of ours."""
    parts = secret.split(".")
    if (
        len(parts) != 4
        or parts[0] != KEY_PREFIX
        or not _TENANT_IN_KEY.fullmatch(parts[1])
        or not _KEY_ID.fullmatch(parts[2])
        or not _RANDOM.fullmatch(parts[3])
    ):
        raise Unauthenticated("malformed API key", reason="API_KEY_MALFORMED")
    return ParsedKey(tenant_id=parts[1], key_id=parts[2], secret=secret)


def secret_sha256(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


def secret_matches(secret: str, stored_sha256: bytes) -> bool:
    # Constant time, although with 256-bit secrets timing would reveal nothing useful.
    return hmac.compare_digest(secret_sha256(secret), stored_sha256)


def bearer_token(authorization: str | None) -> str:
    """The token of an ``authorization: Bearer <token>`` value; Unauthenticated otherwise."""
    if not authorization:
        raise Unauthenticated(
            "missing `authorization: Bearer <api key>` metadata", reason="API_KEY_MISSING"
        )
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(
            "authorization metadata must read `Bearer <api key>`", reason="API_KEY_MALFORMED"
        )
    return token.strip()


def parse_scopes(
    names: Iterable[str], *, allowed: frozenset[Scope] = TENANT_SCOPES
) -> frozenset[Scope]:
    """Scope names (``ingest``, ``read``, ``manage``) → scopes; InvalidArgument names a bad
    one."""
    scopes: set[Scope] = set()
    for name in names:
        try:
            scope = Scope(name.strip().lower())
        except ValueError:
            raise InvalidArgument(
                f"unknown scope {name!r}; choose from {', '.join(sorted(allowed))}"
            ) from None
        if scope not in allowed:
            raise InvalidArgument(f"scope {scope} cannot be given to a tenant's key")
        scopes.add(scope)
    if not scopes:
        raise InvalidArgument("a key needs at least one scope")
    return frozenset(scopes)
