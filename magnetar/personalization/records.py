"""The enriched interaction event the personalization core consumes.

The pipeline maps its Protobuf event onto `EnrichedEvent`; everything downstream of the
`enrich` function (fold, evaluation, workload sources) speaks only this type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# Event types are the lower-case names of magnetar.v1.EventType without the prefix
# (EVENT_TYPE_ADD_TO_CART -> "add_to_cart"), as plain strings so the mapping from the wire
# enum stays in one place (the pipeline) and the core accepts types it does not weigh.
VIEW: Final = "view"
CLICK: Final = "click"
ADD_TO_CART: Final = "add_to_cart"
REMOVE_FROM_CART: Final = "remove_from_cart"
PURCHASE: Final = "purchase"
ADD_TO_WISHLIST: Final = "add_to_wishlist"
SHARE: Final = "share"
# EVENT_TYPE_CANCEL: a cancelled or returned purchase line; the fold takes back what the
# purchase added (its affinity, and one purchase of the item).
CANCEL: Final = "cancel"
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
