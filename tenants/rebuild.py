"""A tenant's state recomputed from its retained topics while live ingest goes on, then
switched in at once (`magnetar tenants rebuild`).

`Rebuild` runs in steps the command shows one by one: `open` (else `NotFound`, or
`FailedPrecondition` when a rebuild of the tenant runs), `replay`, `switch` and `close`, which
drops the shadow and releases the claim whatever happened. Every event is counted once across
the switch; the switch is refused when the live state counted events the topics no longer
hold, unless `allow_history_loss` (docs/pipeline.md, "Rebuilding a tenant's state")."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from functions.catalog_follower import CatalogFollower
from functions.logic.catalog_view import CatalogView
from functions.replay import Replay, ReplayCounts
from magnetar.db.shadow_state import HoldTimeout, RebuildRunning, ShadowState, StateFigures
from magnetar.errors import FailedPrecondition, NotFound, Unavailable
from magnetar.pulsar_admin import PulsarAdmin, PulsarAdminError
from magnetar.pulsar_client import make_client
from magnetar.settings import Settings
from magnetar.topics import TenantTopics
from tenants.retained_events import RetainedEvents, partition_topics, seconds_left
from tenants.retention import LedgerFacts, Retention, RetentionVerdict, assess

# How often (messages) the progress callback hears about a phase.
PROGRESS_EVERY = 500

REPLAYING = "replaying retained events"
CATCHING_UP = "catching up"
HELD = "catching up, pipeline held"

Progress = Callable[[str, ReplayCounts], None]


@dataclass(frozen=True)
class RebuildOptions:
    allow_history_loss: bool = False
    batch_size: int = 2_000
    # The longest the tenant's pipeline is held for the last catch-up, per attempt.
    max_hold_s: float = 20.0
    hold_attempts: int = 3


@dataclass
class RebuildReport:
    tenant_id: str
    partitions: int
    verdict: RetentionVerdict
    counts: ReplayCounts
    # Both copies as they stood under the hold, before the switch.
    live: StateFigures | None = None
    rebuilt: StateFigures | None = None
    # Ids the live ledger remembers that the replay did not find.
    unreplayed: int = 0
    # Rows dropped from the shadow for users erased during the rebuild.
    erased_rows: int = 0
    # The first pass over the topics: its messages and time (the replay's own rate).
    replayed: int = 0
    replay_s: float = 0.0
    # The pipeline held (catch-up, comparison, switch), and the switch's transaction alone.
    hold_s: float = 0.0
    switch_s: float = 0.0
    holds: int = 0
    switched: bool = False
    refusal: str = ""
    notes: list[str] = field(default_factory=list)


def refusal(live: StateFigures, rebuilt: StateFigures, unreplayed: int) -> str:
    """Why switching would lose counted history; empty when it would not."""
    reasons = []
    if unreplayed:
        reasons.append(f"the live state counted {unreplayed:,} events the topics no longer hold")
    if rebuilt.counted < live.counted:
        reasons.append(
            f"the rebuilt state counts {rebuilt.counted:,} events, the live one "
            f"{live.counted:,} (events past the retention, or counted twice before)"
        )
    return "; ".join(reasons)


class Rebuild:
    def __init__(
        self, settings: Settings, tenant_id: str, options: RebuildOptions | None = None
    ) -> None:
        self.tenant_id = tenant_id
        self.options = options or RebuildOptions()
        self._settings = settings
        self._topics = TenantTopics(tenant_id)
        self._admin: PulsarAdmin | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._client: Any = None
        self._events: RetainedEvents | None = None
        self._shadow: ShadowState | None = None
        self._replay: Replay | None = None
        self._claimed = False
        self._erased_since: datetime | None = None
        self.report: RebuildReport | None = None

    # -- 1. open -------------------------------------------------------------------------

    def open(self) -> RebuildReport:
        settings = self._settings
        self._admin = PulsarAdmin(settings.pulsar_admin_url, settings.pulsar_admin_token)
        namespace = self._topics.events_namespace
        try:
            policies = self._admin.namespace_policies(namespace)
        except PulsarAdminError as error:
            if error.status != 404:
                raise
            raise NotFound(
                f"tenant {self.tenant_id!r} does not exist (Pulsar has no namespace "
                f"{namespace}); `magnetar tenants list` shows the tenants",
                reason="TENANT_NOT_FOUND",
            ) from None
        self._conn = psycopg.connect(
            settings.database_owner_url, autocommit=True, application_name="magnetar-rebuild"
        )
        self._shadow = shadow = ShadowState(self._conn, self.tenant_id)
        counted, remembered, oldest = shadow.live_ledger()
        verdict = assess(
            Retention.from_policies(policies),
            LedgerFacts(counted, remembered, oldest),
            int(time.time() * 1000),
        )
        try:
            shadow.claim()
        except RebuildRunning:
            raise FailedPrecondition(
                f"a rebuild of {self.tenant_id!r} is already running; wait for it to finish",
                reason="REBUILD_RUNNING",
            ) from None
        self._claimed = True
        self._erased_since = shadow.started_at()
        self._client = make_client(settings.pulsar_service_url, settings.pulsar_admin_token)
        catalog = self._load_catalog()
        partitions = partition_topics(self._admin, self._topics)
        self._events = RetainedEvents(self._client, partitions)
        self._replay = Replay(
            self.tenant_id,
            self._topics.dlq,
            catalog,
            shadow.commit,
            batch_size=self.options.batch_size,
        )
        self.report = RebuildReport(self.tenant_id, len(partitions), verdict, self._replay.counts)
        return self.report

    def _load_catalog(self) -> CatalogView:
        """The catalog as the pipeline joins it now (the live run joined it as it was)."""
        view = CatalogView()
        assert self._admin is not None
        if self._topics.catalog in self._admin.topics(self._topics.catalog_namespace):
            CatalogFollower(view).load(self._client, self._topics.catalog).close()
        return view

    # -- 2. replay -----------------------------------------------------------------------

    def replay(self, progress: Progress | None = None) -> None:
        """Every retained message into the shadow, the live pipeline going on."""
        report = self._report()
        started = time.monotonic()
        self._catch_up(REPLAYING, progress)
        report.replay_s = time.monotonic() - started
        report.replayed = report.counts.read

    def _catch_up(
        self, phase: str, progress: Progress | None, deadline: Callable[[], bool] | None = None
    ) -> bool:
        """Replay up to the topics' end (or the deadline); whether the end was reached."""
        assert self._events is not None and self._replay is not None
        for read, message in enumerate(self._events.drain(deadline or (lambda: False)), 1):
            self._replay.feed(message)
            if progress is not None and read % PROGRESS_EVERY == 0:
                progress(phase, self._replay.counts)
        self._replay.flush()
        if progress is not None:
            progress(phase, self._replay.counts)
        return self._events.at_end

    # -- 3. switch -----------------------------------------------------------------------

    def switch(self, progress: Progress | None = None) -> RebuildReport:
        """Hold, catch up, compare, switch (see the module doc); the report says whether it
        switched and, if not, why."""
        report = self._report()
        shadow = self._shadow
        assert shadow is not None
        options = self.options
        for _ in range(options.hold_attempts):
            self._catch_up(CATCHING_UP, progress)
            held = time.monotonic()
            try:
                shadow.hold(lock_timeout_s=options.max_hold_s)
            except HoldTimeout:
                report.notes.append(
                    f"the pipeline's batches held the lock over {options.max_hold_s:.0f}s"
                )
                continue
            report.holds += 1
            try:
                if not self._catch_up(HELD, progress, seconds_left(options.max_hold_s)):
                    report.notes.append(
                        f"ingest outran the catch-up for {options.max_hold_s:.0f}s; let go"
                    )
                    continue
                report.live = shadow.figures(shadow=False)
                report.rebuilt = shadow.figures(shadow=True)
                report.unreplayed = shadow.unreplayed()
                report.refusal = refusal(report.live, report.rebuilt, report.unreplayed)
                if report.refusal and not options.allow_history_loss:
                    return report
                assert self._erased_since is not None
                switching = time.monotonic()
                report.erased_rows = shadow.switch(self._erased_since)
                report.switch_s = time.monotonic() - switching
                report.switched = True
                return report
            finally:
                shadow.release()
                report.hold_s += time.monotonic() - held
        raise Unavailable(
            f"the rebuild of {self.tenant_id!r} did not catch up with its ingest within "
            f"{options.max_hold_s:.0f}s in {options.hold_attempts} attempts "
            f"({'; '.join(report.notes)}); run it again when ingest is lower",
            reason="REBUILD_OUTRUN",
        )

    def _report(self) -> RebuildReport:
        if self.report is None:
            raise RuntimeError("open the rebuild first")
        return self.report

    # -- 4. close ------------------------------------------------------------------------

    def close(self) -> None:
        """Drop the shadow, release the claim, close every connection; safe to call twice."""
        if self._events is not None:
            self._events.close()
            self._events = None
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                if self._shadow is not None and self._claimed:
                    self._shadow.drop()
            # Closing ends the session: its advisory locks (claim, hold) go with it.
            self._conn.close()
            self._conn = None
        if self._admin is not None:
            self._admin.close()
            self._admin = None

    def __enter__(self) -> Rebuild:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
