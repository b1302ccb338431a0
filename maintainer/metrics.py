"""/metrics in Prometheus format, computed at scrape time from the run history
and the backup catalog (through the health module's cache).

Reading the history on each scrape, rather than counting in memory, makes
runs started with ``docker exec ... maintainer run`` count too, and keeps the
figures across restarts. Metric names:

  maintainer_scheduler_up                            1 while the scheduler runs
  maintainer_healthy                                 1 when /health answers 200
  maintainer_job_last_success_timestamp_seconds{job,type}
  maintainer_job_last_failure_timestamp_seconds{job,type}
  maintainer_job_last_duration_seconds{job,type}
  maintainer_job_last_result{job,type}               1 ok, 0 failed
  maintainer_job_consecutive_failures{job,type}
  maintainer_job_runs_total{job,status}
  maintainer_job_duration_seconds{job}               summary: _count and _sum
  maintainer_job_next_run_timestamp_seconds{job}
  maintainer_job_last_figure{job,figure}             every number of the last run
  maintainer_backup_newest_age_seconds{database}
  maintainer_backup_newest_verified_age_seconds{database}
  maintainer_backup_newest_size_bytes{database}
  maintainer_backup_newest_rows{database}
  maintainer_drill_last_restore_seconds{database}
  maintainer_drill_last_success_timestamp_seconds{database}   logical or PITR
  maintainer_pitr_drill_last_success_timestamp_seconds{database}   end of the newest passed PITR drill
  maintainer_pitr_drill_rto_seconds{database}           its RTO: recovery start to a usable server
  maintainer_pitr_drill_rpo_seconds{database}           its achieved RPO: drill start minus the newest archived WAL
  maintainer_pitr_replay_mb_per_second{database}        its WAL replay speed
  maintainer_prune_reclaimed_bytes_total{job}
  maintainer_images_updated_total{job}
  maintainer_wal_last_segment_timestamp_seconds{database}   when the newest complete segment was stored
  maintainer_wal_archived_lsn_bytes{job,server}         how far the stored WAL reaches (an LSN as a number)
  maintainer_wal_lag_seconds{database}                  how long the oldest unarchived WAL has waited
  maintainer_wal_lag_bytes{job,server}                  server flush position minus archived position
  maintainer_wal_receiver_up{job,server}                1 while pg_receivewal runs
  maintainer_wal_receiver_restarts_total{job,server}
  maintainer_wal_gap_segments{database}                 segments missing since the newest base backup
  maintainer_wal_slot_retained_bytes{job,server,slot}   WAL the server keeps for the slot
  maintainer_wal_segments_stored_total{job,server}
The per-job WAL figures exist only where the receiver runs (the daemon). The PITR
drill's figures come from its records beside the base backups, like the logical
drill's from the records beside the backups.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily

from maintainer import disk, health
from maintainer.images.metrics import collect_update_metrics
from maintainer.logs import get_logger
from maintainer.wal.state import STATES

if TYPE_CHECKING:
    from maintainer.config.models import Config
    from maintainer.history import History

log = get_logger("metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RECLAIMED_FIGURES = ("reclaimed_bytes",)
UPDATED_FIGURES = ("images_updated", "updated", "pulled")


class MaintainerCollector:
    def __init__(self, config_getter: Callable[[], "Config"], history: "History | None",
                 cache: health.CatalogCache, scheduler_alive: Callable[[], bool],
                 next_runs: Callable[[], dict[str, datetime | None]] = dict):
        self._config = config_getter
        self.history = history
        self.cache = cache
        self.scheduler_alive = scheduler_alive
        self.next_runs = next_runs

    def collect(self) -> Iterator[Metric]:
        config = self._config()
        now = datetime.now(timezone.utc)
        alive = self.scheduler_alive()
        yield _gauge("maintainer_scheduler_up", "1 while the scheduler runs", [], [((), 1 if alive else 0)])
        try:
            databases = health.with_live_wal(self.cache.get())
        except Exception as exc:  # noqa: BLE001 - a scrape must answer
            log.warning("metrics.catalog_failed", error=f"{type(exc).__name__}: {exc}")
            databases = {}
        report = health.evaluate(config, now, scheduler_alive=alive, databases=databases,
                                 jobs=health.job_states(config, self.history))
        report.conditions += health.disk_conditions(config)
        yield _gauge("maintainer_healthy", "1 when every health condition holds", [], [((), 1 if report.ok else 0)])
        yield from self._jobs(config)
        yield from self._databases(databases, now)
        yield from _receivers()
        yield from disk.collect_metrics(config)
        yield from collect_update_metrics(config, self.history)

    def _jobs(self, config: "Config") -> Iterator[Metric]:
        labels = ["job", "type"]
        success, failure, duration, result, streak, figures = [], [], [], [], [], []
        reclaimed, updated = [], []
        history = self.history
        for name, spec in config.jobs.items():
            key = (name, spec.type)
            if history is None:
                continue
            ok = history.last_with_status(name, "ok")
            bad = history.last_with_status(name, "failed")
            if ok and ok.finished:
                success.append((key, ok.finished.timestamp()))
            if bad and bad.finished:
                failure.append((key, bad.finished.timestamp()))
            last = history.last_finished(name)
            if last:
                run = last[0]
                duration.append((key, run.duration or 0.0))
                result.append((key, 1 if run.status == "ok" else 0))
                for figure, value in sorted(run.figures.items()):
                    figures.append(((name, figure), float(value)))
            streak.append((key, history.consecutive_failures(name)))
            if spec.type == "docker_prune":
                reclaimed.append(((name,), self._sum_figures(name, RECLAIMED_FIGURES)))
            if spec.type == "image_update":
                updated.append(((name,), self._sum_figures(name, UPDATED_FIGURES)))
        yield _gauge("maintainer_job_last_success_timestamp_seconds", "end of the newest successful run", labels, success)
        yield _gauge("maintainer_job_last_failure_timestamp_seconds", "end of the newest failed run", labels, failure)
        yield _gauge("maintainer_job_last_duration_seconds", "duration of the newest finished run", labels, duration)
        yield _gauge("maintainer_job_last_result", "1 if the newest finished run succeeded, else 0", labels, result)
        yield _gauge("maintainer_job_consecutive_failures", "failed runs in a row", labels, streak)
        yield _gauge("maintainer_job_last_figure", "figures (bytes, counts, seconds) of the newest finished run",
                     ["job", "figure"], figures)
        runs = CounterMetricFamily("maintainer_job_runs", "runs by result", labels=["job", "status"])
        durations = SummaryMetricFamily("maintainer_job_duration_seconds", "run durations", labels=["job"])
        if history is not None:
            for (job, status), count in sorted(history.counts().items()):
                runs.add_metric([job, status], count)
            for job, (count, total) in sorted(history.duration_totals().items()):
                durations.add_metric([job], count_value=count, sum_value=total)
        yield runs
        yield durations
        nxt = [((job,), when.timestamp()) for job, when in sorted(self.next_runs().items()) if when]
        yield _gauge("maintainer_job_next_run_timestamp_seconds", "next scheduled start", ["job"], nxt)
        counter = CounterMetricFamily("maintainer_prune_reclaimed_bytes", "bytes reclaimed by docker_prune runs",
                                      labels=["job"])
        for labels_, value in reclaimed:
            counter.add_metric(list(labels_), value)
        yield counter
        counter = CounterMetricFamily("maintainer_images_updated", "images pulled because their digest changed",
                                      labels=["job"])
        for labels_, value in updated:
            counter.add_metric(list(labels_), value)
        yield counter

    def _sum_figures(self, job: str, names: tuple[str, ...]) -> float:
        total = 0.0
        for run in self.history.runs(job, limit=100_000) if self.history else []:
            total += next((float(run.figures[n]) for n in names if n in run.figures), 0.0)
        return total

    def _databases(self, databases: dict[str, health.DatabaseState], now: datetime) -> Iterator[Metric]:
        def rows(attr: str, convert=float):
            out = []
            for name, state in sorted(databases.items()):
                value = getattr(state, attr)
                if value is not None:
                    out.append(((name,), convert(value)))
            return out

        def age(when: datetime) -> float:
            return (now - when).total_seconds()

        labels = ["database"]
        yield _gauge("maintainer_backup_newest_age_seconds", "age of the newest complete backup", labels,
                     rows("newest_backup", age))
        yield _gauge("maintainer_backup_newest_verified_age_seconds", "age of the newest drill-verified backup",
                     labels, rows("newest_verified", age))
        yield _gauge("maintainer_backup_newest_size_bytes", "stored size of the newest backup", labels,
                     rows("newest_size"))
        yield _gauge("maintainer_backup_newest_rows", "rows in the newest backup", labels, rows("newest_rows"))
        yield _gauge("maintainer_drill_last_restore_seconds", "restore time of the newest drill", labels,
                     rows("last_drill_restore_seconds"))
        yield _gauge("maintainer_drill_last_success_timestamp_seconds", "end of the newest passed drill", labels,
                     rows("last_drill_passed", lambda d: d.timestamp()))
        yield _gauge("maintainer_pitr_drill_last_success_timestamp_seconds", "end of the newest passed PITR drill",
                     labels, rows("last_pitr_drill_passed", lambda d: d.timestamp()))
        yield _gauge("maintainer_pitr_drill_rto_seconds", "RTO of the newest passed PITR drill (recovery start to "
                     "a usable server)", labels, rows("last_pitr_rto_seconds"))
        yield _gauge("maintainer_pitr_drill_rpo_seconds", "achieved RPO of the newest passed PITR drill (drill start "
                     "minus the newest archived WAL)", labels, rows("last_pitr_rpo_seconds"))
        yield _gauge("maintainer_pitr_replay_mb_per_second", "WAL replay speed of the newest passed PITR drill",
                     labels, rows("last_pitr_replay_mb_s"))
        yield _gauge("maintainer_wal_last_segment_timestamp_seconds", "when the newest complete WAL segment was "
                     "stored", labels, rows("wal_last_segment_time", lambda d: d.timestamp()))
        yield _gauge("maintainer_wal_lag_seconds", "how long the oldest WAL not yet in storage has waited", labels,
                     rows("wal_lag_seconds"))
        yield _gauge("maintainer_wal_gap_segments", "WAL segments missing since the newest base backup", labels,
                     rows("wal_gaps"))


def _receivers() -> Iterator[Metric]:
    """The live figures of each WAL receiver running in this process."""
    labels = ["job", "server"]
    up, restarts, lag, archived, stored, slot = [], [], [], [], [], []
    for state in sorted(STATES.snapshot(), key=lambda s: s.job):
        key = (state.job, state.server)
        up.append((key, 1 if state.up else 0))
        restarts.append((key, state.restarts))
        stored.append((key, state.segments_stored))
        if state.lag_bytes is not None:
            lag.append((key, state.lag_bytes))
        if state.archived_lsn is not None:
            archived.append((key, state.archived_lsn))
        if state.slot_retained_bytes is not None:
            slot.append(((state.job, state.server, state.slot), state.slot_retained_bytes))
    yield _gauge("maintainer_wal_receiver_up", "1 while pg_receivewal runs", labels, up)
    yield _gauge("maintainer_wal_lag_bytes", "server flush position minus the archived position", labels, lag)
    yield _gauge("maintainer_wal_archived_lsn_bytes", "the LSN (as a number) the stored WAL reaches", labels,
                 archived)
    yield _gauge("maintainer_wal_slot_retained_bytes", "WAL the server keeps for the slot", ["job", "server", "slot"],
                 slot)
    for name, doc, samples in (("maintainer_wal_receiver_restarts", "receiver restarts", restarts),
                               ("maintainer_wal_segments_stored", "complete segments stored", stored)):
        counter = CounterMetricFamily(name, doc, labels=labels)
        for label_values, value in samples:
            counter.add_metric(list(label_values), value)
        yield counter


def _gauge(name: str, doc: str, labels: list[str], samples: list) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for label_values, value in samples:
        family.add_metric(list(label_values), value)
    return family


def build_registry(collector: MaintainerCollector) -> CollectorRegistry:
    """A registry of maintainer's metrics and the process's own (memory, CPU)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
