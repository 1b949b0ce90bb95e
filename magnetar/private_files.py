"""Files and folders only their owner can read, private from the instant they exist.

`write_private` creates a fresh file with mode 0600 in the same `open` that creates it
(``O_CREAT | O_EXCL``, then ``fchmod`` so a restrictive umask cannot leave it unreadable to
its owner), writes, and renames it over the destination: there is no moment at which the
secret sits in a file someone else may open, and a reader never sees half a file. Writing
first and `chmod`-ing after leaves the file readable by everyone in between (the default
umask makes it 0644).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

FILE_MODE = 0o600
FOLDER_MODE = 0o700


def private_folder(path: Path) -> Path:
    """`path` and any missing parents, the last one private (it may already exist)."""
    # A new folder is created with at most 0700; an existing one is narrowed to it.
    path.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    os.chmod(path, FOLDER_MODE)
    return path


def write_private(path: Path, content: str | bytes) -> Path:
    """Replace `path` with `content` in a file of mode 0600 (created private, see above)."""
    data = content.encode() if isinstance(content, str) else content
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(temporary, flags, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), FILE_MODE)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
