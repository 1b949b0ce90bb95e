"""Small synthetic inputs for the personalization tests."""

from __future__ import annotations

import itertools

from magnetar.personalization.records import EnrichedEvent

T0 = 1_700_000_000_000
_ids = itertools.count()


def event(
    type: str,
    item_id: str,
    *,
    user_id: str = "u1",
    session_id: str = "s1",
    at: int = T0,
    categories: tuple[str, ...] = (),
    event_id: str | None = None,
    tenant_id: str = "acme",
) -> EnrichedEvent:
    return EnrichedEvent(
        event_id=event_id if event_id is not None else f"e{next(_ids):08d}",
        tenant_id=tenant_id,
        user_id=user_id,
        session_id=session_id,
        type=type,
        item_id=item_id,
        occurred_at=at,
        categories=categories,
    )
