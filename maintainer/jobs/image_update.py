"""The image_update job: for each configured image, pull it only when the registry has
a new digest, and report image, old digest and new digest. With ``apply:``, then
put the configured compose services on the new image, safely.

One image's failure (unknown image, unreachable registry, refused login) is
that image's error line; the others still update, and the run fails overall.

Apply: when a service's containers run an image other than the one its tag now
names, the ``before:`` jobs run first through the runner (recorded in history
with trigger before_update); if one fails, nothing is recreated and the run
fails with an ``image_update.blocked`` event. Then each container is recreated
(maintainer.images.apply); a rollback is an ``image_update.rolled_back`` event
and a failed rollback an ``image_update.rollback_failed`` event of severity
critical with the exact state. A digest once rolled back is not tried again.
"""

from __future__ import annotations

from maintainer.config.docker_jobs import ImageUpdateJob as ImageUpdateSpec
from maintainer.dockerapi import connect, docker_errors
from maintainer.errors import DockerError
from maintainer.history import history_for
from maintainer.images.apply import (ApplyPlan, Target, apply_container, plan_apply, point_tag,
                                     read_service_containers)
from maintainer.imageref import normalize_tag, parse_ref
from maintainer.images.update import Credentials, ImageUpdate, local_image, update_image
from maintainer.jobs.base import Event, Job, JobResult, RunContext

BEFORE_UPDATE = "before_update"
REJECTED_LOOKBACK = 50  # runs of this job searched for digests that were rolled back


class ImageUpdateJob(Job):
    type_name = ImageUpdateSpec.type_name
    spec: ImageUpdateSpec

    def run(self, ctx: RunContext) -> JobResult:
        result = self.new_result(ctx)
        credentials = Credentials(self.spec.registries, self.spec.docker_config)
        client = connect()
        updates = []
        try:
            for text in self.spec.images:
                ctx.check_cancelled()
                update = update_image(client, text, credentials, untag_superseded=self.spec.untag_superseded,
                                      dry_run=ctx.dry_run)
                updates.append(update)
                if update.status == "failed":
                    result.fail(update.line())
                else:
                    result.summary.append(update.line())
            if self.spec.apply is not None:
                self._apply(ctx, client, updates, result)
        finally:
            client.close()
        result.details["images"] = [u.to_dict() for u in updates]
        result.figures.update(
            updated=sum(u.status == "updated" for u in updates),
            current=sum(u.status == "current" for u in updates),
            failed=sum(u.status == "failed" for u in updates))
        if ctx.dry_run:
            result.summary.append("dry run: pulled nothing" + (", recreated nothing" if self.spec.apply else ""))
        return result

    # -- apply ---------------------------------------------------------
    def _plan(self, client, updates: list[ImageUpdate], dry_run: bool) -> ApplyPlan:
        api = client.api
        targets, failed = {}, set()
        for u in updates:
            if u.status == "failed":
                failed.add(normalize_tag(u.image.split("@", 1)[0]) or u.image)
                continue
            ref = parse_ref(u.image)
            image_id = None if dry_run else local_image(client, ref)[0]
            targets[normalize_tag(ref.tagged)] = Target(normalize_tag(ref.tagged), image_id, u.new_digest)
        containers = read_service_containers(api, self.spec.apply)
        with docker_errors("inspect the images the services run"):
            image_attrs = {c["Image"]: api.inspect_image(c["Image"]) for c in containers}
        plan = plan_apply(containers, targets, image_attrs, self._rejected(), failed)
        if not containers:
            plan.notes.append(f"no running container of service(s) {', '.join(self.spec.apply.services)}")
        return plan

    def _rejected(self) -> set[tuple[str, str, str]]:
        """(compose project, service, digest) that earlier runs of this job rolled back."""
        history = history_for(self.config)
        rejected = set()
        for run in history.runs(self.name, REJECTED_LOOKBACK) if history else []:
            for entry in run.details.get("apply") or []:
                if entry.get("outcome") in ("rolled_back", "rollback_failed"):
                    rejected.add((entry.get("project", ""), entry["service"],
                                  entry.get("new_digest") or entry.get("new_image_id")))
        return rejected

    def _apply(self, ctx: RunContext, client, updates: list[ImageUpdate], result: JobResult) -> None:
        options = self.spec.apply
        assert options is not None
        plan = self._plan(client, updates, ctx.dry_run)
        result.summary.extend(f"apply: {note}" for note in plan.notes)
        todo = [u for u in plan.updates if u.outcome == "planned"]
        result.summary.extend(f"apply: {u.line()}" for u in plan.updates if u.outcome == "skipped")
        if not ctx.dry_run:
            for u in plan.updates:
                if u.outcome == "skipped":  # a rolled-back image: the tag names what runs
                    point_tag(client.api, u.image, u.old_image_id)
        result.details["apply"] = [u.to_dict() for u in plan.updates]
        if ctx.dry_run:
            if todo and options.before:
                result.summary.append(f"apply: would first run {', '.join(options.before)}")
            result.summary.extend(f"apply: would {u.plan_line()}" for u in todo)
            if not todo:
                result.summary.append("apply: nothing to recreate")
            return
        if not todo:
            return
        if not self._run_before(ctx, options.before, result):
            for u in todo:
                u.outcome, u.detail = "skipped", "a job that runs first failed"
            result.details["apply"] = [u.to_dict() for u in plan.updates]
            return
        bad: set[str] = set()  # new images that failed on one container: not tried on the others
        for u in todo:
            if ctx.cancel.is_set():
                u.outcome, u.detail = "skipped", "the run was stopped before this container"
                continue
            if (u.new_digest or u.new_image_id) in bad:
                u.outcome, u.detail = "skipped", "this image already failed on another container of this run"
                result.summary.append(f"apply: {u.line()}")
                continue
            try:
                apply_container(client.api, u, options, ctx.cancel)
            except DockerError as exc:
                u.outcome, u.detail = "failed", exc.message
            finally:
                result.details["apply"] = [x.to_dict() for x in plan.updates]
            if u.outcome != "updated":
                bad.add(u.new_digest or u.new_image_id or "?")
            self._report(u, result)
        result.details["apply"] = [x.to_dict() for x in plan.updates]
        result.figures.update(
            containers_updated=sum(u.outcome == "updated" for u in todo),
            containers_rolled_back=sum(u.outcome == "rolled_back" for u in todo),
            rollbacks_failed=sum(u.outcome == "rollback_failed" for u in todo))
        if ctx.cancel.is_set():
            result.fail("stopped by a signal or the timeout: every service was left running on its old or new image")

    def _run_before(self, ctx: RunContext, names: list[str], result: JobResult) -> bool:
        """Run the ``before:`` jobs in order; False (the run failed, alerted) when one fails."""
        for name in names:
            ctx.check_cancelled()
            ran = ctx.run_other(name, BEFORE_UPDATE)
            result.details.setdefault("before", []).append({"job": name, "run_id": ran.run_id, "status": ran.status})
            if not ran.ok:
                message = (f"not updated: {name}, which must succeed first, failed (run {ran.run_id}): "
                           + "; ".join(ran.errors))
                result.fail(message)
                result.events.append(Event("image_update.blocked", message, {"job": name, "severity": "warning"}))
                return False
            result.summary.append(f"apply: ran {name} first (run {ran.run_id}): ok")
        return True

    @staticmethod
    def _report(u, result: JobResult) -> None:
        fields = {"project": u.project, "service": u.service, "container": u.container, "old_digest": u.old_digest,
                  "new_digest": u.new_digest}
        if u.outcome == "updated":
            result.summary.append(f"apply: {u.line()}")
        elif u.outcome == "rolled_back":
            result.fail(f"apply: {u.line()}")
            result.events.append(Event("image_update.rolled_back", f"rolled back: {u.line()}",
                                       {**fields, "severity": "warning"}))
        elif u.outcome == "rollback_failed":
            result.fail(f"apply: {u.line()}")
            result.events.append(Event("image_update.rollback_failed", f"CRITICAL: {u.line()}",
                                       {**fields, "severity": "critical"}))
        else:
            result.fail(f"apply: {u.line()}")
