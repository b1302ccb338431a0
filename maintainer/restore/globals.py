"""Restoring ``pg_dumpall --globals-only`` output: roles first, existing ones left alone.

Roles that already exist on the target keep their attributes and password
(the restore must not reset the password of the user it connects as, nor of
live application roles); missing roles are created as they were. Other
statements (memberships, settings, tablespaces) run one by one; one that
fails is reported and the rest go on, like ``psql`` without ON_ERROR_STOP.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_ROLE_STMT = re.compile(r'^(?:CREATE|ALTER)\s+ROLE\s+("(?:[^"]|"")+"|[^\s;]+)', re.IGNORECASE)
_SKIP_PREFIXES = ("\\",)  # psql meta-commands such as \restrict, \connect
_TOLERATED = ("already exists", "is already a member of", "already has role")


@dataclass
class GlobalsReport:
    applied: int = 0
    kept_existing: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def describe(self) -> str:
        text = f"{self.applied} statements applied"
        if self.kept_existing:
            text += f", existing roles kept: {', '.join(sorted(self.kept_existing))}"
        if self.errors:
            text += f"; {len(self.errors)} failed: " + "; ".join(self.errors[:3])
        return text


_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")


def split_statements(sql: str) -> list[str]:
    """Statements of pg_dumpall/pg_restore SQL output, each ending with the line
    whose ``;`` is outside every quote. Comments and psql meta-commands (lines
    starting with a backslash) between statements are dropped.

    The scan follows SQL's quoting: '...' literals, "..." identifiers (a role
    named o'reilly holds a ' that is no quote) and $tag$...$tag$ bodies, each
    with its doubled-quote escapes; ``--`` starts a comment only outside them.
    """
    statements: list[str] = []
    pending: list[str] = []
    quote: str | None = None  # the closing text we are inside of: ', ", or a $tag$
    for line in sql.splitlines():
        stripped = line.strip()
        if quote is None and not pending and (not stripped or stripped.startswith("--")
                                              or stripped.startswith(_SKIP_PREFIXES)):
            continue
        pending.append(line)
        quote, code = _scan(line, quote)
        if quote is None and code.rstrip().endswith(";"):
            statements.append("\n".join(pending).strip())
            pending = []
    if pending:
        statements.append("\n".join(pending).strip())
    return statements


def _scan(line: str, quote: str | None) -> tuple[str | None, str]:
    """The quote still open at the end of ``line`` (given the one open at its
    start), and the line without a trailing ``--`` comment."""
    i = 0
    while i < len(line):
        if quote is not None:
            end = line.find(quote, i)
            if end < 0:
                return quote, line
            i, quote = end + len(quote), None  # '' and "" close and reopen: same result
            continue
        ch = line[i]
        if ch in "'\"":
            quote, i = ch, i + 1
        elif ch == "$" and (m := _DOLLAR_TAG.match(line, i)) and not (i and (line[i - 1].isalnum() or line[i - 1] == "_")):
            quote, i = m.group(0), m.end()
        elif line.startswith("--", i):
            return None, line[:i]
        else:
            i += 1
    return quote, line


def role_of(statement: str) -> str | None:
    """The role a CREATE ROLE / ALTER ROLE statement is about (unquoted), else None."""
    m = _ROLE_STMT.match(statement)
    if not m:
        return None
    name = m.group(1)
    if name.startswith('"'):
        return name[1:-1].replace('""', '"')
    return name.lower()


def plan_globals(sql: str, existing_roles: set[str]) -> tuple[list[str], list[str]]:
    """(statements to run, existing roles left as they are) — pure."""
    run, kept = [], set()
    for statement in split_statements(sql):
        role = role_of(statement)
        if role is not None and role in existing_roles:
            kept.add(role)
            continue
        run.append(statement)
    return run, sorted(kept)


def apply_globals(conn, sql: str) -> GlobalsReport:
    """Run the globals on an autocommit psycopg connection; errors are collected."""
    import psycopg

    existing = {row[0] for row in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
    statements, kept = plan_globals(sql, existing)
    report = GlobalsReport(kept_existing=kept)
    for statement in statements:
        try:
            conn.execute(statement)
            report.applied += 1
        except psycopg.Error as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            if any(t in first for t in _TOLERATED):
                continue
            report.errors.append(first)
    return report
