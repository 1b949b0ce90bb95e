"""API key → principal: admin key, tenant keys, revocation, caching."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime

import pytest

from gateway.auth import Authenticator
from gateway.auth_failures import AuthFailureLimiter, peer_host
from magnetar.api_key_store import StoredKey
from magnetar.api_keys import PLATFORM, Principal, Scope, mint_key
from magnetar.errors import ResourceExhausted, Unauthenticated, Unavailable


class FakeKeys:
    def __init__(self) -> None:
        self.keys: dict[tuple[str, str], StoredKey] = {}
        self.lookups = 0
        # PostgreSQL down: every lookup fails as ApiKeyStore says it does.
        self.failing = False
        # Set: lookups block until it is cleared (to hold lookups in progress).
        self.hold: threading.Event | None = None

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
        if self.hold is not None:
            self.hold.wait(5)
        if self.failing:
            raise Unavailable("PostgreSQL is unavailable", reason="DATABASE_UNAVAILABLE")
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


# No failure rate limit in the way, for the tests of the caches.
LENIENT = AuthFailureLimiter(per_second=1e9, burst=10**9)


def test_when_postgresql_fails_known_keys_keep_working_for_ten_minutes() -> None:
    keys, clock = FakeKeys(), Clock()
    good = keys.add("acme", {Scope.INGEST})
    revoked = keys.add("acme", {Scope.INGEST}, revoked=True)
    stranger = mint_key("acme").secret
    auth = Authenticator(keys, ttl_s=5.0, stale_s=600.0, clock=clock, failures=LENIENT)
    authenticate(auth, f"Bearer {good}")
    reason_of(auth, f"Bearer {revoked}")
    reason_of(auth, f"Bearer {stranger}")
    keys.failing = True
    clock.now = 6.0
    assert authenticate(auth, f"Bearer {good}").tenant_id == "acme"
    assert reason_of(auth, f"Bearer {revoked}") == "API_KEY_REVOKED"
    assert reason_of(auth, f"Bearer {stranger}") == "API_KEY_INVALID"
    lookups = keys.lookups
    for _ in range(20):
        authenticate(auth, f"Bearer {good}")
    assert keys.lookups == lookups  # not one failing lookup per call
    never_seen = keys.add("acme", {Scope.READ})
    with pytest.raises(Unavailable):
        authenticate(auth, f"Bearer {never_seen}")
    clock.now = 5.0 + 600.0 + 1.0
    with pytest.raises(Unavailable):
        authenticate(auth, f"Bearer {good}")  # beyond the bound
    keys.failing = False
    assert authenticate(auth, f"Bearer {good}").tenant_id == "acme"


def test_a_flood_of_unknown_keys_does_not_evict_the_good_ones() -> None:
    keys = FakeKeys()
    good = keys.add("acme", {Scope.READ})
    auth = Authenticator(keys, max_entries=10, max_unknown_entries=10, failures=LENIENT)
    authenticate(auth, f"Bearer {good}")
    for _ in range(50):
        reason_of(auth, f"Bearer {mint_key('acme').secret}")
    lookups = keys.lookups
    authenticate(auth, f"Bearer {good}")
    assert keys.lookups == lookups  # still cached


def test_an_address_whose_keys_keep_failing_is_refused_lookups_for_a_while() -> None:
    keys, clock = FakeKeys(), Clock()
    good = keys.add("acme", {Scope.READ})
    auth = Authenticator(keys, clock=clock, failures=AuthFailureLimiter(per_second=1.0, burst=3))
    attacker, other = "ipv4:10.0.0.9:40001", "ipv4:10.0.0.10:5000"
    asyncio.run(auth.authenticate(f"Bearer {good}", attacker))  # known before the flood
    for port in range(3):
        with pytest.raises(Unauthenticated):
            asyncio.run(
                auth.authenticate(f"Bearer {mint_key('acme').secret}", f"ipv4:10.0.0.9:{port}")
            )
    lookups = keys.lookups
    with pytest.raises(ResourceExhausted) as refused:
        asyncio.run(auth.authenticate(f"Bearer {mint_key('acme').secret}", attacker))
    assert refused.value.reason == "AUTH_FAILURES_RATE_LIMITED"
    assert refused.value.retry_after_s == pytest.approx(1.0)
    assert keys.lookups == lookups  # refused without a lookup
    # A key known to be good still works from that address, and other addresses are served.
    assert asyncio.run(auth.authenticate(f"Bearer {good}", attacker)).tenant_id == "acme"
    with pytest.raises(Unauthenticated):
        asyncio.run(auth.authenticate(f"Bearer {mint_key('acme').secret}", other))
    clock.now = 1.0
    with pytest.raises(Unauthenticated):
        asyncio.run(auth.authenticate(f"Bearer {mint_key('acme').secret}", attacker))


def test_lookups_in_progress_are_bounded_and_shared_by_callers_of_one_key() -> None:
    keys = FakeKeys()
    good = keys.add("acme", {Scope.READ})
    keys.hold = threading.Event()
    auth = Authenticator(keys, max_lookups=2, failures=LENIENT)

    async def run() -> list[object]:
        same = [asyncio.ensure_future(auth.authenticate(f"Bearer {good}")) for _ in range(5)]
        other = asyncio.ensure_future(auth.authenticate(f"Bearer {mint_key('acme').secret}"))
        await asyncio.sleep(0.05)
        with pytest.raises(ResourceExhausted) as refused:
            await auth.authenticate(f"Bearer {mint_key('acme').secret}")
        assert refused.value.reason == "LOOKUPS_BUSY"
        assert keys.hold is not None
        keys.hold.set()
        return await asyncio.gather(*same, other, return_exceptions=True)

    answers = asyncio.run(run())
    assert all(isinstance(a, Principal) for a in answers[:5])
    assert isinstance(answers[5], Unauthenticated)
    assert keys.lookups == 2


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("ipv4:10.0.0.7:53211", "ipv4:10.0.0.7"),
        ("ipv6:[::1]:5", "ipv6:[::1]"),
        ("unix:/tmp/s", "unix:/tmp/s"),
        (None, "unknown"),
    ],
)
def test_a_peer_is_its_address_without_the_port(peer: str | None, host: str) -> None:
    assert peer_host(peer) == host
