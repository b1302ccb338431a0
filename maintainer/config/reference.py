"""The configuration reference, docs/configuration.md, generated from the config models.

Every option of schedules.yaml is a field of a model in this package, so the
reference is read from the models: each key with its type, default and
description, section by section. Regenerate it after changing a model::

    python -m maintainer.config.reference > docs/configuration.md

tests/unit/test_config_reference.py fails while the file differs from what
``render_reference()`` returns. The text depends on the models alone (never on
the environment or the machine), and keys keep the order the models declare.
A type or constraint this module cannot describe raises TypeError, so a new
one is noticed by that test rather than shown wrongly.
"""

from __future__ import annotations

import inspect
import re
import sys
import types
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable, Literal, Union, get_args, get_origin, get_type_hints

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from maintainer.config.jobs import JOB_MODELS, JobBase, JobSpec
from maintainer.config.models import Config
from maintainer.config.types import (CRON_ALIASES, MAX_DURATION, ByteSize, Cron, Duration, EndpointUrl, Host,
                                     ImageTemplate, ListenAddress, MaybeEmpty, Name, Region, SecretHttpUrl,
                                     format_duration)

COMMAND = "python -m maintainer.config.reference > docs/configuration.md"


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


def _named(hint: Any) -> NamedType | None:
    return next((named for named in NAMED_TYPES if hint == named.alias), None)


def _optional(hint: Any) -> Any:
    """``X | None`` -> ``X``: a null value is never the default in this file, so None only means "not set"."""
    if get_origin(hint) in (Union, types.UnionType) and _NONE in get_args(hint):
        rest = tuple(arg for arg in get_args(hint) if arg is not _NONE)
        return rest[0] if len(rest) == 1 else Union[rest]
    return hint


def _is_model(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, BaseModel)


def _item_model(hint: Any) -> Any:
    """The model of the entries of a list or map of models (or the job union), else None."""
    origin = get_origin(hint)
    if origin in (list, dict):
        item = get_args(hint)[-1]
        if _is_model(item) or item == JobSpec:
            return item
    return None


def _docstring(model: type) -> str:
    """A model's own docstring as one Markdown paragraph per paragraph ("" if it has none)."""
    doc = model.__dict__.get("__doc__") or ""
    paragraphs = inspect.cleandoc(doc).split("\n\n") if doc else []
    return "\n\n".join(" ".join(p.split()) for p in paragraphs).replace("``", "`")


def _code(text: str) -> str:
    return f"`{text}`"


def type_text(hint: Any, info: FieldInfo | None = None) -> str:
    """A readable type, such as "duration", "int 1-22", "list of str" or "one of `a`, `b`".

    ``info`` adds the field's own constraints (bounds, lengths, pattern).
    Raises TypeError for a type it cannot describe.
    """
    hint = _optional(hint)
    named = _named(hint)
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
    elif _is_model(hint):
        text = "mapping"
    else:
        raise TypeError(f"the configuration reference cannot describe the type {hint!r}")
    return text + (_constraints(info, named) if info is not None else "")


def _choices(hint: Any) -> str:
    values: list[str] = []
    for arg in get_args(hint) if get_origin(hint) is not Literal else (hint,):
        if get_origin(arg) is Literal:
            values += [_code(str(v)) for v in get_args(arg)]
        elif arg is bool:
            values += [_code("true"), _code("false")]
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
                text += f" matching {_code(value)}"
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
    return _code(shown)


@dataclass
class Row:
    key: str
    type: str
    default: str
    description: str


@dataclass
class Section:
    title: str
    level: int
    text: str
    rows: list[Row] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        """The id GitHub gives the heading."""
        return re.sub(r"[^\w\- ]", "", self.title.lower()).replace(" ", "-")


def _link(text: str, section: Section) -> str:
    return f"[{text}](#{section.anchor})"


def _key_placeholder(hint: Any) -> str:
    return "<name>" if hint == Name else "<key>"


class _Builder:
    """Walks the models from Config down; each section lists the keys of one YAML mapping.

    Maps and lists of models (storage entries, notify targets, jobs, registries)
    get a section of their own, as do the top-level sections; a model nested
    directly in another (retention, client, volumes) is listed in its parent's
    section with dotted keys, so that its defaults are the parent's (a
    docker_prune job's unused_images.older_than is 14d, build_cache's 7d).
    """

    def __init__(self) -> None:
        self.sections: list[Section] = []

    def section(self, title: str, level: int, text: str, model: type[BaseModel], path: str,
                skip: frozenset[str] = frozenset()) -> Section:
        """Add the section of ``model`` (and after it, those of its own entries); return it."""
        section = Section(title, level, text)
        self.sections.append(section)
        section.rows = self.rows(model, section, path, "", None, skip)
        return section

    def rows(self, model: type[BaseModel], section: Section, path: str, prefix: str,
             instance: BaseModel | None, skip: frozenset[str] = frozenset()) -> list[Row]:
        hints = get_type_hints(model, include_extras=True)
        rows: list[Row] = []
        for name, info in model.model_fields.items():
            if name in skip:
                continue
            hint = _optional(hints[name])
            key = prefix + name
            description = info.description or ""
            named = _named(hint)
            if named is not None and named.secret:
                description += f". Secret: may be given as `{key.rpartition('.')[2]}_file: PATH` instead"
            item = _item_model(hint)
            if _is_model(hint) and model is Config:
                sub = self.section(name, section.level, _docstring(hint) + f"\n\nKeys under `{name}`:",
                                   hint, name)
                rows.append(Row(key, "mapping, see " + _link(name, sub), "", description))
            elif _is_model(hint):
                value = instance.__dict__[name] if instance is not None else None
                if value is None and not info.is_required():
                    value = info.get_default(call_default_factory=True)
                doc = _docstring(hint)
                rows.append(Row(key, "mapping", "", description + (". " + " ".join(doc.split()) if doc else "")))
                rows.extend(self.rows(hint, section, path, key + ".", value))
            elif item is not None:
                rows.append(Row(key, self.collection(hint, item, key, section, path),
                                self.default(info, name, instance, named), description))
            else:
                rows.append(Row(key, type_text(hint, info), self.default(info, name, instance, named), description))
        return rows

    def collection(self, hint: Any, item: Any, key: str, section: Section, path: str) -> str:
        """Add the section of a list's or map's entries; return the field's type, linking to it."""
        top = section.title == TOP_TITLE
        title = key if top else f"{section.title} {key}"
        level = section.level if top else section.level + 1
        where = f"{path}.{key}" if path else key
        if get_origin(hint) is list:
            entry_path, kind, of = f"{where}[]", "item", "list of "
            lead = f"Keys of each item of `{where}`:"
        else:
            entry_path, kind = f"{where}.{_key_placeholder(get_args(hint)[0])}", "entry"
            of = f"map of {type_text(get_args(hint)[0])} to "
            lead = f"Keys of each entry `{entry_path}`:"
        if item == JobSpec:
            sub = self.jobs(title, level, entry_path)
            kind = "job"
        else:
            sub = self.section(title, level, (_docstring(item) + "\n\n" + lead).strip(), item, entry_path)
        return of + _link(kind, sub)

    def jobs(self, title: str, level: int, path: str) -> Section:
        common = Section(title, level, f"Each entry `{path}` is a job, run on its schedule by the daemon or by hand "
                         "with `maintainer run <name>`. Its `type` picks the keys it has besides these, listed "
                         f"below by type. Keys of every `{path}` entry:")
        self.sections.append(common)
        types_list = ", ".join(_link(name, Section(name, level + 1, "")) for name in JOB_MODELS)
        common.rows = [Row("type", "one of " + ", ".join(_code(name) for name in JOB_MODELS), "required",
                           f"the job type: {types_list}")]
        common.rows += self.rows(JobBase, common, path, "", None)
        for name, model in JOB_MODELS.items():
            lead = (f"Keys of a `{path}` entry with `type: {name}`, besides those "
                    f"{_link('every job has', common)}:")
            self.section(name, level + 1, _docstring(model) + "\n\n" + lead, model, path,
                         skip=frozenset(JobBase.model_fields) | {"type"})
        return common

    @staticmethod
    def default(info: FieldInfo, name: str, instance: BaseModel | None, named: NamedType | None) -> str:
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if "shown_default" in extra:
            # A default the model computes from the environment, or one the loader adds a rule to.
            return str(extra["shown_default"])
        if instance is not None:
            return value_text(instance.__dict__[name], named)
        if info.is_required():
            return "required"
        return value_text(info.get_default(call_default_factory=True), named)


TOP_TITLE = "Top level"

INTRO = f"""\
# Configuration reference

Every option of `schedules.yaml`: its key, type, default and meaning. This page is generated
from the models that validate the file (`maintainer/config/`); do not edit it by hand. After
changing an option, regenerate it with

```sh
{COMMAND}
```

(`tests/unit/test_config_reference.py` fails until you do). The shipped
[`schedules.yaml`](../schedules.yaml) shows the options in use for the Contrivance stack, with
comments; `maintainer validate` checks a file and lists its jobs.

Rules that hold in every section:

- An unknown key is an error, so a misspelt option never passes unnoticed. Every problem in
  a file is reported at once, with its line and key path.
- No value may be empty or null (`key:` with nothing after it): leave a key out to get its
  default. "not set" below means the key is absent; the description says what happens then.
- `${{VAR}}` and `${{VAR:-default}}` in a value are taken from the environment; `$$` is a `$`.
- A secret option `NAME` (type "secret" below) may instead be given as `NAME_file: PATH`, the
  Docker secrets convention: the file's content, without its trailing newline, is the value. A
  relative path is relative to the config file. Secrets never appear in logs, output, error
  messages, manifests or snapshots.
"""


def _cell(text: str) -> str:
    """Table-cell text: pipes escaped everywhere, and outside code spans what Markdown would
    read as an HTML tag (`<database>`) or emphasis (`*`)."""
    parts = text.replace("|", "\\|").split("`")
    for i in range(0, len(parts), 2):
        parts[i] = re.sub(r"<(?=[A-Za-z/!?])", r"\\<", parts[i]).replace("*", "\\*")
    return "`".join(parts)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def build_sections() -> list[Section]:
    """The reference's sections in document order: the top level, then each section and its entries."""
    builder = _Builder()
    builder.section(TOP_TITLE, 2, _docstring(Config), Config, "")
    return builder.sections


def render_reference() -> str:
    """docs/configuration.md as it should be. Raises TypeError for a type it cannot describe."""
    out = [INTRO]
    out.append("## Value types\n\nBesides `str`, `int`, `number` and `bool`, the types below are written as follows.\n\n"
               + _table(("type", "written as"), [(n.name, n.written) for n in NAMED_TYPES]) + "\n")
    for section in build_sections():
        out.append(f"{'#' * section.level} {section.title}\n\n{section.text}\n\n"
                   + _table(("key", "type", "default", "description"),
                            [(_code(r.key), r.type, r.default, r.description) for r in section.rows]) + "\n")
    return "\n".join(out)


def main() -> None:
    sys.stdout.write(render_reference())


if __name__ == "__main__":
    main()
