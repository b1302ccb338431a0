"""Small helpers for what commands print for people: tables, ages (sizes and
durations come from maintainer.units, shared with jobs and health)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Sequence

import click

from maintainer import redact
from maintainer.units import human_duration, human_size  # noqa: F401 - re-exported for the commands


def echo(text: str = "", *, err: bool = False) -> None:
    click.echo(redact.scrub(text), err=err)


def print_json(data: Any) -> None:
    echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Plain aligned columns; works the same on a terminal and in a pipe."""
    rows = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(h.upper().ljust(widths[i]) for i, h in enumerate(headers)).rstrip()]
    for row in rows:
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    return "\n".join(lines)


def age(when: datetime | None, now: datetime | None = None) -> str:
    if when is None:
        return "-"
    now = now or datetime.now(timezone.utc)
    return human_duration(max(0.0, (now - when).total_seconds()))


def ago(delta: timedelta) -> str:
    return human_duration(delta.total_seconds())
