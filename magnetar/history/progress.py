"""Where an import of a file stands, kept in a small JSON file beside it, so an interrupted
import resumes after the last row that was settled instead of from the start.

A row is *settled* when its batch was acknowledged by the gateway (its events durable in
Pulsar) or when it was rejected and written to the rejects file. Batches are answered in
order, so the settled rows are a prefix of the file: `done_line` is its last line. Batches
sent but not answered when the import stopped are sent again on resume; their events keep
their ids, so the pipeline counts each once (docs/ingestion.md, "Importing history").

The file is identified by its size and modification time: a different file under the same
name starts over (the caller says so). Writes are atomic (a temporary file renamed over).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class ImportProgress:
    file: str
    size: int
    mtime_ns: int
    tenant: str
    done_line: int = 0
    accepted: int = 0
    rejected: int = 0
    finished: bool = False

    @classmethod
    def fresh(cls, path: Path, tenant: str) -> ImportProgress:
        stat = path.stat()
        return cls(str(path.resolve()), stat.st_size, stat.st_mtime_ns, tenant)

    def same_file(self, other: ImportProgress) -> bool:
        return (self.file, self.size, self.mtime_ns, self.tenant) == (
            other.file,
            other.size,
            other.mtime_ns,
            other.tenant,
        )


def progress_path(data: Path, tenant: str) -> Path:
    """The default progress file of importing `data` into `tenant`."""
    return data.with_name(f"{data.name}.import-{tenant}.json")


def rejects_path(progress: Path) -> Path:
    """Every rejected row, one per line: ``line,reason,detail`` (CSV)."""
    return progress.with_suffix(".rejected.csv")


def load(path: Path) -> ImportProgress | None:
    try:
        return ImportProgress(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None


def save(path: Path, progress: ImportProgress) -> None:
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_text(json.dumps(asdict(progress), indent=1))
    os.replace(scratch, path)
