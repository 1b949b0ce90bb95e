"""No module of gateway/ imports, directly or through others, a module that imports it back:
the servers compose the servicers, which never reach back into a server. Imports under
`if TYPE_CHECKING:` count too (they are loops all the same to a reader and to import-linter)."""

from __future__ import annotations

import ast
from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[3] / "gateway"


def imports_within(package: Path) -> dict[str, set[str]]:
    """Each module of `package` (top level) → the modules of `package` it imports."""
    modules = {f"{package.name}.{p.stem}": p for p in package.glob("*.py") if p.stem != "__init__"}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """One import path that comes back to where it started, per module that has one."""
    found = []
    for start in sorted(graph):
        paths = [[start]]
        seen = {start}
        while paths:
            path = paths.pop()
            for nxt in sorted(graph[path[-1]]):
                if nxt == start:
                    found.append([*path, start])
                    paths = []
                    break
                if nxt not in seen:
                    seen.add(nxt)
                    paths.append([*path, nxt])
    return found


def test_gateway_has_no_import_loop() -> None:
    assert loops(imports_within(GATEWAY)) == []


def test_a_loop_is_found() -> None:
    graph = {
        "g.server": {"g.catalog"},
        "g.catalog": {"g.blocking", "g.server"},
        "g.blocking": set(),
    }
    assert loops(graph) == [
        ["g.catalog", "g.server", "g.catalog"],
        ["g.server", "g.catalog", "g.server"],
    ]
