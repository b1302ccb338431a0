-- Fill the Contrivance-like schema with a small, realistic amount of data.
-- psql -v scale=N (default 1): about 1 MB of data per unit of scale.
\if :{?scale}
\else
  \set scale 1
\endif

INSERT INTO app.accounts (email, display_name, settings, created_at)
SELECT 'user' || g || '@example.com', 'User ' || md5(g::text),
       jsonb_build_object('theme', CASE WHEN g % 2 = 0 THEN 'dark' ELSE 'light' END, 'notifications', g % 3 = 0),
       now() - (g || ' hours')::interval
FROM generate_series(1, 200 * :scale) AS g;

INSERT INTO app.projects (owner_id, name, description, created_at)
SELECT a.id, 'project-' || a.id || '-' || p, repeat('A project description. ', 4), now() - (p || ' days')::interval
FROM app.accounts a, generate_series(1, 2) AS p;

INSERT INTO app.builds (project_id, status, log_excerpt, metadata, started_at)
SELECT pr.id, (ARRAY['queued','running','passed','failed'])[1 + (b % 4)],
       'cargo build --release ... ' || md5(pr.id::text || b),
       jsonb_build_object('commit', md5(b::text), 'duration_ms', b * 137 % 90000, 'tags', jsonb_build_array('ci', 'main')),
       now() - (b || ' minutes')::interval
FROM app.projects pr, generate_series(1, 5) AS b;

INSERT INTO app.artifacts (build_id, name, content, sha256)
SELECT b.id, 'binary-' || b.id, decode(repeat(md5(b.id::text), 8), 'hex'), encode(digest(b.id::text, 'sha256'), 'hex')
FROM app.builds b WHERE b.status = 'passed';

INSERT INTO app.deployments (build_id, environment, deployed_at)
SELECT b.id, (ARRAY['staging','production'])[1 + (b.id % 2)::int], b.started_at + interval '10 minutes'
FROM app.builds b WHERE b.status = 'passed';

INSERT INTO audit.events (account_id, action, payload, at)
SELECT 1 + (g % (200 * :scale)), (ARRAY['login','deploy','build','settings'])[1 + g % 4],
       jsonb_build_object('ip', '10.0.' || (g % 250) || '.' || (g % 200), 'agent', 'contrivance-cli/1.' || (g % 9)),
       now() - (g || ' seconds')::interval
FROM generate_series(1, 2000 * :scale) AS g;

REFRESH MATERIALIZED VIEW app.daily_builds;
ANALYZE;
