"""Per-tenant personalization settings: how events become signals, and how signals blend.

Both are frozen dataclasses with defaults so a tenant that configures nothing gets sensible
behaviour, and so a settings value can be shared across threads and used as a cache key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from magnetar.personalization import records
from magnetar.personalization.decay import DAY_MS, HOUR_MS
from magnetar.personalization.errors import UnknownWindow


@dataclass(frozen=True, slots=True)
class EventWeights:
    """How much one event of each type says about a user's interest in an item.

    Interest grows along the funnel (view < click < add-to-cart < purchase). Undoing an action
    counts against the interest it expressed: a removal from the cart takes back half of the
    add-to-cart, a cancellation (or return) takes back the purchase in full. Negative events
    only ever move affinities; they never create co-visitation pairs or popularity, because
    "removed A" says nothing about A going with B, nor about A being in demand.
    Types without a weight here (impressions, searches, ratings) weigh nothing and are only
    counted in the user's activity.
    """

    view: float = 1.0
    click: float = 2.0
    add_to_cart: float = 4.0
    purchase: float = 8.0
    remove_from_cart: float = -2.0
    cancel: float = -8.0
    add_to_wishlist: float = 3.0
    share: float = 2.0

    def of(self, event_type: str) -> float:
        if event_type == records.VIEW:
            return self.view
        if event_type == records.CLICK:
            return self.click
        if event_type == records.ADD_TO_CART:
            return self.add_to_cart
        if event_type == records.PURCHASE:
            return self.purchase
        if event_type == records.REMOVE_FROM_CART:
            return self.remove_from_cart
        if event_type == records.CANCEL:
            return self.cancel
        if event_type == records.ADD_TO_WISHLIST:
            return self.add_to_wishlist
        if event_type == records.SHARE:
            return self.share
        return 0.0


DEFAULT_TRENDING_WINDOWS: tuple[tuple[str, int], ...] = (
    ("1h", HOUR_MS),
    ("24h", DAY_MS),
    ("7d", 7 * DAY_MS),
)


@dataclass(frozen=True, slots=True)
class SignalSettings:
    """How the fold turns events into stored signals; the reader must use the same values.

    A trending window is a popularity counter that decays with the window's length as its
    half-life, so "24h" weighs the last day most without a hard cut-off at 24 hours.
    """

    weights: EventWeights = field(default_factory=EventWeights)
    # User->item and user->category affinity.
    affinity_half_life_ms: int = 30 * DAY_MS
    covisitation_half_life_ms: int = 60 * DAY_MS
    trending_windows: tuple[tuple[str, int], ...] = DEFAULT_TRENDING_WINDOWS
    # Each event pairs with at most this many distinct earlier items of its session, which
    # bounds the co-visitation writes an event can cause to 2 * pair_window rows.
    pair_window: int = 5
    recent_items_limit: int = 50

    def __post_init__(self) -> None:
        if self.affinity_half_life_ms <= 0 or self.covisitation_half_life_ms <= 0:
            raise ValueError("half-lives must be positive")
        if not self.trending_windows or any(h <= 0 for _, h in self.trending_windows):
            raise ValueError("trending windows need positive half-lives")
        if self.pair_window < 0 or self.recent_items_limit < 1:
            raise ValueError("pair_window must be >= 0 and recent_items_limit >= 1")

    def window_half_life_ms(self, window: str) -> int:
        for name, half_life in self.trending_windows:
            if name == window:
                return half_life
        known = ", ".join(name for name, _ in self.trending_windows)
        raise UnknownWindow(f"unknown trending window {window!r} (known: {known})")


@dataclass(frozen=True, slots=True)
class BlendWeights:
    """Relative weight of each candidate strategy in the blended score.

    Each strategy's scores are normalised to [0, 1] before blending, so these weights compare
    strategies, not units. The defaults are what tuning on the validation split of the
    Online Retail evaluation kept choosing (docs/quality.md): a user's own history first,
    what goes with it second, popularity as a tie-breaker.
    """

    covisitation: float = 0.5
    repeat: float = 1.0
    category: float = 0.2
    trending: float = 0.2

    def __post_init__(self) -> None:
        if min(self.covisitation, self.repeat, self.category, self.trending) < 0:
            raise ValueError("blend weights must not be negative")


@dataclass(frozen=True, slots=True)
class RecommendSettings:
    """A tenant's serving knobs: blend weights and how wide each strategy looks."""

    blend: BlendWeights = field(default_factory=BlendWeights)
    trending_window: str = "7d"
    # Most recent items of the user that seed co-visitation candidates.
    seed_items: int = 10
    neighbours_per_seed: int = 30
    top_categories: int = 3
    candidates_per_strategy: int = 100
    max_k: int = 100


@dataclass(frozen=True, slots=True)
class TenantPersonalization:
    """Everything per tenant in one value: what the materializer and the gateway both read."""

    signals: SignalSettings = field(default_factory=SignalSettings)
    recommend: RecommendSettings = field(default_factory=RecommendSettings)

    def __post_init__(self) -> None:
        # Fail when the settings are built, not on the first request that needs the window.
        self.signals.window_half_life_ms(self.recommend.trending_window)
