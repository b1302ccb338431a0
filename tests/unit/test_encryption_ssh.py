"""ssh-ed25519 recipients and identities: a team's existing SSH keys can be age keys."""

from __future__ import annotations

import base64
import os
import struct

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from maintainer.crypto import (Decryptor, Encryptor, KeyFormatError, NoMatchingIdentity, SshEd25519Identity,
                               SshEd25519Recipient, X25519Identity, parse_recipient, read_identity_file)

pytestmark = pytest.mark.unit


def ssh_key_files(tmp_path, name="id_ed25519"):
    key = ed25519.Ed25519PrivateKey.generate()
    private = tmp_path / name
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                          serialization.NoEncryption()))
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode() + " ops@example"
    return private, public


def round_trip(data: bytes, recipients, identities) -> bytes:
    enc = Encryptor(recipients)
    blob = enc.update(data) + enc.finish()
    dec = Decryptor(identities)
    return dec.update(blob) + dec.finish()


def test_an_ssh_public_key_line_is_a_recipient_and_its_private_key_the_identity(tmp_path):
    private, public = ssh_key_files(tmp_path)
    recipient = parse_recipient(public)
    (identity,) = read_identity_file(private)
    assert isinstance(recipient, SshEd25519Recipient) and isinstance(identity, SshEd25519Identity)
    assert identity.recipient == recipient
    data = os.urandom(100_000)
    assert round_trip(data, [recipient], [identity]) == data


def test_the_ed25519_key_converts_to_the_curve25519_key_its_private_half_makes(tmp_path):
    private, public = ssh_key_files(tmp_path)
    (identity,) = read_identity_file(private)
    assert parse_recipient(public).curve25519 == identity._key.public_key().public_bytes_raw()


def test_ssh_and_x25519_recipients_mix_in_one_file(tmp_path):
    private, public = ssh_key_files(tmp_path)
    age_identity = X25519Identity.generate()
    recipients = [parse_recipient(public), age_identity.recipient]
    assert round_trip(b"both", recipients, read_identity_file(private)) == b"both"
    assert round_trip(b"both", recipients, [age_identity]) == b"both"


def test_another_ssh_key_does_not_open_the_file(tmp_path):
    _, public = ssh_key_files(tmp_path, "a")
    other, _ = ssh_key_files(tmp_path, "b")
    with pytest.raises(NoMatchingIdentity) as caught:
        round_trip(b"x", [parse_recipient(public)], read_identity_file(other))
    assert "1 ssh-ed25519" in caught.value.message


def as_passphrase_protected(pem: bytes) -> bytes:
    """The same OpenSSH key file marked as aes256-ctr/bcrypt encrypted, as ``ssh-keygen -N``
    writes them (only the markers matter: the key is refused before anything is decrypted;
    writing a really encrypted one would need the bcrypt package)."""
    lines = pem.strip().split(b"\n")
    blob = base64.b64decode(b"".join(lines[1:-1]))

    def string(data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + data

    def read(pos: int) -> tuple[bytes, int]:
        (size,) = struct.unpack(">I", blob[pos:pos + 4])
        return blob[pos + 4:pos + 4 + size], pos + 4 + size

    magic = b"openssh-key-v1\0"
    pos = len(magic)
    for _ in range(3):  # cipher, kdf, kdf options
        _, pos = read(pos)
    count = blob[pos:pos + 4]
    public, pos = read(pos + 4)
    private, pos = read(pos)
    private += bytes(-len(private) % 16)  # the cipher's block size
    blob = (magic + string(b"aes256-ctr") + string(b"bcrypt") + string(string(bytes(16)) + struct.pack(">I", 16))
            + count + string(public) + string(private))
    text = base64.b64encode(blob)
    return b"\n".join([lines[0], *(text[i:i + 70] for i in range(0, len(text), 70)), lines[-1]]) + b"\n"


def test_a_passphrase_protected_ssh_key_is_refused_with_a_hint(tmp_path):
    private, _ = ssh_key_files(tmp_path)
    private.write_bytes(as_passphrase_protected(private.read_bytes()))
    with pytest.raises(KeyFormatError) as caught:
        read_identity_file(private)
    assert "passphrase" in caught.value.message and str(private) in caught.value.message
    assert caught.value.hint


def test_an_rsa_ssh_key_is_refused_as_identity(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "id_rsa"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                       serialization.NoEncryption()))
    with pytest.raises(KeyFormatError, match="only ssh-ed25519"):
        read_identity_file(path)


@pytest.mark.parametrize("line", [
    "ssh-ed25519",
    "ssh-ed25519 !!!notbase64",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA",  # truncated blob
    # A well-formed blob whose 32 bytes are not a point of the curve (y = 2 has no x).
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
])
def test_a_malformed_ssh_recipient_is_refused(line):
    with pytest.raises(KeyFormatError):
        parse_recipient(line)
