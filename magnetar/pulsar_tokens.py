"""Pulsar token authentication: HS256 secret keys and signed role tokens.

Pulsar's token provider accepts any HS256 JWT whose ``sub`` claim is the role, signed with
the raw bytes of the configured secret key. Signing here (instead of shelling out to
``bin/pulsar tokens``) keeps onboarding fast: no JVM start per tenant.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets


def create_secret_key() -> bytes:
    """A fresh 256-bit key, the minimum Pulsar accepts for HS256."""
    return secrets.token_bytes(32)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def sign_token(role: str, secret_key: bytes) -> str:
    """A non-expiring token for `role`; revoke by rotating the key or the role's grants."""
    if not role:
        raise ValueError("a token needs a role")
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps({"sub": role}, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = hmac.new(secret_key, signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


def token_role(token: str, secret_key: bytes) -> str:
    """The role a token names, after checking its signature; ValueError when forged."""
    try:
        header, payload, signature = token.split(".")
    except ValueError as exc:
        raise ValueError("not a JWT") from exc
    expected = hmac.new(secret_key, f"{header}.{payload}".encode("ascii"), hashlib.sha256).digest()
    given = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    if not hmac.compare_digest(expected, given):
        raise ValueError("bad token signature")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["sub"])


TENANT_ROLE_PREFIX = "magnetar-tenant-"


def tenant_role(tenant_id: str) -> str:
    """A tenant's Pulsar role: granted produce and consume on its own namespaces only."""
    return f"{TENANT_ROLE_PREFIX}{tenant_id}"
