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


def split_statements(sql: str) -> list[str]:
    """Statements of pg_dumpall's globals output: one per line, or several lines
    for a literal that spans lines (comments on roles). Comments and psql
    meta-commands are dropped."""
    statements: list[str] = []
    pending: list[str] = []
    for line in sql.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("--") or stripped.startswith(_SKIP_PREFIXES)):
            continue
        pending.append(line)
        text = "\n".join(pending)
        if stripped.endswith(";") and text.count("'") % 2 == 0:
            statements.append(text.strip())
            pending = []
    if pending:
        statements.append("\n".join(pending).strip())
    return statements


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
