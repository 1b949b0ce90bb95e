"""The enriched interaction event the personalization core consumes.

The pipeline maps its Protobuf event onto `EnrichedEvent`; everything downstream of the
`enrich` function (fold, evaluation, workload sources) speaks only this type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from magnetar.event_contract import EventType

# Event types are the contract's labels (EVENT_TYPE_ADD_TO_CART -> "add_to_cart"), as plain
# strings so the core accepts types it does not weigh.
VIEW: Final = EventType.VIEW.label
CLICK: Final = EventType.CLICK.label
ADD_TO_CART: Final = EventType.ADD_TO_CART.label
REMOVE_FROM_CART: Final = EventType.REMOVE_FROM_CART.label
PURCHASE: Final = EventType.PURCHASE.label
ADD_TO_WISHLIST: Final = EventType.ADD_TO_WISHLIST.label
SHARE: Final = EventType.SHARE.label
# EVENT_TYPE_CANCEL: a cancelled or returned purchase line; the fold takes back what the
# purchase added (its affinity, and one purchase of the item).
CANCEL: Final = EventType.CANCEL.label
# Other wire types ("impression", "search", "rate") are accepted and weigh nothing: being
# shown an item or searching says little about interest in one item.

EVENT_TYPES: Final = (
    VIEW,
    CLICK,
    ADD_TO_CART,
    REMOVE_FROM_CART,
    PURCHASE,
    ADD_TO_WISHLIST,
    SHARE,
    CANCEL,
)


@dataclass(frozen=True, slots=True)
class EnrichedEvent:
    """One user interaction with one item, after de-duplication and enrichment.

    `user_id` is the account id, or an anonymous id (e.g. a device or session id) for visitors
    who are not signed in; the core treats both alike. `occurred_at` is epoch milliseconds on
    the client's clock; `categories` come from the catalog join (possibly empty).
    """

    event_id: str
    tenant_id: str
    user_id: str
    session_id: str
    type: str
    item_id: str
    occurred_at: int
    value: float = 0.0
    quantity: int = 1
    categories: tuple[str, ...] = ()
    price: float = 0.0
