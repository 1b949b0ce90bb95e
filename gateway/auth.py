"""Who is calling: an API key from the `authorization` metadata → a Principal.

Keys are looked up in PostgreSQL inside the tenant's row-level-security scope (the tenant is
part of the key, see magnetar.api_keys). Answers, positive and negative, are cached for a
few seconds: the request path then costs a SHA-256 and a dict lookup, and a revoked key
stops working within `ttl_s`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Protocol

from magnetar.api_key_store import StoredKey
from magnetar.api_keys import PLATFORM, Principal, bearer_token, parse_key, secret_matches
from magnetar.errors import Unauthenticated


class KeyLookup(Protocol):
    """Finds a key of a tenant; blocking (it is run in a worker thread)."""

    def find(self, tenant_id: str, key_id: str) -> StoredKey | None: ...


class Authenticator:
    def __init__(
        self,
        lookup: KeyLookup,
        admin_key: str = "",
        *,
        ttl_s: float = 5.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._admin_key = admin_key
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._cache: dict[bytes, tuple[float, Principal | Unauthenticated]] = {}

    async def authenticate(self, authorization: str | None) -> Principal:
        token = bearer_token(authorization)
        presented = token.encode("utf-8")
        # Bytes: compare_digest refuses a str that is not ASCII (TypeError → INTERNAL).
        if self._admin_key and hmac.compare_digest(presented, self._admin_key.encode("utf-8")):
            return PLATFORM
        # Cache by digest: the cache never holds a secret in the clear.
        digest = hashlib.sha256(presented).digest()
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is None or cached[0] <= now:
            answer = await self._resolve(token)
            if len(self._cache) >= self._max_entries:
                self._cache.clear()
            self._cache[digest] = (now + self._ttl_s, answer)
        else:
            answer = cached[1]
        if isinstance(answer, Unauthenticated):
            # A fresh exception each time: re-raising a cached one would grow its traceback.
            raise Unauthenticated(answer.message, reason=answer.reason)
        return answer

    async def _resolve(self, token: str) -> Principal | Unauthenticated:
        try:
            parsed = parse_key(token)
        except Unauthenticated as error:
            return error
        stored = await asyncio.to_thread(self._lookup.find, parsed.tenant_id, parsed.key_id)
        if stored is None or not secret_matches(token, stored.secret_sha256):
            return Unauthenticated("unknown API key", reason="API_KEY_INVALID")
        if stored.revoked:
            return Unauthenticated("the API key was revoked", reason="API_KEY_REVOKED")
        return Principal(tenant_id=stored.tenant_id, key_id=stored.key_id, scopes=stored.scopes)
