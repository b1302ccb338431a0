"""Replace secret values by a marker before anything is archived.

A value is secret when its name contains one of the configured patterns
(PASSWORD, SECRET, TOKEN, KEY, ...; case-insensitive): environment variables,
``KEY=VALUE`` lines of env files, ``key: value`` entries of compose and other
config files, labels and ``--password=...`` arguments. Credentials inside URLs
(``postgres://user:pass@host``) and ``Bearer``/``Basic`` tokens are masked
whatever their name. Masking errs on the side of hiding too much.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

MARKER = "<masked by maintainer>"

_ASSIGN = re.compile(
    r"""^(?P<lead>\s*(?:export\s+)?(?:-\s+)?["']?)(?P<key>[A-Za-z_][A-Za-z0-9_.\-]*)(?P<sep>["']?\s*(?::|=)[ \t]*)(?P<value>.*?)(?P<trail>\s*)$"""
)
_URL_CREDS = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@'\"]+):(?P<secret>[^\s@/'\"]+)@")
_BEARER = re.compile(r"(?P<head>\b(?:Bearer|Basic|Token)\s+)(?P<secret>[A-Za-z0-9._~+/=\-]{8,})")
_INLINE = re.compile(r"(?P<head>(?:(?<=\s)|^)(?:--?)?(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)=)(?P<value>[^\s'\"]+|'[^']*'|\"[^\"]*\")")
_FLAG = re.compile(r"^(?P<flag>--?[A-Za-z0-9_.\-]+)=(?P<value>.+)$")


class Masker:
    """Masks secret values by name pattern; counts how many it replaced."""

    def __init__(self, patterns: Sequence[str]):
        self.patterns = [p.upper() for p in patterns if p]
        self.count = 0

    def is_secret_name(self, name: str) -> bool:
        upper = name.upper().replace("-", "_").replace(".", "_")
        return any(p in upper for p in self.patterns)

    def _replace(self, value: str) -> str:
        if value and value != MARKER:
            self.count += 1
            return MARKER
        return value

    def free_text(self, text: str) -> str:
        """Mask URL credentials and bearer tokens anywhere in ``text``."""
        def url(m: re.Match) -> str:
            self.count += 1
            return f"{m['head']}:{MARKER}@"

        def bearer(m: re.Match) -> str:
            self.count += 1
            return f"{m['head']}{MARKER}"

        def inline(m: re.Match) -> str:
            if not self.is_secret_name(m["name"]) or m["value"] == MARKER:
                return m[0]
            self.count += 1
            return f"{m['head']}{MARKER}"

        return _INLINE.sub(inline, _BEARER.sub(bearer, _URL_CREDS.sub(url, text)))

    def value(self, name: str, value: str | None) -> str | None:
        """The value of a named setting (env var, label), masked when its name looks secret."""
        if value is None:
            return None
        if self.is_secret_name(name):
            return self._replace(value) if value else value
        return self.free_text(value)

    def env_list(self, env: Iterable[str]) -> dict[str, str]:
        """Docker's ["K=V", ...] as a masked, sorted mapping."""
        out: dict[str, str] = {}
        for entry in env or []:
            key, _, val = entry.partition("=")
            out[key] = self.value(key, val) or ""
        return dict(sorted(out.items()))

    def mapping(self, data: dict[str, str] | None) -> dict[str, str]:
        return {k: (self.value(k, v) if isinstance(v, str) else v) for k, v in sorted((data or {}).items())}

    def args(self, args: Sequence[str] | None) -> list[str] | None:
        """Command arguments: ``--password=x`` and ``--password x`` forms, plus free text."""
        if args is None:
            return None
        out: list[str] = []
        hide_next = False
        for arg in args:
            if hide_next:
                out.append(self._replace(arg))
                hide_next = False
                continue
            m = _FLAG.match(arg)
            if m and self.is_secret_name(m["flag"].lstrip("-")):
                out.append(f"{m['flag']}={self._replace(m['value'])}")
            elif arg.startswith("-") and "=" not in arg and self.is_secret_name(arg.lstrip("-")):
                out.append(arg)
                hide_next = True
            else:
                out.append(self.free_text(arg))
        return out

    def text(self, text: str) -> str:
        """A config file's text: every ``name = value`` / ``name: value`` line with a
        secret-looking name has its value replaced; URL credentials go everywhere."""
        lines = []
        block_indent: int | None = None  # inside a secret YAML block scalar: its key's indent
        for line in text.splitlines(keepends=True):
            body = line.rstrip("\r\n")
            ending = line[len(body):]
            indent = len(body) - len(body.lstrip())
            if block_indent is not None:
                if not body.strip() or indent > block_indent:
                    if body.strip():
                        self.count += 1
                        body = " " * indent + MARKER
                    lines.append(body + ending)
                    continue
                block_indent = None
            m = _ASSIGN.match(body)
            if m and m["value"] and self.is_secret_name(m["key"]) and not m["value"].lstrip().startswith("#"):
                value = m["value"]
                if value.rstrip() in ("|", ">", "|-", ">-", "|+", ">+"):
                    block_indent = indent  # the secret is on the indented lines that follow
                else:
                    body = f"{m['lead']}{m['key']}{m['sep']}{self._replace(value)}{m['trail']}"
            else:
                body = self.free_text(body)
            lines.append(body + ending)
        return "".join(lines)
