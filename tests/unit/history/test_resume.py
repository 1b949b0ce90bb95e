"""An import interrupted (a failed stream, or the process stopped) and resumed settles every
row once: unanswered batches are resent with the same ids, the progress file says where to
resume, and a finished file is not imported twice by accident."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from magnetar.history import progress as progress_file
from magnetar.history.importer import resume_point, run_import
from magnetar.history.mapping import ColumnMapping
from magnetar.history.progress import ImportProgress
from magnetar.history.sender import ImportSender
from magnetar.v1 import event_service_pb2 as pb


class Unavailable(grpc.RpcError):  # type: ignore[misc]
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "broker restarting"

    def trailing_metadata(self) -> tuple[()]:
        return ()


class Gateway:
    """ImportEvents in memory: records what it accepted; can fail after N answers."""

    def __init__(self) -> None:
        self.accepted: list[str] = []
        self.fail_after: int | None = None

    def __call__(
        self, requests: Iterator[pb.ImportEventsRequest], metadata: Any = None
    ) -> Iterator[pb.ImportEventsResponse]:
        for request in requests:
            # Durable before answered: a batch is stored, then the stream may break.
            self.accepted.extend(e.event_id for e in request.events)
            if self.fail_after is not None:
                if self.fail_after == 0:
                    self.fail_after = None
                    raise Unavailable()
                self.fail_after -= 1
            yield pb.ImportEventsResponse(
                batch_id=request.batch_id, accepted_count=len(request.events)
            )


class Interrupt(Exception):
    pass


def _file(tmp_path: Path, rows: int) -> Path:
    path = tmp_path / "history.csv"
    lines = ["event_id,user_id,type,item_id,occurred_at"]
    for n in range(rows):
        user = "" if n % 10 == 7 else f"u{n % 5}"  # every tenth row has no user: rejected
        lines.append(f"e{n},{user},view,i{n % 9},{1_294_135_200 + n}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _start(path: Path, progress: Path, *, again: bool = False) -> tuple[ImportProgress, str]:
    return resume_point(progress, ImportProgress.fresh(path, "acme"), again=again)


def test_a_failed_stream_resends_only_what_was_not_answered(tmp_path: Path) -> None:
    path = _file(tmp_path, 95)
    gateway = Gateway()
    gateway.fail_after = 3
    sleeps: list[float] = []
    sender = ImportSender(gateway, [], sleep=sleeps.append)
    where = tmp_path / "p.json"
    start, _ = _start(path, where)
    report = run_import(path, ColumnMapping().map, sender, where, start, batch_size=10)
    assert sleeps == [1.0]  # one backoff
    assert set(gateway.accepted) == {f"e{n}" for n in range(95) if n % 10 != 7}
    assert report.progress.accepted == 86 and report.progress.rejected == 9
    assert report.progress.finished and report.progress.done_line == 96


def test_an_interrupted_import_resumed_twice_settles_every_row_once(tmp_path: Path) -> None:
    path = _file(tmp_path, 95)
    where = tmp_path / "p.json"
    gateway = Gateway()
    settled_lines: list[int] = []
    for stop_after in (2, 3):
        start, said = _start(path, where)
        if settled_lines:
            assert said.startswith(f"resuming after line {settled_lines[-1]:,}")

        def stop(now: ImportProgress, last: int, limit: int = stop_after) -> None:
            settled_lines.append(last)
            if len(settled_lines) % 5 == limit:
                raise Interrupt

        with pytest.raises(Interrupt):
            run_import(
                path,
                ColumnMapping().map,
                ImportSender(gateway, []),
                where,
                start,
                batch_size=10,
                on_settled=stop,
            )
    start, said = _start(path, where)
    report = run_import(
        path, ColumnMapping().map, ImportSender(gateway, []), where, start, batch_size=10
    )
    # Sent at most once per settled batch, so nothing is sent twice here; the pipeline's
    # ledger covers resends of batches in flight at the interruption.
    assert sorted(gateway.accepted) == sorted({f"e{n}" for n in range(95) if n % 10 != 7})
    assert report.progress.accepted == 86 and report.progress.rejected == 9
    rejects = progress_file.rejects_path(where).read_text().splitlines()
    assert rejects[0] == "line,reason,detail"
    assert [int(r.split(",")[0]) for r in rejects[1:]] == [n + 2 for n in range(95) if n % 10 == 7]


def test_a_finished_file_is_not_imported_again_without_asking(tmp_path: Path) -> None:
    path = _file(tmp_path, 5)
    where = tmp_path / "p.json"
    start, _ = _start(path, where)
    run_import(path, ColumnMapping().map, ImportSender(Gateway(), []), where, start)
    with pytest.raises(FileExistsError):
        _start(path, where)
    again, said = _start(path, where, again=True)
    assert again.done_line == 0 and "again" in said
