"""Value types shared by the config models: durations, cron expressions, sizes."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)?\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> timedelta:
    """'90s', '15m', '12h', '7d', '2w' or a number of seconds -> timedelta.

    Several parts may be combined: '1h30m'. Raises ValueError otherwise.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 15m, 12h, 7d or 2w")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError("expected a duration such as 30s, 15m, 12h, 7d or 2w")
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-zA-Z]*)", value)
    rebuilt = "".join(n + u for n, u in parts)
    if not parts or rebuilt != re.sub(r"\s+", "", value):
        raise ValueError(f"'{value}' is not a duration such as 30s, 15m, 12h, 7d or 2w")
    total = 0.0
    for number, unit in parts:
        unit = unit.lower() or "s"
        if unit not in _UNITS:
            raise ValueError(f"'{value}' has an unknown unit '{unit}' (use s, m, h, d or w)")
        total += float(number) * _UNITS[unit]
    return timedelta(seconds=total)


def format_duration(td: timedelta) -> str:
    seconds = int(td.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


Duration = Annotated[timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)]


def validate_cron(value: Any) -> str:
    """A standard 5-field crontab expression (or @hourly/@daily/@weekly/@monthly)."""
    from maintainer.schedule import cron_trigger

    if not isinstance(value, str):
        raise ValueError("expected a cron expression such as '15 3 * * *'")
    expr = value.strip()
    aliases = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
               "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}
    expr = aliases.get(expr, expr)
    if len(expr.split()) != 5:
        raise ValueError(f"'{value}' is not a cron expression: it needs 5 fields (minute hour day month weekday)")
    try:
        cron_trigger(expr, "UTC")
    except ValueError as exc:
        raise ValueError(f"'{value}' is not a valid cron expression: {exc}") from None
    return expr


Cron = Annotated[str, BeforeValidator(validate_cron)]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


def parse_size(value: Any) -> int:
    """'256m', '1g', '512MiB' or a number of bytes -> bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512m or 2g")
    if isinstance(value, int):
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise ValueError(f"'{value}' is not a size such as 512m or 2g")
    mult = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


ByteSize = Annotated[int, BeforeValidator(parse_size)]
