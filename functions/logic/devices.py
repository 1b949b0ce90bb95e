"""Device type, browser and OS from a user agent string, with ua-parser and an LRU cache.

ua-parser (the maintained uap-core rules, 1.x API) names the browser, the OS and the device
*model*; it does not say whether that is a phone, a tablet or a desktop, so
:func:`classify_device` derives the type from what it found (rules documented there).
Parsing runs a few hundred regular expressions, about a millisecond per string, while a
site's traffic repeats a small set of user agents — so results are cached by user agent
string in a bounded LRU. The parser is built once per :class:`DeviceParser` (loading the
rules takes a fraction of a second); build it in the Function's setup, not per event.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum

from ua_parser import OS, BasicResolver, Device, Parser, Result, UserAgent, load_builtins

from magnetar.event_contract import MAX_USER_AGENT_BYTES

# The contract's limit: real user agents stay far below it; longer strings are junk or
# attacks, and truncating them keeps both regex time and cache memory bounded.
MAX_USER_AGENT_LENGTH = MAX_USER_AGENT_BYTES

_OTHER = "Other"  # ua-parser's family when nothing matched
_MOBILE_OS = frozenset(
    {"iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "Firefox OS", "Symbian OS"}
)
_DESKTOP_OS = frozenset(
    {
        "Windows",
        "Mac OS X",
        "Linux",
        "Ubuntu",
        "Fedora",
        "Debian",
        "Chrome OS",
        "FreeBSD",
        "OpenBSD",
        "NetBSD",
        "Solaris",
    }
)
_CONSOLE = re.compile(r"playstation|xbox|nintendo|\bwii\b", re.IGNORECASE)
_WEARABLE = re.compile(r"\bwatch\b|wear ?os", re.IGNORECASE)
_TV = re.compile(r"\btv\b|smart-?tv|appletv|googletv|hbbtv|crkey|roku", re.IGNORECASE)
_TABLET_DEVICES = ("ipad", "kindle", "tablet", "playbook", "nexus 7", "nexus 9", "nexus 10")


class DeviceType(StrEnum):
    """``magnetar.v1.DeviceType`` values, lower-case without the prefix."""

    UNKNOWN = ""
    DESKTOP = "desktop"
    MOBILE = "mobile"
    TABLET = "tablet"
    TV = "tv"
    CONSOLE = "console"
    WEARABLE = "wearable"


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What the user agent tells (``magnetar.v1.DeviceInfo``); empty where nothing matched."""

    device_type: DeviceType
    # A known crawler: its events carry no personal signal.
    is_bot: bool
    browser: str
    # Major versions only: minor versions multiply distinct values without telling more.
    browser_version: str
    os: str
    os_version: str
    # Brand and model, e.g. "Apple iPhone".
    device_model: str


NO_DEVICE = DeviceInfo(DeviceType.UNKNOWN, False, "", "", "", "", "")


def _family(found: UserAgent | OS | None) -> str:
    if found is None or found.family == _OTHER:
        return ""
    return found.family


def _major(found: UserAgent | OS | None) -> str:
    if found is None or found.family == _OTHER:
        return ""
    return found.major or ""


def _model(device: Device | None) -> str:
    if device is None or device.family in (_OTHER, "Spider"):
        return ""
    # ua-parser's placeholder brands ("Generic_Android", "Generic_Android_Tablet",
    # "Generic Smartphone") name no maker.
    brand = "" if not device.brand or device.brand.startswith("Generic") else device.brand
    model = device.model or device.family
    if brand and model.startswith(brand):
        return model
    return f"{brand} {model}".strip()


def classify_device(user_agent: str, result: Result) -> DeviceType:
    """The kind of device, first rule that applies:

    console (PlayStation, Xbox, Nintendo) → TV (a TV marker in the device name or the
    string) → wearable (a watch) → tablet (iPad, Kindle, "tablet" devices, ua-parser's
    generic Android tablet, or Android without the ``Mobile`` token, which Android phones'
    browsers send) → mobile (a mobile OS or a ``Mobile`` token) → desktop (a desktop OS) →
    unknown. iPadOS Safari announces itself as a Mac and is counted as desktop; no
    string-based parser can tell it apart. Crawlers get a type by the same rules (most say
    nothing and are unknown); :attr:`DeviceInfo.is_bot` is what marks them.
    """
    device = result.device
    device_name = f"{device.family} {device.model or ''}".lower() if device else ""
    os_family = result.os.family if result.os else ""
    if _CONSOLE.search(device_name) or _CONSOLE.search(user_agent):
        return DeviceType.CONSOLE
    if _TV.search(device_name) or _TV.search(user_agent):
        return DeviceType.TV
    if _WEARABLE.search(device_name) or _WEARABLE.search(user_agent):
        return DeviceType.WEARABLE
    if (
        any(name in device_name for name in _TABLET_DEVICES)
        or (device is not None and device.brand == "Generic_Android_Tablet")
        or (os_family == "Android" and "Mobile" not in user_agent)
    ):
        return DeviceType.TABLET
    if os_family in _MOBILE_OS or "Mobile" in user_agent:
        return DeviceType.MOBILE
    if os_family in _DESKTOP_OS:
        return DeviceType.DESKTOP
    return DeviceType.UNKNOWN


def is_bot(result: Result) -> bool:
    """ua-parser files crawlers under the device family ``Spider``."""
    return result.device is not None and result.device.family == "Spider"


@dataclass(slots=True)
class DeviceCacheStats:
    hits: int = 0
    misses: int = 0


class DeviceParser:
    """``parse(user_agent) -> DeviceInfo`` with an LRU of ``cache_size`` user agents.

    Not thread-safe (the cache is an ordered dict); one per Function instance.
    """

    def __init__(self, cache_size: int = 10_000, parser: Parser | None = None) -> None:
        if cache_size <= 0:
            raise ValueError("cache_size must be positive")
        # Our own LRU sits in front of an uncached resolver: ua-parser's default resolver
        # stack caches too, and two caches of the same strings would only double the memory.
        self._parser = parser or Parser(BasicResolver(load_builtins()))
        self._cache_size = cache_size
        self._cache: OrderedDict[str, DeviceInfo] = OrderedDict()
        self.stats = DeviceCacheStats()

    def __len__(self) -> int:
        return len(self._cache)

    def parse(self, user_agent: str) -> DeviceInfo:
        user_agent = user_agent.strip()[:MAX_USER_AGENT_LENGTH]
        if not user_agent:
            return NO_DEVICE
        info = self._cache.get(user_agent)
        if info is not None:
            self.stats.hits += 1
            self._cache.move_to_end(user_agent)
            return info
        self.stats.misses += 1
        info = self._parse_uncached(user_agent)
        self._cache[user_agent] = info
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return info

    def _parse_uncached(self, user_agent: str) -> DeviceInfo:
        result = self._parser.parse(user_agent)
        return DeviceInfo(
            device_type=classify_device(user_agent, result),
            is_bot=is_bot(result),
            browser=_family(result.user_agent),
            browser_version=_major(result.user_agent),
            os=_family(result.os),
            os_version=_major(result.os),
            device_model=_model(result.device),
        )
