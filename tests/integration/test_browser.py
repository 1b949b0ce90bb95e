"""The browser page of clients/browser in headless Chromium against a real gateway's door.

The page is served from an origin of its own (a static file server on another port), as a
shop's site would be, so each call is a real cross-origin request with its preflight: the
tenant allows that origin, and the page sends a view and shows recommendations. The same
page from an origin the tenant did not allow shows the door's ORIGIN_NOT_ALLOWED reason.

Chromium comes from scripts/install_chromium.sh (the Debian package, installed as root when
missing). State is written with the materializer's `commit_batch` (no Function runs for the
scratch tenant), so the recommendations are known in advance.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from functools import partial
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from gateway.http_door import HttpDoor, start_http_door
from magnetar.api_key_store import ApiKeyStore
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.settings import Settings
from magnetar.topics import TenantTopics
from tests.integration.gateway_harness import (
    RunningGateway,
    read_all,
    set_allowed_origins,
)
from tests.integration.serving_support import ServingTenant, seed_shop, serving_tenant

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PAGE_DIR = ROOT / "clients" / "browser"


@pytest.fixture(scope="module")
def chromium() -> str:
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install_chromium.sh")],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def door_url(gateway: RunningGateway) -> Iterator[str]:
    origins = gateway.server.adapters.tenants
    running: HttpDoor = gateway.run(
        start_http_door("127.0.0.1", 0, "127.0.0.1", gateway.port, origins, origins_ttl_s=0)
    )
    yield f"http://127.0.0.1:{running.port}"
    gateway.run(running.stop())


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def page_port() -> Iterator[int]:
    """clients/browser served as static files on a loopback port: the shop's origin."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(PAGE_DIR)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def shop(
    settings: Settings,
    pulsar_admin: PulsarAdmin,
    key_store: ApiKeyStore,
    gateway: RunningGateway,
) -> Iterator[ServingTenant]:
    with serving_tenant(settings, pulsar_admin, key_store) as tenant:
        seed_shop(settings, tenant.tenant_id)
        yield tenant
        # The view opened the tenant's producer: closed before its namespace goes.
        gateway.run(gateway.server.adapters.publisher.close_tenant(tenant.tenant_id))


class _Page(HTMLParser):
    """The page's outcome in the DOM Chromium dumps: status state and text, listed items."""

    def __init__(self) -> None:
        super().__init__()
        self.state = ""
        self.status = ""
        self.items: list[str] = []
        self._in_status = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id") == "status":
            self.state, self._in_status = found.get("data-state") or "", True
        if tag == "li" and found.get("data-item"):
            self.items.append(found["data-item"] or "")

    def handle_endtag(self, tag: str) -> None:
        self._in_status = self._in_status and tag != "p"

    def handle_data(self, data: str) -> None:
        if self._in_status:
            self.status += data


def open_page(chromium: str, url: str, profile: Path) -> _Page:
    """Load `url` headless and parse the DOM once the page's fetches are done."""
    done = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            # Virtual time runs only while nothing is loading: the fetches finish first.
            "--virtual-time-budget=30000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    page = _Page()
    page.feed(done.stdout)
    return page


def test_the_page_sends_a_view_and_shows_recommendations_from_an_allowed_origin(
    chromium: str,
    door_url: str,
    page_port: int,
    shop: ServingTenant,
    settings: Settings,
    tmp_path: Path,
) -> None:
    set_allowed_origins(settings, shop.tenant_id, f"http://127.0.0.1:{page_port}")
    query = urlencode(
        {
            "door": door_url,
            "ingestKey": shop.ingest_key,
            "readKey": shop.read_key,
            "user": "browser-user",
            "item": "tent",
        }
    )
    page = open_page(chromium, f"http://127.0.0.1:{page_port}/index.html?{query}", tmp_path)
    assert page.state == "done", page.status
    # Tents sell with sleeping bags (seed_shop): the viewed item's co-visitation comes first.
    assert page.items[0] == "sleeping-bag", page.items
    assert "tent" not in page.items
    [view] = read_all(settings, TenantTopics(shop.tenant_id).raw, expect=1)
    assert view.partition_key() == "browser-user"


def test_the_page_on_an_origin_the_tenant_did_not_allow_shows_the_reason(
    chromium: str,
    door_url: str,
    page_port: int,
    shop: ServingTenant,
    settings: Settings,
    tmp_path: Path,
) -> None:
    set_allowed_origins(settings, shop.tenant_id, f"http://127.0.0.1:{page_port}")
    query = urlencode({"door": door_url, "ingestKey": shop.ingest_key, "readKey": shop.read_key})
    # Same files, another origin: localhost is not 127.0.0.1 to a browser.
    page = open_page(chromium, f"http://localhost:{page_port}/index.html?{query}", tmp_path)
    assert page.state == "error"
    assert page.status.startswith("ORIGIN_NOT_ALLOWED: origin 'http://localhost:"), page.status
    assert page.items == []
