"""The small family of errors maintainer raises.

Every error carries enough context to be printed as one line at the CLI edge
(``Error: <message>``), optionally followed by a hint. Nothing below the CLI
prints errors itself; it raises one of these with context and lets the edge
decide. Messages must never contain a secret value.
"""

from __future__ import annotations


class MaintainerError(Exception):
    """Base of every expected failure. ``exit_code`` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message


class UsageError(MaintainerError):
    """Bad flags or arguments given on the command line."""

    exit_code = 2


class ConfigError(MaintainerError):
    """The configuration file is missing, unreadable or invalid.

    ``problems`` lists every problem found (each already names its key path
    and line), so a user sees all mistakes at once.
    """

    exit_code = 2

    def __init__(self, message: str, *, problems: list[str] | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.problems = problems or []


class StorageError(MaintainerError):
    """A storage backend could not put, open, list, stat or delete an object."""


class ObjectNotFound(StorageError):
    """The requested key does not exist in storage."""


class DatabaseError(MaintainerError):
    """PostgreSQL could not be reached, refused us, or a client tool failed."""


class DockerError(MaintainerError):
    """The Docker engine could not be reached or refused an operation."""


class JobError(MaintainerError):
    """A job ran and failed; the message says which part and why."""


class Interrupted(MaintainerError):
    """The operation was stopped by a signal; whatever it started was cleaned up."""
