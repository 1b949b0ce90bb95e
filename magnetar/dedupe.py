"""How long the pipeline's dedupe remembers an event id unless a tenant's Function is
configured otherwise. One value for the Function (functions/logic/dedupe_window.py,
functions/deployment.py) and for the ledger, which keeps ids at least this long
(magnetar/db/ledger.py)."""

from __future__ import annotations

DEFAULT_WINDOW_MS = 24 * 60 * 60 * 1000
