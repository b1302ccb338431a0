"""StatusServer with a StatusPage, built the way the Daemon builds them, over a real
run history (SQLite) and a real local backup catalog; and without a page, as before."""

from __future__ import annotations

import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest

from maintainer.backup import catalog, layout
from maintainer.backup.manifest import Manifest, StoredObject
from maintainer.config import load_config
from maintainer.health import CatalogCache, check, gather_databases
from maintainer.history import History
from maintainer.httpserver import StatusServer
from maintainer.jobs.base import JobResult
from maintainer.statuspage import StatusPage
from maintainer.storage.local import LocalStorage
from support.s3 import free_port

pytestmark = pytest.mark.integration


def store_backup(root, taken: datetime, stored_size: int) -> str:
    storage = LocalStorage("local", str(root))
    backup_id = layout.new_backup_id(taken)
    key = layout.object_key("app", backup_id, layout.DUMP)
    storage.put(key, b"x" * 7)
    catalog.write_manifest(storage, Manifest(
        id=backup_id, database="app", dbname="app", job="backup", run_id="r", server_version="15.10",
        server_version_num=150010, server_major=15, pg_dump_version="15.10", client="local", started=taken,
        finished=taken, duration=2.5, compression={"algorithm": "zstd", "level": 1}, maintainer_version="0.1.0",
        objects=[StoredObject(name="dump", key=key, format="pg_dump-custom", raw_size=10, stored_size=7,
                              sha256="0" * 64)],
        row_counts={}, object_counts={}, total_rows=1000, raw_size=10, stored_size=stored_size))
    return backup_id


@pytest.fixture
def setup(tmp_path):
    config_file = tmp_path / "schedules.yaml"
    config_file.write_text(f"""
storage: {{local: {{url: "file://{tmp_path}/backups"}}}}
databases: {{app: {{host: 127.0.0.1, password: pw-not-on-the-page-31337}}}}
daemon: {{state_dir: {tmp_path}/state, listen: "127.0.0.1:{free_port()}"}}
jobs:
  backup: {{type: pg_backup, schedule: "15 3 * * *", databases: [app], storage: local}}
  prune: {{type: docker_prune, schedule: "0 5 * * *"}}
""")
    config = load_config(config_file)
    history = History.open(config.daemon.state_dir)
    now = datetime.now(timezone.utc)
    for days, size in ((3, 90_000), (2, 91_000), (1, 20_000)):
        store_backup(tmp_path / "backups", now - timedelta(days=days), size)
    prune = JobResult("prune", "docker_prune", "run-p", now - timedelta(hours=1), now - timedelta(minutes=59),
                      summary=["removed 2 objects, reclaimed 1.5 GiB"],
                      figures={"removed": 2, "reclaimed_bytes": 1536 << 20})
    history.record_result(prune)
    return config, history


def serve(server: StatusServer) -> str:
    server.start()
    return f"http://127.0.0.1:{server.address[1]}"


def fetch(url: str, method: str = "GET") -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_the_page_renders_the_catalog_history_and_wal_fields_the_health_cache_carries(setup):
    config, history = setup

    def gather_with_wal(cfg, hist):  # the WAL fields H3 adds to DatabaseState, set as that code will set them
        states = gather_databases(cfg, hist)
        states["app"].wal_lag_seconds, states["app"].wal_receiver_up = 12.0, False
        return states

    cache = CatalogCache(lambda: config, history, gather=gather_with_wal)
    page = StatusPage(lambda: config, history, cache, lambda: True, dict)
    server = StatusServer(config.daemon.listen, lambda: check(config, history, cache, True), lambda: b"",
                          page=page.render, page_auth=page.credentials)
    try:
        url = serve(server)
        code, headers, body = fetch(url + "/")
        html = body.decode()
        assert code == 200 and headers["Cache-Control"] == "no-store"
        assert html.count('class="bar flagged"') == 1 and ">drop</text>" in html
        assert "(3 complete backups)" in html and "1,000 rows" in html
        assert "lag 12.0s" in html and "receiver down" in html
        assert "removed 2 objects, reclaimed 1.5 GiB" in html
        assert "pw-not-on-the-page-31337" not in html
        head = fetch(url + "/", "HEAD")
        assert head[0] == 200 and head[2] == b"" and int(head[1]["Content-Length"]) == len(body)
        assert fetch(url + "/", "DELETE")[0] == 405
    finally:
        server.stop()


def test_a_server_built_with_the_old_arguments_serves_no_page_and_health_as_before(setup):
    config, history = setup
    cache = CatalogCache(lambda: config, history)
    server = StatusServer(config.daemon.listen, lambda: check(config, history, cache, True), lambda: b"")
    try:
        url = serve(server)
        assert fetch(url + "/")[0] == 404
        assert fetch(url + "/health")[0] == 503  # no passed drill yet
    finally:
        server.stop()
