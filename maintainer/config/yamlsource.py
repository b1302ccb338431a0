"""Read a YAML config file into plain data, remembering where each key stood.

The result is ``(data, lines)``: ``data`` is ordinary dicts, lists and scalars
with ``${VAR}`` and ``${VAR:-default}`` expanded from the environment, and
``lines`` maps each key path (a tuple such as ``("jobs", "backup", "schedule")``)
to its 1-based line in the file, so every later error can say where it is.

Raises ConfigError for unreadable files, YAML syntax errors, duplicate keys and
unset variables, listing all expansion problems at once.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

import yaml

from maintainer.errors import ConfigError

Path_ = tuple[Any, ...]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\$")


def format_path(path: Path_) -> str:
    """``("jobs", "backup", 0)`` -> ``jobs.backup[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


class LineMap:
    """Key path -> line number, answering for the nearest known ancestor."""

    def __init__(self, lines: dict[Path_, int], source: str):
        self._lines = lines
        self.source = source

    def line_of(self, path: Path_) -> int | None:
        path = tuple(path)
        while True:
            if path in self._lines:
                return self._lines[path]
            if not path:
                return None
            path = path[:-1]

    def where(self, path: Path_) -> str:
        line = self.line_of(path)
        return f"{self.source}:{line}" if line else self.source


def expand_vars(text: str, env: Mapping[str, str]) -> str:
    """Expand ``${VAR}``, ``${VAR:-default}`` and ``$$`` (a literal dollar).

    Raises KeyError(name) for a variable that is unset and has no default.
    """

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise KeyError(name)
            return default
        return value

    return _VAR.sub(sub, text)


class _Converter:
    def __init__(self, source: str, env: Mapping[str, str]):
        self.source = source
        self.env = env
        self.lines: dict[Path_, int] = {}
        self.problems: list[str] = []

    def convert(self, node: yaml.Node, path: Path_) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.convert_scalar(key_node, path, expand=False)
                if isinstance(key, (dict, list)):
                    self.problems.append(f"{self.source}:{key_node.start_mark.line + 1}: at '{format_path(path)}': a key must be a plain value")
                    continue
                child = path + (key,)
                if key in out:
                    self.problems.append(
                        f"{self.source}:{key_node.start_mark.line + 1}: at '{format_path(child)}': duplicate key")
                self.lines[child] = key_node.start_mark.line + 1
                out[key] = self.convert(value_node, child)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, path + (i,)) for i, item in enumerate(node.value)]
        return self.convert_scalar(node, path, expand=True)

    def convert_scalar(self, node: yaml.Node, path: Path_, *, expand: bool) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            return self.convert(node, path)
        value = yaml.SafeLoader.construct_scalar(_LOADER, node)  # type: ignore[arg-type]
        # Resolve the scalar's type the same way safe_load would.
        tag = node.tag
        if expand and isinstance(value, str) and "$" in value and node.style in (None, "", '"', "'", "|", ">"):
            try:
                expanded = expand_vars(value, self.env)
            except KeyError as exc:
                self.problems.append(
                    f"{self.source}:{node.start_mark.line + 1}: at '{format_path(path)}': "
                    f"environment variable {exc.args[0]} is not set (use ${{{exc.args[0]}:-default}} for a default)")
                return None
            if expanded != value:
                if node.style is None:
                    # An unquoted scalar is typed after expansion, so `port: ${PGPORT:-5432}` is an int.
                    tag = _resolve_plain(expanded)
                    node = yaml.ScalarNode(tag, expanded, node.start_mark, node.end_mark, style=None)
                    return _LOADER.construct_object(node, deep=True)
                return expanded
        return _LOADER.construct_object(yaml.ScalarNode(tag, value, node.start_mark, node.end_mark, style=node.style), deep=True)


class _Loader(yaml.SafeLoader):
    pass


_LOADER = _Loader("")


def _resolve_plain(text: str) -> str:
    return _LOADER.resolve(yaml.ScalarNode, text, (True, False))


def load_yaml(path: Path, env: Mapping[str, str] | None = None) -> tuple[Any, LineMap]:
    """Parse ``path``; see the module docstring. Raises ConfigError."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {source} does not exist",
                          hint="pass --config PATH or set MAINTAINER_CONFIG") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {source}: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_yaml(text, source, env)


def parse_yaml(text: str, source: str, env: Mapping[str, str] | None = None) -> tuple[Any, LineMap]:
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: YAML syntax error: {problem}", problems=[f"{where}: YAML syntax error: {problem}"]) from None
    if node is None:
        return {}, LineMap({}, source)
    conv = _Converter(source, os.environ if env is None else env)
    data = conv.convert(node, ())
    if conv.problems:
        raise ConfigError(f"{source}: {len(conv.problems)} problem(s) in the configuration", problems=conv.problems)
    return data, LineMap(conv.lines, source)
