"""The SQL a restore runs itself, beside pg_restore: globals and database-level statements.

Globals (``pg_dumpall --globals-only`` output): roles that already exist on the
target keep their attributes and password (the restore must not reset the
password of the user it connects as, nor of live application roles); missing
roles are created as they were. Other statements (memberships, settings,
tablespaces) run one by one; one that fails is reported and the rest go on,
like ``psql`` without ON_ERROR_STOP.

Database-level statements (owner, settings, grants, comment), which pg_restore
emits only with --create: a restore into a new database name takes them from
the dump and renames them to the new database (``database_statements``), and
runs them the same way, a failure reported, not fatal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import psycopg

from maintainer.logs import get_logger

log = get_logger("restore.globals")

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


_DATABASE_NAME = re.compile(r'\bDATABASE\s+("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)')
_DATABASE_STATEMENTS = ("ALTER DATABASE", "ALTER ROLE", "GRANT", "REVOKE", "COMMENT ON DATABASE", "SECURITY LABEL")


def database_statements(sql_text: str, new_name: str) -> list[str]:
    """The database-level statements of ``pg_restore --create`` output (owner,
    settings, per-role settings, grants, comment), made to name ``new_name``
    instead of the dumped database. Pure. CREATE DATABASE and psql
    meta-commands are left out, and so is any statement that would still name
    the dumped database after the rename (it must never reach the live one)."""
    created = re.search(r"^CREATE DATABASE\s+(\"(?:[^\"]|\"\")+\"|\S+)", sql_text, re.MULTILINE)
    if not created:
        return []
    old = created.group(1)
    new = '"' + new_name.replace('"', '""') + '"'
    out = []
    for statement in split_statements(sql_text):
        if not statement.upper().startswith(_DATABASE_STATEMENTS):
            continue
        code = _mask_literals(statement)  # a name inside a comment's text is not a reference
        m = _DATABASE_NAME.search(code)
        if m is None or m.group(1) != old:
            continue
        renamed = statement[:m.start(1)] + new + statement[m.end(1):]
        if any(other.group(1) == old for other in _DATABASE_NAME.finditer(_mask_literals(renamed))):
            # Still names the dumped database: never run it against the live one.
            log.warning("restore.database_statement_skipped", reason="names the dumped database twice")
            continue
        out.append(renamed)
    return out


def _mask_literals(statement: str) -> str:
    """``statement`` with the inside of every '...' literal blanked, same length."""
    def blank(m: re.Match) -> str:
        text = m.group(0)
        return text if text.startswith('"') else "'" + " " * (len(text) - 2) + "'"

    # "..." identifiers are matched first so that the ' in "o'reilly" opens no literal.
    return re.sub(r'"(?:[^"]|"")*"|\'(?:[^\']|\'\')*\'', blank, statement)


def apply_database_statements(admin, statements: list[str]) -> str:
    """Run them one by one on an autocommit connection; a failure (a missing role,
    say) is reported in the returned text and logged, not fatal."""

    applied, errors = 0, []
    for statement in statements:
        try:
            admin.execute(statement)
            applied += 1
        except psycopg.Error as exc:
            errors.append((str(exc).strip().splitlines() or [type(exc).__name__])[0])
    if errors:
        log.warning("restore.database_settings_errors", errors=errors)
    text = f"{applied} statements applied"
    return text + (f"; {len(errors)} failed: " + "; ".join(errors[:3]) if errors else "")


# CREATE DATABASE options that make the database what it was: its encoding and
# locale. TEMPLATE (always template0 here), OWNER (set separately) and
# TABLESPACE (may not exist on the target) are left out.
_KEPT_OPTIONS = ("ENCODING", "LOCALE_PROVIDER", "LOCALE", "LC_COLLATE", "LC_CTYPE", "ICU_LOCALE", "ICU_RULES",
                 "BUILTIN_LOCALE")
_OPTION = re.compile(r"\b([A-Z_]+)\s*=\s*('(?:[^']|'')*'|[A-Za-z0-9_]+)")


def creation_options(sql_text: str) -> list[str]:
    """The encoding and locale options of the dump's ``CREATE DATABASE`` (from
    ``pg_restore --create`` output), as ``NAME = value`` texts ready to append to
    a CREATE DATABASE of another name. Pure; [] when there is no such statement."""
    for statement in split_statements(sql_text):
        if not statement.upper().startswith("CREATE DATABASE"):
            continue
        _, _, options = _mask_literals(statement).partition(" WITH ")
        start = len(statement) - len(options)
        return [f"{m.group(1)} = {statement[start + m.start(2):start + m.end(2)]}"
                for m in _OPTION.finditer(options) if m.group(1) in _KEPT_OPTIONS]
    return []
