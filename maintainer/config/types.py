"""Value types shared by the config models: durations, cron expressions, sizes,
names, host:port addresses and URLs."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from string import Formatter
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, SecretStr, StringConstraints

from maintainer.errors import ConfigError
from maintainer.imageref import parse_ref

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
        if not math.isfinite(value):
            raise ValueError("expected a duration such as 30s, 15m, 12h, 7d or 2w")
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return _bounded(value, value)
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
    return _bounded(total, value)


MAX_DURATION = timedelta(days=3650)


def _bounded(seconds: float, shown: Any) -> timedelta:
    # Far beyond any schedule, and far below what datetime and thread waits overflow at.
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"'{shown}' is longer than the longest duration allowed, {MAX_DURATION.days}d")
    return timedelta(seconds=seconds)


def format_duration(td: timedelta) -> str:
    seconds = int(td.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


Duration = Annotated[timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)]


CRON_ALIASES = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
                "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}


def validate_cron(value: Any) -> str:
    """A standard 5-field crontab expression (or one of CRON_ALIASES, such as @daily)."""
    # Lazy: APScheduler's cron parser costs ~40 ms at start-up.
    from maintainer.schedule import cron_trigger

    if not isinstance(value, str):
        raise ValueError("expected a cron expression such as '15 3 * * *'")
    expr = value.strip()
    expr = CRON_ALIASES.get(expr, expr)
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
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise ValueError(f"'{value}' is not a size such as 512m or 2g")
    mult = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


ByteSize = Annotated[int, BeforeValidator(parse_size)]


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def validate_name(value: str) -> str:
    """A name of the config's own (storage, database, job, compose project).

    Names become parts of storage keys (pg/<database>/...) and of command
    lines, so a '/', a space or a leading dot is refused rather than escaped.
    """
    if not _NAME.fullmatch(value):
        raise ValueError(f"'{value}' is not a valid name: use letters, digits, '.', '_' and '-', "
                         "starting with a letter or digit")
    return value


Name = Annotated[str, AfterValidator(validate_name)]

# A value that may be empty, where the config's rule "no empty strings" must not apply (label values).
MaybeEmpty = Annotated[str, StringConstraints(min_length=0)]

_HOST = re.compile(r"[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.%A-Za-z]+\]")


def parse_listen(value: str) -> tuple[str, int]:
    """'host:port', ':port' (all interfaces) or '[v6]:port' -> (host, port).

    Raises ValueError otherwise. An IPv6 address needs its brackets, so that
    '::1:9187' is not silently read as host '::1' and port 9187.
    """
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"'{value}' is not host:port with a port from 1 to 65535 (e.g. 127.0.0.1:9187)")
    if host and not _HOST.fullmatch(host):
        raise ValueError(f"'{value}' is not host:port: '{host}' is not a host name or address "
                         "(write an IPv6 address in brackets: [::1]:9187)")
    return host.strip("[]") or "0.0.0.0", int(port)


def _listen(value: str) -> str:
    parse_listen(value)
    return value


ListenAddress = Annotated[str, AfterValidator(_listen)]


def validate_host(value: str) -> str:
    """A host name, an address or a socket directory; never 'host:port' (the port has its own key)."""
    if any(c.isspace() for c in value):
        raise ValueError(f"'{value}' is not a host name: it contains a space")
    if re.fullmatch(r"[^:\[\]/]+:\d*", value):
        raise ValueError(f"'{value}' looks like host:port: give the host here and the port in 'port'")
    return value


Host = Annotated[str, AfterValidator(validate_host)]


def validate_endpoint(value: str) -> str:
    """An http(s) URL with a host and, if given, a valid port: an S3-compatible endpoint."""
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1 or port == 0:
        raise ValueError(f"'{value}' is not an endpoint URL such as https://s3.example.com or http://minio:9000")
    return value


EndpointUrl = Annotated[str, AfterValidator(validate_endpoint)]


# The loader's stand-in for a secret whose file could not be read (checked when a job uses it).
PENDING_SECRET = "\x00maintainer-unavailable-secret:"


def http_url(value: SecretStr) -> SecretStr:
    # The URL often carries a token, so the message never shows it.
    if value.get_secret_value().startswith(PENDING_SECRET):
        return value
    parts = urlsplit(value.get_secret_value())
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1 or port == 0:
        raise ValueError("expected an http:// or https:// URL with a host (the value is not shown: it may hold a token)")
    return value


SecretHttpUrl = Annotated[SecretStr, AfterValidator(http_url)]


def validate_region(value: str) -> str:
    """An S3 region name as botocore accepts it (us-east-1, auto for R2, garage...)."""
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?", value):
        raise ValueError(f"'{value}' is not a region name such as eu-central-1")
    return value


Region = Annotated[str, AfterValidator(validate_region)]


def validate_image_template(value: str) -> str:
    """An image reference in which ``{major}`` stands for the server's major version.

    Any other brace (``{version}``, an unclosed ``{major``) would fail only
    when a drill formats it, so it is refused here, as is a result that is
    not an image reference.
    """

    try:
        fields = [(name, spec, conv) for _text, name, spec, conv in Formatter().parse(value) if name is not None]
    except ValueError:
        fields = None
    if fields is None or any(f != ("major", "", None) for f in fields):
        raise ValueError(f"'{value}' is not an image template: the only placeholder is {{major}} (e.g. postgres:{{major}})")
    try:
        parse_ref(value.replace("{major}", "16"))
    except ConfigError as exc:
        raise ValueError(exc.message) from None
    return value


ImageTemplate = Annotated[str, AfterValidator(validate_image_template)]
