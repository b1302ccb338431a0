"""pg_backup against a real PostgreSQL and real storage: what is stored is complete,
exactly counted, and restores into an empty server with owners and grants."""

from __future__ import annotations


import pytest

from maintainer.backup import catalog, layout
from maintainer.runner import run_job
from maintainer.storage import open_storage

from support.pgdata import (config_for, db_entry, load_contrivance, psql, restore_with_standard_tools,
                                    s3_storage, snapshot_counts)

pytestmark = pytest.mark.integration


def test_a_backup_into_local_storage_has_a_manifest_with_exact_counts_and_restores_into_an_empty_server(
        postgres, postgres_factory, tmp_path):
    load_contrivance(postgres)
    rows, objects = snapshot_counts(postgres, "contrivance")
    config = config_for(f"file://{tmp_path}/store", {"contrivance": db_entry(postgres, "contrivance")})

    result = run_job(config, "backup")

    assert result.ok, result.errors
    storage = open_storage(config.storage["main"], "main")
    [entry] = catalog.list_backups(storage, "contrivance")
    m = entry.manifest
    assert {k: v.rows for k, v in m.row_counts.items()} == rows
    assert all(v.exact for v in m.row_counts.values())
    assert m.object_counts == objects
    assert m.total_rows == sum(rows.values()) > 0
    assert m.server_major == 15 and m.client == "local"
    assert [o.name for o in m.objects] == ["dump", "globals"]
    assert "backups kept 1" not in " ".join(result.summary)  # the summary speaks in its own words
    assert "contrivance: backup " + m.id in result.summary[0]

    # The same checks a person does by hand: restore with standard tools into a new, empty server.
    target = postgres_factory(password=postgres.password)
    backup_dir = tmp_path / "store" / layout.backup_prefix("contrivance", m.id)
    work = tmp_path / "work"
    work.mkdir()
    restore_with_standard_tools(backup_dir, target, work)
    restored_rows, restored_objects = snapshot_counts(target, "contrivance")
    assert restored_rows == rows
    assert restored_objects == objects
    owner = psql(target, "SELECT nspowner::regrole FROM pg_namespace WHERE nspname = 'app'", dbname="contrivance")
    assert "contrivance_app" in owner


def test_jsonb_bytea_large_objects_extensions_schemas_owners_and_grants_survive_into_an_empty_server(
        postgres, postgres_factory, tmp_path):
    psql(postgres, "CREATE DATABASE shop")
    psql(postgres, dbname="shop", sql="""
        CREATE ROLE shop_owner LOGIN PASSWORD 'owner-pw';
        CREATE ROLE shop_reader NOLOGIN;
        CREATE ROLE shop_member LOGIN IN ROLE shop_reader;
        CREATE EXTENSION pgcrypto;
        CREATE EXTENSION hstore;
        CREATE SCHEMA "Sales Data" AUTHORIZATION shop_owner;
        CREATE TABLE "Sales Data".orders (id serial PRIMARY KEY, doc jsonb NOT NULL, blob bytea, tags hstore,
                                          attachment oid);
        ALTER TABLE "Sales Data".orders OWNER TO shop_owner;
        INSERT INTO "Sales Data".orders (doc, blob, tags, attachment)
          SELECT jsonb_build_object('n', g, 'nested', jsonb_build_array(g, 'x', NULL)),
                 decode(md5(g::text) || '00ff', 'hex'), hstore('k', g::text), lo_from_bytea(0, gen_random_bytes(100))
          FROM generate_series(1, 500) g;
        CREATE VIEW "Sales Data".big_orders AS SELECT id FROM "Sales Data".orders WHERE id > 250;
        CREATE MATERIALIZED VIEW "Sales Data".order_count AS SELECT count(*) AS n FROM "Sales Data".orders;
        CREATE FUNCTION "Sales Data".touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
        CREATE TRIGGER orders_touch BEFORE UPDATE ON "Sales Data".orders FOR EACH ROW EXECUTE FUNCTION "Sales Data".touch();
        GRANT USAGE ON SCHEMA "Sales Data" TO shop_reader;
        GRANT SELECT ON "Sales Data".orders TO shop_reader;
    """)
    rows, objects = snapshot_counts(postgres, "shop")
    lo_sum = psql(postgres, "SELECT sum(length(lo_get(attachment))), count(DISTINCT attachment) FROM \"Sales Data\".orders", dbname="shop")
    digest = psql(postgres, "SELECT md5(string_agg(doc::text || encode(blob, 'hex') || tags::text, '|' ORDER BY id)) FROM \"Sales Data\".orders", dbname="shop")
    config = config_for(f"file://{tmp_path}/store", {"shop": db_entry(postgres, "shop")})

    result = run_job(config, "backup")

    assert result.ok, result.errors
    [entry] = catalog.list_backups(open_storage(config.storage["main"], "main"), "shop")
    assert entry.manifest.object_counts["extensions"] == objects["extensions"] == 3  # plpgsql, pgcrypto, hstore
    assert entry.manifest.object_counts["materialized_views"] == 1
    assert entry.manifest.row_counts['Sales Data.orders'].rows == 500
    target = postgres_factory(password=postgres.password)
    work = tmp_path / "work"
    work.mkdir()
    restore_with_standard_tools(tmp_path / "store" / layout.backup_prefix("shop", entry.id), target, work)
    assert snapshot_counts(target, "shop") == (rows, objects)
    assert psql(target, "SELECT sum(length(lo_get(attachment))), count(DISTINCT attachment) FROM \"Sales Data\".orders", dbname="shop") == lo_sum
    assert psql(target, "SELECT md5(string_agg(doc::text || encode(blob, 'hex') || tags::text, '|' ORDER BY id)) FROM \"Sales Data\".orders", dbname="shop") == digest
    grants = psql(target, "SELECT has_table_privilege('shop_reader', '\"Sales Data\".orders', 'SELECT'), "
                          "pg_has_role('shop_member', 'shop_reader', 'MEMBER'), "
                          "(SELECT relowner::regrole::text FROM pg_class WHERE relname = 'orders')", dbname="shop")
    assert grants.strip() == "t|t|shop_owner"
    assert "Sales Data" in psql(target, "SELECT nspname FROM pg_namespace WHERE nspowner = 'shop_owner'::regrole", dbname="shop")


def test_a_backup_into_s3_streams_in_parts_and_lists_like_a_local_one(postgres, s3_server, s3_bucket, tmp_path):
    load_contrivance(postgres, scale=2)
    url, extra = s3_storage(s3_server, s3_bucket)
    config = config_for(url, {"contrivance": db_entry(postgres, "contrivance")}, storage_extra=extra)

    first = run_job(config, "backup")
    second = run_job(config, "backup")

    assert first.ok and second.ok, first.errors + second.errors
    storage = open_storage(config.storage["main"], "main")
    entries = catalog.list_backups(storage, "contrivance")
    assert len(entries) == 2 and entries[0].id > entries[1].id
    m = entries[0].manifest
    dump = m.object("dump")
    assert storage.stat(dump.key).size == dump.stored_size
    import hashlib
    assert hashlib.sha256(storage.get_bytes(dump.key)).hexdigest() == dump.sha256
    assert s3_server.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
