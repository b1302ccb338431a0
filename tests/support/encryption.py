"""Helpers for the encryption-at-rest tests (no tests here): keys, encrypted
storage settings, and every byte a storage holds."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

from maintainer.crypto import X25519Identity, write_identity_file

ROW_VALUE = "PLANTED-ROW-VALUE-1d8e6b0c4a"  # in a table row: never in a stored byte
CONFIG_VALUE = "PLANTED-CONFIG-VALUE-93f2a7e5"  # in a snapshotted file: never in a stored byte


def make_key(directory: Path, name: str) -> tuple[Path, str]:
    """A new identity file ``directory/name`` (mode 0600); (its path, its recipient)."""
    identity = X25519Identity.generate()
    path = directory / name
    write_identity_file(path, identity)
    return path, str(identity.recipient)


def encryption(recipients: list[str], identities: list[Path] | None = None) -> dict:
    """A storage's ``encryption`` setting as config data."""
    setting: dict = {"recipients": list(recipients)}
    if identities:
        setting["identity_files"] = [str(p) for p in identities]
    return setting


def stored_objects(storage) -> dict[str, bytes]:
    """Every object under the storage's root, by key: what a reader of the bucket sees."""
    return {info.key: storage.get_bytes(info.key) for info in storage.list("")}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def plant_row(server, dbname: str = "contrivance") -> None:
    from .pgdata import psql

    psql(server, dbname=dbname, sql=f"CREATE TABLE public.planted (note text); "
                                    f"INSERT INTO public.planted VALUES ('{ROW_VALUE}')")


@contextlib.contextmanager
def planted_contrivance(docker_client, image: str):
    """A PostgreSQL server with the Contrivance database and a row holding ROW_VALUE; removed after."""
    from .pgdata import load_contrivance
    from .postgres import remove_postgres, start_postgres

    server = start_postgres(docker_client, image)
    try:
        load_contrivance(server)
        plant_row(server)
        yield server
    finally:
        remove_postgres(server)
