"""Read a YAML config file into plain data, remembering where each key stood.

The result is ``(data, lines)``: ``data`` is ordinary dicts, lists and scalars
with ``${VAR}`` and ``${VAR:-default}`` expanded from the environment, and
``lines`` maps each key path (a tuple such as ``("jobs", "backup", "schedule")``)
to its 1-based line in the file, so every later error can say where it is.

Raises ConfigError for unreadable files and YAML syntax errors. Problems in
single values (duplicate keys, values no YAML type accepts, unset or malformed
variables) are listed in ``lines.problems`` instead, with their paths in
``lines.failed``, so the loader reports them together with everything else.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

import yaml

from maintainer.errors import ConfigError

Path_ = tuple[Any, ...]

_REFERENCE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)
_NAME_START = re.compile(r"[A-Za-z_]")
_FORMS = "write ${VAR} or ${VAR:-default}, and $$ for a literal '$'"

# Keys whose values are secrets: a problem found in them never quotes the value.
# Each also accepts NAME_file (the Docker secrets convention), read by the loader.
SECRET_FIELDS = frozenset({"password", "access_key_id", "secret_access_key", "session_token", "token", "url"})


class InterpolationError(ValueError):
    """A ``$`` form that is neither ``${VAR}``, ``${VAR:-default}`` nor ``$$``."""


def format_path(path: Path_) -> str:
    """``("jobs", "backup", 0)`` -> ``jobs.backup[0]``; an empty key shows as ``""``."""
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + (str(part) if part != "" else '""')
    return out or "(top level)"


class LineMap:
    """Key path -> line number, answering for the nearest known ancestor."""

    def __init__(self, lines: dict[Path_, int], source: str, problems: list[str] | None = None,
                 failed: set[Path_] | None = None):
        self._lines = lines
        self.source = source
        self.problems = problems or []
        self.failed = failed or set()

    def alias(self, path: Path_, other: Path_) -> None:
        """Let ``path`` answer with the line of ``other`` (a secret read from ``NAME_file``)."""
        line = self._lines.get(tuple(other))
        if line is not None:
            self._lines.setdefault(tuple(path), line)

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

    Raises KeyError(name) for a variable that is unset and has no default, and
    InterpolationError for anything else that looks like a variable: an
    unclosed ``${VAR``, ``${}``, ``${VAR:?x}`` or ``${A:-${B}}`` (not supported),
    and a bare ``$VAR`` (so a forgotten brace never becomes a literal host name).
    A ``$`` before anything else (a digit, punctuation, the end) stays as it is.
    Messages never quote the text, which may be a secret.
    """
    out: list[str] = []
    i = 0
    while (j := text.find("$", i)) >= 0:
        out.append(text[i:j])
        following = text[j + 1:j + 2]
        if following == "$":
            out.append("$")
            i = j + 2
        elif following == "{":
            end = text.find("}", j + 2)
            if end < 0:
                raise InterpolationError(f"'${{' is not closed by '}}' ({_FORMS})")
            match = _REFERENCE.fullmatch(text[j + 2:end])
            if match is None:
                raise InterpolationError(f"'${{...}}' is not a variable reference ({_FORMS})")
            name, default = match.groups()
            if default is not None and "${" in default:
                raise InterpolationError(f"a default cannot contain another '${{' ({_FORMS})")
            value = env.get(name)
            if value is None or (value == "" and default is not None):
                if default is None:
                    raise KeyError(name)
                value = default
            out.append(value)
            i = end + 1
        elif _NAME_START.fullmatch(following):
            raise InterpolationError(f"a '$' before a name is not expanded ({_FORMS})")
        else:
            out.append("$")
            i = j + 1
    out.append(text[i:])
    return "".join(out)


class _Converter:
    def __init__(self, source: str, env: Mapping[str, str]):
        self.source = source
        self.env = env
        self.lines: dict[Path_, int] = {}
        self.problems: list[str] = []
        self.failed: set[Path_] = set()
        self._open: set[int] = set()

    def problem(self, node: yaml.Node, path: Path_, message: str, *, value_dropped: bool = True) -> None:
        """Record a problem; ``value_dropped`` when the value at ``path`` became None because of it."""
        self.problems.append(f"{self.source}:{node.start_mark.line + 1}: at '{format_path(path)}': {message}")
        if value_dropped:
            self.failed.add(path)

    def convert(self, node: yaml.Node, path: Path_) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            # An alias may point at a collection that contains it: `a: &x [*x]`.
            if id(node) in self._open:
                self.problem(node, path, "an alias refers to a collection that contains it")
                return None
            self._open.add(id(node))
            try:
                return self.convert_collection(node, path)
            finally:
                self._open.discard(id(node))
        return self.convert_scalar(node, path, expand=True)

    def convert_collection(self, node: yaml.Node, path: Path_) -> Any:
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, path + (i,)) for i, item in enumerate(node.value)]
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            known = len(self.problems)
            key = self.convert_scalar(key_node, path, expand=False)
            if len(self.problems) > known:
                continue
            if isinstance(key, (dict, list)):
                self.problem(key_node, path, "a key must be a plain value", value_dropped=False)
                continue
            child = path + (key,)
            if key in out:
                self.problem(key_node, child, "duplicate key", value_dropped=False)
            self.lines[child] = key_node.start_mark.line + 1
            out[key] = self.convert(value_node, child)
        return out

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
                self.problem(node, path, f"environment variable {exc.args[0]} is not set "
                                         f"(use ${{{exc.args[0]}:-default}} for a default)")
                return None
            except InterpolationError as exc:
                self.problem(node, path, str(exc))
                return None
            if expanded != value:
                if node.style is None:
                    # An unquoted scalar is typed after expansion, so `port: ${PGPORT:-5432}` is an int.
                    tag = _resolve_plain(expanded)
                value = expanded
        try:
            return _LOADER.construct_object(yaml.ScalarNode(tag, value, node.start_mark, node.end_mark, style=node.style),
                                            deep=True)
        except yaml.constructor.ConstructorError:
            # Only the tag is named: the value may be a secret.
            self.problem(node, path, f"unsupported YAML tag {_short_tag(tag)}", value_dropped=expand)
        except (ValueError, TypeError, OverflowError, ArithmeticError):
            self.problem(node, path, f"not a valid {_short_tag(tag)} value", value_dropped=expand)
        return None


def _short_tag(tag: str) -> str:
    return "!!" + tag[len("tag:yaml.org,2002:"):] if tag.startswith("tag:yaml.org,2002:") else tag


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
        line = syntax_error_line(exc)
        problem = f"{source}:{line}: at '{format_path(path_near(text, line))}'" if line else source
        problem += f": YAML syntax error: {syntax_error_text(exc)}"
        raise ConfigError(f"{source}: YAML syntax error", problems=[problem]) from None
    if node is None:
        # Empty, or only comments: an empty mapping, so the loader names what is missing.
        return {}, LineMap({(): 1}, source)
    conv = _Converter(source, os.environ if env is None else env)
    data = conv.convert(node, ())
    return data, LineMap(conv.lines, source, conv.problems, conv.failed)


# Mistakes the parser notices only later (an unclosed bracket or quote) are made
# where the construct starts; for the others the line it stopped at is the mistake.
_STARTS_AT_FAULT = ("flow", "quoted", "block scalar", "directive", "anchor", "alias", "tag")


def syntax_error_line(exc: yaml.YAMLError) -> int | None:
    """The 1-based line of a syntax error's likely mistake; None if the parser gave none."""
    context = getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem_mark", None)
    if context is not None and (problem is None or any(w in (getattr(exc, "context", None) or "")
                                                       for w in _STARTS_AT_FAULT)):
        return context.line + 1
    mark = problem or context
    return mark.line + 1 if mark is not None else None


_KEY_LINE = re.compile(r"""^(?P<indent>[ \t]*(?:-[ \t]+)*)(?P<key>"[^"]*"|'[^']*'|[^\s#:'"{}\[\],&*!|>-][^#:]*?)[ \t]*:(?:[ \t]|$)""")


def path_near(text: str, line: int) -> Path_:
    """The key path a line of a file that does not parse most likely belongs to.

    Read from indentation alone: the key on ``line`` or the nearest one above,
    then each less indented key above that. List positions are left out.
    """
    path: list[str] = []
    limit: int | None = None
    for raw in reversed(text.splitlines()[:line]):
        match = _KEY_LINE.match(raw)
        if match is None:
            continue
        indent = len(match.group("indent"))
        if limit is None or indent < limit:
            path.insert(0, match.group("key").strip("'\""))
            limit = indent
            if indent == 0:
                break
    return tuple(path)


def syntax_error_text(exc: yaml.YAMLError) -> str:
    """The parser's complaint, with both of its lines when it gives two."""
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    problem, problem_mark = getattr(exc, "problem", None), getattr(exc, "problem_mark", None)
    if problem is None:
        return str(exc).splitlines()[0]
    text = problem
    if problem_mark is not None:
        text += f" (line {problem_mark.line + 1}, column {problem_mark.column + 1})"
    if context and context_mark is not None:
        text += f", {context} that starts at line {context_mark.line + 1}, column {context_mark.column + 1}"
    elif context:
        text += f", {context}"
    return text
