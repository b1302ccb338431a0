"""CLI commands for this area; see the issue that builds them."""

from __future__ import annotations

COMMANDS: list = []
