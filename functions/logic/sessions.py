"""Sessionization: 30 minutes without activity ends a user's session; ids are stable.

A session is a run of one user's events, by event time, with no gap longer than
``inactivity_gap_ms``; its id depends only on tenant, user and the time of the event that
opened it (:func:`session_id_for`), so a replay of the same events in the same order gives the
same ids. An emitted id stays valid: sessions are never merged or split after the fact.
Memory is bounded (``max_users``, ``max_sessions_per_user``); persistence is the caller's,
through `take_dirty` and `restore` (docs/pipeline.md, "State")."""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass

DEFAULT_INACTIVITY_GAP_MS = 30 * 60 * 1000


def session_id_for(tenant_id: str, user_key: str, started_at_ms: int) -> str:
    """The stable id of the session ``user_key`` of ``tenant_id`` opened at ``started_at_ms``.

    BLAKE2b rather than ``hash()``: Python salts string hashes per process.
    """
    material = f"{tenant_id}\x1f{user_key}\x1f{started_at_ms}".encode()
    return hashlib.blake2b(material, digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Tuning of the sessionizer; parse the Function's user config into this once."""

    inactivity_gap_ms: int = DEFAULT_INACTIVITY_GAP_MS
    max_users: int = 100_000
    # How many past sessions per user late events can still find.
    max_sessions_per_user: int = 4
    key_prefix: str = "sessions/"

    def __post_init__(self) -> None:
        if self.inactivity_gap_ms <= 0:
            raise ValueError("inactivity_gap_ms must be positive")
        if self.max_users <= 0 or self.max_sessions_per_user <= 0:
            raise ValueError("max_users and max_sessions_per_user must be positive")


@dataclass(frozen=True, slots=True)
class SessionAssignment:
    """The session an event belongs to."""

    session_id: str
    started_at_ms: int
    # This event opened the session.
    opened: bool
    # The user had already been active later than this event's time.
    out_of_order: bool


@dataclass(slots=True)
class SessionSpan:
    """One session of a user: the time naming it and the range of its events' times."""

    started_at_ms: int
    earliest_ms: int
    last_ms: int

    def distance_to(self, at_ms: int) -> int:
        if at_ms < self.earliest_ms:
            return self.earliest_ms - at_ms
        if at_ms > self.last_ms:
            return at_ms - self.last_ms
        return 0


@dataclass(slots=True)
class SessionStats:
    """Counters since this instance started; the Function exports them as metrics."""

    sessions_opened: int = 0
    out_of_order_events: int = 0
    users_evicted: int = 0
    # Restored records that could not be decoded (the user starts afresh).
    unreadable_records: int = 0


def encode_spans(spans: list[SessionSpan]) -> bytes:
    return json.dumps(
        [[s.started_at_ms, s.earliest_ms, s.last_ms] for s in spans], separators=(",", ":")
    ).encode()


def decode_spans(raw: bytes) -> list[SessionSpan] | None:
    """The spans in a persisted record, or None if it is not one we can read."""
    try:
        rows = json.loads(raw)
        spans = [SessionSpan(int(a), int(b), int(c)) for a, b, c in rows]
    except (ValueError, TypeError):
        return None
    return sorted(spans, key=lambda s: s.earliest_ms)


class SessionTracker:
    """Assigns events to sessions, per tenant and user. Not thread-safe: one per instance."""

    def __init__(self, config: SessionConfig | None = None) -> None:
        self._config = config or SessionConfig()
        # key → spans ordered by earliest_ms; spans never overlap (see module docstring).
        self._users: OrderedDict[str, list[SessionSpan]] = OrderedDict()
        self._dirty: set[str] = set()
        # Changed users pushed out of memory before `take_dirty` handed them out.
        self._evicted_dirty: dict[str, list[SessionSpan]] = {}
        self.stats = SessionStats()

    def __len__(self) -> int:
        """How many users are held in memory."""
        return len(self._users)

    def assign(self, tenant_id: str, user_key: str, occurred_at_ms: int) -> SessionAssignment:
        """Place one event of ``user_key`` at event time ``occurred_at_ms`` in a session."""
        key = f"{self._config.key_prefix}{tenant_id}/{user_key}"
        spans = self._spans_of(key)
        out_of_order = bool(spans) and occurred_at_ms < max(s.last_ms for s in spans)
        if out_of_order:
            self.stats.out_of_order_events += 1

        span = self._nearest(spans, occurred_at_ms)
        opened = span is None
        changed = True
        if span is None:
            span = SessionSpan(occurred_at_ms, occurred_at_ms, occurred_at_ms)
            spans.append(span)
            spans.sort(key=lambda s: s.earliest_ms)
            # Forget the oldest sessions; if that is the new one, its id is still returned.
            del spans[: max(0, len(spans) - self._config.max_sessions_per_user)]
            self.stats.sessions_opened += 1
        elif span.earliest_ms <= occurred_at_ms <= span.last_ms:
            changed = False
        else:
            span.earliest_ms = min(span.earliest_ms, occurred_at_ms)
            span.last_ms = max(span.last_ms, occurred_at_ms)

        if changed:
            self._dirty.add(key)
        return SessionAssignment(
            session_id=session_id_for(tenant_id, user_key, span.started_at_ms),
            started_at_ms=span.started_at_ms,
            opened=opened,
            out_of_order=out_of_order,
        )

    def forget(self, tenant_id: str, user_key: str) -> None:
        """Drop every session of ``user_key`` (an erasure): the next event opens a new one.
        The empty list is recorded like any change, so a replay cannot bring them back."""
        key = f"{self._config.key_prefix}{tenant_id}/{user_key}"
        self._users[key] = []
        self._users.move_to_end(key)
        self._dirty.add(key)
        self._evict()

    def take_dirty(self) -> dict[str, bytes]:
        """The users changed since the last call, encoded; the caller persists them."""
        changed = {key: encode_spans(spans) for key, spans in self._evicted_dirty.items()}
        changed.update((key, encode_spans(self._users[key])) for key in self._dirty)
        self._dirty.clear()
        self._evicted_dirty.clear()
        return changed

    def restore(self, key: str, raw: bytes) -> None:
        """Seed one user's sessions from persisted bytes (a later call for a key wins)."""
        spans = decode_spans(raw)
        if spans is None:
            self.stats.unreadable_records += 1
            return
        self._users[key] = spans
        self._users.move_to_end(key)
        self._evict()

    def _nearest(self, spans: list[SessionSpan], at_ms: int) -> SessionSpan | None:
        best: SessionSpan | None = None
        best_distance = self._config.inactivity_gap_ms
        # Newest first with a strict comparison, so a tie goes to the newer session.
        for span in reversed(spans):
            distance = span.distance_to(at_ms)
            if distance <= best_distance and (best is None or distance < best_distance):
                best, best_distance = span, distance
        return best

    def _spans_of(self, key: str) -> list[SessionSpan]:
        spans = self._users.get(key)
        if spans is not None:
            self._users.move_to_end(key)
            return spans
        spans = self._users[key] = []
        self._evict()
        return spans

    def _evict(self) -> None:
        while len(self._users) > self._config.max_users:
            evicted_key, evicted = self._users.popitem(last=False)
            self.stats.users_evicted += 1
            if evicted_key in self._dirty:
                self._dirty.discard(evicted_key)
                self._evicted_dirty[evicted_key] = evicted
