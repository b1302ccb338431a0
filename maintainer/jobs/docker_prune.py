"""The docker_prune job: read the engine, plan, print or apply, report.

``maintainer run prune --dry-run`` prints the plan and removes nothing; a real
run removes what the plan selects (re-checking each object first) and reports
what went, what was skipped and the space reclaimed.
"""

from __future__ import annotations

from maintainer.config.docker_jobs import DockerPruneJob as DockerPruneSpec
from maintainer.disk import docker_root, usage
from maintainer.dockerapi import connect
from maintainer.errors import MaintainerError
from maintainer.jobs.base import Job, JobResult, RunContext, utcnow
from maintainer.prune.apply import apply_plan
from maintainer.prune.planner import plan_prune, protected_image_refs
from maintainer.prune.state import read_state
from maintainer.units import human_size


class DockerPruneJob(Job):
    type_name = DockerPruneSpec.type_name

    def run(self, ctx: RunContext) -> JobResult:
        result = self.new_result(ctx)
        client = connect()
        try:
            state = read_state(client, build_cache=not self.spec.label_filter)
            plan = plan_prune(state, self.spec, utcnow(), protected_image_refs(self.config))
            result.details["plan"] = [i.to_dict() for i in plan.items]
            result.details["out_of_scope"] = plan.out_of_scope
            result.figures["planned"] = len(plan.removals)
            result.figures["reclaimable_bytes"] = plan.reclaimable
            for item in plan.items:
                action = "remove" if item.remove else "keep  "
                result.summary.append(f"{action} {item.kind:<11} {item.name}  ({human_size(item.size)}): {item.rule}")
            if plan.out_of_scope:
                result.summary.append(f"{plan.out_of_scope} objects outside label_filter {self.spec.label_filter} not considered")
            if ctx.dry_run:
                result.summary.append(f"dry run: would remove {len(plan.removals)} objects, "
                                      f"reclaiming up to {human_size(plan.reclaimable)}; removed nothing")
                return result
            ctx.check_cancelled()
            report = apply_plan(client, plan, protect_label=self.spec.volumes.protect_label, cancel=ctx.cancel)
        finally:
            client.close()
        result.figures.update(removed=len(report.removed), skipped=len(report.skipped),
                              failed=len(report.failed), reclaimed_bytes=report.reclaimed)
        result.details["removed"] = [i.to_dict() for i in report.removed]
        result.details["skipped"] = [{**i.to_dict(), "reason": why} for i, why in report.skipped]
        for item, why in report.skipped:
            result.summary.append(f"skipped {item.kind} {item.name}: {why}")
        result.summary.append(f"removed {len(report.removed)} objects, reclaimed {human_size(report.reclaimed)}"
                              + (f", skipped {len(report.skipped)} that changed since the plan" if report.skipped else ""))
        for item, error in report.failed:
            result.fail(f"could not remove {item.kind} {item.name}: {error}")
        self._free_space(result)
        if ctx.cancel.is_set():
            result.fail("stopped before the plan was fully applied (the rest is listed as skipped)")
        return result

    def _free_space(self, result: JobResult) -> None:
        """With when_free_below, say how much the watched filesystem has free after the prune."""
        if self.spec.when_free_below is None:
            return
        try:
            u = usage(self.spec.watch_path or docker_root())
        except MaintainerError as exc:
            result.summary.append(f"free space unknown: {exc.message}")
            return
        result.figures["watched_free_percent"] = round(u.free_percent, 2)
        below = " (still below it)" if u.free_percent < self.spec.free_below_percent else ""
        result.summary.append(f"filesystem {u.mount}: {u.free_percent:.1f}% free after the prune "
                              f"(when_free_below {self.spec.when_free_below}){below}")
