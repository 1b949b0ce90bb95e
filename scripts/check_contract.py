"""Fail when `proto/` breaks buf's lint rules or breaks the contract clients already use.

Run by `make test` (and by hand: `python scripts/check_contract.py`). Two checks, with the
rules in `proto/buf.yaml`:

- `buf lint`;
- `buf breaking` against the protos of a baseline commit, exported with `git archive`
  (which works in worktrees and shallow clones, where buf's own `.git#ref=` input does not).

buf reads each side as an image (a FileDescriptorSet built by `generate_proto.build_image`
with the imports the Python build uses), because it cannot fetch `google/api` here; only
`magnetar/v1` is checked (`--path`), not the imported files.

The baseline is, in this order: `MAGNETAR_CONTRACT_BASELINE` (any commit-ish, e.g. the last
release tag); on a branch whose commits `main` lacks, its merge base with `main` (what the
branch would change); otherwise the first parent of HEAD, i.e. on `main` the previous commit
of `main` (CI's case: a clone of main at the commit to test). A shallow clone that lacks the
baseline is deepened with `git fetch`; if that is impossible the check fails and says so
rather than passing unchecked. A root commit has nothing to break: only lint runs.

buf comes from `scripts/install_tools.sh` (pinned, `go install`), which this script runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generate_proto  # a sibling script, not an installed module

ROOT = Path(__file__).resolve().parent.parent
PROTO = "proto"
CHECKED = str(generate_proto.PACKAGE_DIR)
MAIN_BRANCHES = ("main", "origin/main")


class ContractError(Exception):
    """The check could not run; the message says what to do."""


@dataclass(frozen=True)
class History:
    """What git says about HEAD: enough to choose the baseline without running git again."""

    head: str
    # The commit of `main` (or `origin/main`); None when neither exists.
    main: str | None
    # True when HEAD is `main` or an ancestor of it: no commit of its own to compare.
    head_in_main: bool
    # HEAD's merge base with `main`; None without `main` or when history is cut short.
    merge_base: str | None
    # HEAD's first parent; None for a root commit or a shallow clone's boundary.
    parent: str | None
    shallow: bool


@dataclass(frozen=True)
class Baseline:
    """The commit to compare against (None: a root commit, nothing to break) and why."""

    commit: str | None
    why: str


def choose_baseline(history: History, override: str | None = None) -> Baseline:
    """The commit whose protos the working tree's must stay compatible with.

    Raises ContractError when the needed commit is not in a shallow clone's history (the
    caller deepens the clone and asks again).
    """
    if override:
        return Baseline(override, "MAGNETAR_CONTRACT_BASELINE")
    if history.main is not None and not history.head_in_main:
        if history.merge_base is None:
            raise ContractError(f"no merge base of HEAD and {history.main} in this clone")
        return Baseline(history.merge_base, "the merge base with main")
    if history.parent is not None:
        return Baseline(history.parent, "HEAD's first parent: on main, its previous commit")
    if history.shallow:
        raise ContractError("HEAD's parent is not in this shallow clone")
    return Baseline(None, "a root commit")


def _git(*args: str, root: Path = ROOT, check: bool = True) -> str | None:
    done = subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        if check:
            raise ContractError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
        return None
    return done.stdout.strip()


def read_history(root: Path = ROOT) -> History:
    head = _git("rev-parse", "HEAD", root=root)
    assert head is not None
    main = next(
        (
            commit
            for branch in MAIN_BRANCHES
            if (
                commit := _git(
                    "rev-parse", "--verify", "-q", f"{branch}^{{commit}}", root=root, check=False
                )
            )
        ),
        None,
    )
    head_in_main = main is not None and (
        _git("merge-base", "--is-ancestor", head, main, root=root, check=False) is not None
    )
    merge_base = None
    if main is not None and not head_in_main:
        merge_base = _git("merge-base", head, main, root=root, check=False) or None
    parent = _git("rev-parse", "--verify", "-q", "HEAD^1^{commit}", root=root, check=False)
    shallow = _git("rev-parse", "--is-shallow-repository", root=root) == "true"
    return History(head, main, head_in_main, merge_base, parent or None, shallow)


def resolve_baseline(root: Path = ROOT, override: str | None = None) -> Baseline:
    """`choose_baseline` on this clone, deepening a shallow clone once when it must."""
    history = read_history(root)
    try:
        return choose_baseline(history, override)
    except ContractError as cut_short:
        if not history.shallow:
            raise
        if _git("fetch", "--quiet", "--unshallow", root=root, check=False) is None:
            raise ContractError(
                f"{cut_short}, and `git fetch --unshallow` failed: fetch the history (or set "
                "MAGNETAR_CONTRACT_BASELINE to a commit that is here) and retry"
            ) from cut_short
        return choose_baseline(read_history(root), override)


def export_protos(commit: str, into: Path, root: Path = ROOT) -> Path | None:
    """The baseline's `proto/` written under `into`; None when that commit had none."""
    into.mkdir(parents=True, exist_ok=True)
    if _git("cat-file", "-e", f"{commit}:{PROTO}", root=root, check=False) is None:
        return None
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit, PROTO],
        cwd=root,
        capture_output=True,
        timeout=120,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True, timeout=120)
    return into / PROTO


def buf_path() -> Path:
    bin_dir = Path(os.environ.get("MAGNETAR_TOOLS_BIN", ROOT / ".magnetar" / "tools" / "bin"))
    installed = subprocess.run(["bash", str(ROOT / "scripts" / "install_tools.sh")], timeout=1800)
    if installed.returncode != 0:
        raise ContractError("scripts/install_tools.sh could not install buf (see above)")
    return bin_dir / "buf"


def lint(buf: Path, image: Path, config: Path) -> bool:
    done = subprocess.run(
        [str(buf), "lint", str(image), "--config", str(config), "--path", CHECKED], timeout=300
    )
    return done.returncode == 0


def breaking(buf: Path, image: Path, against: Path, config: Path) -> bool:
    """True when `image` keeps every promise of `against` (buf prints each one broken)."""
    done = subprocess.run(
        [
            str(buf),
            "breaking",
            str(image),
            "--against",
            str(against),
            "--config",
            str(config),
            "--path",
            CHECKED,
        ],
        timeout=300,
    )
    return done.returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--against",
        default=os.environ.get("MAGNETAR_CONTRACT_BASELINE") or None,
        help="commit-ish to compare with (default: see the module docstring)",
    )
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="the git checkout to check (default: this one)"
    )
    args = parser.parse_args(argv)
    try:
        baseline = resolve_baseline(args.root, args.against)
    except ContractError as error:
        print(f"check_contract: error: {error}", file=sys.stderr)
        return 2
    try:
        buf = buf_path()
    except ContractError as error:
        print(f"check_contract: error: {error}", file=sys.stderr)
        return 2
    protos = args.root / PROTO
    config = protos / "buf.yaml"
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        image = generate_proto.build_image(work / "current.binpb", protos)
        ok = lint(buf, image, config)
        if not ok:
            print("check_contract: `buf lint` failed (rules: proto/buf.yaml)", file=sys.stderr)
        if baseline.commit is None:
            print(f"check_contract: no baseline ({baseline.why}): breaking check skipped")
            return 0 if ok else 1
        against = export_protos(baseline.commit, work / "baseline", args.root)
        if against is None:
            print(f"check_contract: {baseline.commit[:12]} has no proto/: nothing to break")
        elif not breaking(
            buf, image, generate_proto.build_image(work / "baseline.binpb", against), config
        ):
            print(
                f"check_contract: proto/ breaks the contract of {baseline.commit[:12]} "
                f"({baseline.why}); see docs/clients.md for how to change it compatibly",
                file=sys.stderr,
            )
            ok = False
        else:
            print(
                f"check_contract: proto/ lint clean and compatible with {baseline.commit[:12]} "
                f"({baseline.why})"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
