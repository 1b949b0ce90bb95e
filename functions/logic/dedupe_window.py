"""Has this event_id been seen within the dedupe window? Bounded memory, durable answers.

What it removes: client repeats — the same ``event_id`` published again (a retry after a
timeout, an SDK that resends its buffer) within ``window_ms`` (default 24 h) of its first
sighting. Broker deduplication already drops a *producer's* resend of one sequence id; it
cannot see a client that calls ``Ingest`` twice, which is what this stage is for. The
processed-event ledger in ``materialize`` remains the last line: whatever slips past here is
still counted once, so this stage may let a repeat through but must never drop a real event.

Routing. ``events/raw`` is partitioned and keyed by user id (anonymous id when there is no
user); a repeat carries the same user, so it has the same key. The function is deployed with
``retainKeyOrdering: true`` — Pulsar's Python instance then subscribes ``Key_Shared`` (with
``retainOrdering`` it would be ``Failover`` per partition; the default ``Shared`` would spread
one key over instances and must not be used). Either way every message of one key goes to one
instance while the assignment is stable, so that instance's cache sees the repeats and no two
instances race on the same id. When the assignment moves (scaling, a restart) correctness
comes from the durable record, not from routing: managed state is one table per function,
shared by all of its instances.

Persistence: one durable record per seen id, not window snapshots. Key
``<key_prefix><event_id>``, value = format byte, first-seen time (processing time, ms), and
the delivery id of the message that first carried it. It is written before ``check`` returns,
so before the runtime acknowledges the message: an acknowledged first sighting is always on
record. Snapshots would either be rewritten on every event (a window's worth of ids per write)
or flushed periodically, and a crash between flushes would forget ids whose messages were
already acknowledged.

The window on reload is enforced by time, not by key existence: a record counts only while
``now - first_seen < window_ms``. Records of a previous run, a previous day, another instance,
all read the same way; an old record is overwritten by the new sighting.

Memory: an exact, insertion-ordered map event_id → sighting in front of the store, bounded
by ``max_cached_ids``. Entries leave it when their window ends (``expired``; with
``delete_expired`` their durable record is deleted too, which keeps the table bounded in
steady state) or, when the bound is hit, oldest first (``evicted`` — the metric to watch:
evictions mean the cache is smaller than a window's worth of ids, so more ids cost a store
read). Eviction loses nothing when a store is attached. No Bloom filter: its false positives
would drop real events, the one error this stage must not make. Without a store, an evicted or
pre-restart id is simply unknown and a repeat passes, to be caught by the ledger.

Cost per event: a repeat found in the cache needs no I/O; an id not in the cache needs one
read (the store may know it from before a restart or from another instance) and, if new,
one write; an expiry needs one delete.

Redeliveries are not repeats. If an instance records an id and then dies before the runtime
acknowledges, the broker redelivers the *same message*; dropping it would lose the event. A
caller that passes the message's serialized id as ``delivery_id`` gets ``REDELIVERY``
(forward) for it, while a client repeat — a different message — is still dropped.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from functions.logic.state_port import CounterStore, KeyValueStore
from magnetar.dedupe import DEFAULT_WINDOW_MS as DEFAULT_WINDOW_MS  # re-exported

_RECORD_FORMAT = 1
_RECORD_HEADER = struct.Struct(">Bq")


class DedupeReason(StrEnum):
    """Why an event was forwarded or dropped; only ``DUPLICATE`` drops."""

    FIRST_SEEN = "FIRST_SEEN"
    # A record of an earlier sighting exists but is older than the window (records outlive
    # the window after a restart or with deletion off): a new occurrence as far as we promise.
    OUTSIDE_WINDOW = "OUTSIDE_WINDOW"
    # The message that first carried the id, delivered again after a nack or a crash.
    REDELIVERY = "REDELIVERY"
    DUPLICATE = "DUPLICATE"
    # Empty or over-long id: not worth a durable key; forwarded so `enrich` dead-letters it.
    UNCHECKABLE_ID = "UNCHECKABLE_ID"


@dataclass(frozen=True, slots=True)
class DedupeDecision:
    """The verdict for one event."""

    reason: DedupeReason
    # When the id was first seen (ms), as far as this decision knows; None when unchecked.
    first_seen_ms: int | None
    # Whether answering needed a read of the durable store (a cache miss).
    read_store: bool

    @property
    def drop(self) -> bool:
        return self.reason is DedupeReason.DUPLICATE


@dataclass(frozen=True, slots=True)
class DedupeConfig:
    """Tuning of the window; parse the Function's user config into this once."""

    window_ms: int = DEFAULT_WINDOW_MS
    # ~320 bytes per cached UUID id (key, sighting, map node; measured): 100k ≈ 32 MB.
    max_cached_ids: int = 100_000
    # Ids longer than this are not recorded (validation rejects them downstream anyway).
    max_event_id_length: int = 128
    key_prefix: str = "dedupe/id/"
    dropped_counter_key: str = "dedupe/dropped"
    delete_expired: bool = True

    def __post_init__(self) -> None:
        if self.window_ms <= 0:
            raise ValueError("window_ms must be positive")
        if self.max_cached_ids <= 0:
            raise ValueError("max_cached_ids must be positive")
        if self.max_event_id_length <= 0:
            raise ValueError("max_event_id_length must be positive")


@dataclass(slots=True)
class DedupeStats:
    """Counters since this instance started; the Function exports them as metrics."""

    forwarded: int = 0
    dropped: int = 0
    # Cache entries pushed out by the size bound while still inside their window.
    evicted: int = 0
    # Cache entries whose window ended.
    expired: int = 0
    store_reads: int = 0
    store_hits: int = 0
    # Durable records that could not be decoded (treated as absent and overwritten).
    unreadable_records: int = 0


class Sighting(NamedTuple):
    """The first time an id was seen and by which delivery."""

    first_seen_ms: int
    delivery_id: bytes


def encode_sighting(sighting: Sighting) -> bytes:
    return _RECORD_HEADER.pack(_RECORD_FORMAT, sighting.first_seen_ms) + sighting.delivery_id


def decode_sighting(raw: bytes) -> Sighting | None:
    """The sighting in a durable record, or None if the record is not one we can read."""
    if len(raw) < _RECORD_HEADER.size:
        return None
    version, first_seen_ms = _RECORD_HEADER.unpack_from(raw)
    if version != _RECORD_FORMAT:
        return None
    return Sighting(first_seen_ms, raw[_RECORD_HEADER.size :])


class DedupeWindow:
    """Decides, event by event, whether an ``event_id`` is a repeat inside the window.

    Not thread-safe: one per Function instance, called from ``process``.
    """

    def __init__(
        self,
        config: DedupeConfig | None = None,
        store: KeyValueStore | None = None,
        counters: CounterStore | None = None,
    ) -> None:
        self._config = config or DedupeConfig()
        self._store = store
        self._counters = counters
        self._cache: OrderedDict[str, Sighting] = OrderedDict()
        self.stats = DedupeStats()

    def __len__(self) -> int:
        """How many ids the in-memory cache holds."""
        return len(self._cache)

    def check(self, event_id: str, now_ms: int, delivery_id: bytes = b"") -> DedupeDecision:
        """Decide for one event and record its first sighting; ``now_ms`` is wall-clock time.

        ``delivery_id`` should identify the message (Pulsar's serialized message id) so a
        redelivery of the first message is told apart from a client repeat.
        """
        config = self._config
        if not event_id or len(event_id) > config.max_event_id_length:
            self.stats.forwarded += 1
            return DedupeDecision(DedupeReason.UNCHECKABLE_ID, None, read_store=False)

        self._expire(now_ms)
        sighting = self._cache.get(event_id)
        read_store = sighting is None and self._store is not None
        if read_store:
            sighting = self._read(event_id)

        if sighting is not None and now_ms - sighting.first_seen_ms < config.window_ms:
            if read_store:
                # Warm the cache so the next repeat of this id costs no read.
                self._remember(event_id, sighting)
            if delivery_id and sighting.delivery_id == delivery_id:
                self.stats.forwarded += 1
                return DedupeDecision(DedupeReason.REDELIVERY, sighting.first_seen_ms, read_store)
            self.stats.dropped += 1
            if self._counters is not None:
                self._counters.incr(config.dropped_counter_key, 1)
            return DedupeDecision(DedupeReason.DUPLICATE, sighting.first_seen_ms, read_store)

        reason = DedupeReason.FIRST_SEEN if sighting is None else DedupeReason.OUTSIDE_WINDOW
        first = Sighting(now_ms, delivery_id)
        if self._store is not None:
            # Durable before we return, hence before the runtime acknowledges the message.
            self._store.put(self._key(event_id), encode_sighting(first))
        self._cache.pop(event_id, None)
        self._remember(event_id, first)
        self.stats.forwarded += 1
        return DedupeDecision(reason, now_ms, read_store)

    def preload(self, event_id: str, sighting: Sighting) -> None:
        """Remember a sighting recorded elsewhere (e.g. replayed from a segment log)."""
        known = self._cache.get(event_id)
        if known is None or sighting.first_seen_ms < known.first_seen_ms:
            self._remember(event_id, sighting)

    def _key(self, event_id: str) -> str:
        return self._config.key_prefix + event_id

    def _read(self, event_id: str) -> Sighting | None:
        assert self._store is not None
        self.stats.store_reads += 1
        raw = self._store.get(self._key(event_id))
        if raw is None:
            return None
        sighting = decode_sighting(raw)
        if sighting is None:
            # Blocking the subscription on an unreadable record would be worse than letting
            # one possible repeat through to the ledger; the new sighting overwrites it.
            self.stats.unreadable_records += 1
            return None
        self.stats.store_hits += 1
        return sighting

    def _remember(self, event_id: str, sighting: Sighting) -> None:
        self._cache[event_id] = sighting
        self._cache.move_to_end(event_id)
        while len(self._cache) > self._config.max_cached_ids:
            self._cache.popitem(last=False)
            self.stats.evicted += 1

    def _expire(self, now_ms: int) -> None:
        # Insertion order is (nearly) first-seen order, so expired entries sit at the front;
        # one re-warmed older entry further back only waits for the size bound, and lookups
        # check the window themselves, so it can never cause a wrong drop.
        window_ms = self._config.window_ms
        cache = self._cache
        while cache:
            event_id, sighting = next(iter(cache.items()))
            if now_ms - sighting.first_seen_ms < window_ms:
                return
            cache.popitem(last=False)
            self.stats.expired += 1
            if self._store is not None and self._config.delete_expired:
                self._store.delete(self._key(event_id))
