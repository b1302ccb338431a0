"""Benchmark: time to a usable database by physical restore plus WAL replay, against
pg_restore of a logical dump of the same database.

    .venv/bin/python bench/pitr.py [--scale 740] [--wal-mb 512] [--rounds 3] [--image maintainer-test/postgres:{major}]

In one run it
 1. starts a PostgreSQL server (image defaults, replication allowed) and fills it with
    the Contrivance-like data set at --scale (about 1.36 MB per unit: 740 is about 1 GB);
 2. runs the real wal_archive job in the background and the real pg_basebackup job once,
    then writes a fixed volume of WAL (--wal-mb, inserts into a scratch table that is
    dropped at the end, so both restores bring back the same database), and waits until
    the archive holds it;
 3. takes a logical dump of the same (final) database with the real pg_backup job;
 4. for --rounds interleaved rounds: physical (maintainer's point-in-time restore to the
    end: container start, base backup streamed in and verified, pg_verifybackup, WAL
    replayed from storage, promoted) and logical (maintainer's restore drill of the dump:
    container start, dump streamed in, pg_restore --jobs 2), each timed from start to a
    usable database (clean-up excluded);
 5. prints the medians as JSON: time to usable database for both, their ratio (target
    at 4 GB: physical <= 0.4x logical), and WAL replay speed in MB/s.

Every container and volume is labelled maintainer.bench=1 and removed at the end.
Only 127.0.0.1 ports are used. Exit code 0 when the physical restore is faster.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from maintainer.backup import catalog  # noqa: E402
from maintainer.config.models import Config  # noqa: E402
from maintainer.dockerapi import connect  # noqa: E402
from maintainer.restore.container import DrillContainer, DrillSettings  # noqa: E402
from maintainer.restore.drill import DrillOptions, drill_backup  # noqa: E402
from maintainer.restore.pitr import PitrOptions, recover_to_point  # noqa: E402
from maintainer.restore.pitr_plan import END, PitrTarget  # noqa: E402
from maintainer.restore.pitr_source import plan_from_storage  # noqa: E402
from maintainer.runner import run_job  # noqa: E402
from maintainer.storage import open_storage  # noqa: E402
from maintainer.wal import archive  # noqa: E402

LABELS = {"maintainer.bench": "1"}
SERVER = "contrivance"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def start_source(client, image: str) -> DrillContainer:
    """A server with the image's defaults (wal_level replica), replication allowed from the host."""
    s = DrillSettings(image=image, run_id=f"bench-{uuid.uuid4().hex[:6]}", memory=4 * 1024**3, cpus=2.0,
                      labels=LABELS, deadline=time.time() + 3 * 3600)
    s.server_args = lambda: ["postgres", "-c", "max_wal_size=2GB"]  # type: ignore[method-assign]
    server = DrillContainer.start(client, s)
    server.wait_ready()
    server.exec(["sh", "-c", "echo 'host replication all all scram-sha-256' >> $PGDATA/pg_hba.conf"])
    with server.connect() as conn:
        conn.execute("SELECT pg_reload_conf()")
    return server


def fill(server: DrillContainer, scale: int) -> None:
    host, port = server.address()
    env = {"PGPASSWORD": server.password, "PGHOST": host, "PGPORT": str(port), "PGUSER": "postgres",
           "PATH": "/usr/bin:/bin"}
    subprocess.run(["psql", "-X", "-q", "-c", "CREATE DATABASE contrivance"], env=env, check=True)
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"scale={scale}", "-d", "contrivance",
                    "-f", str(REPO / "examples/contrivance/schema.sql"),
                    "-f", str(REPO / "examples/contrivance/seed.sql")], env=env, check=True, timeout=7200)


def write_wal(server: DrillContainer, megabytes: int) -> int:
    """Insert into a scratch table until ``megabytes`` of WAL were written, then drop it; WAL bytes."""
    with server.connect("contrivance") as conn:
        start = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        conn.execute("CREATE TABLE bench_wal (id bigserial PRIMARY KEY, payload text)")
        while True:
            conn.execute("INSERT INTO bench_wal (payload) SELECT md5(g::text) || repeat('x', 200) "
                         "FROM generate_series(1, 20000) g")
            done = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (start,)).fetchone()[0]
            if done >= megabytes * 1024**2:
                break
        conn.execute("DROP TABLE bench_wal")
        conn.execute("SELECT pg_switch_wal()")
        return int(conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (start,)).fetchone()[0])


def wait_archived(storage, source: DrillContainer, timeout: float = 1800) -> None:
    with source.connect() as conn:
        name = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]
        conn.execute("SELECT pg_switch_wal()")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stored = archive.list_archive(storage, SERVER).find(name)
        if stored is not None and not stored.partial:
            return
        time.sleep(0.5)
    raise RuntimeError(f"segment {name} was not archived within {timeout:.0f} s")


def physical(client, storage) -> dict:
    source = plan_from_storage(storage, SERVER, PitrTarget(END), datetime.now(timezone.utc), None)
    t = time.monotonic()
    server, rec = recover_to_point(client, storage, source, run_id=f"bench-{uuid.uuid4().hex[:6]}", user="postgres",
                                   keyring=None, options=PitrOptions(image_template=ARGS.image, labels=LABELS,
                                                                     memory=4 * 1024**3, cpus=2.0))
    usable = time.monotonic() - t
    server.remove()
    return {"usable_seconds": usable, "replay_mb_s": rec.replay_mb_s, "wal_bytes": rec.wal_bytes,
            **rec.seconds}


def logical(client, storage, entry) -> dict:
    options = DrillOptions(image_template=ARGS.image, parallel_jobs=2, cpus=2.0, tmpfs=False, memory=4 * 1024**3,
                           labels=LABELS, timeout=3 * 3600)
    record = drill_backup(client, storage, entry, [], options, run_id=f"bench-{uuid.uuid4().hex[:6]}",
                          cancel=threading.Event())
    extra = record.model_extra or {}
    return {"usable_seconds": (extra.get("ready_seconds") or 0) + (record.restore_seconds or 0),
            "result": record.result}


def main() -> int:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=740)
    parser.add_argument("--wal-mb", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--image", default="maintainer-test/postgres:{major}")
    ARGS = parser.parse_args()

    client = connect()
    image = ARGS.image.format(major=15)
    work = Path(tempfile.mkdtemp(prefix="maintainer-bench-pitr-"))
    source = None
    try:
        source = start_source(client, image)
        log(f"filling Contrivance data at scale {ARGS.scale}")
        fill(source, ARGS.scale)
        with source.connect("contrivance") as conn:
            db_size = conn.execute("SELECT pg_database_size('contrivance')").fetchone()[0]
        host, port = source.address()
        config = Config.model_validate({
            "storage": {"local": {"url": f"file://{work}/storage"}},
            "databases": {SERVER: {"host": host, "port": port, "user": "postgres", "password": source.password,
                                   "sslmode": "disable"}},
            "daemon": {"state_dir": str(work / "state")},
            "jobs": {"backup": {"type": "pg_backup", "schedule": "0 3 * * *", "databases": [SERVER],
                                "storage": "local"},
                     "base": {"type": "pg_basebackup", "schedule": "0 3 * * *", "database": SERVER,
                              "storage": "local"},
                     "wal": {"type": "wal_archive", "database": SERVER, "storage": "local", "slot": "bench",
                             "flush_interval": "1s"}},
        })
        storage = open_storage(config.storage["local"], name="local")
        cancel = threading.Event()
        archiver = threading.Thread(target=lambda: run_job(config, "wal", cancel=cancel), daemon=True)
        archiver.start()
        time.sleep(3)
        t = time.monotonic()
        assert run_job(config, "base").ok, "base backup failed"
        base_seconds = time.monotonic() - t
        log(f"database {db_size / 1e6:.0f} MB, base backup in {base_seconds:.1f} s; writing {ARGS.wal_mb} MB of WAL")
        wal_bytes = write_wal(source, ARGS.wal_mb)
        wait_archived(storage, source)
        cancel.set()
        archiver.join(120)
        with source.connect() as conn:
            conn.execute("SELECT pg_drop_replication_slot('bench')")
        assert run_job(config, "backup").ok, "logical backup failed"
        entry = catalog.list_backups(storage, SERVER)[0]
        source.remove()
        runs: dict[str, list[dict]] = {"physical": [], "logical": []}
        for i in range(ARGS.rounds):
            for name in (("physical", "logical") if i % 2 == 0 else ("logical", "physical")):
                figures = physical(client, storage) if name == "physical" else logical(client, storage, entry)
                log(f"round {i + 1} {name}: {figures['usable_seconds']:.1f} s to a usable database")
                runs[name].append(figures)
        med = {name: statistics.median(r["usable_seconds"] for r in rs) for name, rs in runs.items()}
        figures = {
            "database_bytes": db_size, "wal_written_bytes": wal_bytes, "rounds": ARGS.rounds,
            "dump_raw_bytes": entry.manifest.object("dump").raw_size,
            "physical_usable_seconds_median": round(med["physical"], 2),
            "logical_usable_seconds_median": round(med["logical"], 2),
            "physical_to_logical_ratio": round(med["physical"] / med["logical"], 3),
            "wal_replay_mb_s_median": statistics.median(r["replay_mb_s"] for r in runs["physical"]),
            "physical_phases_median": {k: round(statistics.median(r[k] for r in runs["physical"]), 2)
                                       for k in ("ready_seconds", "base_seconds", "replay_seconds")},
            "logical_results": [r["result"] for r in runs["logical"]],
        }
        print(json.dumps(figures, indent=2))
        return 0 if figures["physical_to_logical_ratio"] < 1 else 1
    finally:
        if source is not None:
            source.remove()
        subprocess.run(["rm", "-rf", str(work)], check=False)
        client.close()


ARGS = argparse.Namespace()

if __name__ == "__main__":
    sys.exit(main())
