-- A database that uses what real application schemas use, for restore and drill tests.
--
-- Partitioned tables (range, list, hash, with keys and indexes declared on the
-- parent), every index kind (B-tree, GiST with an exclusion constraint, GIN on
-- jsonb, tsvector and trigrams, BRIN, hash, partial, expression, INCLUDE, ICU
-- collation), a materialized view (populated and not), triggers (row, statement,
-- constraint, on a partitioned table, an event trigger), extensions in their own
-- schema, large objects, roles with odd names (spaces, quotes, upper case), row
-- level security, identity columns and sequences, domains, enums and composite
-- types, comments, views, functions, procedures and an aggregate, grants and
-- default privileges, database and role-in-database settings. A few thousand rows.
--
-- Loaded by tests/support/realistic.py with psql ON_ERROR_STOP; roles are
-- cluster-wide and created only when missing, so it loads twice on one server.
-- Data is deterministic (no random()), so two loads hold the same rows.

SET client_min_messages = warning;

-- ------------------------------------------------------------ roles

DO $$
DECLARE r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['Shop Owner', 'o''reilly', 'ANALYST', 'say "hi"', 'shop_app', 'shop_readonly'] LOOP
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
      EXECUTE format('CREATE ROLE %I NOLOGIN', r);
    END IF;
  END LOOP;
END $$;
ALTER ROLE "Shop Owner" LOGIN PASSWORD 'owner pw with spaces';
ALTER ROLE "o'reilly" LOGIN CONNECTION LIMIT 5 VALID UNTIL '2099-01-01';
ALTER ROLE "ANALYST" SET statement_timeout = '5min';
ALTER ROLE shop_app LOGIN PASSWORD 'app-password';
COMMENT ON ROLE "say ""hi""" IS 'a role whose name has double quotes; and a semicolon';
GRANT shop_readonly TO "o'reilly";
GRANT shop_readonly TO "ANALYST";
GRANT "Shop Owner" TO shop_app;

-- ------------------------------------------------------------ database level

DO $$ BEGIN
  EXECUTE format('ALTER DATABASE %I SET search_path = shop, ext, public', current_database());
  EXECUTE format('ALTER DATABASE %I SET default_text_search_config = %L', current_database(), 'pg_catalog.english');
  EXECUTE format('ALTER ROLE "ANALYST" IN DATABASE %I SET work_mem = %L', current_database(), '64MB');
  EXECUTE format('ALTER ROLE "o''reilly" IN DATABASE %I SET search_path = reporting, shop', current_database());
  EXECUTE format('COMMENT ON DATABASE %I IS %L', current_database(), 'the shop''s database; realistic');
  EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO "o''reilly", "ANALYST"', current_database());
  EXECUTE format('GRANT CREATE ON DATABASE %I TO "Shop Owner"', current_database());
END $$;

-- ------------------------------------------------------------ schemas and extensions

CREATE SCHEMA ext;
CREATE EXTENSION pgcrypto SCHEMA ext;
CREATE EXTENSION pg_trgm SCHEMA ext;
CREATE EXTENSION btree_gist SCHEMA ext;
CREATE EXTENSION citext SCHEMA ext;
CREATE EXTENSION hstore SCHEMA ext;
CREATE EXTENSION "uuid-ossp" SCHEMA ext;
COMMENT ON SCHEMA ext IS 'extensions live here, not in public';

CREATE SCHEMA shop AUTHORIZATION "Shop Owner";
CREATE SCHEMA audit AUTHORIZATION "Shop Owner";
CREATE SCHEMA "Reporting" AUTHORIZATION "ANALYST";
COMMENT ON SCHEMA shop IS 'orders, customers, stock';

SET search_path = shop, ext, public;

-- ------------------------------------------------------------ types

CREATE TYPE shop.order_status AS ENUM ('new', 'paid', 'shipped', 'cancelled');
ALTER TYPE shop.order_status ADD VALUE 'refunded' AFTER 'shipped';
CREATE DOMAIN shop.email AS ext.citext CHECK (VALUE ~ '^[^@\s]+@[^@\s]+$');
CREATE DOMAIN shop.money_cents AS bigint NOT NULL DEFAULT 0 CHECK (VALUE >= 0);
CREATE TYPE shop.address AS (street text, city text, zip text, country char(2));
CREATE TYPE shop.price_range AS RANGE (subtype = numeric);
CREATE COLLATION shop.natural_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TEXT SEARCH CONFIGURATION shop.product_search (COPY = pg_catalog.english);
COMMENT ON TYPE shop.order_status IS 'lifecycle of an order';
COMMENT ON DOMAIN shop.email IS 'case-insensitive e-mail address';

-- ------------------------------------------------------------ functions

CREATE FUNCTION shop.touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END $$;

CREATE FUNCTION shop.normalize_sku(sku text) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
  RETURN upper(regexp_replace(sku, '[^A-Za-z0-9]', '', 'g'));

CREATE FUNCTION audit.record_change() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog, audit AS $$
BEGIN
  INSERT INTO audit.changes (table_name, op, row_data)
  VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, TG_OP,
          CASE WHEN TG_OP = 'DELETE' THEN to_jsonb(OLD) ELSE to_jsonb(NEW) END);
  RETURN NULL;
END $$;

CREATE FUNCTION shop.count_statement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE shop.counters SET n = n + 1 WHERE name = TG_TABLE_NAME;
  RETURN NULL;
END $$;

CREATE FUNCTION shop.check_stock() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.quantity < 0 THEN
    RAISE EXCEPTION 'negative stock for %', NEW.sku;
  END IF;
  RETURN NULL;
END $$;

CREATE PROCEDURE shop.cancel_order(p_order bigint) LANGUAGE plpgsql AS $$
BEGIN
  UPDATE public.orders SET status = 'cancelled' WHERE id = p_order;
END $$;

CREATE FUNCTION shop.concat_step(acc text, val text) RETURNS text LANGUAGE sql IMMUTABLE
  RETURN CASE WHEN acc IS NULL THEN val ELSE acc || ',' || val END;
CREATE AGGREGATE shop.csv_agg(text) (SFUNC = shop.concat_step, STYPE = text);

CREATE FUNCTION public.log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE DEBUG 'ddl: %', tg_tag;
END $$;
CREATE EVENT TRIGGER log_ddl ON ddl_command_end EXECUTE FUNCTION public.log_ddl();

COMMENT ON FUNCTION shop.normalize_sku(text) IS 'SKU without punctuation, upper case';
COMMENT ON PROCEDURE shop.cancel_order(bigint) IS 'cancel; keeps the lines';

-- ------------------------------------------------------------ tables

CREATE SEQUENCE shop.invoice_number START 100000 INCREMENT 7 CACHE 10;

CREATE TABLE shop.customers (
    id          bigint GENERATED ALWAYS AS IDENTITY (START WITH 1000) PRIMARY KEY,
    email       shop.email NOT NULL,
    name        text NOT NULL COLLATE shop.natural_ci,
    "Display Name" text,
    address     shop.address,
    profile     jsonb NOT NULL DEFAULT '{}',
    attrs       ext.hstore,
    tags        text[] NOT NULL DEFAULT '{}',
    api_token   text NOT NULL DEFAULT encode(ext.gen_random_bytes(16), 'hex'),
    search      tsvector GENERATED ALWAYS AS (to_tsvector('pg_catalog.english', coalesce(name, '') || ' ' || coalesce(profile->>'bio', ''))) STORED,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    CONSTRAINT customers_email_key UNIQUE (email)
);
CREATE INDEX customers_lower_email ON shop.customers (lower(email::text));
CREATE INDEX customers_active ON shop.customers (created_at DESC NULLS LAST) INCLUDE (name) WHERE deleted_at IS NULL;
CREATE INDEX customers_profile ON shop.customers USING gin (profile jsonb_path_ops);
CREATE INDEX customers_search ON shop.customers USING gin (search);
CREATE INDEX customers_name_trgm ON shop.customers USING gin (name ext.gin_trgm_ops);
CREATE INDEX customers_tags ON shop.customers USING gin (tags);
CREATE INDEX customers_api_token ON shop.customers USING hash (api_token);
CREATE INDEX customers_attrs ON shop.customers USING gist (attrs);
CREATE TRIGGER customers_touch BEFORE UPDATE ON shop.customers FOR EACH ROW EXECUTE FUNCTION shop.touch_updated_at();
COMMENT ON TABLE shop.customers IS 'people who buy';
COMMENT ON COLUMN shop.customers."Display Name" IS 'shown in the UI; may differ from name';

CREATE TABLE shop.products (
    sku         text PRIMARY KEY,
    title       text NOT NULL,
    body        text,
    price       shop.money_cents,
    price_band  shop.price_range,
    uid         uuid NOT NULL DEFAULT ext.uuid_generate_v4(),
    CONSTRAINT products_sku_normal CHECK (sku = shop.normalize_sku(sku))
);
CREATE UNIQUE INDEX products_uid ON shop.products (uid);
CREATE INDEX products_fts ON shop.products USING gin (to_tsvector('shop.product_search', title || ' ' || coalesce(body, '')));
CREATE INDEX products_band ON shop.products USING gist (price_band);
CREATE INDEX products_title_spgist ON shop.products USING spgist (title);

CREATE TABLE shop.stock (
    sku         text NOT NULL REFERENCES shop.products (sku) ON UPDATE CASCADE,
    warehouse   text NOT NULL,
    quantity    integer NOT NULL,
    PRIMARY KEY (sku, warehouse)
);
CREATE CONSTRAINT TRIGGER stock_not_negative AFTER INSERT OR UPDATE ON shop.stock
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION shop.check_stock();

CREATE TABLE shop.counters (name text PRIMARY KEY, n bigint NOT NULL DEFAULT 0);

-- Range partitions by month, keys and indexes declared on the parent (public, as in the issue).
CREATE TABLE public.orders (
    id          bigint GENERATED BY DEFAULT AS IDENTITY,
    customer_id bigint NOT NULL REFERENCES shop.customers (id),
    status      shop.order_status NOT NULL DEFAULT 'new',
    total_cents shop.money_cents,
    note        text,
    placed_at   timestamptz NOT NULL,
    invoice_no  bigint,
    PRIMARY KEY (id, placed_at),
    UNIQUE (invoice_no, placed_at) DEFERRABLE
) PARTITION BY RANGE (placed_at);
CREATE TABLE public.orders_2024_01 PARTITION OF public.orders FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE public.orders_2024_02 PARTITION OF public.orders FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
CREATE TABLE public.orders_2024_03 PARTITION OF public.orders FOR VALUES FROM ('2024-03-01') TO ('2024-04-01');
CREATE TABLE public.orders_default PARTITION OF public.orders DEFAULT;
CREATE INDEX orders_customer ON public.orders (customer_id, placed_at DESC);
CREATE INDEX orders_open ON public.orders (placed_at) WHERE status IN ('new', 'paid');
CREATE INDEX orders_placed_brin ON public.orders USING brin (placed_at);
CREATE TRIGGER orders_audit AFTER INSERT OR UPDATE OR DELETE ON public.orders
  FOR EACH ROW EXECUTE FUNCTION audit.record_change();
CREATE TRIGGER orders_count AFTER INSERT ON public.orders FOR EACH STATEMENT EXECUTE FUNCTION shop.count_statement();
-- An index of one partition only, and a parent index built ON ONLY and attached partition by partition.
CREATE INDEX orders_2024_03_note ON public.orders_2024_03 (note) WHERE note IS NOT NULL;
CREATE INDEX orders_status ON ONLY public.orders (status);
CREATE INDEX orders_2024_01_status ON public.orders_2024_01 (status);
CREATE INDEX orders_2024_02_status ON public.orders_2024_02 (status);
CREATE INDEX orders_2024_03_status ON public.orders_2024_03 (status);
CREATE INDEX orders_default_status ON public.orders_default (status);
ALTER INDEX public.orders_status ATTACH PARTITION public.orders_2024_01_status;
ALTER INDEX public.orders_status ATTACH PARTITION public.orders_2024_02_status;
ALTER INDEX public.orders_status ATTACH PARTITION public.orders_2024_03_status;
ALTER INDEX public.orders_status ATTACH PARTITION public.orders_default_status;
COMMENT ON TABLE public.orders IS 'partitioned by month';

CREATE TABLE shop.order_lines (
    order_id    bigint NOT NULL,
    placed_at   timestamptz NOT NULL,
    line_no     smallint NOT NULL,
    sku         text NOT NULL REFERENCES shop.products (sku),
    quantity    integer NOT NULL CHECK (quantity > 0),
    unit_cents  bigint NOT NULL,
    PRIMARY KEY (order_id, placed_at, line_no),
    FOREIGN KEY (order_id, placed_at) REFERENCES public.orders (id, placed_at) ON DELETE CASCADE
);
CREATE INDEX order_lines_sku ON shop.order_lines (shop.normalize_sku(sku));

-- List partitions by region, one of them hash-subpartitioned.
CREATE TABLE shop.shipments (
    id          bigint NOT NULL DEFAULT nextval('shop.invoice_number'),
    region      text NOT NULL,
    tracking    text NOT NULL,
    shipped_on  date NOT NULL,
    PRIMARY KEY (region, id)
) PARTITION BY LIST (region);
CREATE TABLE shop.shipments_eu PARTITION OF shop.shipments FOR VALUES IN ('de', 'fr', 'nl');
CREATE TABLE shop.shipments_us PARTITION OF shop.shipments FOR VALUES IN ('us') PARTITION BY HASH (id);
CREATE TABLE shop.shipments_us_0 PARTITION OF shop.shipments_us FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE shop.shipments_us_1 PARTITION OF shop.shipments_us FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE TABLE shop.shipments_other PARTITION OF shop.shipments DEFAULT;
CREATE INDEX shipments_tracking ON shop.shipments (region, tracking);
CREATE INDEX shipments_tracking_hash ON shop.shipments USING hash (tracking);
CREATE INDEX shipments_day_brin ON shop.shipments USING brin (shipped_on) WITH (pages_per_range = 16);

-- GiST exclusion constraint with btree_gist: no double bookings of a room.
CREATE TABLE shop.room_bookings (
    id          serial PRIMARY KEY,
    room        integer NOT NULL,
    during      tstzrange NOT NULL,
    booked_by   bigint REFERENCES shop.customers (id) ON DELETE SET NULL,
    CONSTRAINT no_double_booking EXCLUDE USING gist (room WITH =, during WITH &&)
);

-- Append-only events: BRIN on time, B-tree on a uuid.
CREATE TABLE audit.changes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name  text NOT NULL,
    op          text NOT NULL,
    row_data    jsonb,
    at          timestamptz NOT NULL DEFAULT '2024-06-01 00:00:00+00'
);
CREATE INDEX changes_at_brin ON audit.changes USING brin (at);
CREATE INDEX changes_table ON audit.changes (table_name, id);

-- Row level security, enabled and forced, with policies for odd-named roles.
CREATE TABLE shop.tenant_notes (
    id          bigserial PRIMARY KEY,
    tenant      text NOT NULL,
    body        text NOT NULL
);
ALTER TABLE shop.tenant_notes ENABLE ROW LEVEL SECURITY;
ALTER TABLE shop.tenant_notes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON shop.tenant_notes
  USING (tenant = current_setting('app.tenant', true));
CREATE POLICY "owner sees all" ON shop.tenant_notes FOR SELECT TO "Shop Owner", "o'reilly" USING (true);

-- Large objects: the documents table keeps their oids.
CREATE TABLE shop.documents (
    id          integer PRIMARY KEY,
    customer_id bigint REFERENCES shop.customers (id),
    content     oid NOT NULL,
    filename    text NOT NULL
);

-- Unlogged cache table with a B-tree index.
CREATE UNLOGGED TABLE shop.sessions (
    token       text PRIMARY KEY,
    customer_id bigint,
    expires_at  timestamptz NOT NULL
);

-- A mixed-case table in a mixed-case schema, columns with spaces.
CREATE TABLE "Reporting"."Monthly Totals" (
    "Month"     date PRIMARY KEY,
    "Total (cents)" bigint NOT NULL,
    "Order Count" integer NOT NULL
);

-- A function with an SQL-standard body that depends on a table (pg_dump orders it after the table).
CREATE FUNCTION shop.order_total(p_order bigint) RETURNS bigint LANGUAGE sql STABLE
  BEGIN ATOMIC
    SELECT coalesce(sum(quantity * unit_cents), 0) FROM shop.order_lines WHERE order_id = p_order;
  END;

-- Constraints added NOT VALID (pg_dump writes them apart from their table).
ALTER TABLE shop.stock ADD CONSTRAINT stock_warehouse_known CHECK (warehouse IN ('berlin', 'austin')) NOT VALID;
ALTER TABLE shop.sessions ADD CONSTRAINT sessions_token_hex CHECK (token ~ '^[0-9a-f]+$') NOT VALID;

CREATE INDEX products_title_c ON shop.products (title COLLATE "C" text_pattern_ops);

CREATE STATISTICS shop.orders_lines_stats (dependencies, ndistinct) ON sku, quantity FROM shop.order_lines;

-- ------------------------------------------------------------ views

CREATE VIEW shop.open_orders WITH (security_barrier) AS
  SELECT o.id, o.placed_at, c.email, o.status FROM public.orders o JOIN shop.customers c ON c.id = o.customer_id
  WHERE o.status IN ('new', 'paid');
CREATE VIEW shop.cheap_products AS SELECT sku, title, price FROM shop.products WHERE price < 1000
  WITH LOCAL CHECK OPTION;
CREATE RECURSIVE VIEW shop.numbers (n) AS SELECT 1 UNION ALL SELECT n + 1 FROM numbers WHERE n < 10;
CREATE MATERIALIZED VIEW shop.daily_sales AS
  SELECT date_trunc('day', placed_at AT TIME ZONE 'UTC')::date AS day, count(*) AS orders, sum(total_cents) AS cents
  FROM public.orders GROUP BY 1;
CREATE UNIQUE INDEX daily_sales_day ON shop.daily_sales (day);
CREATE MATERIALIZED VIEW "Reporting".top_customers AS
  SELECT customer_id, count(*) AS orders FROM public.orders GROUP BY 1 WITH NO DATA;
CREATE INDEX top_customers_orders ON "Reporting".top_customers (orders DESC);
COMMENT ON MATERIALIZED VIEW shop.daily_sales IS 'refreshed nightly';

-- ------------------------------------------------------------ grants

ALTER TABLE shop.customers OWNER TO "Shop Owner";
ALTER TABLE public.orders OWNER TO "Shop Owner";
ALTER MATERIALIZED VIEW "Reporting".top_customers OWNER TO "ANALYST";
ALTER TABLE "Reporting"."Monthly Totals" OWNER TO "ANALYST";
GRANT USAGE ON SCHEMA shop, "Reporting" TO shop_readonly;
GRANT SELECT ON ALL TABLES IN SCHEMA shop TO shop_readonly;
GRANT SELECT (id, email, name) ON shop.customers TO "o'reilly";
GRANT SELECT, INSERT, UPDATE ON public.orders TO shop_app;
GRANT SELECT ON "Reporting"."Monthly Totals" TO "say ""hi""";
GRANT USAGE ON SEQUENCE shop.invoice_number TO shop_app;
GRANT EXECUTE ON FUNCTION shop.order_total(bigint) TO "ANALYST";
REVOKE EXECUTE ON FUNCTION audit.record_change() FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE "Shop Owner" IN SCHEMA shop GRANT SELECT ON TABLES TO shop_readonly;
ALTER DEFAULT PRIVILEGES IN SCHEMA "Reporting" GRANT SELECT ON TABLES TO "ANALYST";

-- ------------------------------------------------------------ data

INSERT INTO shop.counters (name) VALUES ('orders');

INSERT INTO shop.customers (email, name, "Display Name", address, profile, attrs, tags, api_token, created_at, deleted_at)
SELECT format('user%s@example.%s', g, CASE WHEN g % 3 = 0 THEN 'org' ELSE 'com' END),
       format('Customer %s %s', g, (ARRAY['Müller', 'O''Brien', 'Zoë', 'Łukasz', '東京'])[g % 5 + 1]),
       CASE WHEN g % 4 = 0 THEN NULL ELSE format('C-%s', g) END,
       ROW(format('%s Main St', g), 'Springfield', lpad((g % 99999)::text, 5, '0'), 'US')::shop.address,
       jsonb_build_object('bio', format('likes item %s and %s', g % 17, g % 23), 'vip', g % 50 = 0,
                          'prefs', jsonb_build_object('newsletter', g % 2 = 0)),
       ext.hstore(ARRAY['tier', 'src'], ARRAY[(g % 3)::text, 'web']),
       ARRAY[format('t%s', g % 7), format('t%s', g % 11)],
       md5(g::text),
       '2023-01-01'::timestamptz + g * interval '37 minutes',
       CASE WHEN g % 20 = 0 THEN '2024-05-01'::timestamptz END
FROM generate_series(1, 2000) g;

INSERT INTO shop.products (sku, title, body, price, price_band, uid)
SELECT format('SKU%s', lpad(g::text, 5, '0')), format('Product %s', g),
       repeat(format('Durable widget number %s. ', g), g % 5 + 1),
       (g * 137) % 50000, shop.price_range((g % 10) * 100, (g % 10) * 100 + 100),
       ext.uuid_generate_v5(ext.uuid_ns_url(), format('https://shop.example/p/%s', g))
FROM generate_series(1, 500) g;

INSERT INTO shop.stock (sku, warehouse, quantity)
SELECT format('SKU%s', lpad(g::text, 5, '0')), w, (g * 7) % 300
FROM generate_series(1, 500) g, unnest(ARRAY['berlin', 'austin']) w;

INSERT INTO public.orders (customer_id, status, total_cents, note, placed_at, invoice_no)
SELECT 1000 + (g % 2000), (ARRAY['new', 'paid', 'shipped', 'refunded', 'cancelled']::shop.order_status[])[g % 5 + 1],
       (g * 991) % 100000, CASE WHEN g % 9 = 0 THEN format('gift %s', g) END,
       '2024-01-01'::timestamptz + g * interval '17 minutes',
       CASE WHEN g % 2 = 0 THEN nextval('shop.invoice_number') END
FROM generate_series(1, 12000) g;

INSERT INTO shop.order_lines (order_id, placed_at, line_no, sku, quantity, unit_cents)
SELECT o.id, o.placed_at, l, format('SKU%s', lpad(((o.id * l) % 500 + 1)::text, 5, '0')), l, 100 * l + o.id % 100
FROM public.orders o, generate_series(1, 2) l
WHERE o.id % 3 <> 0;

INSERT INTO shop.shipments (region, tracking, shipped_on)
SELECT (ARRAY['de', 'fr', 'nl', 'us', 'us', 'jp'])[g % 6 + 1], format('TRK-%s', g), DATE '2024-01-01' + g % 120
FROM generate_series(1, 3000) g;

INSERT INTO shop.room_bookings (room, during, booked_by)
SELECT g % 20, tstzrange('2024-03-01'::timestamptz + (g / 20) * interval '1 day',
                         '2024-03-01'::timestamptz + (g / 20) * interval '1 day' + interval '20 hours'),
       1000 + g
FROM generate_series(0, 1999) g;

INSERT INTO shop.tenant_notes (tenant, body)
SELECT format('tenant-%s', g % 4), format('note %s: %s', g, repeat('x', g % 40)) FROM generate_series(1, 1000) g;

INSERT INTO shop.documents (id, customer_id, content, filename)
SELECT g, 1000 + g, lo_from_bytea(0, convert_to(repeat(format('document %s line\n', g), 50 * g), 'UTF8')),
       format('doc-%s.txt', g)
FROM generate_series(1, 20) g;
DO $$
DECLARE o oid;
BEGIN
  FOR o IN SELECT content FROM shop.documents WHERE id <= 5 LOOP
    EXECUTE format('ALTER LARGE OBJECT %s OWNER TO "Shop Owner"', o);
    EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO "o''reilly"', o);
    EXECUTE format('COMMENT ON LARGE OBJECT %s IS %L', o, 'scanned contract');
  END LOOP;
END $$;

INSERT INTO shop.sessions (token, customer_id, expires_at)
SELECT md5('s' || g), 1000 + g, '2030-01-01'::timestamptz FROM generate_series(1, 300) g;

INSERT INTO "Reporting"."Monthly Totals"
SELECT date_trunc('month', placed_at)::date, sum(total_cents), count(*) FROM public.orders GROUP BY 1;

UPDATE public.orders SET note = 'updated' WHERE id % 500 = 0;  -- fires the audit trigger on updates too
UPDATE shop.customers SET "Display Name" = 'renamed' WHERE id % 400 = 0;
SELECT setval('shop.invoice_number', 250000, false);

REFRESH MATERIALIZED VIEW shop.daily_sales;
ANALYZE;
