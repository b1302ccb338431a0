"""Backups, drills and amcheck on a database that uses what real schemas use
(tests/support/realistic_schema.sql: partitions, every index kind, a materialized
view, triggers, extensions, large objects, odd role names, RLS, ...).

A healthy backup of it must pass a drill with amcheck, and restore onto an empty
server with the same schema, rows, sequences, large objects, database settings
and roles; an index amcheck finds corrupt must still fail, and be named.
"""

from __future__ import annotations

import difflib
import threading
from pprint import pformat

import pytest

from maintainer.backup import catalog
from maintainer.config.models import Config
from maintainer.restore.verify import list_indexes, plan_amcheck, run_amcheck
from maintainer.runner import run_job

from support.corruption import corrupt_btree_key
from support.postgres import remove_postgres, start_postgres
from support.realistic import load_realistic, snapshot
from support.scenarios import drill_job
from support.scenarios import config_data, drill_containers, make_backup, run_cli, storage_of, write_config

pytestmark = pytest.mark.integration

# An index on a function declared IMMUTABLE that is not (its value depends on the
# session), the way real schemas get one: to be allowed to index a function that
# reads a setting, a table or the clock. Every session but the one that built
# the index sees heap rows the index does not hold; amcheck's heapallindexed
# reports that as corruption (XX001), and queries through it return wrong rows.
# A restore rebuilds it in pg_restore's session, so the drill's amcheck finds it.
LYING_INDEX = """
CREATE SCHEMA shop;
CREATE TABLE shop.customers (id bigint PRIMARY KEY, name text NOT NULL);
INSERT INTO shop.customers SELECT g, 'customer ' || g FROM generate_series(1, 2000) g;
CREATE TABLE shop.orders (id bigint, placed_at date, customer_id bigint REFERENCES shop.customers,
                          PRIMARY KEY (id, placed_at)) PARTITION BY RANGE (placed_at);
CREATE TABLE shop.orders_2024 PARTITION OF shop.orders FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE shop.orders_later PARTITION OF shop.orders DEFAULT;
INSERT INTO shop.orders SELECT g, DATE '2024-06-01' + g % 400, 1 + g % 2000 FROM generate_series(1, 3000) g;
CREATE FUNCTION shop.session_bucket(id bigint) RETURNS bigint LANGUAGE sql IMMUTABLE
  AS $$ SELECT id # pg_backend_pid()::bigint $$;
CREATE INDEX customers_session_bucket ON shop.customers (shop.session_bucket(id));
"""

@pytest.fixture(scope="module")
def source(docker_client, pg_image):
    """A PostgreSQL 15 server with the realistic database "shop"."""
    server = start_postgres(docker_client, pg_image)
    try:
        load_realistic(server, "shop")
        yield server
    finally:
        remove_postgres(server)


@pytest.fixture(scope="module")
def backup(s3_server, module_s3_bucket, source, tmp_path_factory):
    """(config, manifest, snapshot of "shop" as it was backed up)."""
    tmp = tmp_path_factory.mktemp("real-schema")
    data = config_data(s3_server, module_s3_bucket, tmp, source, database="shop", dbname="shop",
                       jobs={"drill": drill_job(databases=["shop"], amcheck=True)})
    config = Config.model_validate(data)
    manifest = make_backup(config, "shop")
    return config, manifest, snapshot(source, "shop"), data


def checks_of(record) -> dict:
    return {c.name: c for c in record.checks}


def test_amcheck_checks_every_btree_with_storage_and_names_what_it_skips(source):
    with source.connect("shop") as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS amcheck SCHEMA pg_catalog")
        indexes = {i.name: i for i in list_indexes(conn)}
        result = run_amcheck(conn)

    plan = plan_amcheck(list(indexes.values()))
    checked = {i.name for i, _ in plan.check}
    # The partitions' own indexes are checked, the parents' (no storage) are not.
    assert {"public.orders_2024_01_pkey", "public.orders_default_pkey", "shop.shipments_us_0_pkey",
            "public.orders_2024_03_note", "shop.daily_sales_day", "shop.customers_lower_email",
            "shop.customers_active", "shop.products_title_c"} <= checked
    assert indexes["public.orders_pkey"].partitioned and "public.orders_pkey" not in checked
    assert indexes["shop.shipments_us_pkey"].partitioned  # a partitioned partition
    assert any(name.startswith("pg_toast.") and "(TOAST of shop.customers)" in name for name in checked)
    assert result.passed, result.detail
    skipped = result.model_extra["skipped"]
    assert {"partitioned", "gist", "gin", "brin", "hash", "spgist"} <= set(skipped)
    assert result.model_extra["checked"] == len(checked) == result.model_extra["heapallindexed"]
    assert f"{len(checked)} checked (with heapallindexed)" in result.detail
    assert f"{skipped['partitioned']} on partitioned tables" in result.detail and "gist" in result.detail


def test_a_drill_with_amcheck_passes_on_the_realistic_database(docker_client, backup):
    config, manifest, _, _ = backup

    result = run_job(config, "drill")

    assert result.ok, result.errors
    [record] = catalog.list_backups(storage_of(config), "shop")[0].verifications
    checks = checks_of(record)
    assert record.passed and all(c.passed for c in record.checks), [c for c in record.checks if not c.passed]
    assert {"checksum", "globals", "pg_restore", "row_counts", "object_counts", "amcheck"} <= set(checks)
    assert "on partitioned tables" in checks["amcheck"].detail and checks["amcheck"].model_extra["checked"] > 50
    assert checks["globals"].detail.count("failed") == 0, checks["globals"].detail
    assert drill_containers(docker_client, result.run_id) == []


def test_the_backup_restores_onto_an_empty_server_as_it_was(backup, postgres, tmp_path):
    config, manifest, expected, data = backup
    config_file = write_config(tmp_path, data)

    out = run_cli(config_file, "restore", "--backup", manifest.id, "--database", "shop",
                  "--target-dsn", postgres.dsn("shop"))

    assert out.returncode == 0, out.stdout + out.stderr
    with postgres.connect() as conn:
        [new] = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'shop_restored_%'")]
    got = snapshot(postgres, new)
    assert_same_schema(got["schema"], expected["schema"])
    diff = differences(expected, got)
    assert not diff, f"the restored copy differs from the source:\n{pformat(diff, width=110)}\n{out.stdout}"
    assert len(got["tables"]) > 20 and len(got["large_objects"]) == 20 and len(got["roles"]) == 6


def differences(expected: dict, got: dict) -> dict:
    """What differs between two snapshots (but the schema), item by item."""
    out = {}
    for key in expected.keys() - {"schema"}:
        want, have = expected[key], got[key]
        if isinstance(want, dict):
            for item in sorted(want.keys() | have.keys()):
                if want.get(item) != have.get(item):
                    out[f"{key}: {item}"] = {"source": want.get(item), "restored": have.get(item)}
        elif want != have:
            out[key] = {"source": want, "restored": have}
    return out


def assert_same_schema(got: str, expected: str) -> None:
    if got != expected:
        diff = "\n".join(difflib.unified_diff(expected.splitlines(), got.splitlines(), "source", "restored",
                                              lineterm="", n=2))
        pytest.fail(f"pg_dump --schema-only differs after the restore:\n{diff[:6000]}", pytrace=False)


def test_an_index_damaged_on_disk_is_reported_corrupt_and_named(postgres):
    load_realistic(postgres, "shop", extra_sql=(
        "CREATE TABLE shop.ledger (id integer PRIMARY KEY, memo text);"
        "INSERT INTO shop.ledger SELECT 1000000 + g, repeat('m', g % 30) FROM generate_series(1, 3000) g;"))

    server = corrupt_btree_key(postgres, "shop", "shop.ledger_pkey", 1001500, 2_000_000_000)

    with server.connect("shop") as conn:
        result = run_amcheck(conn)
    assert not result.passed
    assert result.model_extra["corrupt"] == ["shop.ledger_pkey"], result.detail
    assert result.model_extra["check_errors"] == []
    assert result.detail.startswith("1 of ") and "corrupt: shop.ledger_pkey: " in result.detail
    assert "[XX002]" in result.detail or "[XX001]" in result.detail
    assert "on partitioned tables" in result.detail  # the parents are skipped, not reported


def test_an_index_amcheck_cannot_lock_is_an_error_of_the_check_not_corruption(source):
    locked = threading.Event()
    release = threading.Event()

    def hold_lock():
        with source.connect("shop") as other:
            with other.transaction():
                other.execute("LOCK TABLE shop.products IN ACCESS EXCLUSIVE MODE")
                locked.set()
                release.wait(60)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert locked.wait(30)
        with source.connect("shop") as conn:
            result = run_amcheck(conn, lock_timeout=0.3)
    finally:
        release.set()
        holder.join(timeout=30)

    assert not result.passed
    assert result.model_extra["corrupt"] == []
    assert set(result.model_extra["check_errors"]) == {"shop.products_pkey", "shop.products_uid",
                                                       "shop.products_title_c"}
    assert "could not be checked (an error of the check, not corruption)" in result.detail
    assert "lock timeout" in result.detail and "[55P03]" in result.detail
    assert "indexes corrupt" not in result.detail


def test_a_drill_fails_and_names_an_index_amcheck_finds_corrupt(docker_client, s3_server, module_s3_bucket, postgres,
                                                                 tmp_path):
    # A small database of its own (on a server without the odd roles), so this runs whatever globals do.
    with postgres.connect() as conn:
        conn.execute("CREATE DATABASE shop_lying")
    with postgres.connect("shop_lying") as conn:
        conn.execute(LYING_INDEX)
    data = config_data(s3_server, module_s3_bucket, tmp_path, postgres, database="shop_lying", dbname="shop_lying",
                       jobs={"drill": drill_job(databases=["shop_lying"], amcheck=True)})
    config = Config.model_validate(data)
    make_backup(config, "shop_lying")

    result = run_job(config, "drill")

    assert not result.ok
    assert "amcheck" in result.errors[0] and "shop.customers_session_bucket" in result.errors[0], result.errors
    [record] = catalog.list_backups(storage_of(config), "shop_lying")[0].verifications
    checks = checks_of(record)
    assert {name for name, c in checks.items() if not c.passed} == {"amcheck"}
    assert checks["amcheck"].model_extra["corrupt"] == ["shop.customers_session_bucket"]
    # amcheck raises data_corrupted (XX001) for a heap tuple its index lacks, index_corrupted (XX002) for damage
    # inside the index: both are corruption.
    assert "lacks matching index tuple" in checks["amcheck"].detail and "[XX001]" in checks["amcheck"].detail
    # customers_pkey, the lying index, customers' TOAST index and both partitions' primary keys are
    # checked; the primary key of the partitioned parent shop.orders is skipped, not a false alarm.
    assert "5 checked (with heapallindexed), 1 skipped (1 on partitioned tables)" in checks["amcheck"].detail
    assert drill_containers(docker_client, result.run_id) == []


def test_a_drill_with_amcheck_passes_on_postgresql_17(docker_client, s3_server, module_s3_bucket, pg17, tmp_path):
    load_realistic(pg17, "shop")
    data = config_data(s3_server, module_s3_bucket, tmp_path, pg17, database="shop17", dbname="shop",
                       jobs={"drill": drill_job(databases=["shop17"], amcheck=True)})
    data["databases"]["shop17"]["client"] = {"mode": "exec", "container": pg17.container.name}
    config = Config.model_validate(data)
    assert make_backup(config, "shop17").server_major == 17

    result = run_job(config, "drill")

    assert result.ok, result.errors
    [record] = catalog.list_backups(storage_of(config), "shop17")[0].verifications
    assert record.passed and record.image == "maintainer-test/postgres:17"
    assert "on partitioned tables" in checks_of(record)["amcheck"].detail
