"""`magnetar eval --through-platform` end to end: a scratch tenant with its pipeline, the
rows before the cutoff imported through the real gateway, Recommend at the tenant's clock,
and the offline twin agreeing with it.

Needs the pipeline Function reading the import topic (installed where the functions worker
runs) and this branch's gateway (the tenant's clock), which the in-process gateway is.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cli.main import main
from magnetar.history.mapping import ONLINE_RETAIL_COLUMNS
from tests.integration.gateway_harness import RunningGateway

pytestmark = pytest.mark.integration


def _shop_file(path: Path) -> None:
    """Thirty customers; each buys a pair (a tent and a lantern, or a mug and a spoon) in
    August 2011 and comes back in September for more of the second item."""
    rows: list[tuple[int, str, int, str]] = []
    invoice = 500000
    for n in range(30):
        pair = ("TENT", f"LANTERN{n % 3}") if n % 2 else ("MUG", f"SPOON{n % 3}")
        invoice += 1
        for code in pair:
            rows.append((invoice, code, 2, f"2011-08-{1 + n % 28:02d} 10:00:00"))
    for n in range(30):
        pair = ("TENT", f"LANTERN{n % 3}") if n % 2 else ("MUG", f"SPOON{n % 3}")
        invoice += 1
        rows.append((invoice, pair[1], 1, f"2011-09-{2 + n % 20:02d} 11:00:00"))
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(ONLINE_RETAIL_COLUMNS)
        for number, code, quantity, date in sorted(rows, key=lambda row: row[3]):
            customer = 13000 + (number - 500001) % 30
            writer.writerow([number, code, f"{code} thing", quantity, date, "1.25", customer, "UK"])


@pytest.mark.timeout(600)
def test_the_platform_and_the_offline_replay_agree_at_the_cutoff(
    tmp_path: Path, gateway: RunningGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "shop.csv"
    _shop_file(data)
    output = tmp_path / "eval.json"
    argv = ["eval", "--through-platform", "--data", str(data), "--cutoff", "2011-09-01"]
    argv += ["--gateway", gateway.address, "--output", str(output), "--stall-seconds", "60"]
    assert main(argv) == 0, capsys.readouterr().out
    document = json.loads(output.read_text())
    assert document["agree"]
    assert document["served_at"] == "2011-08-28T10:00+00:00"
    results = {r["method"]: r for r in document["results"]}
    platform = results["magnetar through the platform (gRPC)"]
    assert platform["customers"] == 30
    # Each customer re-buys what they bought: their own affinity ranks it first.
    assert platform["hit_rate@10"] == 1.0
    assert document["same_top_lists"] == 30
