from __future__ import annotations

import pytest
from ua_parser import OS, BasicResolver, Device, Parser, Result, UserAgent, load_builtins

from functions.logic.devices import (
    MAX_USER_AGENT_LENGTH,
    NO_DEVICE,
    DeviceInfo,
    DeviceParser,
    DeviceType,
    classify_device,
)

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1"
)
IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1"
)
PIXEL = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36"
)
GALAXY_TAB = (
    "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
KINDLE = (
    "Mozilla/5.0 (Linux; Android 9; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Silk/120.3.1 like Chrome/120.0.6099.115 Safari/537.36"
)
EDGE_ON_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0"
)
SAFARI_ON_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Safari/605.1.15"
)
FIREFOX_ON_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
CHROMEBOOK = (
    "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
SAMSUNG_TV = (
    "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/538.1 "
    "(KHTML, like Gecko) Version/6.0 TV Safari/538.1"
)
XBOX = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; Xbox; Xbox One) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edge/44.18363.8131"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


@pytest.fixture(scope="module")
def ua_rules() -> Parser:
    # Loading the rules takes a fraction of a second; once per module is enough.
    return Parser(BasicResolver(load_builtins()))


@pytest.fixture
def parser(ua_rules: Parser) -> DeviceParser:
    return DeviceParser(parser=ua_rules)


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        (
            IPHONE,
            DeviceInfo(
                DeviceType.MOBILE, False, "Mobile Safari", "17", "iOS", "17", "Apple iPhone"
            ),
        ),
        (
            IPAD,
            DeviceInfo(DeviceType.TABLET, False, "Mobile Safari", "16", "iOS", "16", "Apple iPad"),
        ),
        (
            PIXEL,
            DeviceInfo(
                DeviceType.MOBILE, False, "Chrome Mobile", "120", "Android", "14", "Google Pixel 8"
            ),
        ),
        (
            GALAXY_TAB,
            DeviceInfo(DeviceType.TABLET, False, "Chrome", "120", "Android", "13", "SM-X700"),
        ),
        (
            KINDLE,
            DeviceInfo(
                DeviceType.TABLET, False, "Amazon Silk", "120", "Android", "9", "Amazon Kindle"
            ),
        ),
        (
            EDGE_ON_WINDOWS,
            DeviceInfo(DeviceType.DESKTOP, False, "Edge", "120", "Windows", "10", ""),
        ),
        (
            SAFARI_ON_MAC,
            DeviceInfo(DeviceType.DESKTOP, False, "Safari", "17", "Mac OS X", "10", "Apple Mac"),
        ),
        (
            FIREFOX_ON_LINUX,
            DeviceInfo(DeviceType.DESKTOP, False, "Firefox", "121", "Linux", "", ""),
        ),
        (
            CHROMEBOOK,
            DeviceInfo(DeviceType.DESKTOP, False, "Chrome", "120", "Chrome OS", "14541", ""),
        ),
        (
            SAMSUNG_TV,
            DeviceInfo(DeviceType.TV, False, "Safari", "6", "Tizen", "6", "Samsung SMART-TV"),
        ),
        (GOOGLEBOT, DeviceInfo(DeviceType.UNKNOWN, True, "Googlebot", "2", "", "", "")),
    ],
)
def test_real_user_agents_parse_to_device_browser_and_os(
    parser: DeviceParser, user_agent: str, expected: DeviceInfo
) -> None:
    assert parser.parse(user_agent) == expected


def test_game_console_is_a_console_although_it_runs_windows(parser: DeviceParser) -> None:
    assert parser.parse(XBOX).device_type is DeviceType.CONSOLE


def test_missing_user_agent_gives_empty_fields_without_parsing(parser: DeviceParser) -> None:
    misses = parser.stats.misses

    assert parser.parse("") == NO_DEVICE
    assert parser.parse("   ") == NO_DEVICE
    assert parser.stats.misses == misses


def test_unrecognisable_user_agent_gives_empty_fields(parser: DeviceParser) -> None:
    assert parser.parse("garbage!!") == NO_DEVICE


def test_repeated_user_agent_is_served_from_the_cache(parser: DeviceParser) -> None:
    parser.parse(EDGE_ON_WINDOWS)
    hits, misses = parser.stats.hits, parser.stats.misses

    parser.parse(EDGE_ON_WINDOWS)

    assert (parser.stats.hits, parser.stats.misses) == (hits + 1, misses)


def test_cache_evicts_the_least_recently_used_user_agent(ua_rules: Parser) -> None:
    small = DeviceParser(cache_size=2, parser=ua_rules)
    small.parse(IPHONE)
    small.parse(PIXEL)
    small.parse(IPHONE)  # IPHONE is now the most recently used
    small.parse(IPAD)  # evicts PIXEL

    assert len(small) == 2
    misses = small.stats.misses
    small.parse(IPHONE)
    assert small.stats.misses == misses
    small.parse(PIXEL)
    assert small.stats.misses == misses + 1


def test_overlong_user_agents_are_cut_so_they_share_one_cache_entry(ua_rules: Parser) -> None:
    small = DeviceParser(cache_size=10, parser=ua_rules)
    padded = IPHONE + " " * MAX_USER_AGENT_LENGTH

    small.parse(padded + "A")
    small.parse(padded + "B")

    assert len(small) == 1


def test_cache_size_must_be_positive(ua_rules: Parser) -> None:
    with pytest.raises(ValueError):
        DeviceParser(cache_size=0, parser=ua_rules)


def test_default_parser_loads_the_builtin_rules() -> None:
    assert DeviceParser().parse(IPHONE).os == "iOS"


def result(
    os_family: str | None, device_family: str | None = None, brand: str | None = None
) -> Result:
    return Result(
        user_agent=UserAgent("Browser"),
        os=OS(os_family) if os_family else None,
        device=Device(device_family, brand) if device_family else None,
        string="",
    )


@pytest.mark.parametrize(
    ("user_agent", "parsed", "expected"),
    [
        # Android phones' browsers send "Mobile"; Android tablets' do not.
        ("Android Mobile", result("Android"), DeviceType.MOBILE),
        ("Android", result("Android"), DeviceType.TABLET),
        ("", result("Android", "SM-X700", "Generic_Android_Tablet"), DeviceType.TABLET),
        ("", result("Windows Phone"), DeviceType.MOBILE),
        ("x Mobile y", result(None), DeviceType.MOBILE),
        ("", result("Ubuntu"), DeviceType.DESKTOP),
        # iPadOS Safari claims to be a Mac: desktop, a documented limit.
        ("", result("Mac OS X", "Mac", "Apple"), DeviceType.DESKTOP),
        ("", result("Linux", "Apple Watch"), DeviceType.WEARABLE),
        ("", result("Orbis OS", "PlayStation 4"), DeviceType.CONSOLE),
        ("AppleTV11,1/11.1", result("tvOS"), DeviceType.TV),
        ("", result(None), DeviceType.UNKNOWN),
    ],
)
def test_device_type_rules(user_agent: str, parsed: Result, expected: DeviceType) -> None:
    assert classify_device(user_agent, parsed) is expected
