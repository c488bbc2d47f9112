"""Progress bars for transfers, on stderr so that stdout (and `--json`) stays clean."""

from __future__ import annotations

import sys
from types import TracebackType

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ..errors import SageError
from .common import console


def want_bars(flag: bool | None) -> bool:
    """Bars when asked, or by default when stderr is a terminal."""
    return sys.stderr.isatty() if flag is None else flag


class TransferBars:
    """One bar per file in flight plus a total; also a `TransferObserver` for batches."""

    def __init__(self, show: bool, total_bytes: int = 0, files: int = 1) -> None:
        self._console = console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description}", table_column=None),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self._console,
            disable=not show,
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}
        self._done: dict[str, int] = {}
        self._overall: TaskID | None = None
        if files > 1:
            self._overall = self._progress.add_task(f"total ({files} files)", total=total_bytes)

    def __enter__(self) -> TransferBars:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def started(self, key: str, total: int) -> None:
        self._done[key] = 0
        self._tasks[key] = self._progress.add_task(_short(key), total=total or None)

    def advanced(self, key: str, done: int) -> None:
        delta = done - self._done.get(key, 0)
        self._done[key] = done
        if key in self._tasks:
            self._progress.update(self._tasks[key], completed=done)
        if self._overall is not None:
            self._progress.advance(self._overall, delta)

    def update(self, done: int, total: int) -> None:
        """A single transfer's callback (`download`)."""
        if "" not in self._tasks:
            self.started("", total)
        self._progress.update(self._tasks[""], completed=done, total=total or None)

    def retrying(self, key: str, attempt: int, error: SageError) -> None:
        self._console.print(f"sage: retrying {key} after attempt {attempt}: {error}", markup=False)

    def finished(self, key: str, error: SageError | None) -> None:
        task = self._tasks.pop(key, None)
        if task is not None:
            self._progress.remove_task(task)
        if error is not None:
            self._console.print(f"sage: {key}: {error}", markup=False)


def _short(key: str, width: int = 40) -> str:
    return key if len(key) <= width else "…" + key[-(width - 1) :]
