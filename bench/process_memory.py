"""Resident memory of the platform's processes over time, read from /proc.

What a soak run watches: the broker's JVM, every pipeline Function instance of the tenants it
drives, PostgreSQL's processes summed, its gateway and itself. Reading is separate from the
rest: `read_processes` and `pss_kb` only read /proc (a process that exits meanwhile is
skipped, never an error); `classify` names the processes from what was read; `MemoryHistory`
keeps the figures per name and lays them out as a table. The last two are pure.

PostgreSQL's summed RSS counts every shared-buffer page once per backend that touched it, so
it grows as backends touch more of the cache without a byte more in use; its proportional
share (PSS, shared pages divided among the processes mapping them) is kept beside it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
FUNCTION_INSTANCE = "python_instance_main.py"
BROKER = "broker JVM"
POSTGRES = "PostgreSQL, all processes"
POSTGRES_PSS = "PostgreSQL, all processes (PSS)"
GATEWAY = "gateway"
CLIENT = "load client (this process)"


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    argv: tuple[str, ...]
    rss_kb: int


@dataclass(frozen=True)
class Roles:
    """Which processes are whose: pids of the services, the tenants driven."""

    broker_pid: int | None
    postmaster_pid: int | None
    gateway_pid: int | None
    client_pid: int
    soak_tenant: str
    onboarded_tenants: Collection[str] = ()


@dataclass(frozen=True)
class Group:
    """The processes behind one name, their memory summed. `steady`: one process expected
    to live all run long, so a new pid means it was restarted."""

    pids: tuple[int, ...]
    kb: int
    steady: bool = True


def read_processes(proc: Path = PROC) -> list[ProcessInfo]:
    """Every user-space process's pid, parent, command line and resident set."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = tuple(a for a in (entry / "cmdline").read_bytes().decode().split("\0") if a)
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            status = (entry / "status").read_text()
        except (OSError, UnicodeDecodeError, IndexError):
            continue  # exited while read, or not ours to read
        rss = next(
            (line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")), 0
        )
        if argv:  # kernel threads have no command line
            found.append(ProcessInfo(int(entry.name), int(stat[1]), argv, int(rss)))
    return found


def pss_kb(pid: int, proc: Path = PROC) -> int | None:
    """The process's proportional set size, or None when it cannot be read."""
    try:
        for line in (proc / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _option(argv: Sequence[str], name: str) -> str | None:
    for i, arg in enumerate(argv[:-1]):
        if arg == name:
            return argv[i + 1]
    return None


def function_instance(argv: Sequence[str]) -> tuple[str, str, str] | None:
    """(tenant, function, instance id) of a Pulsar Python function instance, else None."""
    if not any(a.endswith(FUNCTION_INSTANCE) for a in argv[:3]):
        return None
    try:
        details = json.loads((_option(argv, "--function_details") or "").strip("'"))
    except ValueError:
        return None
    if not isinstance(details, dict) or "tenant" not in details:
        return None
    return (
        str(details["tenant"]),
        str(details.get("name", "?")),
        _option(argv, "--instance_id") or "?",
    )


def _broker_jvm(processes: Sequence[ProcessInfo], broker_pid: int) -> ProcessInfo | None:
    """The JVM: the pid of the stack's pid file, or the first java below it (a wrapper)."""
    children: dict[int, list[ProcessInfo]] = {}
    for p in processes:
        children.setdefault(p.ppid, []).append(p)
    queue = [p for p in processes if p.pid == broker_pid]
    while queue:
        p = queue.pop(0)
        if os.path.basename(p.argv[0]) == "java":
            return p
        queue += children.get(p.pid, [])
    return None


def classify(processes: Sequence[ProcessInfo], roles: Roles) -> dict[str, Group]:
    """Name → the processes behind it and their RSS (kB) summed; absent names are not there."""
    groups: dict[str, Group] = {}
    by_pid = {p.pid: p for p in processes}
    if roles.broker_pid is not None and (jvm := _broker_jvm(processes, roles.broker_pid)):
        groups[BROKER] = Group((jvm.pid,), jvm.rss_kb)
    for pid, label in ((roles.gateway_pid, GATEWAY), (roles.client_pid, CLIENT)):
        if pid is not None and pid in by_pid:
            groups[label] = Group((pid,), by_pid[pid].rss_kb)
    if roles.postmaster_pid is not None and roles.postmaster_pid in by_pid:
        members = [p for p in processes if roles.postmaster_pid in (p.pid, p.ppid)]
        groups[POSTGRES] = Group(
            tuple(p.pid for p in members), sum(p.rss_kb for p in members), steady=False
        )
    for p in processes:
        instance = function_instance(p.argv)
        if instance is None:
            continue
        tenant, function, number = instance
        if tenant == roles.soak_tenant:
            groups[f"{function}, soak tenant #{number}"] = Group((p.pid,), p.rss_kb)
        elif tenant in roles.onboarded_tenants:
            # A new tenant every cycle: a new process is expected, not a restart.
            label = f"{function}, onboarded tenant #{number}"
            groups[label] = Group((p.pid,), p.rss_kb, steady=False)
    return groups


def tenant_instances_kb(processes: Iterable[ProcessInfo], tenant: str) -> int | None:
    """RSS (kB) of the tenant's function instances summed; None when none is running."""
    sizes = [p.rss_kb for p in processes if (function_instance(p.argv) or ("",))[0] == tenant]
    return sum(sizes) if sizes else None


def add_postgres_pss(groups: dict[str, Group], pss: Mapping[int, int | None]) -> None:
    """PostgreSQL's proportional share beside its summed RSS, when every member was read."""
    members = groups.get(POSTGRES)
    if members is None:
        return
    shares = [pss.get(pid) for pid in members.pids]
    if shares and all(s is not None for s in shares):
        groups[POSTGRES_PSS] = Group(members.pids, sum(s or 0 for s in shares), steady=False)


def report_points(times_s: Sequence[float], every_s: float) -> list[int]:
    """Indexes of the samples a table shows: the first, the first at or past each multiple
    of `every_s`, and the last."""
    if not times_s:
        return []
    chosen = [0]
    for i in range(1, len(times_s)):
        if int(times_s[i] // every_s) > int(times_s[chosen[-1]] // every_s):
            chosen.append(i)
    if chosen[-1] != len(times_s) - 1:
        chosen.append(len(times_s) - 1)
    return chosen


def _mb(kb: int | None) -> float | None:
    return None if kb is None else round(kb / 1024, 1)


@dataclass
class MemoryHistory:
    """Samples over a run: per name, MB at each sample time (None where absent)."""

    times_s: list[float] = field(default_factory=list)
    series: dict[str, list[float | None]] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    _last_pids: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def add(self, at_s: float, groups: Mapping[str, Group]) -> None:
        for values in self.series.values():
            values.append(None)
        for label, group in groups.items():
            absent: list[float | None] = [None] * (len(self.times_s) + 1)
            values = self.series.setdefault(label, absent)
            values[-1] = _mb(group.kb)
            before = self._last_pids.get(label)
            if group.steady and before is not None and before != group.pids:
                self.restarts[label] = self.restarts.get(label, 0) + 1
            self._last_pids[label] = group.pids
        self.times_s.append(at_s)

    def growth_mb(self, label: str) -> float | None:
        """Last figure minus the first, over the samples where the name was present."""
        present = [v for v in self.series.get(label, []) if v is not None]
        return round(present[-1] - present[0], 1) if len(present) > 1 else None

    def table(self, every_s: float) -> tuple[list[str], list[dict[str, object]]]:
        """Columns and rows: a process per row, its MB at each report point, then growth,
        the highest figure and the restarts seen."""
        points = report_points(self.times_s, every_s)
        times = [f"{self.times_s[i] / 60:.0f} min" for i in points]
        columns = ["process (RSS MB)", *times, "growth", "max", "restarts"]
        rows: list[dict[str, object]] = []
        for label in sorted(self.series, key=_order):
            values = self.series[label]
            present = [v for v in values if v is not None]
            rows.append(
                {
                    "process (RSS MB)": label,
                    **{time: values[i] for time, i in zip(times, points, strict=True)},
                    "growth": self.growth_mb(label),
                    "max": max(present) if present else None,
                    "restarts": self.restarts.get(label, 0),
                }
            )
        return columns, rows

    def as_json(self) -> dict[str, object]:
        return {
            "times_s": self.times_s,
            "rss_mb": self.series,
            "restarts": self.restarts,
        }


def _order(label: str) -> tuple[int, str]:
    fixed = (BROKER, POSTGRES, POSTGRES_PSS, GATEWAY, CLIENT)
    return (fixed.index(label), label) if label in fixed else (len(fixed), label)


def sample(roles: Roles, processes: Iterable[ProcessInfo] | None = None) -> dict[str, Group]:
    """Read /proc once and name what was found (PostgreSQL's PSS read for its members)."""
    found = list(processes) if processes is not None else read_processes()
    groups = classify(found, roles)
    if POSTGRES in groups:
        add_postgres_pss(groups, {pid: pss_kb(pid) for pid in groups[POSTGRES].pids})
    return groups
