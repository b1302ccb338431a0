"""The wal_archive job: archive a server's WAL to storage until stopped.

A run lasts until its cancel flag is set (the daemon stopping or reloading,
Ctrl-C at a terminal, the job's timeout) and then ends "ok" with what it
stored; the receiver's restarts happen inside the run (maintainer.wal.archiver).
It ends "failed" only for what a restart cannot fix: another cluster's archive
in the storage, a server that cannot replicate (the message says what to
change), a client tool that is missing. A dry run checks the server and the
archive and says what it would do.
"""

from __future__ import annotations

from maintainer.config.wal_jobs import WalArchiveJob as Spec
from maintainer.crypto.keyring import Keyring
from maintainer.errors import MaintainerError
from maintainer.jobs.base import Job, JobResult, RunContext
from maintainer.notify import notifier_for
from maintainer.postgres import replication
from maintainer.postgres.client import choose_client
from maintainer.postgres.connection import connect
from maintainer.wal import archive
from maintainer.wal.archiver import Archiver


class WalArchiveJob(Job):
    type_name = Spec.type_name
    spec: Spec

    def run(self, ctx: RunContext) -> JobResult:
        result = self.new_result(ctx)
        storage = ctx.storage(self.spec.storage)
        keyring = Keyring.of(self.config, self.spec.storage)
        if ctx.dry_run:
            result.summary.extend(self._plan(storage))
            return result
        notifier = notifier_for(self.config.notify)
        archiver = Archiver(ctx.job_name, self.spec, self.config, storage, keyring, ctx.cancel, ctx.log,
                            alert=notifier.alert if notifier is not None else None)
        totals = archiver.run()
        result.summary.append(f"{self.spec.database}: WAL archive stopped after {totals.segments} segment(s), "
                              f"{totals.partials} partial flush(es), {totals.histories} history file(s) in "
                              f"{totals.sessions} receiver session(s)")
        result.figures.update(segments=totals.segments, partials=totals.partials, histories=totals.histories,
                              sessions=totals.sessions)
        return result

    def _plan(self, storage) -> list[str]:
        server = self.spec.database
        db = self.config.database(server)
        lines = [f"{server}: would stream WAL on slot {self.spec.slot} into {storage.url}/wal/{server}/"]
        try:
            with connect(db, server) as conn:
                facts = replication.server_facts(conn)
                slot = replication.slot_status(conn, self.spec.slot)
            problems = replication.replication_problems(facts, server, need_slot=True)
            lines += [f"  problem: {p}" for p in problems]
            client = choose_client(db, server, facts.version, tool="pg_receivewal")
            lines.append(f"  server PostgreSQL {facts.version.text}, system {facts.system_identifier}, "
                         f"timeline {facts.timeline}; pg_receivewal {client.version} ({client.description})")
            lines.append(f"  slot {self.spec.slot}: " + ("exists" if slot.exists else "would be created"))
        except MaintainerError as exc:
            lines.append(f"  (cannot check the server now: {exc.message})")
        listing = archive.list_archive(storage, server)
        ranges = archive.continuous_ranges(listing)
        lines.append("  archive: " + ("; ".join(archive.describe_range(r) for r in ranges) if ranges else "empty"))
        return lines


def release_slot(config, name: str) -> bool:
    """Drop the replication slot of wal_archive job ``name`` (as ``config`` had it): the
    daemon calls this when the job was removed or disabled, because an unused slot
    keeps WAL on the server until its disk is full. True when a slot was dropped;
    DatabaseError when the server refuses (a receiver still uses it)."""
    spec = config.jobs[name]
    with connect(config.database(spec.database), spec.database) as conn:
        return replication.drop_slot(conn, spec.slot)
