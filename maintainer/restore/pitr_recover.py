"""Recovering a base backup plus WAL to a point, in a RecoveryServer (see pitr_server).

How segments reach the server: maintainer serves them. The server's
``restore_command`` is a small shell script inside the container (FETCH_SCRIPT)
that only moves files: it looks up the requested name in the plan's list
(/pitr/wanted); a name that is not in it (a probe for a newer timeline, the
segment after the archive's end) fails at once, as an archive without it would.
A planned name it waits for in /pitr/wal, writing the name into /pitr/want.
maintainer, in its own process, reads that file and keeps the wanted segment and
the next few (LOOKAHEAD) staged there: each read from storage with
``wal.archive.read_segment`` (decrypted, decompressed, SHA-256 checked) and
copied in with ``docker put_archive``. So the container needs no storage
credentials, no keys and no network, and local, S3 and encrypted archives work
alike; at most LOOKAHEAD segments sit in the container at a time.

A segment that cannot be read (missing, damaged, no key) stops the server at
once (``pg_ctl stop -m immediate``) before the script is told to fail: a
recovery that ran out of WAL would otherwise promote early and look complete.

Recovery stops at the target (``recovery_target_time``/``_lsn``, action
promote, the plan's timeline). When a time target lies after the last commit in
the archive but within its reach (the planner checked that archiving ran past
it), PostgreSQL ends with "recovery ended before configured recovery target was
reached"; every commit before the target is then replayed, so recovery is
restarted without a target to promote at the archive's end, and that is said.
"""

from __future__ import annotations

import re
import shlex
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from maintainer.crypto.keyring import Keyring
from maintainer.errors import Interrupted, JobError, MaintainerError, ObjectNotFound
from maintainer.logs import get_logger
from maintainer.restore.pitr_plan import END, LSN, TIME, PitrPlan
from maintainer.restore.pitr_server import PGDATA, SOCKET_DIR, WORK, RecoveryServer
from maintainer.storage.base import Storage
from maintainer.wal import archive, basebackups, layout
from maintainer.wal.basebackup_manifest import BaseBackupManifest
from maintainer.wal.lsn import format_lsn, parse_lsn

log = get_logger("restore.pitr")

LOOKAHEAD = 6
# Segments are staged on the volume itself (a directory PostgreSQL ignores inside pg_wal), so
# the restore_command's mv is a rename, not a 16 MB copy between file systems.
STAGE = f"{PGDATA}/pg_wal/maintainer-staging"
POLL = 0.2
FETCH_SCRIPT = f"""#!/bin/sh
# restore_command of a maintainer point-in-time restore: moves what maintainer staged.
f="$1"; p="$2"
grep -qx "$f" {WORK}/wanted || exit 1
case "$f" in *.history) exec cp {STAGE}/"$f" "$p";; esac  # asked for more than once: staged once, kept
while [ ! -f {STAGE}/"$f".ready ]; do
  [ -f {WORK}/stop ] && exit 1
  echo "$f" > {WORK}/want.tmp && mv {WORK}/want.tmp {WORK}/want
  sleep 0.1
done
mv {STAGE}/"$f" "$p" && rm -f {STAGE}/"$f".ready && echo "$f" >> {WORK}/served
"""
_STOPPED = re.compile(r"recovery stopping (?:before|after) (?:commit|abort) of transaction \d+, time (.+)$")
_LAST = re.compile(r"last completed transaction was at log time (.+)$")
_NOT_REACHED = "recovery ended before configured recovery target was reached"


class RecoveryFailed(JobError):
    """Recovery did not reach the target; ``cause`` says why in a few words (for a drill check)."""

    def __init__(self, message: str, cause: str = "recovery"):
        super().__init__(message)
        self.cause = cause


class ReplayProgress:
    """What a recovery reports while WAL replays; the CLI shows it, the drill logs it."""

    def phase(self, name: str, total: int | None = None) -> None: ...

    def advance(self, amount: int) -> None: ...

    def replay(self, segments: int, total: int, reached: str) -> None: ...

    def done(self) -> None: ...


@dataclass
class Recovery:
    """What a finished recovery reached."""

    reached_time: datetime | None = None  # the last transaction replayed
    reached_lsn: str = ""
    stopped_before: datetime | None = None  # the first transaction left out (after the target)
    timeline: int = 0  # the new timeline after promotion
    segments_served: int = 0
    wal_bytes: int = 0
    base_bytes: int = 0
    ran_to_end: bool = False  # a time target after the archive's last commit: recovered to the end
    seconds: dict[str, float] = field(default_factory=dict)
    verifybackup: str = ""

    @property
    def replay_mb_s(self) -> float:
        s = self.seconds.get("replay_seconds") or 0
        return round(self.wal_bytes / 1024**2 / s, 1) if s > 0 else 0.0


def load_base(server: RecoveryServer, storage: Storage, manifest: BaseBackupManifest, keyring: Keyring | None,
              progress: ReplayProgress, cancel: threading.Event) -> int:
    """Stream the verified base tar into the volume; chown it; the raw bytes.
    ChecksumMismatch/StorageError when it does not match its manifest (the server
    is never started on it)."""
    obj = manifest.object("base.tar")
    if obj is None:
        raise JobError(f"base backup {manifest.server}/{manifest.id} has no base.tar object")
    progress.phase("base backup", total=obj.raw_size)
    failure: list[BaseException] = []
    sent = 0

    def chunks():
        nonlocal sent
        try:
            for chunk in basebackups.read_object(storage, manifest, "base.tar", keyring):
                if cancel.is_set():
                    raise Interrupted("restore stopped while the base backup was copied")
                sent += len(chunk)
                progress.advance(len(chunk))
                yield chunk
        except BaseException as exc:
            failure.append(exc)
            raise

    try:
        server.put_stream(PGDATA, chunks())
    except BaseException:
        if failure:
            raise failure[0] from None
        raise
    if failure:
        raise failure[0]
    server.run(["sh", "-c", f"chown -R postgres:postgres {PGDATA} && chmod 700 {PGDATA}"], user="root",
               what="set the owner of the restored files")
    return sent


def verify_base(server: RecoveryServer) -> str:
    """pg_verifybackup of the extracted files against the backup's own backup_manifest
    (-n: the WAL comes from the archive, not the backup). JobError naming the first problem."""
    code, out = server.exec(["pg_verifybackup", "-n", PGDATA])
    if code != 0:
        lines = [line for line in out.strip().splitlines() if line.strip()]
        raise RecoveryFailed(f"pg_verifybackup: {lines[0] if lines else f'exit {code}'}", cause="pg_verifybackup")
    return (out.strip().splitlines() or ["backup successfully verified"])[-1]


def recover(server: RecoveryServer, storage: Storage, plan: PitrPlan, listing: archive.ArchiveListing,
            keyring: Keyring | None, progress: ReplayProgress, cancel: threading.Event,
            timeout: float | None = None) -> Recovery:
    """Replay the plan's WAL in ``server`` (whose volume holds the base backup) until it
    promotes. RecoveryFailed naming the cause, Interrupted on cancel."""
    result = Recovery()
    histories = {f"{tli:08X}.history": key for tli, key in plan.histories.items()}
    names = [s.name for s in plan.steps]
    server.put(WORK, "fetch.sh", FETCH_SCRIPT.encode())
    server.put(WORK, "wanted", ("\n".join(names + list(histories)) + "\n").encode())
    server.run(["sh", "-c", f"mkdir -p {STAGE} && chown -R postgres:postgres {WORK} {STAGE} && "
                            f"touch {PGDATA}/recovery.signal"], user="root", what="prepare recovery")
    for name, key in histories.items():
        tli = int(name[:8], 16)
        server.put(STAGE, name, archive.read_history(storage, listing, tli, keyring).encode())
    server.run(["chown", "postgres:postgres", f"{PGDATA}/recovery.signal"], user="root", what="prepare recovery")
    settings = {"restore_command": f"sh {WORK}/fetch.sh %f %p", "recovery_target_action": "promote",
                "recovery_target_timeline": str(plan.timeline)}
    if plan.target.kind == TIME:
        settings["recovery_target_time"] = plan.target.time.astimezone(UTC).isoformat()
    elif plan.target.kind == LSN:
        settings["recovery_target_lsn"] = format_lsn(plan.target.lsn)
    t0 = time.monotonic()
    progress.phase("replay WAL", total=plan.required)
    server.start_postgres(settings)
    outcome = _serve(server, storage, plan, keyring, progress, cancel, result, t0, timeout)
    if outcome == _NOT_REACHED and plan.target.kind == TIME:
        # Every commit before the target is replayed: finish at the archive's end (see the module docstring).
        log.info("pitr.target_after_last_commit", target=plan.target.describe())
        result.ran_to_end = True
        server.exec(["rm", "-f", f"{WORK}/want", f"{WORK}/served"])
        settings = {k: v for k, v in settings.items() if k != "recovery_target_time"}
        server.start_postgres(settings)
        outcome = _serve(server, storage, plan, keyring, progress, cancel, result, t0, timeout)
    if outcome != "promoted":
        raise RecoveryFailed(f"recovery of base backup {plan.base.id} to {plan.target.describe()} failed: {outcome}")
    result.seconds["replay_seconds"] = round(time.monotonic() - t0, 3)
    _read_outcome(server, result)
    return result


def _serve(server: RecoveryServer, storage: Storage, plan: PitrPlan, keyring: Keyring | None,
           progress: ReplayProgress, cancel: threading.Event, result: Recovery, t0: float,
           timeout: float | None) -> str:
    """Stage segments as recovery asks for them until the server promotes ("promoted")
    or stops (its first FATAL line). One docker exec per round reads what recovery
    wants, what is staged, how many it took and whether it is still recovering."""
    index = {s.name: i for i, s in enumerate(plan.steps)}
    last_report = 0.0
    probe = (f"cat {WORK}/want 2>/dev/null; echo ---; ls {STAGE}; echo ---; wc -l < {WORK}/served 2>/dev/null; "
             f"echo ---; psql -X -A -t -q -h {SOCKET_DIR} -U {shlex.quote(server.settings.user)} -d postgres "
             "-c 'SELECT pg_is_in_recovery()' 2>/dev/null || echo down")
    while True:
        if cancel.is_set():
            server.stop_postgres("immediate")
            raise Interrupted("restore stopped during WAL replay")
        if timeout is not None and time.monotonic() - t0 > timeout:
            server.stop_postgres("immediate")
            raise RecoveryFailed(f"WAL replay timed out after {timeout:.0f} s", cause="timeout")
        _, out = server.exec(["sh", "-c", probe])
        want_text, present_text, served_text, state_text = (out.split("---\n") + ["", "", "", ""])[:4]
        want, present = want_text.strip(), set(present_text.split())
        served = int(served_text.strip()) if served_text.strip().isdigit() else result.segments_served
        staged = 0
        if want in index:
            for step in plan.steps[index[want]:index[want] + LOOKAHEAD]:
                if step.name not in present:
                    _stage(server, storage, plan, step, keyring, result)
                    staged += 1
        if served != result.segments_served:
            progress.advance(served - result.segments_served)
            result.segments_served = served
        state = {"t": "recovering", "f": "promoted"}.get(state_text.strip())
        if state is None:  # not answering: starting up (before consistency) or stopped
            state = "recovering" if server.postgres_running() else "stopped"
        now = time.monotonic()
        if now - last_report >= 2 or state != "recovering":
            last_report = now
            progress.replay(served, plan.required, _replayed_time(server))
        if state == "promoted":
            return "promoted"
        if state == "stopped":
            problem = server.log_problem()
            return _NOT_REACHED if _NOT_REACHED in problem else problem
        if not staged:
            time.sleep(POLL)


def _stage(server: RecoveryServer, storage: Storage, plan: PitrPlan, step, keyring: Keyring | None,
           result: Recovery) -> None:
    """Read, check and copy one segment in, with its ``.ready`` marker after it (one tar:
    the marker exists only once the segment is whole). RecoveryFailed naming the segment
    when it cannot be read; the server is stopped first, so it cannot promote early."""
    try:
        data = archive.read_segment(storage, _stored(step, plan), keyring)
    except MaintainerError as exc:
        server.stop_postgres("immediate")
        server.put(WORK, "stop", b"")
        missing = isinstance(exc, ObjectNotFound)
        raise RecoveryFailed(f"WAL segment {step.name}: {exc.message}",
                             cause="missing segment" if missing else "damaged segment") from None
    if len(data) < plan.segment_size:  # a partial segment: recovery wants the full size
        data = data + b"\0" * (plan.segment_size - len(data))
    server.put_files(STAGE, [(step.name, data), (f"{step.name}.ready", b"")])
    result.wal_bytes += len(data)


def _stored(step, plan: PitrPlan) -> layout.StoredSegment:
    parsed = layout.parse_segment_key(step.key)
    if parsed is None:
        raise JobError(f"not a WAL segment key: {step.key}")
    return parsed


def _state(server: RecoveryServer) -> str:
    """recovering, promoted or stopped."""
    code, out = server.psql("SELECT pg_is_in_recovery()")
    if code == 0:
        return "recovering" if out.strip() == "t" else "promoted"
    return "recovering" if server.postgres_running() else "stopped"


def _replayed_time(server: RecoveryServer) -> str:
    code, out = server.psql("SELECT coalesce(pg_last_xact_replay_timestamp()::text, '')")
    return out.strip() if code == 0 else ""


def _read_outcome(server: RecoveryServer, result: Recovery) -> None:
    """The point reached: the last transaction replayed (the server keeps its time
    after promotion; else the log's "last completed transaction"), the first one
    recovery left out (the log's "recovery stopping before"), the new timeline and LSN."""
    last = None
    for line in server.log_lines():
        if m := _STOPPED.search(line):
            result.stopped_before = _pg_time(m.group(1))
        elif m := _LAST.search(line):
            last = m.group(1)
    replayed = _replayed_time(server)
    result.reached_time = _pg_time(replayed) if replayed else (_pg_time(last) if last else None)
    code, out = server.psql("SELECT pg_walfile_name(pg_current_wal_lsn()), pg_current_wal_lsn()")
    if code == 0 and "|" in out:
        name, lsn = out.strip().split("|", 1)
        result.timeline = int(name[:8], 16)
        result.reached_lsn = format_lsn(parse_lsn(lsn))


def _pg_time(text: str) -> datetime | None:
    """PostgreSQL's log time ``2026-11-26 12:03:11.123456+00`` as a datetime."""
    text = text.strip()
    if re.search(r"[+-]\d\d$", text):
        text += ":00"
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError:
        return None


def target_reached(plan: PitrPlan, result: Recovery) -> tuple[bool, str]:
    """Whether recovery reached the plan's target, and how it is described: for a
    time, every transaction replayed committed at or before it, and the one left
    out (if any) after it."""
    last = _short(result.reached_time)
    if plan.target.kind == END:
        return True, f"the end of the archive, last transaction {last}"
    if plan.target.kind == TIME:
        reached, stopped = result.reached_time, result.stopped_before
        ok = (reached is None or reached <= plan.target.time) and (stopped is None or stopped > plan.target.time)
        if result.ran_to_end:
            return ok, f"last transaction {last} (the archive's last commit before the target)"
        return ok, f"last transaction {last}" + (f", stopped before one at {_short(stopped)}" if stopped else "")
    return bool(result.reached_lsn), f"LSN {result.reached_lsn}, last transaction {last}"


def _short(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC" if value else "none"


__all__ = ["FETCH_SCRIPT", "Recovery", "RecoveryFailed", "ReplayProgress", "load_base", "recover", "target_reached",
           "verify_base"]
