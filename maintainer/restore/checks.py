"""Check files: named SQL queries with an expectation, run against a restored database.

A check file is plain SQL that psql could also run. Each check starts with a
``-- check: NAME`` line, then one ``-- expect: ...`` line, then exactly one
query (up to the next ``-- check:`` or the end of the file)::

    -- check: accounts_present
    -- expect: rows >= 100
    SELECT id FROM app.accounts;

Expectations:

``true``
    the query returns one row whose first column is true.
``rows >= N`` / ``rows <= N`` / ``rows = N``
    the number of rows the query returns.
``between A and B``
    the query returns one value (a number) with A <= value <= B.
``newer than DURATION``
    the query returns one timestamp no older than DURATION (30m, 12h, 7d...)
    *at the time the backup was taken*, so an old backup is not blamed for its age.

Other comment lines and blank lines are ignored. Parsing is pure; a mistake
raises CheckFileError naming the file and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

import psycopg

from maintainer.backup.manifest import CheckResult
from maintainer.config.types import parse_duration
from maintainer.errors import ConfigError

_CHECK = re.compile(r"^--\s*check:\s*(?P<name>.*?)\s*$", re.IGNORECASE)
_EXPECT = re.compile(r"^--\s*expect:\s*(?P<expr>.*?)\s*$", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_ROWS = re.compile(r"^rows\s*(?P<op>>=|<=|=)\s*(?P<n>\d+)$", re.IGNORECASE)
_NUMBER = r"-?\d+(?:\.\d+)?"
_BETWEEN = re.compile(rf"^between\s+(?P<lo>{_NUMBER})\s+and\s+(?P<hi>{_NUMBER})$", re.IGNORECASE)
_NEWER = re.compile(r"^newer\s+than\s+(?P<d>.+)$", re.IGNORECASE)


class CheckFileError(ConfigError):
    """A check file cannot be read or does not follow the format."""


@dataclass(frozen=True)
class Expectation:
    kind: str  # true | rows | between | newer
    op: str | None = None
    number: float | None = None
    low: float | None = None
    high: float | None = None
    max_age: timedelta | None = None

    def describe(self) -> str:
        if self.kind == "true":
            return "true"
        if self.kind == "rows":
            return f"rows {self.op} {int(self.number or 0)}"
        if self.kind == "between":
            return f"between {_num(self.low)} and {_num(self.high)}"
        return f"newer than {self.max_age}"


@dataclass(frozen=True)
class Check:
    name: str
    query: str
    expect: Expectation
    source: str  # "file:line" of its -- check: line


def parse_expectation(text: str) -> Expectation:
    """One ``-- expect:`` value -> Expectation; ValueError says what is accepted."""
    text = " ".join(text.split())
    if text.lower() == "true":
        return Expectation("true")
    if m := _ROWS.match(text):
        return Expectation("rows", op=m["op"], number=int(m["n"]))
    if m := _BETWEEN.match(text):
        low, high = float(m["lo"]), float(m["hi"])
        if low > high:
            raise ValueError(f"'{text}': the lower bound is above the upper bound")
        return Expectation("between", low=low, high=high)
    if m := _NEWER.match(text):
        return Expectation("newer", max_age=parse_duration(m["d"]))
    raise ValueError(f"'{text}' is not an expectation (use: true | rows >= N | rows <= N | rows = N | "
                     "between A and B | newer than DURATION)")


def parse_checks(text: str, source: str) -> list[Check]:
    """All checks in one file's text; CheckFileError("<source>:<line>: ...") on a mistake."""
    checks: list[Check] = []
    current: dict[str, Any] | None = None

    def finish() -> None:
        if current is None:
            return
        where = f"{source}:{current['line']}"
        if current["expect"] is None:
            raise CheckFileError(f"{where}: check '{current['name']}' has no '-- expect:' line")
        query = "\n".join(current["sql"]).strip().rstrip(";").strip()
        if not query:
            raise CheckFileError(f"{where}: check '{current['name']}' has no query")
        if ";" in _strip_literals(query):
            raise CheckFileError(f"{where}: check '{current['name']}' has more than one statement; "
                                 "each check is exactly one query")
        checks.append(Check(current["name"], query, current["expect"], where))

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if m := _CHECK.match(line):
            finish()
            name = m["name"]
            if not _NAME.match(name):
                raise CheckFileError(f"{source}:{number}: '{name}' is not a check name "
                                     "(letters, digits, _ . - only)")
            if any(c.name == name for c in checks):
                raise CheckFileError(f"{source}:{number}: check '{name}' is defined twice")
            current = {"name": name, "line": number, "expect": None, "sql": []}
            continue
        if m := _EXPECT.match(line):
            if current is None:
                raise CheckFileError(f"{source}:{number}: '-- expect:' before any '-- check:' line")
            if current["expect"] is not None or current["sql"]:
                raise CheckFileError(f"{source}:{number}: check '{current['name']}': "
                                     "'-- expect:' must come once, right after '-- check:'")
            try:
                current["expect"] = parse_expectation(m["expr"])
            except ValueError as exc:
                raise CheckFileError(f"{source}:{number}: {exc}") from None
            continue
        if not line or line.startswith("--"):
            continue
        if current is None:
            raise CheckFileError(f"{source}:{number}: SQL outside a check; start each check with '-- check: NAME'")
        current["sql"].append(raw)
    finish()
    return checks


def load_check_file(path: str | Path) -> list[Check]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CheckFileError(f"cannot read check file {path}: {exc.strerror or exc}") from None
    return parse_checks(text, str(path))


def checks_for(database: str, checks_dir: str | Path | None, extra: Sequence[str | Path] = ()) -> list[Check]:
    """The checks of ``<checks_dir>/<database>.sql`` (if it exists) plus every extra file.

    A missing per-database file is fine (not every database has checks); a
    missing extra file is a config mistake and raises CheckFileError.
    """
    checks: list[Check] = []
    if checks_dir:
        own = Path(checks_dir) / f"{database}.sql"
        if own.is_file():
            checks.extend(load_check_file(own))
    for extra_path in extra:
        for check in load_check_file(extra_path):
            if any(c.name == check.name for c in checks):
                raise CheckFileError(f"{check.source}: check '{check.name}' is already defined in another check file")
            checks.append(check)
    return checks


def evaluate(check: Check, rows: list[tuple], *, reference_time: datetime) -> CheckResult:
    """Judge a query's rows against the check's expectation (pure)."""
    exp = check.expect
    name = f"sql:{check.name}"
    if exp.kind == "rows":
        n = len(rows)
        ok = {">=": n >= (exp.number or 0), "<=": n <= (exp.number or 0), "=": n == exp.number}[exp.op or "="]
        return CheckResult(name=name, passed=ok, detail=f"{n} rows, expected {exp.describe()}")
    if len(rows) != 1 or not rows[0]:
        return CheckResult(name=name, passed=False, detail=f"expected one row, got {len(rows)}")
    value = rows[0][0]
    if exp.kind == "true":
        return CheckResult(name=name, passed=value is True, detail=f"returned {value!r}, expected true")
    if exp.kind == "between":
        try:
            number = float(value)
        except (TypeError, ValueError):
            return CheckResult(name=name, passed=False, detail=f"returned {value!r}, expected a number")
        ok = (exp.low or 0) <= number <= (exp.high or 0)
        return CheckResult(name=name, passed=ok, detail=f"returned {_num(number)}, expected {exp.describe()}")
    # newer than
    if not isinstance(value, datetime):
        return CheckResult(name=name, passed=False, detail=f"returned {value!r}, expected a timestamp")
    when = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    age = reference_time - when
    assert exp.max_age is not None
    ok = age <= exp.max_age
    return CheckResult(name=name, passed=ok,
                       detail=f"newest {when.isoformat()} was {_age(age)} old at backup time, "
                              f"expected at most {_age(exp.max_age)}")


def run_checks(conn, checks: Sequence[Check], *, reference_time: datetime,
               statement_timeout_ms: int = 60_000) -> list[CheckResult]:
    """Run each check read-only on a psycopg connection; a failing query fails its check only."""

    results = []
    for check in checks:
        try:
            with conn.transaction():
                conn.execute("SET TRANSACTION READ ONLY")
                conn.execute(f"SET LOCAL statement_timeout = {int(statement_timeout_ms)}")
                rows = conn.execute(check.query).fetchall()
        except psycopg.Error as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            results.append(CheckResult(name=f"sql:{check.name}", passed=False, detail=f"query failed: {first}"))
            continue
        results.append(evaluate(check, rows, reference_time=reference_time))
    return results


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _age(td: timedelta) -> str:
    seconds = int(td.total_seconds())
    if seconds < 0:
        return f"-{_age(-td)}"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds}s"


def _strip_literals(sql: str) -> str:
    """The query without string literals, dollar-quoted bodies and comments, to count statements."""
    sql = re.sub(r"\$(\w*)\$.*?\$\1\$", "", sql, flags=re.S)
    sql = re.sub(r"'(?:[^']|'')*'", "", sql)
    sql = re.sub(r"--[^\n]*", "", sql)
    return sql
