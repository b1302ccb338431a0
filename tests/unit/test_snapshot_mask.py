"""Secret values are replaced by a marker in env files, compose and config files, env lists and arguments."""

from __future__ import annotations

import pytest

from maintainer.config.jobs import DEFAULT_SECRET_PATTERNS
from maintainer.snapshot.mask import MARKER, Masker

pytestmark = pytest.mark.unit


def masker() -> Masker:
    return Masker(DEFAULT_SECRET_PATTERNS)


def test_env_file_lines_with_secret_names_are_masked_and_others_kept():
    m = masker()
    out = m.text("DB_PASSWORD=hunter22\nexport API_TOKEN='tok-123'\nRUST_LOG=info\n# a comment\n")
    assert out == f"DB_PASSWORD={MARKER}\nexport API_TOKEN={MARKER}\nRUST_LOG=info\n# a comment\n"
    assert m.count == 2


def test_compose_environment_in_both_forms_and_block_scalars_are_masked():
    text = ("services:\n  api:\n    environment:\n      JWT_SECRET: s3cr3t-value\n"
            "      - SESSION_KEY=another-one\n      RUST_LOG: debug\n"
            "  tls:\n    PRIVATE_KEY: |\n      -----BEGIN KEY-----\n      bWFpbnRhaW5lcg==\n    next: 1\n")
    out = masker().text(text)
    for secret in ("s3cr3t-value", "another-one", "BEGIN KEY", "bWFpbnRhaW5lcg=="):
        assert secret not in out
    assert "RUST_LOG: debug" in out and "next: 1" in out and "services:" in out


def test_url_credentials_bearer_tokens_and_inline_assignments_are_masked_whatever_their_name():
    m = masker()
    out = m.text('upstream = "postgres://app:pw-in-url@db:5432/x"\n'
                 'proxy_set_header Authorization "Bearer abcdefghijkl";\n'
                 'command: run --token=zzz-123 --port=80\n')
    assert "pw-in-url" not in out and "abcdefghijkl" not in out and "zzz-123" not in out
    assert "app:" in out and "--port=80" in out


def test_environment_lists_labels_and_arguments_are_masked():
    m = masker()
    assert m.env_list(["POSTGRES_PASSWORD=pg", "PGDATA=/data"]) == {"PGDATA": "/data", "POSTGRES_PASSWORD": MARKER}
    assert m.mapping({"traefik.auth.secret": "x", "app": "y"}) == {"app": "y", "traefik.auth.secret": MARKER}
    assert m.args(["serve", "--password", "p1", "--api-key=p2", "PGPASSWORD=p3 psql"]) == \
        ["serve", "--password", MARKER, f"--api-key={MARKER}", f"PGPASSWORD={MARKER} psql"]


def test_configured_patterns_decide_what_looks_secret():
    m = Masker(["PIN"])
    assert m.text("DOOR_PIN=1234\nDB_PASSWORD=visible\n") == f"DOOR_PIN={MARKER}\nDB_PASSWORD=visible\n"
