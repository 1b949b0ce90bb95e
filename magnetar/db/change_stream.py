"""The state's change stream: which users and catalog items a commit changed, sent with
PostgreSQL's NOTIFY on channel `CHANNEL`.

A writer calls `notify` inside its transaction: PostgreSQL delivers a notification only
when (and if) the transaction commits, to every session listening at that moment, in
commit order. So a listener that has seen a change knows the rows are committed. A
notification's payload is at most 8,000 bytes: the ids are split over several messages
(`MAX_PAYLOAD_BYTES` each), and a change naming more than `MAX_MESSAGES` messages' worth is
sent as one message meaning "anything of this tenant may have changed".

Payload (JSON): ``{"t": tenant, "u": [users], "i": [items]}`` or ``{"t": tenant, "all": 1}``.
`notify_everything` sends the latter on purpose: a rebuild's switch replaced every row of
the tenant (`magnetar.db.shadow_state`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

CHANNEL = "magnetar_state_changes"
# PostgreSQL refuses a payload of 8,000 bytes or more; the envelope fits in the margin.
MAX_PAYLOAD_BYTES = 7_800
MAX_MESSAGES = 8


@dataclass(frozen=True, slots=True)
class Change:
    """What one notification says changed in a tenant's state."""

    tenant_id: str
    users: tuple[str, ...] = ()
    items: tuple[str, ...] = ()
    # Anything of the tenant may have changed (too many ids to name).
    everything: bool = False


def _json(value: object) -> str:
    # ASCII only (json's default): one character per byte, so a length is a size in bytes.
    return json.dumps(value, separators=(",", ":"))


def _encoded(value: str) -> int:
    return len(_json(value)) + 1  # and its comma


def payloads(tenant_id: str, users: Iterable[str] = (), items: Iterable[str] = ()) -> list[str]:
    """The messages announcing that `users` and `items` of `tenant_id` changed."""
    users, items = sorted(set(users)), sorted(set(items))
    if not users and not items:
        return []
    envelope = len(_json({"t": tenant_id, "u": [], "i": []}))
    messages: list[tuple[list[str], list[str]]] = [([], [])]
    size = envelope
    for kind, ids in ((0, users), (1, items)):
        for value in ids:
            cost = _encoded(value)
            if size + cost > MAX_PAYLOAD_BYTES:
                messages.append(([], []))
                size = envelope
            messages[-1][kind].append(value)
            size += cost
    if len(messages) > MAX_MESSAGES or envelope > MAX_PAYLOAD_BYTES:
        return [everything(tenant_id)]
    return [_json({"t": tenant_id, "u": u, "i": i}) for u, i in messages]


def everything(tenant_id: str) -> str:
    """The message saying that anything of `tenant_id` may have changed."""
    return _json({"t": tenant_id, "all": 1})


def parse(payload: str) -> Change | None:
    """The change a payload announces; None for one this version cannot read."""
    try:
        message = json.loads(payload)
        tenant_id = message["t"]
        if not isinstance(tenant_id, str):
            return None
        if message.get("all"):
            return Change(tenant_id, everything=True)
        return Change(
            tenant_id,
            tuple(str(u) for u in message.get("u", ())),
            tuple(str(i) for i in message.get("i", ())),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def notify(
    conn: psycopg.Connection[Any],
    tenant_id: str,
    users: Sequence[str] = (),
    items: Sequence[str] = (),
) -> None:
    """Announce the changes on `conn`'s transaction (sent only if it commits)."""
    for payload in payloads(tenant_id, users, items):
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))


def notify_everything(conn: psycopg.Connection[Any], tenant_id: str) -> None:
    """Announce on `conn`'s transaction that anything of the tenant may have changed."""
    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, everything(tenant_id)))
