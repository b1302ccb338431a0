"""`maintainer keys`: make an age identity, and show the recipients of one.

The files are age's own format, so ``age-keygen -y FILE`` and ``age -d -i FILE``
read them, and keys made by ``age-keygen`` work here.
"""

from __future__ import annotations

from pathlib import Path

import click

from maintainer.cli.output import echo


@click.group("keys")
def keys() -> None:
    """Make and inspect age keys for encrypted storage (docs/encryption.md)."""


@keys.command("generate")
@click.option("--output", "-o", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the identity to FILE (mode 0600; an existing file is never overwritten). "
                   "Without it the identity goes to standard output.")
def generate(output: Path | None) -> None:
    """Make a new identity (private key) and print its recipient (public key).

    The recipient goes into the storage's encryption.recipients; the identity
    file is what restore needs. Keep a copy of the identity offline: backups
    encrypted to it cannot be read without it.
    """
    # Lazy: every CLI start would otherwise load cryptography (~20 ms, ~10 MB RSS) for two commands.
    from maintainer.crypto import X25519Identity, write_identity_file
    from maintainer.crypto.keyfiles import identity_file_text

    identity = X25519Identity.generate()
    if output is None:
        # Unscrubbed on purpose: the identity itself is the output (e.g. piped into `docker secret create`).
        click.echo(identity_file_text(identity), nl=False)
        echo(f"Public key: {identity.recipient}", err=True)
        return
    write_identity_file(output, identity)
    echo(str(identity.recipient))
    echo(f"wrote the identity to {output} (mode 0600); its recipient is printed above", err=True)


@keys.command("recipient")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def recipient(file: Path) -> None:
    """Print the recipient (public key) of each identity in FILE, as `age-keygen -y` does."""
    # Lazy, as above.
    from maintainer.crypto import read_identity_file, recipients_of

    for public in recipients_of(read_identity_file(file)):
        echo(str(public))


COMMANDS = [keys]
