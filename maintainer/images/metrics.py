"""/metrics for safe image updates, read from the run history (so runs from
``maintainer run`` count as well as the daemon's):

  maintainer_image_update_containers_total{job,outcome}   updated | rolled_back | rollback_failed
  maintainer_image_update_last_rollback_timestamp_seconds{job}   end of the newest run with a rollback
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from maintainer.config.models import Config
    from maintainer.history import History

OUTCOME_FIGURES = {"updated": "containers_updated", "rolled_back": "containers_rolled_back",
                   "rollback_failed": "rollbacks_failed"}
ROLLBACK_EVENTS = ("image_update.rolled_back", "image_update.rollback_failed")
LOOKBACK = 100  # runs searched for the newest rollback


def collect_update_metrics(config: "Config", history: "History | None") -> Iterator[Metric]:
    counter = CounterMetricFamily("maintainer_image_update_containers", "containers an image_update recreated, "
                                  "by outcome", labels=["job", "outcome"])
    last = GaugeMetricFamily("maintainer_image_update_last_rollback_timestamp_seconds",
                             "end of the newest image_update run that rolled a container back", labels=["job"])
    for job, spec in config.jobs_of_type("image_update").items():
        if spec.apply is None or history is None:
            continue
        totals = history.figure_totals(job, tuple(OUTCOME_FIGURES.values()))
        for outcome, figure in OUTCOME_FIGURES.items():
            counter.add_metric([job, outcome], totals[figure])
        for run in history.last_finished(job, LOOKBACK):
            if run.finished and any(e.get("kind") in ROLLBACK_EVENTS for e in run.events):
                last.add_metric([job], run.finished.timestamp())
                break
    yield counter
    yield last
