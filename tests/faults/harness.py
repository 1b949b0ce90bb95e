"""The fault harness: tagged events in, a fault, a full drain, and an audit of Postgres state.

Every event carries its origin in its id — ``<tenant>:<producer>:<sequence>`` — so whatever
ends up in state can be traced back to one send. The :class:`SendLog` records what was sent
and what the broker acknowledged; after the fault and a full drain, :func:`audit` reads the
tenant's processed-event ledger and ``user_activity`` aggregates and reports:

* **lost** — acknowledged (accepted) events that are not counted;
* **duplicated** — counts in the aggregates beyond one per event;
* **unexpected** — counts nobody should see: ids we never sent, events the pipeline must
  reject (a share of every plan is invalid on purpose and must end in the DLQ), users we never
  used.

The invariant (docs/architecture.md, "Delivery guarantees"): after a full drain, each
accepted event is counted exactly once, nothing accepted is lost, nothing rejected is
counted. An event that was sent but never acknowledged (the broker died under it) may or may
not count; it may never count twice.

Every wait here is bounded in time; all traffic goes to the local stack.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import pulsar

from functions.batch_commit import LEDGER_OFF_GUARD
from functions.deployment import STAGES, PipelineOptions, TenantTopics, package_file, pipeline
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.pulsar_client import make_client
from magnetar.settings import Settings
from magnetar.topics import PIPELINE_FUNCTION, subscription_of
from magnetar.v1 import events_pb2
from tenants.functions_deploy import undeploy_pipeline, wait_running
from tenants.pulsar_setup import provision_pulsar
from tests.integration.pipeline_support import Pipeline

DAY_MS = 24 * 60 * 60 * 1000


def progress(message: str) -> None:
    """One line on stderr for each phase of a scenario: where a slow or stuck run was."""
    print(f"[faults {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class EventPlan:
    """The events one producer sends: ids, users, types, and which ones are invalid on purpose."""

    tenant: str
    producer: str
    count: int
    users: int = 40
    items: int = 60
    # Every `reject_every`-th event has a timestamp a day ahead: `enrich` must dead-letter it.
    reject_every: int = 50
    purchase_every: int = 7

    def event_id(self, seq: int) -> str:
        return f"{self.tenant}:{self.producer}:{seq:07d}"

    def user(self, seq: int) -> str:
        return f"u{seq % self.users:03d}"

    def rejected(self, seq: int) -> bool:
        return self.reject_every > 0 and seq % self.reject_every == self.reject_every - 1

    def purchase(self, seq: int) -> bool:
        return seq % self.purchase_every == 0

    def event(self, seq: int, now_ms: int) -> events_pb2.Event:
        kind = events_pb2.EVENT_TYPE_PURCHASE if self.purchase(seq) else events_pb2.EVENT_TYPE_VIEW
        message = events_pb2.Event(
            event_id=self.event_id(seq),
            user_id=self.user(seq),
            item_id=f"i{(seq * 7919) % self.items:03d}",
            type=kind,
        )
        message.occurred_at.FromMilliseconds(now_ms + (DAY_MS if self.rejected(seq) else 0))
        return message

    def parse(self, event_id: str) -> int | None:
        """The sequence of one of this plan's ids, else None."""
        tenant, _, rest = event_id.partition(":")
        producer, _, seq = rest.partition(":")
        if tenant != self.tenant or producer != self.producer or not seq.isdigit():
            return None
        value = int(seq)
        return value if 0 <= value < self.count else None

    def id_range(self, last_seq: int) -> tuple[str, str]:
        """Ledger keys of sequences 0..last_seq (ids sort like their zero-padded sequence)."""
        return self.event_id(0), self.event_id(last_seq)


class SendLog:
    """What was sent, acknowledged and retried; safe to update from client callbacks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent: set[int] = set()
        self.acked: set[int] = set()
        self.attempts = 0
        self.failures = 0
        self.highest_sent = -1

    def on_send(self, seq: int) -> None:
        with self._lock:
            self.sent.add(seq)
            self.attempts += 1
            self.highest_sent = max(self.highest_sent, seq)

    def on_ack(self, seq: int) -> None:
        with self._lock:
            self.acked.add(seq)

    def on_failure(self) -> None:
        with self._lock:
            self.failures += 1

    def snapshot(self) -> tuple[frozenset[int], frozenset[int]]:
        with self._lock:
            return frozenset(self.sent), frozenset(self.acked)


class Sender:
    """Sends a plan as an at-least-once client would: a send that fails is sent again.

    ``send_async`` with a bounded number in flight, optionally paced; the retry of a failed
    send is a new message with the same event id — exactly what a real client does when it
    cannot tell whether its first attempt was stored (broker dedup cannot see it; `dedupe`
    and the ledger must).
    """

    def __init__(
        self,
        producer_factory: Callable[[], Any],
        plan: EventPlan,
        log: SendLog,
        *,
        rate_per_s: float | None = None,
        max_in_flight: int = 500,
        deadline_s: float = 600,
    ) -> None:
        self._factory = producer_factory
        self._plan = plan
        self._log = log
        self._rate = rate_per_s
        self._max_in_flight = max_in_flight
        self._deadline = time.monotonic() + deadline_s
        self._cond = threading.Condition()
        self._retry: deque[int] = deque()
        self._in_flight = 0
        self._done = threading.Event()
        self._stopped = threading.Event()
        self._finishing = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="fault-sender", daemon=True)

    def start(self) -> Sender:
        self._thread.start()
        return self

    def wait_sent(self, seq: int, timeout_s: float = 120) -> None:
        """Block until `seq` has been sent at least once."""
        deadline = time.monotonic() + timeout_s
        while self._log.highest_sent < seq:
            if self._done.is_set() or time.monotonic() > deadline:
                raise AssertionError(f"sender did not reach event {seq}: {self.error!r}")
            time.sleep(0.02)

    def finish(self) -> None:
        """Send nothing new from now on; what is in flight or waits for a retry still goes.

        For a stream that must flow for as long as a fault lasts: the plan's count is then
        only an upper bound, and the audit goes by what was sent and acknowledged."""
        self._finishing.set()
        with self._cond:
            self._cond.notify_all()

    def stop(self) -> None:
        """Give up: stop sending (the scenario ran out of time or failed)."""
        self._stopped.set()
        with self._cond:
            self._cond.notify_all()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self.stop()
            raise AssertionError(
                f"sender not done in {timeout_s:.0f}s: {len(self._log.acked)} of "
                f"{self._plan.count} acknowledged, {self._log.failures} failed sends"
            )
        if self.error is not None:
            raise AssertionError(f"sender failed: {self.error!r}")

    def _main(self) -> None:
        try:
            self._send_all()
        except BaseException as exc:  # reported by join()
            self.error = exc
        finally:
            self._done.set()

    def _callback(self, seq: int) -> Callable[[Any, Any], None]:
        def done(result: Any, _message_id: Any) -> None:
            with self._cond:
                self._in_flight -= 1
                if result == pulsar.Result.Ok:
                    self._log.on_ack(seq)
                else:
                    self._log.on_failure()
                    self._retry.append(seq)
                self._cond.notify_all()

        return done

    def _next(self, fresh: Iterator[int]) -> int | None:
        """The next sequence to send (retries first), waiting for room in flight."""
        with self._cond:
            while True:
                if self._stopped.is_set():
                    raise TimeoutError("stopped")
                if time.monotonic() > self._deadline:
                    raise TimeoutError(f"{len(self._log.acked)} of the plan acknowledged")
                if self._in_flight < self._max_in_flight:
                    if self._retry:
                        return self._retry.popleft()
                    seq = None if self._finishing.is_set() else next(fresh, None)
                    if seq is not None:
                        return seq
                    if self._in_flight == 0:
                        return None
                self._cond.wait(0.1)

    def _send_all(self) -> None:
        producer = self._factory()
        plan = self._plan
        fresh = iter(range(plan.count))
        started = time.monotonic()
        sent = 0
        try:
            while (seq := self._next(fresh)) is not None:
                if self._rate:
                    pause = started + sent / self._rate - time.monotonic()
                    if pause > 0:
                        self._stopped.wait(pause)
                now_ms = int(time.time() * 1000)
                with self._cond:
                    self._in_flight += 1
                self._log.on_send(seq)
                sent += 1
                try:
                    producer.send_async(
                        plan.event(seq, now_ms),
                        self._callback(seq),
                        partition_key=plan.user(seq),
                        event_timestamp=now_ms,
                    )
                except Exception:
                    # The client refused outright (queue full, reconnecting): retry later.
                    with self._cond:
                        self._in_flight -= 1
                        self._retry.append(seq)
                    self._log.on_failure()
                    time.sleep(0.2)
            producer.flush()
        finally:
            producer.close()


@dataclass(frozen=True)
class Audit:
    """What the fault did to the invariant."""

    sent: int
    acked: int
    # Acknowledged events the pipeline must accept (the invalid share excluded).
    accepted: int
    counted: int
    lost: int
    duplicated: int
    unexpected: int
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.unexpected == 0


def audit(pipe: Pipeline, plan: EventPlan, log: SendLog, *, ledger: bool = True) -> Audit:
    """Compare what was acknowledged with what Postgres counted (ledger and aggregates).

    With the ledger on, the ledger is the truth of what counted and every user's
    ``user_activity`` must agree with it exactly (more = duplicated, fewer = lost). With the
    ledger off (control runs) only the aggregates remain, so duplicated is a lower bound:
    counts beyond every event ever sent for that user.
    """
    sent, acked = log.snapshot()
    valid_sent = {s for s in sent if not plan.rejected(s)}
    accepted = {s for s in acked if not plan.rejected(s)}

    ledger_ids = [row[0] for row in pipe.query("SELECT event_id FROM processed_events")]
    activity = {
        str(user): (int(events), int(purchases))
        for user, events, purchases in pipe.query(
            "SELECT user_id, events, purchases FROM user_activity"
        )
    }
    counted_seqs: set[int] = set()
    unknown_ids: list[str] = []
    rejected_counted: list[int] = []
    for event_id in ledger_ids:
        seq = plan.parse(event_id)
        if seq is None or seq not in sent:
            unknown_ids.append(event_id)
        elif plan.rejected(seq):
            rejected_counted.append(seq)
        else:
            counted_seqs.add(seq)

    users = {plan.user(s) for s in range(plan.count)}
    unknown_users = sorted(set(activity) - users)

    # The aggregates must agree with the whole ledger, wrongly counted events included (those
    # are reported once, as unexpected, not again as duplicates).
    in_ledger = counted_seqs | set(rejected_counted)
    by_user_ledger = Counter(plan.user(s) for s in in_ledger)
    by_user_ledger_purchases = Counter(plan.user(s) for s in in_ledger if plan.purchase(s))
    by_user_sent = Counter(plan.user(s) for s in valid_sent)
    by_user_sent_purchases = Counter(plan.user(s) for s in valid_sent if plan.purchase(s))
    by_user_accepted = Counter(plan.user(s) for s in accepted)

    duplicated = 0
    lost_in_aggregates = 0
    for user in users:
        events, purchases = activity.get(user, (0, 0))
        if ledger:
            excess = max(events - by_user_ledger[user], purchases - by_user_ledger_purchases[user])
            missing = max(by_user_ledger[user] - events, by_user_ledger_purchases[user] - purchases)
        else:
            excess = max(events - by_user_sent[user], purchases - by_user_sent_purchases[user])
            missing = max(0, by_user_accepted[user] - events)
        duplicated += max(0, excess)
        lost_in_aggregates += max(0, missing)

    lost = len(accepted - counted_seqs) + lost_in_aggregates if ledger else lost_in_aggregates
    unexpected = len(unknown_ids) + len(rejected_counted) + len(unknown_users)
    return Audit(
        sent=len(sent),
        acked=len(acked),
        accepted=len(accepted),
        counted=sum(events for events, _ in activity.values()),
        lost=lost,
        duplicated=duplicated,
        unexpected=unexpected,
        details={
            "lost_ids": sorted(accepted - counted_seqs)[:10] if ledger else [],
            "unknown_ids": unknown_ids[:10],
            "rejected_counted": rejected_counted[:10],
            "unknown_users": unknown_users[:10],
            "send_attempts": log.attempts,
            "send_failures": log.failures,
            "ledger_rows": len(ledger_ids),
        },
    )


def _subscription_lag(admin: PulsarAdmin, topics: TenantTopics) -> dict[str, int]:
    """Per pipeline Function, the messages its subscription has not acknowledged yet (-1: no
    subscription)."""
    lag: dict[str, int] = {}
    for stage, topic in ((PIPELINE_FUNCTION, topics.raw),):
        subscriptions = admin.topic_stats(topic, partitioned=True).get("subscriptions", {})
        # The worker names a function's subscription `<tenant>/<namespace>/<function>` unless
        # the config's `subName` says otherwise.
        subscription = subscriptions.get(subscription_of(stage)) or subscriptions.get(
            f"{topics.events_namespace}/{stage}"
        )
        if subscription is None:
            lag[stage] = -1
            continue
        # The backlog alone: it counts every message after the cursor's mark-delete position
        # that is not acknowledged, delivered or not. The broker's per-consumer
        # `unackedMessages` can stay above 0 after everything was acknowledged (seen after a
        # PostgreSQL restart: 416 "unacked" with the cursor's mark-delete position at the
        # last entry), and a drain waiting for it never ends.
        lag[stage] = int(subscription.get("msgBacklog", 0))
    return lag


def drain(
    pipe: Pipeline,
    plan: EventPlan,
    log: SendLog,
    *,
    ledger: bool = True,
    timeout_s: float = 240,
    quiet_s: float = 3.0,
) -> float:
    """Wait for a full drain: every accepted event counted (aggregates at least that far when
    the ledger is off), no backlog or unacknowledged message in any stage, and counts unchanged
    for `quiet_s`. Returns the seconds it took; raises when `timeout_s` passes first."""
    started = time.monotonic()
    deadline = started + timeout_s
    _, acked = log.snapshot()
    accepted = sum(1 for s in acked if not plan.rejected(s))
    stable_since: float | None = None
    last: tuple[int, int] | None = None
    figures: tuple[int, int, dict[str, int]] = (0, 0, {})
    while time.monotonic() < deadline:
        counted = pipe.counted()
        total = int(pipe.query("SELECT coalesce(sum(events), 0) FROM user_activity")[0][0])
        lag = _subscription_lag(pipe.admin, pipe.topics)
        figures = (counted, total, lag)
        reached = (counted if ledger else total) >= accepted
        idle = bool(lag) and all(v == 0 for v in lag.values())
        if reached and idle and last == (counted, total):
            if stable_since is None:
                stable_since = time.monotonic()
            elif time.monotonic() - stable_since >= quiet_s:
                return time.monotonic() - started
        else:
            stable_since = None
        last = (counted, total)
        time.sleep(0.5)
    counted, total, lag = figures
    raise AssertionError(
        f"no full drain in {timeout_s:.0f}s: ledger {counted}, aggregates {total}, "
        f"accepted {accepted}, unacknowledged per stage {lag} (-1: no subscription)"
    )


class RecoveryProbe:
    """Times a fault: how long it lasted, and how long the pipeline took to catch up after.

    *Fault* = from injection until the fault is healed (the instance is back, the server
    restarted, SIGCONT sent). *Catch-up* = from then until every accepted event sent before
    the fault is counted: the work the fault interrupted has been redone. Samples the ledger
    every 0.25 s in a thread; the target is known only at the end (late acknowledgements),
    so the answer is computed from the samples afterwards.
    """

    def __init__(self, pipe: Pipeline, plan: EventPlan, *, limit_s: float = 1800) -> None:
        self._pipe = pipe
        self._plan = plan
        self._limit_s = limit_s
        self._samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.fault_at = 0.0
        self.healed_at: float | None = None
        self.fault_seq = -1

    def start(self, fault_seq: int) -> None:
        self.fault_at = time.monotonic()
        self.fault_seq = fault_seq
        self._thread = threading.Thread(target=self._sample, name="recovery-probe", daemon=True)
        self._thread.start()

    def healed(self) -> None:
        self.healed_at = time.monotonic()

    def _sample(self) -> None:
        low, high = self._plan.id_range(self.fault_seq)
        while not self._stop.is_set() and time.monotonic() - self.fault_at < self._limit_s:
            try:
                rows = self._pipe.query(
                    "SELECT count(*) FROM processed_events WHERE event_id BETWEEN %s AND %s",
                    low,
                    high,
                )
                self._samples.append((time.monotonic(), int(rows[0][0])))
            except Exception:
                pass  # PostgreSQL may be the thing that is down; sample again.
            self._stop.wait(0.25)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    @property
    def fault_s(self) -> float | None:
        return None if self.healed_at is None else self.healed_at - self.fault_at

    def catch_up_s(self, log: SendLog) -> float | None:
        """Seconds from healing until the events accepted before the fault were all counted
        (0 when that happened before the fault was even healed); None if never."""
        _, acked = log.snapshot()
        target = sum(1 for s in acked if s <= self.fault_seq and not self._plan.rejected(s))
        healed = self.healed_at if self.healed_at is not None else self.fault_at
        for at, counted in self._samples:
            if counted >= target:
                return max(0.0, at - healed)
        return None


def deployer(
    *,
    ack_timeout_ms: int | None = None,
    dedupe_window_ms: int | None = None,
    ledger: bool = True,
) -> Callable[[PulsarAdmin, str, PipelineOptions], Mapping[str, dict[str, Any]]]:
    """Deploys a tenant's pipeline with fault-suite settings; ``ledger=False`` deploys the
    control variant (pipeline user config ``"ledger": "off"`` with its guard)."""

    def deploy(
        admin: PulsarAdmin, tenant: str, options: PipelineOptions
    ) -> Mapping[str, dict[str, Any]]:
        if ack_timeout_ms is not None:
            options = replace(options, ack_timeout_ms=ack_timeout_ms)
        if dedupe_window_ms is not None:
            options = replace(options, dedupe_window_ms=dedupe_window_ms)
        configs = pipeline(TenantTopics(tenant), options)
        if not ledger:
            key, value = LEDGER_OFF_GUARD
            configs[PIPELINE_FUNCTION]["userConfig"] |= {"ledger": "off", key: value}
        for stage in STAGES:
            admin.create_function(configs[stage], package_file(stage))
        return configs

    return deploy


@contextmanager
def fault_pipeline(
    settings: Settings,
    admin: PulsarAdmin,
    *,
    prefix: str = "flt",
    ack_timeout_ms: int | None = None,
    dedupe_window_ms: int | None = None,
    ledger: bool = True,
) -> Iterator[Pipeline]:
    """A fresh tenant with its pipeline deployed and running, removed afterwards (like
    `tests.integration.pipeline_support.running_pipeline`, with the fault suite's options)."""
    tenant = f"{prefix}-{uuid.uuid4().hex[:8]}"
    record_tenant(tenant)
    topics = provision_pulsar(admin, tenant)
    options = PipelineOptions(database_url_file=settings.functions_database_url_file)
    deploy = deployer(
        ack_timeout_ms=ack_timeout_ms, dedupe_window_ms=dedupe_window_ms, ledger=ledger
    )
    try:
        wait_running(admin, tenant, deploy(admin, tenant, options))
        # Warnings only (make_client's default): INFO would bury the report in reconnects.
        client = make_client(settings.pulsar_service_url, settings.pulsar_admin_token)
        try:
            yield Pipeline(settings, admin, topics, client)
        finally:
            client.close()
    finally:
        try:
            remove_tenant(admin, tenant)
        except Exception as exc:
            # The scenario's results stand; the tenant is left over (the isolated runner
            # removes it again afterwards).
            progress(f"could not remove tenant {tenant}: {exc!r}"[:500])


# When set, every tenant a scenario creates is appended to this file, so that the process
# that started the scenario can remove them even when the scenario's own clean-up never ran
# (see `tests.faults.isolated`).
TENANT_LOG_ENV = "MAGNETAR_FAULT_TENANT_LOG"


def record_tenant(tenant: str) -> None:
    path = os.environ.get(TENANT_LOG_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(tenant + "\n")


def remove_tenant(admin: PulsarAdmin, tenant: str) -> None:
    """Undeploy the tenant's pipeline and delete the tenant with its namespaces (the admin
    client rides out the broker's "Directory not empty" race)."""
    if tenant in admin.tenants():
        undeploy_pipeline(admin, tenant)
        admin.delete_tenant(tenant)
