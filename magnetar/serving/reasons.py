"""Why an item is in a result: the core's one-line reason, made structured for clients.

The personalization core explains each result with a short sentence naming the item or the
category behind it ("bought together with tent", "popular in kitchen"). Clients want the
signal, the related item and the category as fields, and a sentence that names the related
item by its catalog title ("bought together with Blue Mug") rather than by its id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from magnetar.personalization.recommend import (
    CATEGORY,
    COVISITATION,
    REPEAT,
    TRENDING,
    Recommendation,
)


class ReasonKind(StrEnum):
    """Which signal put an item into a result (`magnetar.v1.ReasonKind` without prefix)."""

    CO_VISITATION = "CO_VISITATION"
    REPEAT_AFFINITY = "REPEAT_AFFINITY"
    CATEGORY_AFFINITY = "CATEGORY_AFFINITY"
    TRENDING = "TRENDING"


_KINDS = {
    COVISITATION: ReasonKind.CO_VISITATION,
    REPEAT: ReasonKind.REPEAT_AFFINITY,
    CATEGORY: ReasonKind.CATEGORY_AFFINITY,
    TRENDING: ReasonKind.TRENDING,
}

# The core's sentences, by the field their tail fills (see magnetar.personalization.recommend).
_RELATED_ITEM_PREFIXES = ("bought together with ", "viewed or bought with ", "viewed with ")
_CATEGORY_PREFIXES = ("popular in ",)


@dataclass(frozen=True, slots=True)
class Reason:
    kind: ReasonKind
    related_item_id: str = ""
    category: str = ""
    text: str = ""


@dataclass(frozen=True, slots=True)
class ServedItem:
    """One item of a response: id, blended score and why."""

    item_id: str
    score: float
    reason: Reason


def _tail(text: str, prefixes: tuple[str, ...]) -> str:
    for prefix in prefixes:
        if text.startswith(prefix):
            return text[len(prefix) :]
    return ""


def reason_of(recommendation: Recommendation) -> Reason:
    kind = _KINDS[recommendation.strategy]
    text = recommendation.reason
    if kind is ReasonKind.CO_VISITATION:
        return Reason(kind, related_item_id=_tail(text, _RELATED_ITEM_PREFIXES), text=text)
    if kind is ReasonKind.CATEGORY_AFFINITY:
        return Reason(kind, category=_tail(text, _CATEGORY_PREFIXES), text=text)
    return Reason(kind, text=text)


def served(recommendation: Recommendation) -> ServedItem:
    return ServedItem(recommendation.item_id, recommendation.score, reason_of(recommendation))


def titled(item: ServedItem, titles: Mapping[str, str]) -> ServedItem:
    """The item with its reason naming the related item by title, when the catalog has one."""
    related = item.reason.related_item_id
    title = titles.get(related, "") if related else ""
    if not title or not item.reason.text.endswith(related):
        return item
    text = item.reason.text[: -len(related)] + title
    return replace(item, reason=replace(item.reason, text=text))
