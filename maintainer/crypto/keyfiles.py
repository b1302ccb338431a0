"""Key files in the formats the age CLI reads and writes.

- A recipients file (``age -R FILE``): one recipient per line (``age1...`` or
  ``ssh-ed25519 AAAA... comment``); blank lines and ``#`` comments are skipped.
- An identity file (``age -i FILE``, made by ``age-keygen``): ``#`` comment
  lines and one or more ``AGE-SECRET-KEY-1...`` lines (several keys in one
  file is how a key is rotated without losing the old one); or an unencrypted
  OpenSSH ed25519 private key.

Every problem names the file and line and never quotes a line of an identity
file. Every secret key read or made here is registered with maintainer.redact,
so it is masked if it ever reaches a log line or an error message.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from maintainer import redact
from maintainer.crypto.errors import KeyFormatError
from maintainer.crypto.keys import (IDENTITY_HRP, Identity, Recipient, SshEd25519Identity, X25519Identity,
                                    parse_recipient)

_OPENSSH = b"-----BEGIN OPENSSH PRIVATE KEY-----"


class KeyFileUnreadable(KeyFormatError):
    """The key file does not exist, cannot be read, or is empty (as opposed to malformed)."""


def _read(path: Path, shown: str, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileUnreadable(f"{what} {shown} does not exist") from None
    except IsADirectoryError:
        raise KeyFileUnreadable(f"{what} {shown} is a directory") from None
    except OSError as exc:
        raise KeyFileUnreadable(f"cannot read {what} {shown}: {exc.strerror or exc}") from None
    if not data.strip():
        raise KeyFileUnreadable(f"{what} {shown} is empty")
    return data


def _lines(data: bytes, shown: str, what: str) -> list[tuple[int, str]]:
    """(line number, text) of the lines that are neither blank nor comments."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyFormatError(f"{what} is not text (UTF-8)", where=shown) from None
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.lstrip().startswith("#")]


def parse_recipients(text: str, source: str) -> list[Recipient]:
    """The recipients of a recipients file's text; KeyFormatError at ``source:LINE`` for a bad line."""
    recipients = []
    for number, line in _lines(text.encode("utf-8"), source, "the recipients file"):
        try:
            recipients.append(parse_recipient(line))
        except KeyFormatError as exc:
            if line.upper().startswith(IDENTITY_HRP):
                redact.register(line)
            raise KeyFormatError(exc.reason, where=f"{source}:{number}", hint=exc.hint) from None
    if not recipients:
        raise KeyFormatError("the recipients file lists no recipient", where=source)
    return recipients


def read_recipients_file(path: str | Path, shown: str | None = None) -> list[Recipient]:
    """The recipients listed in ``path`` (``shown`` is how messages name it).

    Raises KeyFileUnreadable when it cannot be read, KeyFormatError for a bad line.
    """
    shown = shown or str(path)
    data = _read(Path(path), shown, "recipients file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyFormatError("the recipients file is not text (UTF-8)", where=shown) from None
    return parse_recipients(text, shown)


def read_identity_file(path: str | Path, shown: str | None = None) -> list[Identity]:
    """The identities in ``path``: AGE-SECRET-KEY-1 lines, or one OpenSSH ed25519 key.

    Raises KeyFileUnreadable when it cannot be read, KeyFormatError when it is
    malformed (naming the line, never showing it).
    """
    shown = shown or str(path)
    data = _read(Path(path), shown, "identity file")
    if data.lstrip().startswith(_OPENSSH):
        redact.register(data.decode("ascii", "replace").strip())
        return [SshEd25519Identity.from_openssh(data, shown)]
    lines = _lines(data, shown, "the identity file")
    for _number, line in lines:  # before parsing: a malformed key is still a secret
        redact.register(line)
        redact.register(line.upper())
    identities: list[Identity] = []
    for number, line in lines:
        where = f"{shown}:{number}"
        if not line.upper().startswith(IDENTITY_HRP + "1"):
            raise KeyFormatError("not an age identity (expected a line AGE-SECRET-KEY-1..., comments start "
                                 "with #; SSH keys must be the whole file)", where=where)
        identities.append(X25519Identity.parse(line, source=where))
    if not identities:
        raise KeyFormatError("the identity file holds no AGE-SECRET-KEY-1 line", where=shown)
    return identities


def identity_file_text(identity: X25519Identity, created: datetime | None = None) -> str:
    """The text ``age-keygen`` writes: two comment lines, then the secret key."""
    created = (created or datetime.now().astimezone()).replace(microsecond=0)
    stamp = created.isoformat().replace("+00:00", "Z")
    return f"# created: {stamp}\n# public key: {identity.recipient}\n{identity.secret_text()}\n"


def write_identity_file(path: str | Path, identity: X25519Identity) -> None:
    """Create ``path`` with mode 0600 holding ``identity``; never overwrites a file.

    Raises KeyFormatError (an EncryptionError) when the file exists or cannot be created.
    """
    text = identity_file_text(identity)
    redact.register(identity.secret_text())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFormatError(f"{path} already exists: an identity file is never overwritten",
                             hint="choose another --output, or remove the old file once no backup needs it") from None
    except OSError as exc:
        raise KeyFormatError(f"cannot create {path}: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(text)
    except BaseException:
        try:
            os.unlink(path)
        except OSError:
            pass
        raise


def recipients_of(identities: list[Identity]) -> list[Recipient]:
    """The public keys of ``identities``, each once, in order."""
    return list(dict.fromkeys(identity.recipient for identity in identities))
