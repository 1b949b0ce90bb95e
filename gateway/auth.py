"""Who is calling: an API key from the `authorization` metadata → a Principal.

Keys are looked up in PostgreSQL in the tenant's row-level-security scope on threads of
their own, at most `max_lookups` at a time (beyond: RESOURCE_EXHAUSTED `LOOKUPS_BUSY`).
Answers are cached `ttl_s` (a revoked key stops working within it), known and unknown keys
apart; while PostgreSQL fails a key's last good answer is served for `stale_s`. An address
whose keys keep failing is refused lookups for a while (`gateway.auth_failures`). Why:
docs/serving.md, "Unauthenticated callers".
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

from gateway.answer_cache import AnswerCache, CachedLookup
from gateway.auth_failures import AuthFailureLimiter, peer_host
from magnetar.api_key_store import StoredKey
from magnetar.api_keys import PLATFORM, Principal, bearer_token, parse_key, secret_matches
from magnetar.errors import Unauthenticated

T = TypeVar("T")
Answer = Principal | Unauthenticated


class KeyLookup(Protocol):
    """Finds a key of a tenant; blocking (it is run in a worker thread)."""

    def find(self, tenant_id: str, key_id: str) -> StoredKey | None: ...


def _unknown() -> Unauthenticated:
    return Unauthenticated("unknown API key", reason="API_KEY_INVALID")


class Authenticator:
    def __init__(
        self,
        lookup: KeyLookup,
        admin_key: str = "",
        *,
        ttl_s: float = 5.0,
        stale_s: float = 600.0,
        max_entries: int = 10_000,
        max_unknown_entries: int = 1_000,
        max_lookups: int = 32,
        lookup_threads: int = 4,
        failures: AuthFailureLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._admin_key = admin_key.encode("utf-8")
        self._clock = clock
        # Keys that exist (a principal, or revoked) apart from keys that do not.
        self._known: AnswerCache[bytes, Answer] = AnswerCache(max_entries, ttl_s, stale_s)
        self._unknown: AnswerCache[bytes, Answer] = AnswerCache(max_unknown_entries, ttl_s, stale_s)
        self._failures = failures or AuthFailureLimiter(per_second=10.0, burst=100)
        self._executor = ThreadPoolExecutor(lookup_threads, thread_name_prefix="key-lookup")
        self._answers: CachedLookup[bytes, Answer] = CachedLookup(
            (self._known, self._unknown),
            self._cache_for,
            run=self._in_lookup_thread,
            clock=clock,
            what="API key",
            max_lookups=max_lookups,
        )

    def _cache_for(self, answer: Answer) -> AnswerCache[bytes, Answer]:
        if isinstance(answer, Principal) or answer.reason == "API_KEY_REVOKED":
            return self._known
        return self._unknown

    async def _in_lookup_thread(self, fetch: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fetch)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def cached(self, authorization: str | None) -> Principal | None:
        """The principal of a key whose good answer is cached and fresh, without a lookup
        or a coroutine (the warm path); None for anything else: `authenticate` then."""
        if not authorization:
            return None
        try:
            token = bearer_token(authorization)
        except Unauthenticated:
            return None
        presented = token.encode("utf-8")
        if self._admin_key and hmac.compare_digest(presented, self._admin_key):
            return PLATFORM
        hit, answer = self._answers.cached(hashlib.sha256(presented).digest())
        return answer if hit and isinstance(answer, Principal) else None

    async def authenticate(self, authorization: str | None, peer: str | None = None) -> Principal:
        """The caller's principal; Unauthenticated, or ResourceExhausted for a peer over its
        failed-authentication rate or when too many lookups are in progress."""
        host = peer_host(peer)
        try:
            answer = await self._answer(authorization, host)
        except Unauthenticated:
            self._failures.failed(host, self._clock())
            raise
        if isinstance(answer, Unauthenticated):
            self._failures.failed(host, self._clock())
            # A fresh exception each time: re-raising a cached one would grow its traceback.
            raise Unauthenticated(answer.message, reason=answer.reason)
        return answer

    async def _answer(self, authorization: str | None, host: str) -> Answer:
        token = bearer_token(authorization)
        presented = token.encode("utf-8")
        # Bytes: compare_digest refuses a str that is not ASCII (TypeError → INTERNAL).
        if self._admin_key and hmac.compare_digest(presented, self._admin_key):
            return PLATFORM
        parsed = parse_key(token)
        # Cache by digest: the cache never holds a secret in the clear.
        digest = hashlib.sha256(presented).digest()
        hit, answer = self._answers.cached(digest)
        if hit and answer is not None:
            return answer
        # Only a lookup is refused to a peer over its failures: known keys cost nothing.
        self._failures.check(host, self._clock())

        def fetch() -> Answer:
            stored = self._lookup.find(parsed.tenant_id, parsed.key_id)
            if stored is None or not secret_matches(token, stored.secret_sha256):
                return _unknown()
            if stored.revoked:
                return Unauthenticated("the API key was revoked", reason="API_KEY_REVOKED")
            return Principal(tenant_id=stored.tenant_id, key_id=stored.key_id, scopes=stored.scopes)

        return await self._answers.get(digest, fetch)
