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

import re
import sys
from dataclasses import dataclass, field
from typing import Any, get_args, get_origin, get_type_hints

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from maintainer.config.fieldtext import (NAMED_TYPES, NamedType, code as _code, docstring_of as _docstring,
                                         is_model as _is_model, item_model as _item_model,
                                         named_type as _named, optional_inner as _optional, type_text, value_text)
from maintainer.config.jobs import JOB_MODELS, JobBase, JobSpec
from maintainer.config.models import Config
from maintainer.config.types import Name

COMMAND = "python -m maintainer.config.reference > docs/configuration.md"


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
