"""Has this event_id been seen within the dedupe window? Exact, in memory, bounded.

Guarantees, per instance: a client repeat of an ``event_id`` first seen less than
``window_ms`` ago (here, or preloaded from the segment log when the instance started) is
dropped; a redelivery of the message that first carried it is not (``REDELIVERY``); a real
event is never dropped (no Bloom filter: its false positives would). Memory is bounded by
``max_cached_ids``, oldest first out. What the window forgets — an evicted id, a sighting not
yet appended to the segment log when the instance died — passes as a first sighting and is
refused by the ledger. Where this sits and how sightings persist: docs/pipeline.md, "State".
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from magnetar.dedupe import DEFAULT_WINDOW_MS as DEFAULT_WINDOW_MS  # re-exported
from magnetar.event_contract import MAX_ID_BYTES

_RECORD_FORMAT = 1
_RECORD_HEADER = struct.Struct(">Bq")


class DedupeReason(StrEnum):
    """Why an event was forwarded or dropped; only ``DUPLICATE`` drops."""

    FIRST_SEEN = "FIRST_SEEN"
    # An earlier sighting is known but older than the window (one preloaded or re-seen behind
    # newer entries): a new occurrence as far as we promise.
    OUTSIDE_WINDOW = "OUTSIDE_WINDOW"
    # The message that first carried the id, delivered again after a nack or a crash.
    REDELIVERY = "REDELIVERY"
    DUPLICATE = "DUPLICATE"
    # Empty or over-long id: not worth remembering; forwarded so `enrich` dead-letters it.
    UNCHECKABLE_ID = "UNCHECKABLE_ID"


@dataclass(frozen=True, slots=True)
class DedupeDecision:
    """The verdict for one event."""

    reason: DedupeReason
    # When the id was first seen (ms), as far as this decision knows; None when unchecked.
    first_seen_ms: int | None

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
    max_event_id_length: int = MAX_ID_BYTES

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


class Sighting(NamedTuple):
    """The first time an id was seen and by which delivery."""

    first_seen_ms: int
    delivery_id: bytes


def encode_sighting(sighting: Sighting) -> bytes:
    return _RECORD_HEADER.pack(_RECORD_FORMAT, sighting.first_seen_ms) + sighting.delivery_id


def decode_sighting(raw: bytes) -> Sighting | None:
    """The sighting in a segment record, or None if the record is not one we can read."""
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

    def __init__(self, config: DedupeConfig | None = None) -> None:
        self._config = config or DedupeConfig()
        self._cache: OrderedDict[str, Sighting] = OrderedDict()
        self.stats = DedupeStats()

    def __len__(self) -> int:
        """How many ids the in-memory cache holds."""
        return len(self._cache)

    def check(self, event_id: str, now_ms: int, delivery_id: bytes = b"") -> DedupeDecision:
        """Decide for one event and remember its first sighting; ``now_ms`` is wall-clock time.

        ``delivery_id`` should identify the message (Pulsar's serialized message id) so a
        redelivery of the first message is told apart from a client repeat.
        """
        config = self._config
        if not event_id or len(event_id) > config.max_event_id_length:
            self.stats.forwarded += 1
            return DedupeDecision(DedupeReason.UNCHECKABLE_ID, None)

        self._expire(now_ms)
        sighting = self._cache.get(event_id)
        if sighting is not None and now_ms - sighting.first_seen_ms < config.window_ms:
            if delivery_id and sighting.delivery_id == delivery_id:
                self.stats.forwarded += 1
                return DedupeDecision(DedupeReason.REDELIVERY, sighting.first_seen_ms)
            self.stats.dropped += 1
            return DedupeDecision(DedupeReason.DUPLICATE, sighting.first_seen_ms)

        reason = DedupeReason.FIRST_SEEN if sighting is None else DedupeReason.OUTSIDE_WINDOW
        self._cache.pop(event_id, None)
        self._remember(event_id, Sighting(now_ms, delivery_id))
        self.stats.forwarded += 1
        return DedupeDecision(reason, now_ms)

    def preload(self, event_id: str, sighting: Sighting) -> None:
        """Remember a sighting recorded elsewhere (e.g. replayed from a segment log)."""
        known = self._cache.get(event_id)
        if known is None or sighting.first_seen_ms < known.first_seen_ms:
            self._remember(event_id, sighting)

    def _remember(self, event_id: str, sighting: Sighting) -> None:
        self._cache[event_id] = sighting
        self._cache.move_to_end(event_id)
        while len(self._cache) > self._config.max_cached_ids:
            self._cache.popitem(last=False)
            self.stats.evicted += 1

    def _expire(self, now_ms: int) -> None:
        # Insertion order is (nearly) first-seen order, so expired entries sit at the front;
        # one preloaded older entry further back only waits for the size bound, and lookups
        # check the window themselves, so it can never cause a wrong drop.
        window_ms = self._config.window_ms
        cache = self._cache
        while cache:
            _, sighting = next(iter(cache.items()))
            if now_ms - sighting.first_seen_ms < window_ms:
                return
            cache.popitem(last=False)
            self.stats.expired += 1
