-- A Contrivance-like database: what the stack's four Rust services keep in PostgreSQL.
-- Used by the quick start, the tests and the benchmarks; restore/checks/contrivance.sql
-- checks a restored copy of it.

CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE EXTENSION IF NOT EXISTS pg_trgm;

DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'contrivance_app') THEN
    CREATE ROLE contrivance_app LOGIN PASSWORD 'app-password-change-me';
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'contrivance_readonly') THEN
    CREATE ROLE contrivance_readonly NOLOGIN;
  END IF;
END $$;

CREATE SCHEMA IF NOT EXISTS app AUTHORIZATION contrivance_app;
CREATE SCHEMA IF NOT EXISTS audit AUTHORIZATION contrivance_app;

-- accounts service
CREATE TABLE app.accounts (
    id          bigserial PRIMARY KEY,
    email       text NOT NULL UNIQUE,
    display_name text NOT NULL,
    settings    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    disabled    boolean NOT NULL DEFAULT false
);
CREATE INDEX accounts_name_trgm ON app.accounts USING gin (display_name gin_trgm_ops);

-- projects service
CREATE TABLE app.projects (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id    bigint NOT NULL REFERENCES app.accounts(id),
    name        text NOT NULL,
    description text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner_id, name)
);

-- builds service
CREATE TABLE app.builds (
    id          bigserial PRIMARY KEY,
    project_id  uuid NOT NULL REFERENCES app.projects(id) ON DELETE CASCADE,
    status      text NOT NULL CHECK (status IN ('queued', 'running', 'passed', 'failed')),
    log_excerpt text,
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX builds_project_started ON app.builds (project_id, started_at DESC);

CREATE TABLE app.artifacts (
    id          bigserial PRIMARY KEY,
    build_id    bigint NOT NULL REFERENCES app.builds(id) ON DELETE CASCADE,
    name        text NOT NULL,
    content     bytea NOT NULL,
    sha256      text NOT NULL
);

-- deployments service
CREATE TABLE app.deployments (
    id          bigserial PRIMARY KEY,
    build_id    bigint NOT NULL REFERENCES app.builds(id),
    environment text NOT NULL,
    deployed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit.events (
    id          bigserial PRIMARY KEY,
    account_id  bigint REFERENCES app.accounts(id),
    action      text NOT NULL,
    payload     jsonb NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_at ON audit.events (at);

CREATE VIEW app.project_stats AS
    SELECT p.id, p.name, count(b.id) AS builds,
           count(b.id) FILTER (WHERE b.status = 'passed') AS passed
    FROM app.projects p LEFT JOIN app.builds b ON b.project_id = p.id
    GROUP BY p.id, p.name;

CREATE MATERIALIZED VIEW app.daily_builds AS
    SELECT date_trunc('day', started_at) AS day, count(*) AS builds
    FROM app.builds GROUP BY 1;

CREATE FUNCTION app.touch_finished() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.status IN ('passed', 'failed') AND NEW.finished_at IS NULL THEN
    NEW.finished_at := now();
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER builds_finished BEFORE UPDATE ON app.builds
    FOR EACH ROW EXECUTE FUNCTION app.touch_finished();

ALTER TABLE app.accounts OWNER TO contrivance_app;
ALTER TABLE app.projects OWNER TO contrivance_app;
ALTER TABLE app.builds OWNER TO contrivance_app;
ALTER TABLE app.artifacts OWNER TO contrivance_app;
ALTER TABLE app.deployments OWNER TO contrivance_app;
ALTER TABLE audit.events OWNER TO contrivance_app;
GRANT USAGE ON SCHEMA app TO contrivance_readonly;
GRANT SELECT ON ALL TABLES IN SCHEMA app TO contrivance_readonly;
