"""storage.<name>.encryption in schedules.yaml: every key checked by `validate`, each
bad one at its own file and line, and identities never shown."""

from __future__ import annotations

import pytest

from maintainer import redact
from maintainer.config import load_config
from maintainer.crypto import X25519Identity, X25519Recipient
from maintainer.errors import ConfigError

pytestmark = pytest.mark.unit

TEAM = X25519Identity.generate()
RECOVERY = X25519Identity.generate()


def write_config(tmp_path, encryption: str) -> str:
    """A config whose storage 'offsite' has ``encryption`` (YAML lines, indented 6)."""
    path = tmp_path / "schedules.yaml"
    path.write_text(f"""\
storage:
  offsite:
    url: file:///var/backups
    encryption:
{encryption}
databases:
  app: {{host: db}}
jobs:
  backup: {{type: pg_backup, schedule: "@daily", databases: [app], storage: offsite}}
""")
    return str(path)


def problems(tmp_path, encryption: str, *, strict: bool = False) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, encryption), env={}, strict_secrets=strict)
    return caught.value.problems


def identity_file(tmp_path, name: str, *identities: X25519Identity) -> str:
    path = tmp_path / name
    path.write_text("# created: 2026-01-01T00:00:00Z\n"
                    + "".join(f"# public key: {i.recipient}\n{i.secret_text()}\n" for i in identities))
    return name


@pytest.fixture(autouse=True)
def _forget_secrets():
    yield
    redact.clear()


def test_inline_recipients_a_recipients_file_and_identity_files_load(tmp_path):
    (tmp_path / "recipients.txt").write_text(f"# offline recovery key, in the safe\n{RECOVERY.recipient}\n\n")
    identity_file(tmp_path, "team.key", TEAM)
    config = load_config(write_config(tmp_path, f"""\
      recipients: [{TEAM.recipient}]
      recipients_file: recipients.txt
      identity_file: team.key"""), env={})
    encryption = config.storage["offsite"].encryption
    assert encryption.recipient_keys() == [TEAM.recipient, RECOVERY.recipient]
    assert [i.recipient for i in encryption.identity_keys()] == [TEAM.recipient]
    assert config.secret_warnings == []


def test_a_storage_without_encryption_has_none(tmp_path):
    path = tmp_path / "schedules.yaml"
    path.write_text("storage: {s: {url: 'file:///b'}}\ndatabases: {app: {}}\n"
                    "jobs: {b: {type: pg_backup, schedule: '@daily', databases: [app], storage: s}}\n")
    assert load_config(path, env={}).storage["s"].encryption is None


def test_an_identity_file_may_hold_several_keys_and_every_one_is_tried(tmp_path):
    identity_file(tmp_path, "both.key", TEAM, RECOVERY)
    config = load_config(write_config(tmp_path, f"""\
      recipients: [{TEAM.recipient}]
      identity_file: both.key"""), env={})
    keys = config.storage["offsite"].encryption.identity_keys()
    assert [str(k.recipient) for k in keys] == [str(TEAM.recipient), str(RECOVERY.recipient)]
    assert keys[1].source == "both.key:5"


def test_identity_files_lists_one_file_per_key(tmp_path):
    identity_file(tmp_path, "old.key", RECOVERY)
    identity_file(tmp_path, "new.key", TEAM)
    config = load_config(write_config(tmp_path, f"""\
      recipients: [{TEAM.recipient}]
      identity_files: [new.key, old.key]"""), env={})
    assert len(config.storage["offsite"].encryption.identity_keys()) == 2


def test_a_bad_inline_recipient_is_reported_at_its_own_line(tmp_path):
    bad = str(TEAM.recipient)[:-1] + ("q" if str(TEAM.recipient)[-1] != "q" else "p")
    found = problems(tmp_path, f"""\
      recipients:
        - {RECOVERY.recipient}
        - {bad}""")
    assert len(found) == 1
    assert found[0].endswith("schedules.yaml:7: at 'storage.offsite.encryption.recipients[1]': "
                             "the age1 recipient has a wrong checksum (a typing mistake, or a truncated copy)")


def test_a_bad_line_of_the_recipients_file_is_reported_at_that_files_line(tmp_path):
    (tmp_path / "recipients.txt").write_text(f"# team\n{TEAM.recipient}\n\nssh-rsa AAAAB3Nza user\n")
    (found,) = problems(tmp_path, "      recipients_file: recipients.txt")
    assert ":5: at 'storage.offsite.encryption.recipients_file': recipients.txt:4: only ssh-ed25519" in found


def test_a_missing_recipients_file_is_an_error_even_without_strict(tmp_path):
    (found,) = problems(tmp_path, "      recipients_file: /nonexistent/recipients.txt")
    assert "recipients file /nonexistent/recipients.txt does not exist" in found


def test_a_secret_key_pasted_as_recipient_is_refused_and_never_shown(tmp_path):
    secret = X25519Identity.generate().secret_text()
    (found,) = problems(tmp_path, f"      recipients: [{secret}]")
    assert "this is an identity (a secret key), not a recipient" in found
    assert secret not in found
    assert redact.scrub(secret) == redact.MASK


def test_a_missing_identity_file_is_a_warning_and_an_error_with_strict(tmp_path):
    text = f"      recipients: [{TEAM.recipient}]\n      identity_file: /run/secrets/age_identity"
    config = load_config(write_config(tmp_path, text), env={})
    (warning,) = config.secret_warnings
    assert ":6: at 'storage.offsite.encryption.identity_file': identity file /run/secrets/age_identity " \
           "does not exist" in warning
    with pytest.raises(ConfigError, match="does not exist") as caught:
        config.storage["offsite"].encryption.identity_keys()
    assert caught.value.hint
    (found,) = problems(tmp_path, text, strict=True)
    assert found == warning


def test_a_malformed_identity_file_is_an_error_at_its_line_without_showing_it(tmp_path):
    secret = TEAM.secret_text()
    broken = secret[:-3] + ("QQQ" if not secret.endswith("QQQ") else "PPP")
    (tmp_path / "team.key").write_text(f"# created: now\n{secret}\n{broken}\n")
    (found,) = problems(tmp_path, f"      recipients: [{TEAM.recipient}]\n      identity_file: team.key")
    assert ":6: at 'storage.offsite.encryption.identity_file': team.key:3: " in found
    assert "checksum" in found
    assert secret not in found and broken not in found
    assert redact.scrub(f"{secret} {broken}") == f"{redact.MASK} {redact.MASK}"


def test_a_line_that_is_not_a_key_in_an_identity_file_is_named_by_line(tmp_path):
    (tmp_path / "team.key").write_text(f"{TEAM.secret_text()}\npublic key: {TEAM.recipient}\n")
    (found,) = problems(tmp_path, f"      recipients: [{TEAM.recipient}]\n      identity_file: team.key")
    assert "team.key:2: not an age identity" in found


@pytest.mark.parametrize("encryption, words", [
    ("      identity_file: team.key", "encryption needs at least one recipient"),
    ("      recipients: []", "encryption needs at least one recipient"),
    (f"      recipients: [{TEAM.recipient}]\n      identity_file: a.key\n      identity_files: [b.key]",
     "give identity_file or identity_files, not both"),
    (f"      recipients: [{TEAM.recipient}]\n      identity: AGE-SECRET-KEY-1ABC", "unknown key"),
])
def test_incomplete_or_contradicting_encryption_settings_are_refused(tmp_path, encryption, words):
    for name in ("team.key", "a.key", "b.key"):
        identity_file(tmp_path, name, TEAM)
    found = problems(tmp_path, encryption)
    assert any(words in p for p in found), found


def test_relative_key_files_are_read_from_the_config_files_directory(tmp_path, monkeypatch):
    identity_file(tmp_path, "team.key", TEAM)
    path = write_config(tmp_path, f"      recipients: [{TEAM.recipient}]\n      identity_file: team.key")
    monkeypatch.chdir("/")
    config = load_config(path, env={})
    assert config.storage["offsite"].encryption.identity_paths() == [tmp_path / "team.key"]
    assert config.storage["offsite"].encryption.identity_keys()


def test_a_storage_that_only_writes_needs_no_identity_until_one_is_used(tmp_path):
    config = load_config(write_config(tmp_path, f"      recipients: [{TEAM.recipient}]"), env={})
    encryption = config.storage["offsite"].encryption
    assert isinstance(encryption.recipient_keys()[0], X25519Recipient)
    with pytest.raises(ConfigError, match="no identity is configured"):
        encryption.identity_keys()
