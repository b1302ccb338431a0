"""The status page of a running daemon: gathers PageData and renders it.

The catalog reading (every backup's manifest, for the charts) is cached like
the health module's: until a run starts or ends, or the cache ages out.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable

from maintainer import health, redact
from maintainer.logs import get_logger
from maintainer.statuspage.data import (PageData, database_views, gather_catalog, job_views, last_run_of_type)
from maintainer.statuspage.render import render_page

if TYPE_CHECKING:
    from maintainer.config.models import Config
    from maintainer.history import History

log = get_logger("statuspage")


class StatusPage:
    """``render()`` answers ``GET /``; ``credentials()`` says whether basic auth guards it.

    ``health_cache`` is the daemon's CatalogCache (the same reading /health
    judges); ``next_runs`` the scheduler's. Both are called per request, so a
    reloaded config shows at once.
    """

    def __init__(self, config: Callable[[], "Config"], history: "History | None",
                 health_cache: health.CatalogCache, scheduler_alive: Callable[[], bool],
                 next_runs: Callable[[], dict[str, datetime | None]] = dict,
                 ttl: float = health.CATALOG_TTL_SECONDS):
        self._config = config
        self.history = history
        self.health_cache = health_cache
        self.scheduler_alive = scheduler_alive
        self.next_runs = next_runs
        self.catalog = health.CatalogCache(config, history, ttl=ttl, gather=gather_catalog)

    def credentials(self) -> tuple[str, str] | None:
        """(user, password) when the page needs basic auth, else None.

        Raises MaintainerError when the password's secret file could not be read
        (the server then refuses the page rather than serving it open).
        """
        auth = self._config().daemon.status_page.basic_auth
        if auth is None:
            return None
        return auth.username, auth.password.get_secret_value()

    def data(self, now: datetime | None = None) -> PageData:
        config = self._config()
        now = now or datetime.now(timezone.utc)
        states = health.with_live_wal(self.health_cache.get())
        report = health.evaluate(config, now, scheduler_alive=self.scheduler_alive(), databases=states,
                                 jobs=health.job_states(config, self.history))
        report.conditions += health.disk_conditions(config)
        history = self.history
        return PageData(
            generated=now, healthy=report.ok, problems=[redact.scrub(c.message) for c in report.failing],
            databases=database_views(config, report, self.catalog.get(), states),
            jobs=job_views(config, history, self.next_runs()),
            last_prune=last_run_of_type(config, history, "docker_prune"),
            last_image_update=last_run_of_type(config, history, "image_update"),
            history_available=history is not None and history.path.exists() and bool(history.jobs()),
            authenticated=config.daemon.status_page.basic_auth is not None)

    def render(self) -> bytes:
        """The page as UTF-8 HTML; every text passes the secret redactor once more."""
        return redact.scrub(render_page(self.data())).encode()

