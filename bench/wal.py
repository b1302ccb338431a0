#!/usr/bin/env python3
"""Benchmark: the WAL archive's lag and cost under steady load, and base backups.

    .venv/bin/python bench/wal.py                      # 1 GB database, 120 s of load, 5 rounds
    .venv/bin/python bench/wal.py --gb 0.2 --seconds 30 --rounds 3   # a quick run
    .venv/bin/python bench/wal.py --keep               # keep the sandbox directory

Starts a sandbox PostgreSQL 15 from local binaries (bench/backup.py's Sandbox, no
Docker), fills it with bench/backup.py's realistic data, then:

1. Archive lag. ``maintainer run wal`` (a wal_archive job with the default flush
   interval, 5 s, into file:// storage; the same code the daemon runs) archives
   while pgbench writes at a steady rate. A probe commits a row every second and
   notes the server's flush LSN after the commit; a watcher polls the storage and
   notes when the archive first reaches that LSN (a complete segment past it, or
   the partial segment's written part). Lag = that moment minus the commit.
   Reports median and p99 lag, and the archiver process's CPU (user+system
   seconds per second of wall time) and its RSS (peak VmHWM and last VmRSS).
2. Base backup. ``maintainer run base`` (pg_basebackup -Ft -X fetch through zstd
   into file:// storage) against the floor, ``pg_basebackup -Ft -D - -X fetch >
   /dev/null``, and the best equivalent shell pipeline (the same through
   ``zstd -T0`` into a file), interleaved over rounds; medians and the ratios.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backup import MAINTAINER, PGBIN, Sandbox, generate, timed_shell  # noqa: E402 - the sibling benchmark's sandbox

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from maintainer.wal import layout  # noqa: E402
from maintainer.wal.lsn import parse_lsn, parse_segment_name, segment_start  # noqa: E402


def write_config(path: Path, sb: Sandbox, store: Path, level: int = 1) -> None:
    (sb.root / "pgpassword").write_text(sb.password)
    path.write_text(json.dumps({
        "storage": {"local": {"url": f"file://{store}"}},
        "databases": {"bench": {"host": "127.0.0.1", "port": sb.port, "user": "postgres", "dbname": "bench",
                                "password_file": str(sb.root / "pgpassword"), "sslmode": "disable",
                                "client": {"mode": "local"}}},
        "jobs": {
            "wal": {"type": "wal_archive", "database": "bench", "storage": "local", "slot": "bench"},
            "base": {"type": "pg_basebackup", "schedule": "0 3 * * *", "database": "bench", "storage": "local",
                     "compression_level": level,
                     "retention": {"keep_last": 1, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0}},
        },
    }))


def archived_position(store: Path) -> int:
    """How far the stored WAL reaches: past the newest complete segment, or into the partial."""
    best = 0
    root = store / "wal" / "bench"
    if not root.exists():
        return 0
    for path in root.glob("*/*.zst"):
        stored = layout.parse_segment_key(str(path.relative_to(store)))
        if stored is None:
            continue
        tli, segno = parse_segment_name(stored.segment)
        if not stored.partial:
            best = max(best, segment_start(segno + 1))
        else:
            try:
                with zstandard.ZstdDecompressor().stream_reader(path.open("rb")) as reader:
                    data = reader.read()
            except (OSError, zstandard.ZstdError):
                continue  # replaced while read
            best = max(best, segment_start(segno) + len(data.rstrip(b"\x00")))
    return best


class ProcessWatch(threading.Thread):
    """CPU seconds and RSS of one process, from /proc."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.rss, self.cpu, self.stop = pid, 0, 0, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
                stat = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                return
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    self.peak = int(line.split()[1]) * 1024
                if line.startswith("VmRSS:"):
                    self.rss = int(line.split()[1]) * 1024
            self.cpu = (int(stat[11]) + int(stat[12])) / 100  # utime + stime, clock ticks


def measure_lag(sb: Sandbox, config: Path, store: Path, seconds: int, rate: int) -> dict:
    subprocess.run([PGBIN / "pgbench", "-i", "-s", "10", "-q", "bench"], env=sb.env, check=True,
                   capture_output=True)
    sb.psql("-c", "CREATE TABLE IF NOT EXISTS probe (id serial, at timestamptz default now())")
    archiver = subprocess.Popen([MAINTAINER, "-c", str(config), "run", "wal"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
    watch = ProcessWatch(archiver.pid)
    watch.start()
    deadline = time.monotonic() + 60
    while archived_position(store) == 0:
        if time.monotonic() > deadline or archiver.poll() is not None:
            raise SystemExit("the archiver did not start:\n" + (archiver.stderr.read() if archiver.stderr else ""))
        time.sleep(0.2)
    load = subprocess.Popen([PGBIN / "pgbench", "-c", "2", "-j", "2", "-R", str(rate), "-T", str(seconds), "-n",
                             "bench"], env=sb.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    probes: list[tuple[float, int]] = []
    arrived: dict[int, float] = {}
    cpu0, t0 = watch.cpu, time.monotonic()
    end = t0 + seconds
    while time.monotonic() < end or len(arrived) < len(probes):
        now = time.monotonic()
        if now < end and (not probes or now - probes[-1][0] >= 1.0):
            lsn = sb.psql("-c", "INSERT INTO probe DEFAULT VALUES", "-c", "SELECT pg_current_wal_flush_lsn()").strip()
            probes.append((time.monotonic(), parse_lsn(lsn)))
        position = archived_position(store)
        for i, (at, lsn) in enumerate(probes):
            if i not in arrived and position >= lsn:
                arrived[i] = time.monotonic() - at
        if now > end + 120:
            break
        time.sleep(0.1)
    wall = time.monotonic() - t0
    cpu = watch.cpu - cpu0
    load.wait()
    archiver.terminate()
    archiver.wait(60)
    watch.stop.set()
    lags = sorted(arrived.values())
    return {"probes": len(probes), "arrived": len(lags), "median": statistics.median(lags),
            "p99": lags[min(len(lags) - 1, int(round(0.99 * (len(lags) - 1))))], "max": lags[-1],
            "cpu_per_s": cpu / wall, "peak_rss": watch.peak, "rss": watch.rss,
            "segments": len(list((store / "wal" / "bench").glob("*/*-*.zst")))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=1.0, help="database size for the base backup (about)")
    parser.add_argument("--seconds", type=int, default=120, help="seconds of steady load for the lag")
    parser.add_argument("--rate", type=int, default=300, help="pgbench transactions per second")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved base backup rounds")
    parser.add_argument("--level", type=int, default=1, help="the base backup's zstd level (-7..22)")
    parser.add_argument("--keep", action="store_true", help="keep the sandbox directory")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="maintainer-bench-wal-"))
    sb = Sandbox(root)
    try:
        sb.start()
        generate(sb, args.gb)
        store = root / "store"
        config = root / "schedules.yaml"
        write_config(config, sb, store, args.level)
        lag = measure_lag(sb, config, store, args.seconds, args.rate)
        size = int(sb.psql("-c", "SELECT pg_database_size('bench')").strip())
        floor, shell, ours = [], [], []
        basebackup = f"{PGBIN}/pg_basebackup -h 127.0.0.1 -p {sb.port} -U postgres -Ft -D - -X fetch --checkpoint=fast"
        for _ in range(args.rounds):
            floor.append(timed_shell(f"{basebackup} > /dev/null", sb.env))
            # The best equivalent shell pipeline: the same tar, compressed at the same level
            # with every core zstd can use, into a file.
            shell.append(timed_shell(f"{basebackup} | zstd -q -{max(args.level, 1)} -T0 > {root}/shell.tar.zst", sb.env))
            ours.append(timed_shell(f"{MAINTAINER} -c {config} run base > /dev/null", sb.env))
        manifests = sorted((store / "base" / "bench").glob("*/manifest.json"))
        job = json.loads(manifests[-1].read_text())
        print(f"\nWAL archive under pgbench -R {args.rate} for {args.seconds} s (flush interval 5 s, file:// storage)")
        print(f"  probes committed        {lag['probes']}, archived {lag['arrived']}")
        print(f"  lag median              {lag['median']:.2f} s   (target <= 10 s)")
        print(f"  lag p99                 {lag['p99']:.2f} s   (target <= 30 s)   max {lag['max']:.2f} s")
        print(f"  segments stored         {lag['segments']}")
        print(f"  archiver CPU            {lag['cpu_per_s'] * 100:.1f} % of one core")
        print(f"  archiver RSS            peak {lag['peak_rss'] / 2**20:.1f} MB, last {lag['rss'] / 2**20:.1f} MB"
              "   (target <= 100 MB)")
        print(f"\nBase backup of a {size / 2**30:.2f} GB database, zstd level {args.level}, {args.rounds} "
              "interleaved rounds (medians)")
        f, o = statistics.median(floor), statistics.median(ours)
        sh = statistics.median(shell)
        print(f"  pg_basebackup -Ft -D - -X fetch > /dev/null   {f:.2f} s")
        print(f"  ... | zstd -{max(args.level, 1)} -T0 > file (best shell pipeline)   {sh:.2f} s   {sh / f:.2f}x the floor")
        print(f"  maintainer run base (whole process)          {o:.2f} s   {o / f:.2f}x the floor (target <= 1.2x)")
        print(f"  its job duration (manifest)                   {job['duration']:.2f} s, "
              f"{job['stored_size'] / 2**20:.0f} MB stored of {job['raw_size'] / 2**20:.0f} MB raw")
    finally:
        sb.psql("-c", "SELECT pg_drop_replication_slot('bench') FROM pg_replication_slots WHERE slot_name = 'bench'",
                db="postgres")
        sb.stop()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
