"""age v1 encryption: round trips in any pieces, bounded memory, and every kind of
damage refused without releasing a byte of the damaged chunk.

The age CLI itself is in tests/integration/test_age_interop.py; here a file it
wrote is kept as a fixed vector, so the format is checked without it too.
"""

from __future__ import annotations

import base64
import hashlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maintainer import redact
from maintainer.crypto import (CHUNK, DamagedCiphertext, Decryptor, EncryptingWriter, EncryptionError, Encryptor,
                               NoMatchingIdentity, X25519Identity, decrypt_blocks, parse_recipient)
from maintainer.crypto import bech32
from maintainer.crypto.header import parse_header
from maintainer.crypto.stream import SEALED_CHUNK
from maintainer.storage.base import ObjectInfo, Writer

pytestmark = pytest.mark.unit

# The X25519 example of the age specification (c2sp.org/age), and a file that
# `age -r age1zvkyg...` (age 1.1.1) wrote for it.
SPEC_IDENTITY = "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX"
SPEC_RECIPIENT = "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj"
AGE_CLI_FILE = base64.b64decode(
    "YWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IFgyNTUxOSBvSXVaODV4WnZhMGNQeFJ5b2xHS044Znp4"
    "b05vTnc0UnZqT0puR3RHdkZBCjlra2xsTEc3Q0pBdGxxT3FTTGs0cW9DQUZ4ZUwyRURqQVZUbXRH"
    "eHNUcDgKLS0tIFNYUVUyUnVLWHRudGJiNktKNWRVU2Z0RlRkR2g2NDN0RDhSZTRBMHFKNW8KhQ5G"
    "esuLh7oBRfO/4Kh+x6JO6XgQEiisb7WhSC6QfCjVoxyDyIR37J79v/qqpCOiVrT3f3zPS63BpIKx"
    "2UpIQfne97j1TithgA==")
AGE_CLI_PLAINTEXT = b"written by age 1.1.1 for the test vector\n"

IDENTITY = X25519Identity.generate()
OTHER = X25519Identity.generate()


def encrypt(data: bytes, recipients=None, piece: int = 1 << 20) -> bytes:
    enc = Encryptor(recipients or [IDENTITY.recipient])
    out = [enc.update(data[i:i + piece]) for i in range(0, len(data), piece)]
    return b"".join(out) + enc.finish()


def decrypt(blob: bytes, identities=None, piece: int = 1 << 20) -> bytes:
    dec = Decryptor(identities or [IDENTITY])
    out = [dec.update(blob[i:i + piece]) for i in range(0, len(blob), piece)]
    return b"".join(out) + dec.finish()


def released_until_failure(blob: bytes, piece: int = 4096) -> tuple[bytes, Exception]:
    """What a decryptor released before it refused ``blob``, and the error."""
    dec = Decryptor([IDENTITY])
    out = []
    with pytest.raises((DamagedCiphertext, NoMatchingIdentity)) as caught:
        for i in range(0, len(blob), piece):
            out.append(dec.update(blob[i:i + piece]))
        out.append(dec.finish())
    return b"".join(out), caught.value


def header_size(blob: bytes) -> int:
    parsed = parse_header(blob)
    assert parsed is not None
    return parsed[1]


# ---------------------------------------------------------------- keys and the fixed vector

def test_the_specification_identity_gives_the_specification_recipient():
    assert str(X25519Identity.parse(SPEC_IDENTITY).recipient) == SPEC_RECIPIENT


def test_a_file_the_age_cli_wrote_decrypts_to_its_plaintext():
    assert decrypt(AGE_CLI_FILE, [X25519Identity.parse(SPEC_IDENTITY)]) == AGE_CLI_PLAINTEXT


def test_a_file_the_age_cli_wrote_decrypts_fed_one_byte_at_a_time():
    assert decrypt(AGE_CLI_FILE, [X25519Identity.parse(SPEC_IDENTITY)], piece=1) == AGE_CLI_PLAINTEXT


def test_an_identity_round_trips_through_its_text_and_never_shows_it():
    text = IDENTITY.secret_text()
    assert text.startswith("AGE-SECRET-KEY-1") and len(text) == 74
    again = X25519Identity.parse(text)
    assert again.recipient == IDENTITY.recipient
    assert text not in repr(again) and text not in str(again)
    assert str(IDENTITY.recipient) in repr(again)


def test_lower_case_identities_and_upper_case_recipients_parse_as_bech32_allows():
    assert X25519Identity.parse(SPEC_IDENTITY.lower()).recipient == parse_recipient(SPEC_RECIPIENT.upper())


@pytest.mark.parametrize("text, reason", [
    (SPEC_RECIPIENT[:-1] + ("q" if SPEC_RECIPIENT[-1] != "q" else "p"), "checksum"),
    (SPEC_RECIPIENT[:-5], "checksum"),
    ("Age1" + SPEC_RECIPIENT[4:], "mixes upper and lower case"),
    ("age1b" + SPEC_RECIPIENT[5:], "character"),
    (bech32.encode("age", bytes(31)), "wrong length"),
    (bech32.encode("age1pq", bytes(32)), "not supported"),
    ("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ user@host", "only ssh-ed25519"),
    ("hello", "not an age recipient"),
    (SPEC_IDENTITY, "this is an identity"),
])
def test_a_bad_recipient_is_refused_with_the_reason_and_never_quoted(text, reason):
    with pytest.raises(EncryptionError) as caught:
        parse_recipient(text)
    assert reason in caught.value.message
    assert text not in caught.value.message


@pytest.mark.parametrize("hrp, data", [("a", b""), ("age", bytes(range(32))), ("AGE-SECRET-KEY-", b"\xff" * 32),
                                       ("long", bytes(200))])
def test_bech32_round_trips_without_the_90_character_limit(hrp, data):
    text = bech32.encode(hrp, data)
    assert bech32.decode(text) == (hrp.lower(), data)


@pytest.mark.parametrize("text", ["A12UEL5L", "a12uel5l", "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
                                  "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w"])
def test_bech32_accepts_the_bip173_valid_examples(text):
    bech32.decode(text)


@pytest.mark.parametrize("text", ["pzry9x0s0muk", "1pzry9x0s0muk", "x1b4n0q5v", "li1dgmt3", "A1G7SGD8",
                                  "10a06t8", "1qzzfhee", "a12UEL5L"])
def test_bech32_refuses_the_bip173_invalid_examples(text):
    with pytest.raises(bech32.Bech32Error):
        bech32.decode(text)


@pytest.mark.parametrize("body_size", [0, 1, 32, 47, 48, 49, 96, 200])
def test_stanza_bodies_of_every_length_survive_the_header_format(body_size):
    from maintainer.crypto.header import Stanza, encode_header

    stanzas = [Stanza("example.com/test", ("a", "b=c"), os.urandom(body_size)),
               Stanza("other-grease", (), b"")]
    header, size = parse_header(encode_header(stanzas, bytes(16)) + b"payload")
    assert header.stanzas == stanzas and size == len(encode_header(stanzas, bytes(16)))
    header.verify(bytes(16))


# ---------------------------------------------------------------- round trips

SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 5]


@pytest.mark.parametrize("size", SIZES)
def test_content_of_every_size_comes_back(size):
    data = os.urandom(size)
    assert decrypt(encrypt(data)) == data


@pytest.mark.parametrize("size", SIZES)
def test_the_ciphertext_is_the_header_the_nonce_and_16_bytes_per_chunk(size):
    blob = encrypt(os.urandom(size))
    chunks = max(1, -(-size // CHUNK))
    assert len(blob) == header_size(blob) + 16 + size + 16 * chunks


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=3 * CHUNK + 100), write=st.integers(1, 2 * CHUNK), read=st.integers(1, 2 * CHUNK))
def test_any_content_written_and_read_in_any_pieces_comes_back(data, write, read):
    assert decrypt(encrypt(data, piece=write), piece=read) == data


def test_two_recipients_can_each_decrypt_alone():
    data = os.urandom(CHUNK + 7)
    blob = encrypt(data, [IDENTITY.recipient, OTHER.recipient])
    assert decrypt(blob, [IDENTITY]) == data
    assert decrypt(blob, [OTHER]) == data


def test_several_identities_are_tried_in_turn():
    data = b"rotation"
    assert decrypt(encrypt(data, [OTHER.recipient]), [IDENTITY, OTHER]) == data


def test_two_encryptions_of_the_same_content_differ():
    assert encrypt(b"same") != encrypt(b"same")


def test_memory_stays_within_one_chunk_whatever_the_stream_length():
    enc, dec = Encryptor([IDENTITY.recipient]), Decryptor([IDENTITY])
    piece = os.urandom(300 * 1024)
    produced = 0
    for _ in range(40):  # 12 MB
        out = enc.update(piece)
        produced += len(out)
        assert len(enc._pending) <= CHUNK
        back = dec.update(out)
        assert len(dec._pending) <= SEALED_CHUNK
        assert back == b"" or len(back) % CHUNK == 0
    assert dec.update(enc.finish()) + dec.finish()
    assert enc.plain_size == dec.plain_size == 40 * len(piece)


def test_the_header_comes_with_the_first_output_and_the_last_chunk_only_with_finish():
    enc = Encryptor([IDENTITY.recipient])
    first = enc.update(bytes(CHUNK))
    assert first.startswith(b"age-encryption.org/v1\n")
    assert len(first) == header_size(first) + 16  # the only chunk may be the last: held back
    assert len(enc.update(b"x")) == SEALED_CHUNK
    assert len(enc.finish()) == 1 + 16


def test_an_encryptor_or_decryptor_is_used_once():
    enc = Encryptor([IDENTITY.recipient])
    enc.finish()
    with pytest.raises(EncryptionError):
        enc.update(b"more")
    with pytest.raises(EncryptionError):
        Encryptor([])
    with pytest.raises(EncryptionError):
        Decryptor([])


# ---------------------------------------------------------------- wrong keys

def test_the_wrong_identity_is_one_error_naming_the_stanzas_and_the_identities_tried():
    blob = encrypt(b"secret rows", [OTHER.recipient, X25519Identity.generate().recipient])
    stranger = X25519Identity.parse(X25519Identity.generate().secret_text(), source="/run/secrets/age:3")
    with pytest.raises(NoMatchingIdentity) as caught:
        decrypt(blob, [stranger])
    message = caught.value.message
    assert "2 recipient(s)" in message and "2 X25519" in message
    assert str(stranger.recipient) in message and "/run/secrets/age:3" in message
    assert stranger.secret_text() not in message
    assert caught.value.hint


# ---------------------------------------------------------------- damage

DATA = os.urandom(3 * CHUNK + 1000)
BLOB = encrypt(DATA)
PAYLOAD = header_size(BLOB) + 16


@pytest.mark.parametrize("cut", [0, 10, header_size(BLOB) - 1, header_size(BLOB) + 8, PAYLOAD, PAYLOAD + 100,
                                 PAYLOAD + SEALED_CHUNK, PAYLOAD + 3 * SEALED_CHUNK, len(BLOB) - 1])
def test_a_truncated_stream_is_refused_and_only_whole_authenticated_chunks_came_out(cut):
    released, error = released_until_failure(BLOB[:cut])
    assert isinstance(error, DamagedCiphertext)
    assert "truncated" in error.message or "fails authentication" in error.message
    assert DATA.startswith(released) and len(released) % CHUNK == 0
    assert len(released) <= max(0, cut - PAYLOAD) // SEALED_CHUNK * CHUNK


@pytest.mark.parametrize("chunk", [0, 1, 3])
def test_a_flipped_bit_in_a_chunk_stops_before_that_chunk(chunk):
    damaged = bytearray(BLOB)
    damaged[PAYLOAD + chunk * SEALED_CHUNK + 17] ^= 0x04
    released, error = released_until_failure(bytes(damaged))
    assert isinstance(error, DamagedCiphertext) and f"chunk {chunk}" in error.message
    assert released == DATA[:chunk * CHUNK]


@pytest.mark.parametrize("offset, kind", [(30, NoMatchingIdentity), (header_size(BLOB) - 5, DamagedCiphertext),
                                          (header_size(BLOB) + 3, DamagedCiphertext)])
def test_a_flipped_bit_in_the_header_or_nonce_releases_nothing(offset, kind):
    damaged = bytearray(BLOB)
    damaged[offset] ^= 0x01
    released, error = released_until_failure(bytes(damaged))
    assert isinstance(error, (kind, DamagedCiphertext)) and released == b""


def test_an_altered_stanza_is_caught_by_the_header_mac():
    blob = encrypt(b"x", [IDENTITY.recipient, OTHER.recipient])
    lines = blob.split(b"\n")
    # Replace the second stanza (for OTHER) with a fresh one for another key: IDENTITY still opens
    # its own stanza, but the header is no longer the one the MAC covers.
    lines[3] = encrypt(b"x", [X25519Identity.generate().recipient]).split(b"\n")[1]
    released, error = released_until_failure(b"\n".join(lines))
    assert isinstance(error, DamagedCiphertext) and "MAC" in error.message and released == b""


def test_swapped_chunks_are_refused():
    chunks = [BLOB[PAYLOAD + i * SEALED_CHUNK:PAYLOAD + (i + 1) * SEALED_CHUNK] for i in range(4)]
    swapped = BLOB[:PAYLOAD] + chunks[1] + chunks[0] + chunks[2] + chunks[3]
    released, error = released_until_failure(swapped)
    assert "chunk 0" in error.message and released == b""


def test_bytes_appended_after_the_final_chunk_are_refused():
    released, error = released_until_failure(BLOB + b"extra")
    assert isinstance(error, DamagedCiphertext) and "chunk 3" in error.message
    assert released == DATA[:3 * CHUNK]


def test_bytes_appended_after_a_full_final_chunk_are_named_as_such():
    data = os.urandom(2 * CHUNK)
    released, error = released_until_failure(encrypt(data) + b"extra")
    assert "appended" in error.message and released == data[:CHUNK]


def test_a_stream_of_only_full_chunks_cut_at_a_boundary_is_truncation_not_success():
    data = os.urandom(2 * CHUNK)
    blob = encrypt(data)
    payload = header_size(blob) + 16
    released, error = released_until_failure(blob[:payload + SEALED_CHUNK])
    assert isinstance(error, DamagedCiphertext) and released == b""


@pytest.mark.parametrize("blob, words", [
    (b"plain pg_dump bytes", "not an age-encrypted file"),
    (b"-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n", "ASCII-armored"),
    (b"age-encryption.org/v2\n-> X\n", "unsupported age format version 'v2'"),
    (b"age-encryption.org/v1\n--- AAAA\n", "no recipient stanza"),
    (b"age-encryption.org/v1\n" + b"-> X25519 " + b"A" * (300 * 1024), "longer than"),
])
def test_what_is_not_an_age_file_is_refused_with_a_reason(blob, words):
    with pytest.raises(DamagedCiphertext) as caught:
        decrypt(blob)
    assert words in caught.value.message


def test_a_stanza_for_this_key_type_with_a_malformed_share_is_damage():
    blob = encrypt(b"x")
    header_end = header_size(blob)
    text = blob[:header_end].split(b"\n")
    text[1] = b"-> X25519 AAAA"
    with pytest.raises(DamagedCiphertext):
        decrypt(b"\n".join(text) + blob[header_end:])


# ---------------------------------------------------------------- for the pipeline

class MemoryWriter(Writer):
    """A storage Writer that keeps what it got."""

    def __init__(self):
        super().__init__("pg/app/dump.age")
        self.data = bytearray()
        self.committed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.data += data
        self.size += len(data)

    def _commit(self) -> ObjectInfo:
        self.committed = True
        return ObjectInfo(self.key, self.size, None)  # type: ignore[arg-type]

    def _abort(self) -> None:
        self.aborted = True


def test_the_encrypting_writer_stores_ciphertext_and_reports_what_it_stored():
    inner = MemoryWriter()
    data = os.urandom(2 * CHUNK + 3)
    with EncryptingWriter(inner, [IDENTITY.recipient]) as writer:
        for i in range(0, len(data), 10_000):
            writer.write(data[i:i + 10_000])
    assert inner.committed and not inner.aborted
    assert writer.size == len(data) and writer.stored_size == len(inner.data) == writer.info.size
    assert writer.stored_sha256 == hashlib.sha256(inner.data).hexdigest()
    assert decrypt(bytes(inner.data)) == data


def test_the_encrypting_writer_aborts_its_inner_writer_on_failure():
    inner = MemoryWriter()
    with pytest.raises(RuntimeError):
        with EncryptingWriter(inner, [IDENTITY.recipient]) as writer:
            writer.write(b"partial")
            raise RuntimeError("pg_dump failed")
    assert inner.aborted and not inner.committed


def test_decrypt_blocks_yields_the_plaintext_as_it_is_authenticated():
    blocks = [BLOB[i:i + 100_000] for i in range(0, len(BLOB), 100_000)]
    assert b"".join(decrypt_blocks(blocks, [IDENTITY])) == DATA
    with pytest.raises(DamagedCiphertext):
        list(decrypt_blocks(blocks[:-1], [IDENTITY]))


def test_identities_never_reach_the_log_once_read(tmp_path):
    from maintainer.crypto import read_identity_file

    secret = X25519Identity.generate().secret_text()
    path = tmp_path / "key.txt"
    path.write_text(f"# a comment\n{secret}\n")
    try:
        read_identity_file(path)
        assert redact.scrub(f"oops {secret}") == "oops ***"
    finally:
        redact.clear()
