"""The time limits an event is judged by, shared by the pipeline and the kernel.

Validation (functions/logic/validation.py) takes its default limits from here, dedupe its
default window; the processed-event ledger keeps ids at least as long as a repeat can still
pass them (magnetar/db/ledger.py) and erasure dates its tombstone past the future skew
(magnetar/serving/erasure.py). Reasoning: docs/pipeline.md.
"""

from __future__ import annotations

_MINUTE_MS = 60 * 1000
_DAY_MS = 24 * 60 * _MINUTE_MS

# An event's timestamp may be at most this far after its acceptance (FUTURE_TIMESTAMP beyond).
MAX_FUTURE_SKEW_MS = 5 * _MINUTE_MS
# ... and at most this far before it (TOO_OLD beyond), imported history aside.
RETENTION_HORIZON_MS = 7 * _DAY_MS
# How long dedupe remembers an event id by default.
DEDUPE_WINDOW_MS = _DAY_MS
