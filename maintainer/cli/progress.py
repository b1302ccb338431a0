"""How a restore shows its progress: a live display on a terminal, log lines otherwise,
nothing but logs with --json (stdout then carries only the JSON document)."""

from __future__ import annotations

import sys
import time

from maintainer.cli.output import human_size
from maintainer.logs import get_logger

log = get_logger("restore")


class _RichProgress:
    """A live display on the terminal: one line per phase, with bytes or steps and elapsed time."""

    def __init__(self):
        # Lazy: rich's progress display costs ~60 ms at start-up and is only for a terminal.
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn("{task.description:<20}"), BarColumn(), TextColumn("{task.fields[amount]}"),
                                  TimeElapsedColumn(), console=Console(stderr=True))
        self._task = None
        self._bytes = False
        self._done = 0
        self._total: int | None = None

    def __enter__(self):
        self._progress.start()
        return self

    def __exit__(self, *exc):
        self._progress.stop()

    def phase(self, name: str, total: int | None = None) -> None:
        if self._task is not None:
            self._progress.update(self._task, total=max(self._done, 1), completed=max(self._done, 1))
        self._bytes = name.startswith(("download", "base backup"))
        self._done, self._total = 0, total
        self._task = self._progress.add_task(name, total=total, amount="")

    def advance(self, amount: int) -> None:
        if self._task is None:
            return
        self._done += amount
        if self._bytes:
            text = f"{human_size(self._done)} / {human_size(self._total)}"
        else:
            text = f"{self._done} / {self._total or '?'} steps"
        self._progress.update(self._task, advance=amount, amount=text)

    def replay(self, segments: int, total: int, reached: str) -> None:
        if self._task is not None:
            self._progress.update(self._task, amount=f"{segments} / {total} segments, at {reached or '?'}")

    def done(self) -> None:
        if self._task is not None:
            self._progress.update(self._task, total=max(self._done, 1), completed=max(self._done, 1))


class _LogProgress:
    """JSON lines, at most one every two seconds per phase plus phase changes."""

    def __init__(self):
        self._phase = None
        self._done = 0
        self._total = None
        self._last = 0.0
        self._start = time.monotonic()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def phase(self, name: str, total: int | None = None) -> None:
        self._phase, self._done, self._total, self._last = name, 0, total, time.monotonic()
        log.info("restore.phase", phase=name, total=total, elapsed=round(time.monotonic() - self._start, 1))

    def advance(self, amount: int) -> None:
        self._done += amount
        now = time.monotonic()
        if now - self._last >= 2:
            self._last = now
            log.info("restore.progress", phase=self._phase, done=self._done, total=self._total,
                     elapsed=round(now - self._start, 1))

    def replay(self, segments: int, total: int, reached: str) -> None:
        log.info("restore.replay", segments=segments, needed=total, reached=reached,
                 elapsed=round(time.monotonic() - self._start, 1))

    def done(self) -> None:
        log.info("restore.phase", phase="done", elapsed=round(time.monotonic() - self._start, 1))


def progress_for(as_json: bool):
    """rich on a terminal; JSON log lines otherwise; nothing with --json (the summary is the output)."""
    if as_json:
        return _SilentProgress()
    if sys.stderr.isatty():
        return _RichProgress()
    return _LogProgress()


class _SilentProgress(_LogProgress):
    def replay(self, segments: int, total: int, reached: str) -> None: ...

    def phase(self, name: str, total: int | None = None) -> None: ...

    def advance(self, amount: int) -> None: ...

    def done(self) -> None: ...
