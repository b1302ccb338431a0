"""`maintainer images ...` commands (being built)."""

from __future__ import annotations

COMMANDS: list = []
