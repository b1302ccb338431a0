"""What ``maintainer restore --to-time/--to-lsn/--to-end`` prints: the plan and the summary, as lines."""

from __future__ import annotations

from maintainer.restore.pitr_plan import PitrPlan
from maintainer.units import human_duration


def plan_lines(plan: PitrPlan, steps: list[str], *, dry_run: bool) -> list[str]:
    lines = ["Plan (dry run, nothing is changed):" if dry_run else "Restoring to a point in time:",
             f"  base backup {plan.base.id}, WAL {plan.wal_range()}",
             f"  target      {plan.target.describe()} (latest reachable "
             f"{plan.latest_reachable.strftime('%Y-%m-%d %H:%M:%S UTC')})"]
    return lines + [f"  {i}. {step}" for i, step in enumerate(steps, 1)]


def summary_lines(summary, live_dbname: str, where: str) -> list[str]:
    lines = [f"Recovered {summary.database} from base backup {summary.base_backup} to {summary.target}: "
             f"{summary.reached}; {summary.segments} WAL segments replayed, new timeline {summary.timeline}, "
             f"in {human_duration(summary.duration)}"]
    lines += [f"  note: {note}" for note in summary.notes]
    if summary.volume:
        lines += [f"  {summary.volume_check}", "  To swap it in:"] + [f"    {s}" for s in summary.swap_steps]
    elif summary.replaced_name:
        lines.append(f"  {live_dbname} is now the recovered copy; the previous database is kept as "
                     f"{summary.replaced_name}")
    else:
        lines += [f"  restored into {summary.restore_into} on {where}; {live_dbname} is untouched. "
                  "To switch over, stop the application, then:",
                  f'    ALTER DATABASE "{live_dbname}" RENAME TO "{live_dbname}_old";',
                  f'    ALTER DATABASE "{summary.restore_into}" RENAME TO "{live_dbname}";']
    return lines
