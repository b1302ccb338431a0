"""What maintainer encrypts, the standard age CLI decrypts, and the other way round.

Runs the real ``age`` and ``age-keygen`` (Debian package ``age``, installed by
scripts/testbed.sh): a backup must stay readable by hand, with no maintainer,
for as long as it is kept.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from maintainer.config.models import StorageSpec
from maintainer.crypto import (CHUNK, DamagedCiphertext, Decryptor, EncryptingWriter, Encryptor, NoMatchingIdentity,
                               X25519Identity, parse_recipient, read_identity_file, read_recipients_file)
from maintainer.crypto.stream import SEALED_CHUNK

pytestmark = pytest.mark.integration

SIZES = [0, 1, CHUNK, CHUNK + 1, 3 * 1024 * 1024 + 123]


@pytest.fixture(scope="module", autouse=True)
def _age_cli() -> None:
    for tool in ("age", "age-keygen"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed; run scripts/testbed.sh (apt-get install age)", pytrace=False)


def run(*args: str, data: bytes = b"", check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, input=data, capture_output=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}: {result.stderr.decode()}")
    return result


def keygen(tmp_path: Path, name: str) -> tuple[Path, str]:
    """An identity file made by age-keygen, and its recipient as age-keygen -y prints it."""
    path = tmp_path / name
    run("age-keygen", "-o", str(path))
    return path, run("age-keygen", "-y", str(path)).stdout.decode().strip()


def encrypt(data: bytes, recipients, piece: int = 100_003) -> bytes:
    enc = Encryptor(recipients)
    return b"".join(enc.update(data[i:i + piece]) for i in range(0, len(data), piece)) + enc.finish()


def decrypt(blob: bytes, identities, piece: int = 77_777) -> bytes:
    dec = Decryptor(identities)
    return b"".join(dec.update(blob[i:i + piece]) for i in range(0, len(blob), piece)) + dec.finish()


@pytest.mark.parametrize("size", SIZES)
def test_age_decrypts_what_maintainer_encrypted(tmp_path, size):
    key, recipient = keygen(tmp_path, "key.txt")
    data = os.urandom(size)
    blob = encrypt(data, [parse_recipient(recipient)])
    assert run("age", "-d", "-i", str(key), data=blob).stdout == data


@pytest.mark.parametrize("size", SIZES)
def test_maintainer_decrypts_what_age_encrypted(tmp_path, size):
    key, recipient = keygen(tmp_path, "key.txt")
    data = os.urandom(size)
    blob = run("age", "-r", recipient, data=data).stdout
    assert decrypt(blob, read_identity_file(key)) == data


def test_two_recipients_either_identity_decrypts_in_both_directions(tmp_path):
    team, team_recipient = keygen(tmp_path, "team.txt")
    recovery, recovery_recipient = keygen(tmp_path, "recovery.txt")
    (tmp_path / "recipients.txt").write_text(f"# team\n{team_recipient}\n# offline recovery\n{recovery_recipient}\n")
    data = os.urandom(CHUNK * 2 + 5)
    ours = encrypt(data, read_recipients_file(tmp_path / "recipients.txt"))
    theirs = run("age", "-R", str(tmp_path / "recipients.txt"), data=data).stdout
    for key in (team, recovery):
        assert run("age", "-d", "-i", str(key), data=ours).stdout == data
        assert decrypt(theirs, read_identity_file(key)) == data


def test_keys_generate_makes_a_file_age_keygen_and_age_read(tmp_path):
    from maintainer.crypto import write_identity_file

    identity = X25519Identity.generate()
    path = tmp_path / "maintainer.key"
    write_identity_file(path, identity)
    assert run("age-keygen", "-y", str(path)).stdout.decode().strip() == str(identity.recipient)
    blob = encrypt(b"hello", [identity.recipient])
    assert run("age", "-d", "-i", str(path), data=blob).stdout == b"hello"


def test_the_keys_command_prints_what_age_keygen_prints(tmp_path):
    key, recipient = keygen(tmp_path, "key.txt")
    maintainer = str(Path(sys.executable).parent / "maintainer")  # the installed command
    out = run(maintainer, "keys", "recipient", str(key)).stdout
    assert out.decode().strip() == recipient
    generated = tmp_path / "generated.key"
    printed = run(maintainer, "keys", "generate", "-o", str(generated))
    assert run("age-keygen", "-y", str(generated)).stdout == printed.stdout


def test_the_wrong_identity_is_one_clear_error_without_the_secret(tmp_path):
    _, recipient = keygen(tmp_path, "right.txt")
    wrong, wrong_recipient = keygen(tmp_path, "wrong.txt")
    blob = run("age", "-r", recipient, "-r", recipient, data=b"rows").stdout
    with pytest.raises(NoMatchingIdentity) as caught:
        decrypt(blob, read_identity_file(wrong))
    message = caught.value.message
    assert "2 recipient(s) (2 X25519" in message and wrong_recipient in message and "wrong.txt:3" in message
    assert "AGE-SECRET-KEY" not in message


def test_truncated_and_altered_files_from_age_are_refused_releasing_only_intact_chunks(tmp_path):
    key, recipient = keygen(tmp_path, "key.txt")
    data = os.urandom(4 * CHUNK + 10)
    blob = run("age", "-r", recipient, data=data).stdout
    identities = read_identity_file(key)
    payload = len(blob) - (len(data) + 5 * 16)  # header and the 16-byte nonce
    for damaged, intact_chunks in [
        (blob[:payload + 2 * SEALED_CHUNK], 1),  # cut at a chunk boundary
        (blob[:-1], 4),  # the final chunk loses a byte
        (blob[:payload + 2 * SEALED_CHUNK + 40] + bytes([blob[payload + 2 * SEALED_CHUNK + 40] ^ 1])
         + blob[payload + 2 * SEALED_CHUNK + 41:], 2),  # a bit flips in chunk 2
    ]:
        dec = Decryptor(identities)
        released = bytearray()
        with pytest.raises(DamagedCiphertext):
            for i in range(0, len(damaged), 50_000):
                released += dec.update(damaged[i:i + 50_000])
            released += dec.finish()
        assert bytes(released) == data[:intact_chunks * CHUNK]
        # The age CLI refuses the same files.
        assert run("age", "-d", "-i", str(key), data=damaged, check=False).returncode != 0


def test_age_refuses_what_maintainer_wrote_once_damaged(tmp_path):
    key, recipient = keygen(tmp_path, "key.txt")
    blob = encrypt(os.urandom(CHUNK * 2), [parse_recipient(recipient)])
    for damaged in (blob[:-SEALED_CHUNK], blob[:-1], blob[:-100] + bytes([blob[-100] ^ 1]) + blob[-99:]):
        assert run("age", "-d", "-i", str(key), data=damaged, check=False).returncode != 0


def test_ssh_ed25519_keys_work_in_both_directions(tmp_path):
    key = ed25519.Ed25519PrivateKey.generate()
    private = tmp_path / "id_ed25519"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                          serialization.NoEncryption()))
    private.chmod(0o600)
    public = tmp_path / "id_ed25519.pub"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                     serialization.PublicFormat.OpenSSH) + b" ops@example\n")
    data = os.urandom(CHUNK + 99)
    ours = encrypt(data, read_recipients_file(public))
    assert run("age", "-d", "-i", str(private), data=ours).stdout == data
    theirs = run("age", "-R", str(public), data=data).stdout
    assert decrypt(theirs, read_identity_file(private)) == data


def test_the_manual_decryption_command_of_the_docs_reads_a_compressed_encrypted_object(tmp_path):
    """zstd frames from the backup pipeline, encrypted on their way into storage, read back
    with `age -d -i KEY FILE | zstd -d` as docs/encryption.md says."""
    from maintainer.backup.pipeline import store_stream
    from maintainer.storage import open_storage

    key, recipient = keygen(tmp_path, "key.txt")
    storage = open_storage(StorageSpec(url=f"file://{tmp_path}/bucket"), name="local")
    data = os.urandom(1024 * 1024) * 3 + b"tail"
    source = io.BytesIO(data)
    writer = EncryptingWriter(storage.open_writer("pg/app/dump.pgcustom.zst.age"), [parse_recipient(recipient)])
    with writer:
        result = store_stream(source.readinto, writer, level=1)
    stored = tmp_path / "bucket" / "pg/app/dump.pgcustom.zst.age"
    assert writer.stored_size == stored.stat().st_size and result.raw_size == len(data)
    manual = subprocess.run(f"age -d -i {key} {stored} | zstd -d", shell=True, capture_output=True, timeout=120)
    assert manual.returncode == 0, manual.stderr.decode()
    assert manual.stdout == data
