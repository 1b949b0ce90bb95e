"""What every benchmark prints and records: a table, the machine, JSON under bench/results/."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

RESULTS = Path("bench/results")


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no samples."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def machine() -> dict[str, Any]:
    """Cores, memory and versions, stored with every result."""
    memory_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kb = int(line.split()[1])
    except OSError:
        pass
    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kb / 1024**2, 1),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "pulsar_client": metadata.version("pulsar-client"),
        "java": (java.stderr.splitlines() or ["?"])[0],
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


@dataclass
class BenchReport:
    """Rows of one scenario: name → figures; printed as a table and saved as JSON."""

    scenario: str
    columns: Sequence[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # More figures for the JSON only (e.g. a series over time), under their own keys.
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, **row: Any) -> None:
        self.rows.append(row)

    def print(self, console: Console | None = None) -> None:
        console = console or default_console()
        print_table(console, f"magnetar bench {self.scenario}", self.columns, self.rows)
        for note in self.notes:
            console.print(f"  {note}")

    def save(self, folder: Path = RESULTS) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.scenario}-{time.strftime('%Y%m%dT%H%M%S')}.json"
        path.write_text(
            json.dumps(
                {
                    "scenario": self.scenario,
                    "machine": machine(),
                    "rows": self.rows,
                    "notes": self.notes,
                    **self.details,
                },
                indent=2,
            )
            + "\n"
        )
        return path


def default_console() -> Console:
    # Logged to a file or a pipe, rich would fold the table into 80 columns.
    return Console(width=None if sys.stdout.isatty() else 160)


def print_table(
    console: Console, title: str, columns: Sequence[str], rows: Sequence[dict[str, Any]]
) -> None:
    """Rows as a table: the first column left-aligned, figures right-aligned, None as '-'."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column == columns[0] else "right")
    for row in rows:
        table.add_row(*(_cell(row.get(column)) for column in columns))
    console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
