#!/usr/bin/env python3
"""Benchmark: maintainer's pg_backup against the floor and what common tools do.

    .venv/bin/python bench/backup.py            # about 1 GB of realistic data
    .venv/bin/python bench/backup.py --gb 4     # about 4 GB
    .venv/bin/python bench/backup.py --keep     # keep the sandbox directory for inspection
    .venv/bin/python bench/backup.py --rounds 9 # more interleaved rounds (default 5)

Starts a sandbox PostgreSQL 15 from local binaries (no Docker) on a free port in a
temporary directory, fills it with generate_series (several tables with text,
jsonb, bytea and indexes), then measures, in one run, interleaved over several
rounds (this machine's speed drifts between runs; medians are reported):

  floor       pg_dump -Fc -Z0 > /dev/null
  pg_dump -Fc pg_dump's built-in gzip into a file
  | gzip      pg_dump (plain SQL) | gzip > file, what common backup containers do
  local       maintainer run into file:// storage
  encrypted   the same with `encryption` (age, one X25519 recipient) set on the storage
  s3          maintainer run into a moto S3 server on 127.0.0.1

and prints wall times, ratios to the floor (and of encrypted to local, the cost of
encryption, measured within each round), output sizes and the peak RSS of
maintainer's own Python process (VmHWM from /proc, polled; pg_dump not included).
"maintainer run" is the whole process, interpreter start included; the line
below it is the backup job's own duration from its manifest.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PGBIN = Path(os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin"))
MAINTAINER = REPO / ".venv" / "bin" / "maintainer"

# Each unit is about 170 MB on disk (tables plus indexes).
GENERATE = """
CREATE TABLE IF NOT EXISTS accounts (id bigint PRIMARY KEY, email text NOT NULL, name text NOT NULL,
    settings jsonb NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS events (id bigint PRIMARY KEY, account_id bigint NOT NULL, kind text NOT NULL,
    payload jsonb NOT NULL, created_at timestamptz NOT NULL);
CREATE INDEX IF NOT EXISTS events_account ON events (account_id, created_at);
CREATE TABLE IF NOT EXISTS documents (id bigint PRIMARY KEY, account_id bigint NOT NULL, title text NOT NULL,
    body text NOT NULL, updated_at timestamptz NOT NULL);
CREATE INDEX IF NOT EXISTS documents_title ON documents (title);
CREATE TABLE IF NOT EXISTS attachments (id bigint PRIMARY KEY, document_id bigint NOT NULL, name text NOT NULL,
    content bytea NOT NULL);
"""

WORDS = ("'{deploy,build,release,failed,passed,queue,worker,merge,branch,review,comment,token,session,"
         "cache,index,vacuum,replica,backup,restore,metric,alert,latency,request,response,service}'::text[]")

FILL_UNIT = f"""
INSERT INTO accounts SELECT g, 'user' || g || '@example.org', initcap(md5(g::text)),
    jsonb_build_object('theme', (ARRAY['dark','light'])[1 + g % 2], 'lang', 'en', 'flags', jsonb_build_array(g % 7, g % 11)),
    now() - (g || ' minutes')::interval
  FROM generate_series(:lo * 20000 + 1, (:lo + 1) * 20000) g;
INSERT INTO events SELECT g, 1 + g % 20000, ({WORDS})[1 + g % 25],
    jsonb_build_object('request_id', md5(g::text), 'duration_ms', g % 997, 'path', '/api/v1/' || ({WORDS})[1 + g % 23],
                       'tags', jsonb_build_array(({WORDS})[1 + g % 19], ({WORDS})[1 + g % 17])),
    now() - (g || ' seconds')::interval
  FROM generate_series(:lo * 250000 + 1, (:lo + 1) * 250000) g;
INSERT INTO documents SELECT g, 1 + g % 20000, ({WORDS})[1 + g % 25] || ' ' || md5(g::text),
    array_to_string(ARRAY(SELECT ({WORDS})[1 + (g * k) % 25] || ' ' || substr(md5((g * k)::text), 1, 1 + k % 12)
                          FROM generate_series(1, 120) k), ' '),
    now() - (g || ' hours')::interval
  FROM generate_series(:lo * 25000 + 1, (:lo + 1) * 25000) g;
INSERT INTO attachments SELECT g, g, 'file-' || g || '.bin',
    decode(repeat(md5(g::text), 24), 'hex') || decode(md5(random()::text) || md5(random()::text), 'hex')
    || convert_to(repeat(({WORDS})[1 + g % 25] || ';', 40), 'UTF8')
  FROM generate_series(:lo * 40000 + 1, (:lo + 1) * 40000) g;
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_postgres() -> list[str]:
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"] if os.getuid() == 0 else []


class Sandbox:
    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.password = secrets.token_urlsafe(16)
        self.data = root / "pgdata"
        self.env = {**os.environ, "PGPASSWORD": self.password, "PGHOST": "127.0.0.1", "PGPORT": str(self.port),
                    "PGUSER": "postgres"}

    def start(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password)
        if os.getuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        subprocess.run([*as_postgres(), PGBIN / "initdb", "-D", self.data, "-U", "postgres", "--auth=scram-sha-256",
                        f"--pwfile={pwfile}"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([*as_postgres(), PGBIN / "pg_ctl", "-D", self.data, "-w", "-l", self.root / "server.log", "-o",
                        f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                        "-c full_page_writes=off -c synchronous_commit=off -c max_wal_size=4GB -c shared_buffers=256MB",
                        "start"], check=True, stdout=subprocess.DEVNULL)

    def stop(self) -> None:
        subprocess.run([*as_postgres(), PGBIN / "pg_ctl", "-D", self.data, "-m", "fast", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def psql(self, *args: str, db: str = "bench") -> str:
        return subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", db, *args], env=self.env,
                              check=True, capture_output=True, text=True).stdout


def generate(sb: Sandbox, gb: float) -> None:
    sb.psql("-c", "CREATE DATABASE bench", db="postgres")
    sb.psql("-c", GENERATE)
    units = max(1, round(gb * 6))
    t0 = time.monotonic()
    for lo in range(units):
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"lo={lo}", "-d", "bench"], input=FILL_UNIT,
                       env=sb.env, check=True, text=True, stdout=subprocess.DEVNULL)
        print(f"  generated {lo + 1}/{units} units ({time.monotonic() - t0:.0f} s)", file=sys.stderr, flush=True)
    sb.psql("-c", "VACUUM ANALYZE")


def timed_shell(cmd: str, env: dict) -> float:
    t0 = time.monotonic()
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], env=env, check=True)
    return time.monotonic() - t0


def peak_rss_run(argv: list[str], env: dict) -> tuple[float, int]:
    """Wall time and the peak RSS (VmHWM, bytes) of the process itself, polled from /proc."""
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0

    def poll() -> None:
        nonlocal peak
        status = Path(f"/proc/{proc.pid}/status")
        while proc.poll() is None:
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) * 1024)
            except OSError:
                pass
            time.sleep(0.02)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    _, err = proc.communicate()
    wall = time.monotonic() - t0
    poller.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{err[-2000:]}")
    return wall, peak


def write_config(path: Path, sb: Sandbox, storage: dict, level: int = 1) -> None:
    import json

    (sb.root / "pgpassword").write_text(sb.password)
    path.write_text(json.dumps({
        "storage": {"target": storage},
        "databases": {"bench": {"host": "127.0.0.1", "port": sb.port, "user": "postgres",
                                "password_file": str(sb.root / "pgpassword"), "sslmode": "disable",
                                "client": {"mode": "local"}}},
        "jobs": {"bench": {"type": "pg_backup", "schedule": "0 3 * * *", "databases": ["bench"], "storage": "target",
                           "compression_level": level, "retention": {"keep_last": 1, "keep_daily": 0, "keep_weekly": 0,
                                                                 "keep_monthly": 0}}},
    }))


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def job_seconds(store: Path) -> float:
    """The dump's own duration from the manifest (without the interpreter's start)."""
    import json

    manifests = sorted(store.rglob("manifest.json"))
    return float(json.loads(manifests[-1].read_text())["duration"]) if manifests else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=1.0, help="approximate database size in GB (default 1)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="interleaved rounds of floor / local / S3; medians are reported (default 5)")
    parser.add_argument("--keep", action="store_true", help="keep the sandbox directory")
    parser.add_argument("--no-s3", action="store_true", help="skip the S3 runs")
    parser.add_argument("--no-encrypted", action="store_true", help="skip the encrypted local runs")
    parser.add_argument("--level", type=int, default=1, help="maintainer's zstd level (default 1)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="maintainer-bench-", dir="/var/tmp"))
    sb = Sandbox(root)
    moto = None
    try:
        sb.start()
        print(f"generating about {args.gb:g} GB ...", file=sys.stderr)
        generate(sb, args.gb)
        db_size = int(sb.psql("-c", "SELECT pg_database_size('bench')"))
        out = root / "out"
        out.mkdir()
        pg_dump = str(PGBIN / "pg_dump")
        conn = "-h 127.0.0.1 -U postgres -d bench"
        sb.psql("-c", "SELECT count(*) FROM events")  # warm the cache for every contender alike
        floor_cmd = f"{pg_dump} {conn} -Fc -Z0 > /dev/null"
        timed_shell(floor_cmd, sb.env)  # one warm-up run, not counted

        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        local_cfg = root / "local.yaml"
        write_config(local_cfg, sb, {"url": f"file://{out}/store"}, level=args.level)
        enc_cfg = None
        if not args.no_encrypted:
            sys.path.insert(0, str(REPO))
            from maintainer.crypto import X25519Identity

            recipient = str(X25519Identity.generate().recipient)  # writing needs only the public key
            enc_cfg = root / "encrypted.yaml"
            write_config(enc_cfg, sb, {"url": f"file://{out}/encrypted", "encryption": {"recipients": [recipient]}},
                         level=args.level)
        s3_cfg = None
        if not args.no_s3:
            port = free_port()
            moto = subprocess.Popen([str(REPO / ".venv/bin/python"), "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                     str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            import boto3

            s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="bench",
                              aws_secret_access_key="bench", region_name="us-east-1")
            for _ in range(100):
                try:
                    s3.create_bucket(Bucket="bench")
                    break
                except Exception:  # noqa: BLE001 - moto still starting
                    time.sleep(0.2)
            s3_cfg = root / "s3.yaml"
            write_config(s3_cfg, sb, {"url": "s3://bench/maintainer", "endpoint_url": f"http://127.0.0.1:{port}",
                                      "path_style": True, "access_key_id": "bench", "secret_access_key": "bench"},
                         level=args.level)

        # The machine's speed drifts by 10-20% between runs (the floor alone ranged 6.1-8.1 s
        # at 1 GB), so each round measures the floor right before the contenders, ratios are
        # taken within a round, and the medians over rounds are reported.
        rounds: list[dict[str, float]] = []
        local_size = s3_size = 0
        local_peak = s3_peak = enc_peak = enc_size = 0
        for n in range(args.rounds):
            r = {"floor": timed_shell(floor_cmd, sb.env)}
            shutil.rmtree(out / "store", ignore_errors=True)
            r["local"], peak = peak_rss_run([str(MAINTAINER), "--log-format", "json", "-c", str(local_cfg), "run", "bench"], env)
            r["local_job"] = job_seconds(out / "store")
            local_size, local_peak = dir_size(out / "store"), max(local_peak, peak)
            if enc_cfg is not None:
                shutil.rmtree(out / "encrypted", ignore_errors=True)
                r["encrypted"], peak = peak_rss_run([str(MAINTAINER), "--log-format", "json", "-c", str(enc_cfg), "run",
                                                     "bench"], env)
                r["encrypted_job"] = job_seconds(out / "encrypted")
                enc_size, enc_peak = dir_size(out / "encrypted"), max(enc_peak, peak)
            if s3_cfg is not None:
                for obj in s3.list_objects_v2(Bucket="bench").get("Contents", []):
                    s3.delete_object(Bucket="bench", Key=obj["Key"])
                r["s3"], peak = peak_rss_run([str(MAINTAINER), "--log-format", "json", "-c", str(s3_cfg), "run", "bench"], env)
                s3_size = sum(o["Size"] for o in s3.list_objects_v2(Bucket="bench").get("Contents", []))
                s3_peak = max(s3_peak, peak)
            rounds.append(r)
            print(f"  round {n + 1}: " + ", ".join(f"{k} {v:.2f}s" for k, v in r.items())
                  + f"; local {r['local'] / r['floor']:.2f}x", file=sys.stderr, flush=True)

        wall = timed_shell(f"{pg_dump} {conn} -Fc > {out}/builtin.dump", sb.env)
        builtin = (wall, (out / "builtin.dump").stat().st_size)
        wall = timed_shell(f"{pg_dump} {conn} | gzip > {out}/plain.sql.gz", sb.env)
        gzipped = (wall, (out / "plain.sql.gz").stat().st_size)

        def median(key: str) -> float:
            return statistics.median(r[key] for r in rounds)

        def ratio(key: str) -> float:
            return statistics.median(r[key] / r["floor"] for r in rounds)

        floor = median("floor")
        rows: list[tuple[str, float, float, int | None, int | None]] = [
            ("pg_dump -Fc -Z0 > /dev/null (floor)", floor, 1.0, None, None),
            ("pg_dump -Fc > file (built-in gzip)", builtin[0], builtin[0] / floor, builtin[1], None),
            ("pg_dump | gzip > file", gzipped[0], gzipped[0] / floor, gzipped[1], None),
            ("maintainer run -> local directory", median("local"), ratio("local"), local_size, local_peak),
            ("  its backup job alone (manifest)", median("local_job"), ratio("local_job"), None, None),
        ]
        if enc_cfg is not None:
            rows += [("maintainer run -> local, encrypted (age)", median("encrypted"), ratio("encrypted"), enc_size,
                      enc_peak),
                     ("  its backup job alone (manifest)", median("encrypted_job"), ratio("encrypted_job"), None, None)]
        if s3_cfg is not None:
            rows.append(("maintainer run -> S3 (moto on 127.0.0.1)", median("s3"), ratio("s3"), s3_size, s3_peak))

        print(f"\ndatabase size {db_size / 1e9:.2f} GB (pg_database_size), {os.cpu_count()} cores, "
              f"{args.rounds} interleaved rounds (medians; ratios are medians of per-round ratios)\n")
        print(f"| {'command':<42} | {'wall':>7} | {'x floor':>7} | {'output':>9} | {'peak RSS':>9} |")
        print(f"|{'-' * 44}|{'-' * 9}|{'-' * 9}|{'-' * 11}|{'-' * 11}|")
        for name, secs, x, size, peak in rows:
            size_s = f"{size / 1e6:.0f} MB" if size is not None else "-"
            peak_s = f"{peak / 1e6:.0f} MB" if peak is not None else "-"
            print(f"| {name:<42} | {secs:6.2f}s | {x:6.2f}x | {size_s:>9} | {peak_s:>9} |")
        if enc_cfg is not None:
            def cost(key: str) -> float:
                return statistics.median(r[f"encrypted{key}"] / r[f"local{key}"] - 1 for r in rounds)

            print(f"\nencryption adds {cost(''):+.1%} to maintainer run's wall time and {cost('_job'):+.1%} to the "
                  f"backup job's own duration (medians of per-round ratios); peak RSS {enc_peak / 1e6:.0f} MB "
                  f"encrypted against {local_peak / 1e6:.0f} MB")
    finally:
        if moto is not None:
            moto.kill()
            moto.wait()
        sb.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
