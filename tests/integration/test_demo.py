"""The README's run command end to end: the demo runs, and its metrics can be scraped."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time

import httpx
import pytest

from magnetar.settings import Settings

pytestmark = pytest.mark.integration


def _scrape(settings: Settings) -> str:
    """The gateway's /metrics (RPCs) and the admin plane's (the pipeline), concatenated."""
    text = ""
    for port in (settings.metrics_port, settings.admin_metrics_port):
        with contextlib.suppress(httpx.HTTPError):
            text += httpx.get(f"http://{settings.metrics_host}:{port}/metrics").text
    return text


def _value(text: str, pattern: str) -> float:
    found = re.search(pattern + r" ([0-9.e+]+)", text)
    return float(found.group(1)) if found else 0.0


@pytest.mark.timeout(600)
def test_demo_shows_recommendations_and_its_metrics_are_scraped_while_it_runs(
    settings: Settings,
) -> None:
    env = {**os.environ, "COLUMNS": "160"}
    demo = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "demo", "--seconds", "40", "--rate", "50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    ingest_calls = counted = 0.0
    deadline = time.monotonic() + 300
    try:
        while demo.poll() is None and time.monotonic() < deadline:
            metrics = _scrape(settings)
            ingest_calls = _value(
                metrics,
                r'magnetar_rpc_duration_seconds_count\{code="OK",method="/magnetar\.v1\.'
                r'EventService/Ingest",tenant="demo"\}',
            )
            counted = _value(metrics, r'magnetar_pipeline_counted_total\{tenant="demo"\}')
            if ingest_calls > 0 and counted > 0:
                break
            time.sleep(2)
        status = subprocess.run(
            [
                sys.executable,
                "-m",
                "cli.main",
                "status",
                "--tenant",
                "demo",
                "--iterations",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
        output, _ = demo.communicate(timeout=300)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 0, output[-3000:]
    assert ingest_calls > 0, "no Ingest calls of the demo tenant on the metrics endpoint"
    assert counted > 0, "the demo tenant's counted events never appeared in the metrics"
    assert "demo" in status.stdout and "pipeline:1/1" in status.stdout, status.stdout
    assert "recommendations, live from PostgreSQL state" in output
    # The Functions' own freshness histograms, on the broker's /metrics.
    broker = httpx.get(f"{settings.pulsar_admin_url}/metrics/", timeout=30).text
    for since in ("accepted", "occurred"):
        pattern = (
            r"magnetar_function_freshness_seconds_count\{[^}]*"
            + f'since="{since}"'
            + r'[^}]*tenant="demo"[^}]*\}'
        )
        assert _value(broker, pattern) > 0, since
    assert re.search(r"user-\d+", output), "no user's recommendations were shown"
