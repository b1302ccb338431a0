"""The status page's HTML, from PageData. Pure: no I/O, no clock.

Everything shown is escaped; the page has no script and fetches nothing.
"""

from __future__ import annotations

from datetime import datetime, timezone
from html import escape

from maintainer.statuspage.charts import Bar, bar_chart
from maintainer.statuspage.data import PITR, CatalogView, DatabaseView, JobView, PageData, RunView
from maintainer.units import human_duration, human_size

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1160px;padding:12px 18px;color:#111827}
h1{font-size:22px;margin:4px 0}h2{font-size:18px;margin:22px 0 6px}h3{font-size:15px;margin:10px 0 4px}
table{border-collapse:collapse;width:100%;margin:4px 0}
td,th{border-bottom:1px solid #e5e7eb;padding:3px 6px;text-align:left;vertical-align:top}
th{font-weight:600;color:#374151}.num{text-align:right;white-space:nowrap}
.state{display:inline-block;padding:1px 8px;border-radius:9px;font-weight:600;color:#fff}
.ok{background:#16a34a}.failing{background:#dc2626}.muted{color:#6b7280}
.notice{background:#fef3c7;border:1px solid #f59e0b;padding:6px 10px;border-radius:4px}
.db{border:1px solid #d1d5db;border-radius:6px;padding:6px 12px;margin:10px 0}
.problems{color:#b91c1c;margin:4px 0}.charts{display:flex;flex-wrap:wrap;gap:10px}
.err{color:#b91c1c}code{background:#f3f4f6;padding:0 3px}
"""


def _t(when: datetime | None) -> str:
    """In UTC whatever zone the scheduler answers in (next runs follow the config's timezone)."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if when else "-"


def _ago(now: datetime, when: datetime | None) -> str:
    if when is None:
        return "never"
    seconds = (now - when).total_seconds()
    return f"{human_duration(seconds)} ago" if seconds >= 0 else f"in {human_duration(-seconds)}"


def _state(ok: bool) -> str:
    return '<span class="state ok">OK</span>' if ok else '<span class="state failing">FAILING</span>'


def render_page(data: PageData) -> str:
    now = data.generated
    if data.authenticated:
        notice = ("This page is read-only and protected by HTTP basic authentication. It shows no secret and "
                  "no row data. Keep it on an internal network.")
    else:
        notice = ("This page has no authentication. It is read-only, shows no secret and no row data, and "
                  "belongs on an internal network only.")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>maintainer status</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>maintainer {_state(data.healthy)}</h1>",
        f'<p class="muted">Generated {_t(now)}. /health answers {200 if data.healthy else 503}; '
        f'<a href="/health">/health</a> · <a href="/metrics">/metrics</a></p>',
        f'<p class="notice" id="auth-notice">{escape(notice)}</p>',
    ]
    if data.problems:
        parts.append('<ul class="problems" id="problems">')
        parts += [f"<li>{escape(p)}</li>" for p in data.problems]
        parts.append("</ul>")
    if not data.history_available:
        parts.append('<p class="muted">No run history yet: no job has run.</p>')
    parts.append("<h2>Databases</h2>")
    if not data.databases:
        parts.append('<p class="muted">No database is configured.</p>')
    parts += [_database(db, now) for db in data.databases]
    parts.append(_jobs(data.jobs, now))
    parts.append(_maintenance(data, now))
    parts.append("</body></html>")
    return "\n".join(parts)


def _database(db: DatabaseView, now: datetime) -> str:
    catalog = db.catalog
    out = [f'<section class="db" id="db-{escape(db.name)}">',
           f"<h3>{escape(db.name)} {_state(db.ok)} <span class=\"muted\">{escape(db.display)}</span></h3>"]
    if db.problems:
        out.append('<ul class="problems">' + "".join(f"<li>{escape(p)}</li>" for p in db.problems) + "</ul>")
    rows = [("Newest backup", _newest_backup(catalog, now)), ("Newest passed drill", _newest_drill(catalog, now))]
    if catalog.pitr_drilled or any(d.mode == PITR for d in catalog.drills):
        rows.append(("Newest passed PITR drill", _newest_pitr_drill(catalog, now)))
    if db.wal:
        rows.append(("WAL archive", _wal(db.wal, now)))
    out.append("<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>")
    out.append('<div class="charts">' + _backup_chart(catalog) + _drill_chart(catalog) + "</div>")
    out.append("</section>")
    return "".join(out)


def _newest_backup(catalog: CatalogView, now: datetime) -> str:
    b = catalog.newest
    if b is None:
        return '<span class="muted">no complete backup yet</span>'
    verified = "verified by a drill" if b.verified else "not verified yet"
    text = (f"{escape(b.id)}, {_ago(now, b.created)}: {human_size(b.size)}, {b.rows:,} rows, took "
            f"{human_duration(b.duration)}, {verified}")
    if b.suspicious or b.dropped:
        why = "; ".join(b.reasons) or "much smaller than the backup before it"
        text += f' <span class="err">SUSPICIOUS: {escape(why)}</span>'
    return text + f' <span class="muted">({catalog.total_backups} complete backups)</span>'


def _newest_drill(catalog: CatalogView, now: datetime) -> str:
    d = catalog.newest_passed_drill
    if d is None:
        return '<span class="muted">no passed restore drill yet</span>'
    return (f"{_ago(now, d.finished)} ({_t(d.finished)}) on backup {escape(d.backup_id)}: "
            f"RTO {human_duration(d.restore_seconds)}, checks {d.checks_passed}/{d.checks_total} passed")


def _newest_pitr_drill(catalog: CatalogView, now: datetime) -> str:
    d = catalog.newest_passed_pitr_drill
    if d is None:
        return '<span class="muted">no passed PITR drill yet</span>'
    return (f"{_ago(now, d.finished)} ({_t(d.finished)}) on base backup {escape(d.backup_id)}: "
            f"RTO {human_duration(d.restore_seconds)}, RPO {human_duration(d.rpo_seconds)}, "
            f"checks {d.checks_passed}/{d.checks_total} passed")


def _wal(wal: dict, now: datetime) -> str:
    items = []
    if "wal_lag_seconds" in wal:
        items.append(f"lag {human_duration(wal['wal_lag_seconds'])}")
    if "wal_receiver_up" in wal:
        items.append("receiver up" if wal["wal_receiver_up"] else '<span class="err">receiver down</span>')
    if "wal_gaps" in wal:
        gaps = wal["wal_gaps"]
        count = len(gaps) if isinstance(gaps, (list, tuple)) else gaps
        items.append(f'<span class="err">{escape(str(count))} gap(s)</span>' if count else "no gaps")
    if "wal_last_segment_time" in wal:
        when = wal["wal_last_segment_time"]
        items.append(f"last segment {_ago(now, when) if isinstance(when, datetime) else escape(str(when))}")
    if wal.get("wal_problem"):
        items.append(f'<span class="err">{escape(str(wal["wal_problem"]))}</span>')
    return ", ".join(items)


def _short_date(when: datetime) -> str:
    return when.strftime("%m-%d %H:%M")


def _backup_chart(catalog: CatalogView) -> str:
    bars = []
    for b in catalog.backups:
        flagged = b.suspicious or b.dropped
        title = f"{b.id}: {human_size(b.size)}, {b.rows:,} rows, {human_duration(b.duration)}"
        if flagged:
            title += " - SIZE DROP" if b.dropped else " - suspicious"
        bars.append(Bar(_short_date(b.created), b.size, title, flagged, "drop" if b.dropped else "!", b.duration))
    return bar_chart(bars, label=f"size of the last {len(bars) or 30} backups", fmt=human_size,
                     line_label="duration", line_fmt=human_duration, empty="no backups yet")


def _drill_chart(catalog: CatalogView) -> str:
    """Logical and PITR drills on one time line; a PITR bar is marked "P" (and the legend says so)."""
    bars = []
    for d in catalog.drills:
        result = "passed" if d.passed else "FAILED"
        if d.mode == PITR:
            title = (f"{_t(d.finished)} PITR drill of base backup {d.backup_id}: "
                     f"RTO {human_duration(d.restore_seconds)}, RPO {human_duration(d.rpo_seconds)}, {result}")
            bars.append(Bar(_short_date(d.finished), d.restore_seconds or 0.0, title, not d.passed,
                            "P" if d.passed else "failed", kind=PITR))
        else:
            title = f"{_t(d.finished)} backup {d.backup_id}: RTO {human_duration(d.restore_seconds)}, {result}"
            bars.append(Bar(_short_date(d.finished), d.restore_seconds or 0.0, title, not d.passed, "failed"))
    return bar_chart(bars, label="drill RTO (restore time)", fmt=human_duration, kind_label="P: PITR drill",
                     empty="no restore drills yet")


def _run_cell(run: RunView, now: datetime) -> str:
    cls = "" if run.status == "ok" else ' class="err"'
    return f"<span{cls}>{escape(run.status)}</span> {_ago(now, run.started)}, {human_duration(run.duration)}"


def _jobs(jobs: list[JobView], now: datetime) -> str:
    out = ['<h2>Jobs</h2><table id="jobs"><tr><th>job</th><th>type</th><th>last runs (newest first)</th>'
           "<th>error of the last run</th><th>next run</th></tr>"]
    for job in jobs:
        runs = "<br>".join(_run_cell(r, now) for r in job.runs) or '<span class="muted">never run</span>'
        error = escape(job.runs[0].error) if job.runs and job.runs[0].error else ""
        if job.consecutive_failures > 1:
            error += f' <span class="err">({job.consecutive_failures} failures in a row)</span>'
        nxt = f"{_t(job.next_run)} ({_ago(now, job.next_run)})" if job.next_run else (
            "disabled" if not job.enabled else "-")
        out.append(f'<tr id="job-{escape(job.name)}"><td>{escape(job.name)}</td><td>{escape(job.type)}</td>'
                   f'<td>{runs}</td><td class="err">{error}</td><td>{nxt}</td></tr>')
    out.append("</table>")
    return "".join(out)


def _maintenance(data: PageData, now: datetime) -> str:
    out = ["<h2>Docker maintenance</h2><table>"]
    if data.last_prune:
        job, run = data.last_prune
        figures = run.figures
        if "reclaimed_bytes" in figures:
            what = f"removed {int(figures.get('removed', 0))} objects, reclaimed {human_size(figures['reclaimed_bytes'])}"
        else:
            what = f"planned {int(figures.get('planned', 0))} removals ({human_size(figures.get('reclaimable_bytes'))})"
        prune = f"{escape(job)}: {_run_cell(run, now)}: {escape(what)}"
        if run.error:
            prune += f' <span class="err">{escape(run.error)}</span>'
    else:
        prune = '<span class="muted">no prune has run</span>'
    if data.last_image_update:
        job, run = data.last_image_update
        f = run.figures
        counts = f"{int(f.get('updated', 0))} updated, {int(f.get('current', 0))} current, {int(f.get('failed', 0))} failed"
        update = f"{escape(job)}: {_run_cell(run, now)}: {escape(counts)}"
        lines = [line for line in run.summary if line.strip()][:6]
        if lines:
            update += "<br>" + "<br>".join(f'<span class="muted">{escape(line)}</span>' for line in lines)
        if run.error:
            update += f' <span class="err">{escape(run.error)}</span>'
    else:
        update = '<span class="muted">no image update has run</span>'
    out.append(f'<tr><th>Last prune</th><td id="last-prune">{prune}</td></tr>')
    out.append(f'<tr><th>Last image update</th><td id="last-image-update">{update}</td></tr></table>')
    return "".join(out)
