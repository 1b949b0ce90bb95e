"""Follows the change stream (`magnetar.db.change_stream`) on one dedicated connection.

`ChangeListener` runs a daemon thread holding one PostgreSQL connection that LISTENs on the
channel and hands each change to `on_change`. What it guarantees to its consumer:

* `on_change` is called for every change committed while the listener was connected, in
  commit order;
* notifications sent while it was not connected are lost, so `on_reset(False)` is called
  when the connection is lost and `on_reset(True)` once a new `LISTEN` is in place: whatever
  was kept from the stream must be dropped at both. A consumer serves from memory only
  between `on_reset(True)` and the next `on_reset(False)`;
* `expect(tenant, user)` gives an event set once a change naming that user of that tenant
  (or all of the tenant, or a reset) has been seen: a writer in this process can wait until
  its own committed change has reached the stream's listeners before it answers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from magnetar.db.change_stream import CHANNEL, Change, parse

log = logging.getLogger(__name__)


class ChangeListener:
    def __init__(
        self,
        database_url: str,
        on_change: Callable[[Change], None],
        on_reset: Callable[[bool], None],
        *,
        retry_s: float = 1.0,
        poll_s: float = 0.5,
    ) -> None:
        self._url = database_url
        self._on_change = on_change
        self._on_reset = on_reset
        self._retry_s = retry_s
        self._poll_s = poll_s
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._waiters: dict[tuple[str, str], list[threading.Event]] = {}
        self._thread = threading.Thread(target=self._run, name="change-listener", daemon=True)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        self._thread.start()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(self._poll_s * 4)

    def expect(self, tenant_id: str, user_id: str) -> threading.Event:
        seen = threading.Event()
        with self._lock:
            self._waiters.setdefault((tenant_id, user_id), []).append(seen)
        return seen

    def forget(self, tenant_id: str, user_id: str, seen: threading.Event) -> None:
        with self._lock:
            waiting = self._waiters.get((tenant_id, user_id), [])
            if seen in waiting:
                waiting.remove(seen)
            if not waiting:
                self._waiters.pop((tenant_id, user_id), None)

    def _release(self, change: Change | None) -> None:
        with self._lock:
            if not self._waiters:
                return
            if change is None:
                keys = list(self._waiters)
            elif change.everything:
                keys = [k for k in self._waiters if k[0] == change.tenant_id]
            else:
                keys = [(change.tenant_id, u) for u in change.users]
            for key in keys:
                for seen in self._waiters.pop(key, ()):
                    seen.set()

    def _reset(self, connected: bool) -> None:
        if not connected:
            self._connected.clear()
        self._on_reset(connected)
        self._release(None)
        if connected:
            self._connected.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                with psycopg.connect(
                    self._url, autocommit=True, application_name="magnetar-changes"
                ) as conn:
                    self._listen(conn)
            except Exception:
                log.warning("the change stream's connection failed; memory dropped", exc_info=True)
            self._reset(False)
            self._stopping.wait(self._retry_s)

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(f"LISTEN {CHANNEL}")
        # What was kept before this LISTEN may have missed changes: drop it, then serve.
        self._reset(True)
        checked = time.monotonic()
        while not self._stopping.is_set():
            for notification in conn.notifies(timeout=self._poll_s):
                change = parse(notification.payload)
                if change is None:
                    log.warning("unreadable change notification: %.200r", notification.payload)
                    continue
                self._on_change(change)
                self._release(change)
            # A silent connection may be a dead one: a round trip now and then finds out.
            if time.monotonic() - checked > 5:
                conn.execute("SELECT 1")
                checked = time.monotonic()
