"""`maintainer keys generate` and `maintainer keys recipient`: age-keygen's file format,
private by mode, never overwritten. (age-keygen itself reads them in
tests/integration/test_age_interop.py.)"""

from __future__ import annotations

import re
import stat

import pytest

from maintainer import redact
from maintainer.cli.main import main
from maintainer.crypto import X25519Identity, read_identity_file

pytestmark = pytest.mark.unit

RECIPIENT = re.compile(r"age1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}")


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


@pytest.fixture(autouse=True)
def _forget_secrets():
    yield
    redact.clear()


def test_generate_writes_a_private_age_keygen_style_file_and_prints_the_recipient(tmp_path, capsys):
    path = tmp_path / "age.key"
    code, out, _ = run(capsys, "keys", "generate", "--output", str(path))
    assert code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert re.fullmatch(r"# created: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)", lines[0])
    assert re.fullmatch(r"# public key: " + RECIPIENT.pattern, lines[1])
    assert lines[2].startswith("AGE-SECRET-KEY-1") and len(lines) == 3
    (identity,) = read_identity_file(path)
    assert out.strip() == str(identity.recipient) == lines[1].split(": ")[1]
    assert lines[2] not in out


def test_generate_never_overwrites_an_existing_file(tmp_path, capsys):
    path = tmp_path / "age.key"
    path.write_text("the old key, still needed\n")
    code, out, err = run(capsys, "keys", "generate", "-o", str(path))
    assert code == 1 and out == ""
    assert "already exists" in err and "Hint:" in err
    assert path.read_text() == "the old key, still needed\n"


def test_generate_without_output_prints_the_identity_for_a_pipe(capsys):
    code, out, err = run(capsys, "keys", "generate")
    assert code == 0
    secret = out.splitlines()[-1]
    identity = X25519Identity.parse(secret)
    assert f"# public key: {identity.recipient}" in out
    assert err.strip() == f"Public key: {identity.recipient}"


def test_recipient_prints_the_public_key_of_each_identity_in_the_file(tmp_path, capsys):
    first, second = X25519Identity.generate(), X25519Identity.generate()
    path = tmp_path / "keys.txt"
    path.write_text(f"# two keys while rotating\n{first.secret_text()}\n\n{second.secret_text()}\n")
    code, out, _ = run(capsys, "keys", "recipient", str(path))
    assert code == 0
    assert out.splitlines() == [str(first.recipient), str(second.recipient)]


def test_recipient_of_a_malformed_file_names_the_line_and_never_shows_it(tmp_path, capsys):
    secret = X25519Identity.generate().secret_text()
    broken = secret[:20] + secret[21:]
    path = tmp_path / "keys.txt"
    path.write_text(f"# comment\n{broken}\n")
    code, out, err = run(capsys, "keys", "recipient", str(path))
    assert code == 1 and out == ""
    assert f"{path}:2:" in err
    assert broken not in err


def test_recipient_of_a_missing_file_is_one_error_line(tmp_path, capsys):
    code, _, err = run(capsys, "keys", "recipient", str(tmp_path / "nope.key"))
    assert code == 1
    assert err.strip() == f"Error: identity file {tmp_path / 'nope.key'} does not exist"
