"""Durable state as a log of time-stamped segments: a few writes a second, not per event.

A writer appends, about once a second, one segment of what changed since the previous one; a
restarted instance replays the segments of the period it asks for. Changes after the last
append are lost when the instance dies. Segments expire by time as a whole, so the table stays
bounded without per-record deletes (docs/pipeline.md, "State")."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from functions.logic.state_port import KeyValueStore


@dataclass
class SegmentLog:
    store: KeyValueStore
    prefix: str
    _index: list[tuple[int, int]] | None = field(default=None, init=False)

    def _index_key(self) -> str:
        return f"{self.prefix}/index"

    def _segment_key(self, sequence: int) -> str:
        return f"{self.prefix}/seg/{sequence}"

    def index(self) -> list[tuple[int, int]]:
        if self._index is None:
            raw = self.store.get(self._index_key())
            self._index = [(int(s), int(t)) for s, t in json.loads(raw)] if raw else []
        return self._index

    def append(self, payload: bytes, at_ms: int) -> int:
        """Store one segment, then record it in the index (a reader never sees a hole)."""
        index = self.index()
        sequence = index[-1][0] + 1 if index else 0
        self.store.put(self._segment_key(sequence), payload)
        index.append((sequence, at_ms))
        self._write_index()
        return sequence

    def read(self, since_ms: int) -> Iterator[bytes]:
        """Segments appended at or after `since_ms`, oldest first."""
        for sequence, at_ms in self.index():
            if at_ms >= since_ms:
                payload = self.store.get(self._segment_key(sequence))
                if payload:
                    yield payload

    def expire(self, before_ms: int) -> int:
        """Delete segments appended before `before_ms`; returns how many went."""
        index = self.index()
        old = [sequence for sequence, at_ms in index if at_ms < before_ms]
        if not old:
            return 0
        self._index = [(s, t) for s, t in index if t >= before_ms]
        self._write_index()
        for sequence in old:
            self.store.delete(self._segment_key(sequence))
        return len(old)

    def _write_index(self) -> None:
        self.store.put(self._index_key(), json.dumps(self.index()).encode())


_LENGTHS = struct.Struct(">HI")


def encode_pairs(pairs: Mapping[str, bytes]) -> bytes:
    """(key, value) pairs as one segment payload: u16 key length, u32 value length, bytes."""
    out = bytearray()
    for key, value in pairs.items():
        raw_key = key.encode()
        out += _LENGTHS.pack(len(raw_key), len(value)) + raw_key + value
    return bytes(out)


def decode_pairs(payload: bytes) -> Iterator[tuple[str, bytes]]:
    """The pairs of a segment; stops at a truncated tail instead of failing the replay."""
    offset = 0
    while offset + _LENGTHS.size <= len(payload):
        key_length, value_length = _LENGTHS.unpack_from(payload, offset)
        offset += _LENGTHS.size
        end = offset + key_length + value_length
        if end > len(payload):
            return
        yield payload[offset : offset + key_length].decode(), payload[offset + key_length : end]
        offset = end


@dataclass
class PeriodicSegments:
    """Changes gathered in memory and appended to a `SegmentLog` at most every interval."""

    log: SegmentLog
    interval_ms: int
    retain_ms: int
    pending: dict[str, bytes] = field(default_factory=dict)
    last_flush_ms: int = 0

    def record(self, key: str, value: bytes) -> None:
        self.pending[key] = value

    def maybe_flush(self, now_ms: int) -> bool:
        """Append the pending changes if the interval has passed; expire old segments."""
        if not self.pending or now_ms - self.last_flush_ms < self.interval_ms:
            return False
        self.log.append(encode_pairs(self.pending), now_ms)
        self.log.expire(now_ms - self.retain_ms)
        self.pending.clear()
        self.last_flush_ms = now_ms
        return True


def replay(logs: Sequence[SegmentLog], since_ms: int) -> Iterator[tuple[str, bytes]]:
    """Every pair recorded since `since_ms` by any of `logs`, each log oldest first."""
    for log in logs:
        for payload in log.read(since_ms):
            yield from decode_pairs(payload)
