"""How one config field reads in the generated reference: its type, constraints and
default, as they would be written in schedules.yaml (see maintainer.config.reference).
A type or constraint this module cannot describe raises TypeError.
"""

from __future__ import annotations

import inspect
import types
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from maintainer.config.jobs import JobSpec
from maintainer.config.types import (CRON_ALIASES, MAX_DURATION, ByteSize, Cron, Duration, EndpointUrl, Host,
                                     ImageTemplate, ListenAddress, MaybeEmpty, Name, Region, SecretHttpUrl,
                                     format_duration)


def format_size(size: int) -> str:
    """Bytes in the largest unit that divides them exactly, as sizes are written: 1g, 6m, 1000."""
    for unit, factor in (("t", 1024**4), ("g", 1024**3), ("m", 1024**2), ("k", 1024)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


@dataclass(frozen=True)
class NamedType:
    """A value type of the config's own (types.py), as the reference names and explains it."""

    alias: Any
    name: str
    written: str
    show: Callable[[Any], str] = str  # a default or a bound of this type, as it would be written
    secret: bool = False


NAMED_TYPES = (
    NamedType(Duration, "duration", "a number and a unit, `30s`, `15m`, `12h`, `7d` or `2w`, or several "
              "(`1h30m`); a bare number is seconds; at most "
              f"`{format_duration(MAX_DURATION)}`", format_duration),
    NamedType(ByteSize, "size", "`512m`, `1g`, `512MiB` or a number of bytes; k, m, g and t are powers of 1024",
              format_size),
    NamedType(Cron, "cron", "5 fields, `minute hour day month weekday` (0 and 7 are Sunday), read in the "
              "`timezone`; or one of " + ", ".join(f"`{alias}`" for alias in CRON_ALIASES)),
    NamedType(Name, "name", "letters, digits, `.`, `_` and `-`, starting with a letter or a digit"),
    NamedType(Host, "host", "a host name, an IP address or a socket directory, without a port"),
    NamedType(ListenAddress, "host:port", "`127.0.0.1:9187`, `:9187` (every interface) or `[::1]:9187`"),
    NamedType(EndpointUrl, "URL", "an `http://` or `https://` URL with a host, e.g. `http://minio:9000`"),
    NamedType(Region, "region", "an S3 region name such as `eu-central-1`"),
    NamedType(ImageTemplate, "image template", "an image reference in which `{major}` stands for the "
              "PostgreSQL server's major version, e.g. `postgres:{major}`"),
    NamedType(MaybeEmpty, "str (may be empty)", "text, where the empty string is allowed too"),
    NamedType(SecretHttpUrl, "secret URL", "an `http://` or `https://` URL with a host, kept secret (see above)",
              secret=True),
    NamedType(SecretStr, "secret", "text kept secret (see above)", secret=True),
)

_NONE = type(None)


def named_type(hint: Any) -> NamedType | None:
    return next((named for named in NAMED_TYPES if hint == named.alias), None)


def optional_inner(hint: Any) -> Any:
    """``X | None`` -> ``X``: a null value is never the default in this file, so None only means "not set"."""
    if get_origin(hint) in (Union, types.UnionType) and _NONE in get_args(hint):
        rest = tuple(arg for arg in get_args(hint) if arg is not _NONE)
        return rest[0] if len(rest) == 1 else Union[rest]
    return hint


def is_model(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, BaseModel)


def item_model(hint: Any) -> Any:
    """The model of the entries of a list or map of models (or the job union), else None."""
    origin = get_origin(hint)
    if origin in (list, dict):
        item = get_args(hint)[-1]
        if is_model(item) or item == JobSpec:
            return item
    return None


def docstring_of(model: type) -> str:
    """A model's own docstring as one Markdown paragraph per paragraph ("" if it has none)."""
    doc = model.__dict__.get("__doc__") or ""
    paragraphs = inspect.cleandoc(doc).split("\n\n") if doc else []
    return "\n\n".join(" ".join(p.split()) for p in paragraphs).replace("``", "`")


def code(text: str) -> str:
    return f"`{text}`"


def type_text(hint: Any, info: FieldInfo | None = None) -> str:
    """A readable type, such as "duration", "int 1-22", "list of str" or "one of `a`, `b`".

    ``info`` adds the field's own constraints (bounds, lengths, pattern).
    Raises TypeError for a type it cannot describe.
    """
    hint = optional_inner(hint)
    named = named_type(hint)
    origin = get_origin(hint)
    if named is not None:
        text = named.name
    elif origin is Literal or origin in (Union, types.UnionType):
        text = _choices(hint)
    elif origin is list:
        text = "list of " + type_text(get_args(hint)[0])
    elif origin is dict:
        key, value = get_args(hint)
        text = f"map of {type_text(key)} to {type_text(value)}"
    elif hint in (bool, int, str):
        text = hint.__name__
    elif hint is float:
        text = "number"
    elif is_model(hint):
        text = "mapping"
    else:
        raise TypeError(f"the configuration reference cannot describe the type {hint!r}")
    return text + (_constraints(info, named) if info is not None else "")


def _choices(hint: Any) -> str:
    values: list[str] = []
    for arg in get_args(hint) if get_origin(hint) is not Literal else (hint,):
        if get_origin(arg) is Literal:
            values += [code(str(v)) for v in get_args(arg)]
        elif arg is bool:
            values += [code("true"), code("false")]
        else:
            return " or ".join(type_text(a) for a in get_args(hint))
    return "one of " + ", ".join(values)


def _constraints(info: FieldInfo, named: NamedType | None) -> str:
    show = named.show if named is not None else str
    bounds: dict[str, Any] = {}
    text = ""
    for meta in info.metadata:
        if isinstance(meta, annotated_types.Ge):
            bounds[">="] = meta.ge
        elif isinstance(meta, annotated_types.Gt):
            bounds[">"] = meta.gt
        elif isinstance(meta, annotated_types.Le):
            bounds["<="] = meta.le
        elif isinstance(meta, annotated_types.Lt):
            bounds["<"] = meta.lt
        elif isinstance(meta, annotated_types.MinLen):
            text += ", not empty" if meta.min_length == 1 else f", at least {meta.min_length} items"
        elif isinstance(meta, annotated_types.MaxLen):
            text += f", at most {meta.max_length} items"
        elif isinstance(meta, annotated_types.BaseMetadata):
            # pydantic keeps Field(pattern=...) as general metadata: its attributes are the constraints.
            for name, value in vars(meta).items():
                if name != "pattern":
                    raise TypeError(f"the configuration reference cannot describe the constraint {name}={value!r}")
                text += f" matching {code(value)}"
        # Anything else is a validator or serializer of a named type, described by its name.
    if set(bounds) == {">=", "<="}:
        return f" {show(bounds['>='])}-{show(bounds['<='])}" + text
    return "".join(f" {op} {show(value)}," for op, value in bounds.items()).rstrip(",") + text


def value_text(value: Any, named: NamedType | None = None) -> str:
    """A default as it would be written in schedules.yaml."""
    if value is None:
        return "not set"
    if isinstance(value, (list, dict)) and not value:
        return "none"
    if isinstance(value, bool):
        shown = "true" if value else "false"
    elif isinstance(value, timedelta):
        shown = format_duration(value)
    elif isinstance(value, (int, float)):
        shown = named.show(value) if named is not None else str(value)
    elif isinstance(value, str):
        shown = value
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        shown = "[" + ", ".join(value) + "]"
    else:
        raise TypeError(f"the configuration reference cannot show the default {value!r}")
    return code(shown)
