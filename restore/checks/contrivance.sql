-- Checks for a restored copy of the Contrivance database (format: restore/README.md,
-- "Check files"). Each check is one read-only query with an expectation. They prove
-- more than row counts: that roles, owners and grants came back, that sequences are
-- ahead of the data (or the next insert fails), that relations between the services'
-- tables hold, and that the data is as fresh as the backup claims.

-- check: accounts_present
-- expect: rows >= 1
SELECT id FROM app.accounts LIMIT 1;

-- check: roles_restored
-- expect: true
SELECT count(*) = 2 FROM pg_roles WHERE rolname IN ('contrivance_app', 'contrivance_readonly');

-- check: tables_owned_by_app_role
-- expect: true
SELECT coalesce(bool_and(tableowner = 'contrivance_app'), false)
FROM pg_tables WHERE schemaname IN ('app', 'audit');

-- check: readonly_role_can_read_builds
-- expect: true
SELECT has_table_privilege('contrivance_readonly', 'app.builds', 'SELECT');

-- check: extensions_present
-- expect: true
SELECT count(*) = 2 FROM pg_extension WHERE extname IN ('pgcrypto', 'pg_trgm');

-- check: sequences_ahead_of_data
-- expect: true
SELECT (SELECT last_value FROM app.accounts_id_seq) >= (SELECT coalesce(max(id), 0) FROM app.accounts)
   AND (SELECT last_value FROM app.builds_id_seq) >= (SELECT coalesce(max(id), 0) FROM app.builds)
   AND (SELECT last_value FROM app.artifacts_id_seq) >= (SELECT coalesce(max(id), 0) FROM app.artifacts)
   AND (SELECT last_value FROM audit.events_id_seq) >= (SELECT coalesce(max(id), 0) FROM audit.events);

-- check: every_project_has_an_owner
-- expect: true
SELECT NOT EXISTS (
    SELECT 1 FROM app.projects p WHERE NOT EXISTS (SELECT 1 FROM app.accounts a WHERE a.id = p.owner_id));

-- check: deployments_only_of_passed_builds
-- expect: between 0 and 0
SELECT count(*) FROM app.deployments d JOIN app.builds b ON b.id = d.build_id WHERE b.status <> 'passed';

-- check: artifact_checksums_well_formed
-- expect: true
SELECT coalesce(bool_and(sha256 ~ '^[0-9a-f]{64}$' AND length(content) > 0), true) FROM app.artifacts;

-- check: daily_builds_view_populated
-- expect: true
SELECT ispopulated FROM pg_matviews WHERE schemaname = 'app' AND matviewname = 'daily_builds';

-- check: audit_log_fresh
-- expect: newer than 7d
SELECT max(at) FROM audit.events;
