"""API key → principal: admin key, tenant keys, revocation, caching."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from gateway.auth import Authenticator
from magnetar.api_key_store import StoredKey
from magnetar.api_keys import PLATFORM, Principal, Scope, mint_key
from magnetar.errors import Unauthenticated


class FakeKeys:
    def __init__(self) -> None:
        self.keys: dict[tuple[str, str], StoredKey] = {}
        self.lookups = 0

    def add(self, tenant_id: str, scopes: set[Scope], revoked: bool = False) -> str:
        minted = mint_key(tenant_id)
        self.keys[(tenant_id, minted.key_id)] = StoredKey(
            tenant_id=tenant_id,
            key_id=minted.key_id,
            secret_sha256=minted.secret_sha256,
            scopes=frozenset(scopes),
            description="",
            created_at=datetime(2026, 1, 1),
            revoked_at=datetime(2026, 1, 2) if revoked else None,
        )
        return minted.secret

    def revoke_all(self) -> None:
        self.keys = {
            k: StoredKey(**{**v.__dict__, "revoked_at": datetime(2026, 1, 3)})
            for k, v in self.keys.items()
        }

    def find(self, tenant_id: str, key_id: str) -> StoredKey | None:
        self.lookups += 1
        return self.keys.get((tenant_id, key_id))


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def authenticate(auth: Authenticator, header: str | None) -> Principal:
    return asyncio.run(auth.authenticate(header))


def reason_of(auth: Authenticator, header: str | None) -> str:
    with pytest.raises(Unauthenticated) as refused:
        authenticate(auth, header)
    return refused.value.reason


def test_a_tenant_key_maps_to_its_tenant_and_scopes() -> None:
    keys = FakeKeys()
    secret = keys.add("acme", {Scope.INGEST})
    principal = authenticate(Authenticator(keys), f"Bearer {secret}")
    assert principal.tenant_id == "acme"
    assert principal.scopes == {Scope.INGEST}


def test_the_platform_key_is_admin_without_a_tenant() -> None:
    assert (
        authenticate(Authenticator(FakeKeys(), "s3cret-admin"), "bearer s3cret-admin") is PLATFORM
    )


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "API_KEY_MISSING"),
        ("", "API_KEY_MISSING"),
        ("Basic abc", "API_KEY_MALFORMED"),
        ("Bearer ", "API_KEY_MALFORMED"),
        ("Bearer mgk.acme.nothex", "API_KEY_MALFORMED"),
    ],
)
def test_missing_or_malformed_headers_are_refused(header: str | None, reason: str) -> None:
    assert reason_of(Authenticator(FakeKeys()), header) == reason


def test_unknown_wrong_secret_and_revoked_keys_are_refused() -> None:
    keys = FakeKeys()
    good = keys.add("acme", {Scope.READ})
    revoked = keys.add("acme", {Scope.READ}, revoked=True)
    wrong_secret = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    other_tenant = good.replace("mgk.acme.", "mgk.evil.")
    auth = Authenticator(keys)
    assert reason_of(auth, f"Bearer {wrong_secret}") == "API_KEY_INVALID"
    assert reason_of(auth, f"Bearer {other_tenant}") == "API_KEY_INVALID"
    assert reason_of(auth, f"Bearer {revoked}") == "API_KEY_REVOKED"


def test_answers_are_cached_until_the_ttl_so_revocation_takes_seconds() -> None:
    keys, clock = FakeKeys(), Clock()
    secret = keys.add("acme", {Scope.INGEST})
    auth = Authenticator(keys, ttl_s=5.0, clock=clock)
    authenticate(auth, f"Bearer {secret}")
    authenticate(auth, f"Bearer {secret}")
    assert keys.lookups == 1
    keys.revoke_all()
    clock.now = 4.9
    authenticate(auth, f"Bearer {secret}")  # still cached
    clock.now = 5.1
    assert reason_of(auth, f"Bearer {secret}") == "API_KEY_REVOKED"
    assert keys.lookups == 2


def test_unknown_keys_are_cached_too() -> None:
    keys = FakeKeys()
    stranger = mint_key("acme").secret
    auth = Authenticator(keys)
    for _ in range(3):
        reason_of(auth, f"Bearer {stranger}")
    assert keys.lookups == 1


@pytest.mark.parametrize("token", ["clé-à-molette", "mgk.acme.ключ", "\u00e9"])
def test_a_non_ascii_token_is_unauthenticated_not_an_internal_error(token: str) -> None:
    # hmac.compare_digest raises TypeError on a non-ASCII str; the gateway mapped that to
    # INTERNAL. A token is compared as bytes.
    assert reason_of(Authenticator(FakeKeys(), "s3cret-admin"), f"Bearer {token}") in {
        "API_KEY_MALFORMED",
        "API_KEY_INVALID",
    }
