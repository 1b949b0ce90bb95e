"""`magnetar import --catalog` publishes every item of the file before the first event is
sent: enrich joins an event with the catalog as it is when the event passes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cli.commands import importing
from cli.main import main
from magnetar.history.importer import ImportReport
from magnetar.history.mapping import ONLINE_RETAIL_COLUMNS
from magnetar.history.progress import ImportProgress


def online_retail(path: Path) -> None:
    rows = [
        "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850,UK",
        "536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850,UK",
        "536366,POST,POSTAGE,1,2010-12-01 08:28:00,18.0,17850,UK",  # not a product
        "536367,22633,HAND WARMER UNION JACK,6,2010-12-01 08:34:00,1.85,13047,UK",
    ]
    path.write_text("\n".join([",".join(ONLINE_RETAIL_COLUMNS), *rows]) + "\n")


def test_the_catalog_is_published_before_the_first_event_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "retail.csv"
    online_retail(path)
    calls: list[tuple[str, ...]] = []

    def publish(settings: Any, tenant: str, items: list[Any]) -> None:
        calls.append(("catalog", tenant, *sorted(i.item_id for i in items)))

    def run_import(file: Path, *args: Any, **kwargs: Any) -> ImportReport:
        calls.append(("events",))
        return ImportReport(ImportProgress.fresh(file, "acme"), 0)

    monkeypatch.setattr(importing, "_publish_catalog", publish)
    monkeypatch.setattr(importing, "run_import", run_import)
    argv = ["import", str(path), "--tenant", "acme", "--catalog", "--api-key", "mgk.acme.k.s"]
    assert main([*argv, "--gateway", "127.0.0.1:9"]) == 0
    assert calls == [("catalog", "acme", "22633", "71053", "85123A"), ("events",)]
