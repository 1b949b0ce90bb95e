"""Users' rows read again right after a commit changed them, before their next request.

When the change stream drops a user whose rows memory held, `RowsAhead` reads that user's
rows again on its own thread, many users of a tenant per round trip (tenants in turn), and
puts them back with the token taken before the read: refused, like any fill, when another
change of the user arrived meanwhile, and then read once more. The user's next request then
ranks on the event loop from memory instead of reading PostgreSQL on a worker thread. At
most `max_pending` users wait; past that a user is not read ahead and its next request
reads it, as without this (docs/serving.md, "Read back ahead")."""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from magnetar.serving.memory import ServingMemory

if TYPE_CHECKING:
    from magnetar.db.user_snapshot import UserRows

log = logging.getLogger(__name__)

ReadRows = Callable[[str, Sequence[str]], Mapping[str, "UserRows"]]

# After a failed read, wait this long before the next (PostgreSQL may be down).
RETRY_PAUSE_S = 0.5


@dataclass
class RowsAheadStats:
    users: int = 0
    failed_users: int = 0
    # Users not read ahead: the queue was full.
    skipped: int = 0


class RowsAhead:
    def __init__(
        self, memory: ServingMemory, read: ReadRows, *, batch: int = 200, max_pending: int = 20_000
    ) -> None:
        self._memory = memory
        self._read = read
        self._batch = batch
        self._max_pending = max_pending
        # Per tenant, the users to read, in the order they changed (a dict as an ordered set).
        self._pending: dict[str, dict[str, None]] = {}
        self._count = 0
        self._wake = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.stats = RowsAheadStats()

    def schedule(self, tenant_id: str, user_ids: Sequence[str]) -> None:
        """Read these users of `tenant_id` again (called on the change stream's thread)."""
        if not user_ids:
            return
        with self._wake:
            waiting = self._pending.setdefault(tenant_id, {})
            for user_id in user_ids:
                if user_id in waiting:
                    continue
                if self._count >= self._max_pending:
                    self.stats.skipped += 1
                    continue
                waiting[user_id] = None
                self._count += 1
            if not waiting:
                del self._pending[tenant_id]
            self._wake.notify()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="rows-ahead", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _next(self) -> tuple[str, list[str]] | None:
        with self._wake:
            while not self._pending and not self._stopped:
                self._wake.wait()
            if self._stopped:
                return None
            tenant_id, waiting = next(iter(self._pending.items()))
            users = list(itertools.islice(waiting, self._batch))
            for user_id in users:
                del waiting[user_id]
            # Tenants take turns: one with more waiting goes behind the others.
            del self._pending[tenant_id]
            if waiting:
                self._pending[tenant_id] = waiting
            self._count -= len(users)
            return tenant_id, users

    def _run(self) -> None:
        while (work := self._next()) is not None:
            tenant_id, users = work
            token = self._memory.token()
            try:
                found = self._read(tenant_id, users)
            except Exception:  # the next request reads the users itself
                self.stats.failed_users += len(users)
                log.warning("reading %d users of %s ahead failed", len(users), tenant_id)
                with self._wake:
                    self._wake.wait(RETRY_PAUSE_S)
                continue
            self.stats.users += len(found)
            # Changed again while read: the rows are refused, and read once more.
            again = [
                user_id
                for user_id, rows in found.items()
                # A user with no state left (erased) is not held: nothing to serve.
                if rows.items_complete
                and rows.activity is not None
                and not self._memory.put_user(tenant_id, user_id, rows, token)
                and self._memory.live
            ]
            self.schedule(tenant_id, again)
