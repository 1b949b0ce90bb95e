"""tenants.origins: origins kept in the browser's spelling, bad ones named by index."""

from __future__ import annotations

import pytest

from tenants.origins import MAX_ALLOWED_ORIGINS, canonical_origin, origin_violations


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("https://shop.example.com", "https://shop.example.com"),
        ("HTTPS://Shop.Example.COM/", "https://shop.example.com"),
        ("https://shop.example.com:443", "https://shop.example.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://[::1]:3000", "http://[::1]:3000"),
    ],
)
def test_origins_are_kept_as_a_browser_sends_them(given: str, kept: str) -> None:
    assert canonical_origin(given) == kept


@pytest.mark.parametrize(
    "given",
    [
        "",
        "*",
        "shop.example.com",
        "ftp://shop.example.com",
        "https://shop.example.com/app",
        "https://shop.example.com?x=1",
        "https://user:pw@shop.example.com",
        "https://shop.example.com:99999",
        "https:// shop.example.com",
        "https://",
        "null",
    ],
)
def test_anything_but_scheme_host_port_is_refused(given: str) -> None:
    with pytest.raises(ValueError):
        canonical_origin(given)


def test_violations_name_each_bad_origin_and_duplicates_collapse() -> None:
    kept, violations = origin_violations(
        ["https://a.example", "nope", "HTTPS://A.EXAMPLE", "https://b.example/x"], "origins"
    )
    assert kept == ("https://a.example",)
    assert [v.field for v in violations] == ["origins[1]", "origins[3]"]
    _, too_many = origin_violations(
        [f"https://{i}.example" for i in range(MAX_ALLOWED_ORIGINS + 1)]
    )
    assert too_many[0].field == "allowed_origins"
