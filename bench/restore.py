"""Benchmark: a naive restore against maintainer's restore drill, on the same backup.

    .venv/bin/python bench/restore.py [--scale 740] [--image maintainer-test/postgres:{major}] [--jobs 2]

In one run it
 1. starts a PostgreSQL server and fills it with the Contrivance-like data set
    (examples/contrivance; text, jsonb, bytea, several indexes) at --scale
    (about 1.36 MB per unit in the database: 740 is about 1 GB);
 2. backs it up with the real pg_backup job into a local directory;
 3. naive: copies the uncompressed dump into a default-config server and times
    ``pg_restore -j1`` there (what most setups do);
 4. drill: runs maintainer's restore drill on the same backup (with its default
    ``tmpfs: auto``; then again with the data directory forced on disk) and reads the
    restore phase (download, SHA-256, decompress, copy, globals, parallel
    pg_restore) and the fixed overhead (container start to ready, plus clean-up)
    from its verification record;
 5. prints the figures as JSON and checks them against the targets: the drill's
    restore phase at most 0.75x the naive restore, overhead at most 5 s (the exit
    code judges the default drill).

Every container is labelled maintainer.bench=1 and removed at the end. Only
127.0.0.1 ports are used. Exit code 0 when the targets are met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from maintainer.backup import catalog  # noqa: E402
from maintainer.config.models import Config  # noqa: E402
from maintainer.dockerapi import connect  # noqa: E402
from maintainer.restore.container import DrillContainer, DrillSettings  # noqa: E402
from maintainer.restore.drill import DrillOptions, drill_backup  # noqa: E402
from maintainer.restore.checks import checks_for  # noqa: E402
from maintainer.restore.stream import VerifiedObject  # noqa: E402
from maintainer.runner import run_job  # noqa: E402
from maintainer.storage import open_storage  # noqa: E402

LABELS = {"maintainer.bench": "1"}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def start_server(client, image: str, *, settings: list[str] | None = None) -> DrillContainer:
    """A server with the image's defaults (no tuning), reachable on 127.0.0.1."""
    s = DrillSettings(image=image, run_id=f"bench-{uuid.uuid4().hex[:6]}", memory=4 * 1024**3, cpus=2.0,
                      labels=LABELS, deadline=time.time() + 3 * 3600)
    if settings is not None:
        s.server_args = lambda: ["postgres", *settings]  # type: ignore[method-assign]
    server = DrillContainer.start(client, s)
    server.wait_ready()
    return server


def fill(server: DrillContainer, scale: int) -> None:
    host, port = server.address()
    env = {**os.environ, "PGPASSWORD": server.password, "PGHOST": host, "PGPORT": str(port), "PGUSER": "postgres"}
    subprocess.run(["psql", "-X", "-q", "-c", "CREATE DATABASE contrivance"], env=env, check=True)
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"scale={scale}", "-d", "contrivance",
                    "-f", str(REPO / "examples/contrivance/schema.sql"),
                    "-f", str(REPO / "examples/contrivance/seed.sql")], env=env, check=True, timeout=7200)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=740)
    parser.add_argument("--image", default="maintainer-test/postgres:{major}")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--memory", default="4g", help="drill memory limit (with tmpfs it holds the data too)")
    args = parser.parse_args()

    client = connect()
    image = args.image.format(major=15)
    work = Path(tempfile.mkdtemp(prefix="maintainer-bench-"))
    containers: list[DrillContainer] = []
    try:
        log(f"source server {image}, filling Contrivance data at scale {args.scale}")
        source = start_server(client, image)
        containers.append(source)
        t = time.monotonic()
        fill(source, args.scale)
        log(f"filled in {time.monotonic() - t:.1f} s")
        with source.connect("contrivance") as conn:
            db_size = conn.execute("SELECT pg_database_size('contrivance')").fetchone()[0]
        host, port = source.address()
        config = Config.model_validate({
            "storage": {"local": {"url": f"file://{work}/storage"}},
            "databases": {"contrivance": {"host": host, "port": port, "user": "postgres",
                                          "password": source.password, "sslmode": "disable"}},
            "daemon": {"state_dir": str(work / "state")},
            "jobs": {"backup": {"type": "pg_backup", "schedule": "0 3 * * *", "databases": ["contrivance"],
                                "storage": "local"}},
        })
        t = time.monotonic()
        result = run_job(config, "backup")
        if not result.ok:
            log(f"backup failed: {result.errors}")
            return 1
        backup_seconds = time.monotonic() - t
        storage = open_storage(config.storage["local"], name="local")
        entry = catalog.list_backups(storage, "contrivance")[0]
        dump = entry.manifest.object("dump")
        log(f"backup {entry.id}: database {db_size / 1e6:.0f} MB, dump {dump.raw_size / 1e6:.0f} MB raw, "
            f"{dump.stored_size / 1e6:.0f} MB stored, in {backup_seconds:.1f} s")
        source.remove()

        # Naive: default-config server, the plain dump already inside, pg_restore -j1.
        log("naive: pg_restore -j1 into a default-config server")
        t = time.monotonic()
        naive = start_server(client, image, settings=[])
        containers.append(naive)
        naive_ready = time.monotonic() - t
        t = time.monotonic()
        naive.put_file("/tmp", "dump", dump.raw_size, VerifiedObject(storage, dump).chunks())
        naive_copy = time.monotonic() - t
        gobj = entry.manifest.object("globals")
        if gobj is not None:  # roles first, as a careful person would
            data = VerifiedObject(storage, gobj).read_all()
            naive.put_file("/tmp", "globals.sql", len(data), [data])
            naive.exec(["psql", "-X", "-q", "-U", "postgres", "-f", "/tmp/globals.sql"])
        code, out = naive.exec(["psql", "-X", "-q", "-U", "postgres", "-c", "CREATE DATABASE contrivance"])
        t = time.monotonic()
        code, out = naive.exec(["pg_restore", "-j1", "-U", "postgres", "-d", "contrivance", "/tmp/dump"])
        naive_restore = time.monotonic() - t
        if code != 0:
            log(f"naive pg_restore exited {code}: "
                f"{out.strip().splitlines()[-1] if out.strip() else ''}")
        naive.remove()

        figures = {
            "database_bytes": db_size, "dump_raw_bytes": dump.raw_size, "dump_stored_bytes": dump.stored_size,
            "backup_seconds": round(backup_seconds, 2),
            "naive_ready_seconds": round(naive_ready, 2), "naive_copy_seconds": round(naive_copy, 2),
            "naive_restore_seconds": round(naive_restore, 2),
        }
        # maintainer's drill on the same backup: data directory on disk (the default), then in memory.
        for variant, tmpfs in (("drill", "auto"), ("drill_disk", False)):
            log(f"{variant}: {args.jobs} parallel jobs, disposable settings, tmpfs={tmpfs}")
            options = DrillOptions(image_template=args.image, parallel_jobs=args.jobs, cpus=2.0, tmpfs=tmpfs,
                                   memory=_size(args.memory), labels=LABELS, timeout=3 * 3600)
            record = drill_backup(client, storage, entry, checks_for("contrivance", REPO / "restore/checks"),
                                  options, run_id=f"bench-{uuid.uuid4().hex[:6]}", cancel=threading.Event())
            extra = record.model_extra or {}
            figures.update({
                f"{variant}_result": record.result,
                f"{variant}_tmpfs": extra.get("tmpfs"),
                f"{variant}_failed_checks": [c.name for c in record.checks if not c.passed],
                f"{variant}_restore_seconds": record.restore_seconds,
                f"{variant}_copy_seconds": extra.get("copy_seconds"),
                f"{variant}_pg_restore_seconds": extra.get("pg_restore_seconds"),
                f"{variant}_ready_seconds": extra.get("ready_seconds"),
                f"{variant}_cleanup_seconds": extra.get("cleanup_seconds"),
                f"{variant}_overhead_seconds": record.overhead_seconds,
                f"{variant}_verify_seconds": extra.get("verify_seconds"),
                f"{variant}_restore_ratio": round(record.restore_seconds / naive_restore, 3),
            })
            figures[f"{variant}_targets_met"] = (figures[f"{variant}_restore_ratio"] <= 0.75
                                                 and (record.overhead_seconds or 99) <= 5.0
                                                 and record.result == "passed")
        print(json.dumps(figures, indent=2))
        return 0 if figures["drill_targets_met"] else 1
    finally:
        for c in containers:
            try:
                c.remove()
            except Exception as exc:  # noqa: BLE001 - report, keep cleaning
                log(f"could not remove {c.name}: {exc}")
        subprocess.run(["rm", "-rf", str(work)], check=False)
        client.close()


def _size(text: str) -> int:
    from maintainer.config.types import parse_size

    return parse_size(text)


if __name__ == "__main__":
    sys.exit(main())
