"""Load schedules.yaml: read, expand, resolve secret files, validate, cross-check.

Every problem found is collected and reported at once, each naming the file,
line and key path. Secret values read here are registered with the log
redactor so they can never be printed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Mapping

from pydantic import BaseModel, SecretStr, ValidationError

from maintainer import redact
from maintainer.config.jobs import JOB_MODELS
from maintainer.config.models import Config
from maintainer.config.types import PENDING_SECRET
from maintainer.config.yamlsource import SECRET_FIELDS, LineMap, format_path, load_yaml, parse_yaml
from maintainer.errors import ConfigError

SECTIONS = "timezone, storage, databases, notify, daemon, jobs"

DEFAULT_LOCATIONS = ("./schedules.yaml", "/etc/maintainer/schedules.yaml")


def find_config(explicit: str | None, env: Mapping[str, str] | None = None) -> Path:
    """--config, else $MAINTAINER_CONFIG, else ./schedules.yaml, else /etc/maintainer/schedules.yaml."""
    env = os.environ if env is None else env
    if explicit:
        return Path(explicit)
    if env.get("MAINTAINER_CONFIG"):
        return Path(env["MAINTAINER_CONFIG"])
    for candidate in DEFAULT_LOCATIONS:
        if Path(candidate).exists():
            return Path(candidate)
    raise ConfigError("no configuration file found (looked at $MAINTAINER_CONFIG, ./schedules.yaml, /etc/maintainer/schedules.yaml)",
                      hint="pass --config PATH")


def load_config(path: str | Path, env: Mapping[str, str] | None = None, *, strict_secrets: bool = False) -> Config:
    """Load and validate ``path``. Raises ConfigError listing every problem.

    A secret file that cannot be read is an error only with ``strict_secrets``;
    otherwise the field holds an UnavailableSecret that raises ConfigError (naming
    the file and line) when a job uses it, and ``config.secret_warnings`` lists it.
    """
    data, lines = load_yaml(Path(path), env)
    return build_config(data, lines, strict_secrets=strict_secrets)


def parse_config(text: str, source: str = "<config>", env: Mapping[str, str] | None = None,
                 *, strict_secrets: bool = False) -> Config:
    data, lines = parse_yaml(text, source, env)
    return build_config(data, lines, strict_secrets=strict_secrets)


class UnavailableSecret(SecretStr):
    """A secret whose file could not be read; using it raises ConfigError."""

    def __init__(self, message: str):
        super().__init__("")
        self._message = message

    def get_secret_value(self) -> str:
        raise ConfigError(self._message, hint="create the file or point the *_file setting elsewhere")


_PENDING = PENDING_SECRET


def build_config(data: Any, lines: LineMap, *, strict_secrets: bool = False) -> Config:
    problems: list[str] = list(lines.problems)
    # Paths already explained (a bad value, an empty value, a bad secret file):
    # what the model says about them, or below them, would only repeat it.
    explained: set[tuple] = set(lines.failed)
    unavailable: list[str] = []

    def problem_where(path: tuple) -> str:
        return f"{lines.where(path)}: at '{format_path(path)}'"

    def problem(path: tuple, message: str) -> None:
        problems.append(f"{problem_where(path)}: {message}")
        explained.add(tuple(path))

    def fail() -> ConfigError:
        problems.sort(key=_line_key)
        return ConfigError(f"{lines.source}: {len(problems)} problem(s) in the configuration", problems=problems)

    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else "a single value"
        problem((), f"the configuration must be a mapping of sections ({SECTIONS}), not {kind}")
        raise fail()
    empty = [path for path in _empty_values(data, ()) if path not in explained]
    base_dir = Path(lines.source).parent
    secrets: list[str] = []
    _resolve_secret_files(data, (), problem, problem_where, secrets, base_dir, unavailable, lines)
    _check_encryption_keys(data, problem, problem_where, base_dir, unavailable)
    if strict_secrets:
        problems.extend(unavailable)

    config = None
    unknown: list[tuple] = []
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        errors = [(_clean_loc(err), err) for err in exc.errors()]
        unknown = [loc for loc, err in errors if err["type"] == "extra_forbidden"]
        known = explained | set(empty)
        for loc, err in errors:
            if err["type"] != "extra_forbidden" and _under(loc, known):
                continue
            if err["type"] == "value_error" and any(path[:len(loc)] == loc for path in known):
                continue  # a whole-entry check (keys in pairs) that saw a value already reported
            problem(loc, _explain(err))
    for path in empty:
        if not _under(path, set(unknown)):
            problem(path, "empty value: give a value, or remove the key" if isinstance(path[-1], str)
                    else "empty list item")
    if data.get("jobs", {}) == {}:
        problem(("jobs",), "no jobs are defined (a configuration needs at least one job)" if data
                else "the configuration is empty (it needs at least one job)")
    problems.extend(_check_references(data, lines))
    if problems:
        raise fail()
    assert config is not None
    config._source = lines.source
    for storage in config.storage.values():
        if storage.encryption is not None:
            storage.encryption._base_dir = base_dir
    config._secret_warnings = [] if strict_secrets else list(unavailable)
    _mark_unavailable(config, unavailable)
    for value in secrets:
        redact.register(value)
    _register_model_secrets(config)
    return config


def _under(path: tuple, roots: set[tuple]) -> bool:
    """Whether ``path`` is one of ``roots`` or lies below one."""
    return any(path[:n] in roots for n in range(len(path) + 1))


def _empty_values(node: Any, path: tuple) -> Iterator[tuple]:
    """Paths of null values: `key:` with nothing after it, `~`, `null`, or `${VAR:-}` unquoted.

    None never means "the default" in this file; a forgotten value must not
    silently become one (an empty access_key_id fell back to partial credentials).
    """
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        if value is None:
            yield path + (key,)
        else:
            yield from _empty_values(value, path + (key,))


def _line_key(p: str) -> tuple[int, str]:
    try:
        return int(p.split(":", 2)[1]), p
    except (IndexError, ValueError):
        return 0, p


def _resolve_secret_files(node: Any, path: tuple, problem, problem_where, secrets: list[str], base_dir: Path,
                          unavailable: list[str], lines: LineMap) -> None:
    """Replace each ``NAME_file`` key by ``NAME`` holding the file's content.

    A ``NAME_file`` key with a problem is dropped (after the problem is
    recorded), so it is not reported a second time as an unknown key.
    """
    if isinstance(node, list):
        for i, item in enumerate(node):
            _resolve_secret_files(item, path + (i,), problem, problem_where, secrets, base_dir, unavailable, lines)
        return
    if not isinstance(node, dict):
        return
    for key in list(node.keys()):
        value = node[key]
        if isinstance(key, str) and key.endswith("_file") and key[:-5] in SECRET_FIELDS:
            field = key[:-5]
            if field in node:
                problem(path + (key,), f"give either {field} or {key}, not both")
                del node[key]
                continue
            if value is None:  # reported as an empty value
                del node[key]
                continue
            if not isinstance(value, str) or not value:
                problem(path + (key,), "expected the path of a file holding the secret")
                del node[key]
                continue
            lines.alias(path + (field,), path + (key,))
            file_path = Path(value)
            if not file_path.is_absolute():
                file_path = base_dir / file_path
            reason = None
            try:
                secret = file_path.read_text(encoding="utf-8").rstrip("\r\n")
                if not secret:
                    reason = f"secret file {value} is empty"
            except FileNotFoundError:
                reason = f"secret file {value} does not exist"
            except (OSError, UnicodeDecodeError) as exc:
                reason = f"cannot read secret file {value}: {getattr(exc, 'strerror', None) or exc}"
            del node[key]
            if reason:
                where = f"{problem_where(path + (key,))}: {reason}"
                unavailable.append(where)
                node[field] = f"{_PENDING}{len(unavailable) - 1}"
                continue
            secrets.append(secret)
            node[field] = secret
        elif isinstance(key, str) and key in SECRET_FIELDS and isinstance(value, str) and key != "url":
            secrets.append(value)
        else:
            _resolve_secret_files(value, path + (key,), problem, problem_where, secrets, base_dir, unavailable, lines)


def _check_encryption_keys(data: Any, problem, problem_where, base_dir: Path, unavailable: list[str]) -> None:
    """Parse every recipient and identity file of each storage's ``encryption``.

    A bad key is reported at its own line: the inline recipient's line here,
    or FILE:LINE of the key file (after the line of the key naming the file).
    An identity file that cannot be read is only unavailable (like a secret
    file): the container that only writes backups has no identity.
    Values of the wrong type are left to the model to report.
    """
    storage = data.get("storage")
    for name, spec in storage.items() if isinstance(storage, dict) else ():
        encryption = spec.get("encryption") if isinstance(spec, dict) else None
        if not isinstance(encryption, dict):
            continue
        # Lazy: a config without encryption never loads the cryptography library (~20 ms, ~10 MB RSS).
        from maintainer.crypto import KeyFileUnreadable, KeyFormatError, parse_recipient
        from maintainer.crypto.keyfiles import read_identity_file, read_recipients_file

        path = ("storage", name, "encryption")
        recipients = encryption.get("recipients")
        for i, text in enumerate(recipients if isinstance(recipients, list) else ()):
            if isinstance(text, str) and text:
                try:
                    parse_recipient(text)
                except KeyFormatError as exc:
                    if text.upper().startswith("AGE-SECRET-KEY-"):
                        redact.register(text)
                    problem(path + ("recipients", i), exc.reason)
        listed = encryption.get("identity_files")
        files = [(("recipients_file",), encryption.get("recipients_file"), read_recipients_file),
                 (("identity_file",), encryption.get("identity_file"), read_identity_file)]
        files += [(("identity_files", i), item, read_identity_file)
                  for i, item in enumerate(listed if isinstance(listed, list) else ())]
        for key, value, reader in files:
            if not isinstance(value, str) or not value:
                continue
            file_path = Path(value) if Path(value).is_absolute() else base_dir / value
            try:
                reader(file_path, value)
            except KeyFileUnreadable as exc:
                if reader is read_recipients_file:
                    problem(path + key, exc.message)  # writing needs it: never only a warning
                else:
                    unavailable.append(f"{problem_where(path + key)}: {exc.message}")
            except KeyFormatError as exc:
                problem(path + key, exc.message)


def _secret_fields(obj: Any) -> Iterator[tuple[BaseModel, str, SecretStr]]:
    """Every (model, field name, SecretStr value) in a loaded config, depth first."""
    if isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            value = getattr(obj, name)
            if isinstance(value, SecretStr):
                yield obj, name, value
            else:
                yield from _secret_fields(value)
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _secret_fields(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _secret_fields(value)


def _mark_unavailable(config: Config, unavailable: list[str]) -> None:
    """Swap placeholder values of unreadable secret files for UnavailableSecret."""
    for model, name, value in list(_secret_fields(config)):
        if value.get_secret_value().startswith(_PENDING):
            index = int(value.get_secret_value()[len(_PENDING):])
            object.__setattr__(model, name, UnavailableSecret(unavailable[index]))


def _register_model_secrets(config: Config) -> None:
    for _model, _name, value in _secret_fields(config):
        if not isinstance(value, UnavailableSecret):
            redact.register(value.get_secret_value())


def _clean_loc(err: dict) -> tuple:
    """The key path an error is about, as the file spells it."""
    loc = tuple(err["loc"])
    # Discriminated unions put the tag into the path: jobs.<name>.<type>.field
    if len(loc) >= 3 and loc[0] == "jobs" and loc[2] in JOB_MODELS:
        loc = loc[:2] + loc[3:]
    # A bad mapping key is reported at the key itself, not at a "[key]" child.
    if loc and loc[-1] == "[key]":
        loc = loc[:-1]
    # The job type is wrong or missing: that is the 'type' key, and its line.
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc += ("type",)
    return loc


def _explain(err: dict) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag")
        return f"unknown job type '{tag}' (expected one of: {', '.join(sorted(JOB_MODELS))})"
    if kind == "union_tag_not_found":
        return f"required key is missing (the job type, one of: {', '.join(sorted(JOB_MODELS))})"
    if kind == "missing":
        return "required key is missing"
    # A SecretStr reports an empty string as the wrong type; both mean the same.
    if kind == "string_too_short" or (kind == "string_type" and err.get("input") == ""):
        return "must not be empty"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if kind in ("int_parsing", "int_type", "float_parsing", "bool_parsing", "string_type", "list_type",
                "dict_type", "model_type", "bool_type", "float_type", "int_from_float"):
        shown = err.get("input")
        if not isinstance(shown, (dict, list)):
            msg += f" (got {shown!r})" if not _looks_secret(err) else ""
    return msg


def _looks_secret(err: dict) -> bool:
    return any(isinstance(p, str) and p in SECRET_FIELDS for p in err["loc"])


def _check_references(data: dict, lines: LineMap) -> list[str]:
    """Jobs may only name storage and databases that are defined.

    A section that is not a mapping is already a problem of its own; names
    are then not checked against it, so one mistake is not reported per job.
    """
    problems: list[str] = []
    storage = data.get("storage", {})
    databases = data.get("databases", {})
    jobs = data.get("jobs") if isinstance(data.get("jobs"), dict) else {}
    for name, job in jobs.items():
        if not isinstance(job, dict):
            continue
        ref = job.get("storage")
        # An empty name is the model's to report.
        if isinstance(storage, dict) and isinstance(ref, str) and ref and ref not in storage:
            path = ("jobs", name, "storage")
            known = ", ".join(sorted(map(str, storage))) or "none defined"
            problems.append(f"{lines.where(path)}: at '{format_path(path)}': storage '{ref}' is not defined (defined: {known})")
        dbs = job.get("databases")
        if isinstance(databases, dict) and isinstance(dbs, list):
            for i, ref in enumerate(dbs):
                if isinstance(ref, str) and ref and ref not in databases:
                    path = ("jobs", name, "databases", i)
                    known = ", ".join(sorted(map(str, databases))) or "none defined"
                    problems.append(f"{lines.where(path)}: at '{format_path(path)}': database '{ref}' is not defined (defined: {known})")
        ref = job.get("database")
        if isinstance(databases, dict) and isinstance(ref, str) and ref and ref not in databases:
            path = ("jobs", name, "database")
            known = ", ".join(sorted(map(str, databases))) or "none defined"
            problems.append(f"{lines.where(path)}: at '{format_path(path)}': database '{ref}' is not defined (defined: {known})")
        problems += _check_before_jobs(name, job, jobs, lines)
    return problems


def _check_before_jobs(name: str, job: dict, jobs: dict, lines: LineMap) -> list[str]:
    """An image update's ``apply.before`` names other jobs of this file."""
    apply = job.get("apply")
    before = apply.get("before") if isinstance(apply, dict) else None
    problems: list[str] = []
    for i, ref in enumerate(before if isinstance(before, list) else []):
        if isinstance(ref, str) and ref and (ref not in jobs or ref == name):
            path = ("jobs", name, "apply", "before", i)
            why = "is this job itself" if ref == name else "is not defined"
            known = ", ".join(sorted(str(n) for n in jobs if n != name)) or "none defined"
            problems.append(f"{lines.where(path)}: at '{format_path(path)}': job '{ref}' {why} (jobs: {known})")
    return problems
