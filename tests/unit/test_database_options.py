"""The encoding and locale of a dumped database, taken from pg_restore --create output."""

from __future__ import annotations

import pytest

from maintainer.restore.globals import creation_options

pytestmark = pytest.mark.unit


def test_encoding_and_locale_are_kept_and_template_owner_tablespace_are_not():
    sql = ("SET statement_timeout = 0;\n"
           "CREATE DATABASE \"Shop's = WITH\" WITH TEMPLATE = template0 ENCODING = 'LATIN1' "
           "LOCALE_PROVIDER = libc LOCALE = 'de_DE.iso88591' TABLESPACE = fast;\n"
           "ALTER DATABASE \"Shop's = WITH\" OWNER TO app;\n")

    assert creation_options(sql) == ["ENCODING = 'LATIN1'", "LOCALE_PROVIDER = libc",
                                     "LOCALE = 'de_DE.iso88591'"]


def test_icu_and_older_lc_options_and_no_create_statement():
    sql = ("CREATE DATABASE shop WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE_PROVIDER = icu "
           "LC_COLLATE = 'en_US.UTF-8' LC_CTYPE = 'en_US.UTF-8' ICU_LOCALE = 'de-DE';\n")

    assert creation_options(sql) == ["ENCODING = 'UTF8'", "LOCALE_PROVIDER = icu", "LC_COLLATE = 'en_US.UTF-8'",
                                     "LC_CTYPE = 'en_US.UTF-8'", "ICU_LOCALE = 'de-DE'"]
    assert creation_options("ALTER DATABASE shop SET work_mem = '8MB';\n") == []
