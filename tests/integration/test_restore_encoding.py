"""A restore into a new database keeps the dumped database's encoding and locale.

pg_restore --create would bring them; the incident restore cannot use --create
(it restores under a new name), so it must take them from the dump itself, or a
LATIN1 database would come back as UTF8 with the server's collation.
"""

from __future__ import annotations

import pytest

from support.scenarios import document, run_cli, write_config

pytestmark = pytest.mark.integration


def test_a_restore_into_a_new_database_keeps_its_encoding_and_locale(postgres, tmp_path):
    with postgres.connect() as conn:
        conn.execute("CREATE DATABASE legacy TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'")
    with postgres.connect("legacy") as conn:
        conn.execute("CREATE TABLE names (name text PRIMARY KEY)")
        conn.execute("INSERT INTO names VALUES ('Zoë'), ('Åsa'), ('anna'), ('Émile')")
    config = write_config(tmp_path, {
        "storage": {"main": {"url": f"file://{tmp_path}/store"}},
        "databases": {"legacy": {"host": postgres.host, "port": postgres.port, "user": postgres.user,
                                 "password": postgres.password, "sslmode": "disable"}},
        "daemon": {"state_dir": str(tmp_path / "state")},
        "jobs": {"backup": {"type": "pg_backup", "schedule": "@daily", "databases": ["legacy"], "storage": "main"}},
    })
    assert run_cli(config, "run", "backup").returncode == 0

    out = run_cli(config, "restore", "--latest", "--json")

    assert out.returncode == 0, out.stderr
    new = document(out.stdout)["restore_into"]
    with postgres.connect() as conn:
        encoding, collate, ctype = conn.execute(
            "SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database WHERE datname = %s",
            (new,)).fetchone()
    assert (encoding, collate, ctype) == ("LATIN1", "C", "C")
    with postgres.connect(new) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM names ORDER BY name").fetchall()]
    assert names == ["Zoë", "anna", "Åsa", "Émile"]  # byte order of LATIN1 under collation C


def test_a_locale_this_server_lacks_falls_back_to_its_defaults_and_says_so(postgres):
    """An incident restore onto another server must not fail because that server has fewer
    locales; the database is created with its defaults and the summary says what was lost."""
    from maintainer.restore.engine import Destination, Restore

    restore = Restore(client=None, storage=None, manifest=None,
                      dest=Destination(dbname="fallback", pg_restore_args=[], env={}, connect=postgres.connect))
    with postgres.connect() as admin:
        restore._create_database(admin, ["ENCODING = 'UTF8'", "LOCALE = 'xx_NO.SUCH-locale'"])
        encoding = admin.execute("SELECT pg_encoding_to_char(encoding) FROM pg_database "
                                 "WHERE datname = 'fallback'").fetchone()

    assert encoding == ("UTF8",)
    assert restore.creation_note.startswith("created with this server's default encoding and locale, not the dump's")
    assert "xx_NO.SUCH-locale" in restore.creation_note
