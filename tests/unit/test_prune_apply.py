"""The applier's bookkeeping: what the engine refuses or no longer has is skipped, not failed.
(The same paths run against the real engine in tests/integration/test_prune_engine.py;
build-cache pruning cannot be scoped there, so it is checked here with a small fake.)"""

from __future__ import annotations

from datetime import timedelta

import pytest
from docker.errors import APIError, NotFound
from requests import Response

from maintainer.prune.apply import apply_plan
from maintainer.prune.planner import PlanItem, PrunePlan

pytestmark = pytest.mark.unit


def api_error(status: int, text: str) -> APIError:
    response = Response()
    response.status_code = status
    return APIError(text, response=response, explanation=text)


class FakeApi:
    def __init__(self, volumes: dict, prune_result=None):
        self.volumes = volumes  # name -> behaviour: "ok" | "gone" | "conflict" | "broken"
        self.removed: list[str] = []
        self.prune_result = prune_result
        self.prune_filters = None

    def inspect_volume(self, name):
        if self.volumes[name] == "gone":
            raise NotFound("no such volume")
        return {"Name": name, "Labels": {}}

    def containers(self, all=False, filters=None):
        return []

    def remove_volume(self, name, force=False):
        behaviour = self.volumes[name]
        if behaviour == "conflict":
            raise api_error(409, "remove x: volume is in use - [abc]")
        if behaviour == "broken":
            raise api_error(500, "driver failed")
        self.removed.append(name)

    def prune_builds(self, filters=None):
        self.prune_filters = filters
        return self.prune_result


class FakeClient:
    def __init__(self, api):
        self.api = api


def vol(name: str, size: int = 10) -> PlanItem:
    return PlanItem("volume", name, name, size, True, "no container uses it")


def test_vanished_and_conflicting_objects_are_skipped_and_engine_failures_reported():
    api = FakeApi({"a": "ok", "b": "gone", "c": "conflict", "d": "broken"})
    report = apply_plan(FakeClient(api), PrunePlan(items=[vol("a"), vol("b"), vol("c"), vol("d")]),
                        protect_label="maintainer.protect")
    assert [i.name for i in report.removed] == ["a"] and report.reclaimed == 10
    assert [(i.name, why) for i, why in report.skipped] == [
        ("b", "gone since the plan"), ("c", "in use now: remove x: volume is in use - [abc]")]
    assert [(i.name, why) for i, why in report.failed] == [("d", "driver failed")]


def test_build_cache_is_pruned_with_the_planned_age_and_the_engine_figure_is_reported():
    api = FakeApi({}, prune_result={"CachesDeleted": ["old"], "SpaceReclaimed": 1234})
    items = [PlanItem("build_cache", "old", "old", 1000, True, "last used 9d ago, older than 7d"),
             PlanItem("build_cache", "used", "used", 5, True, "last used 8d ago, older than 7d")]
    report = apply_plan(FakeClient(api), PrunePlan(items=items, build_cache_until=timedelta(days=7)),
                        protect_label="maintainer.protect")
    assert api.prune_filters == {"until": "604800s"}
    assert [i.id for i in report.removed] == ["old"]
    assert [(i.id, why) for i, why in report.skipped] == [("used", "kept by the engine (used again since the plan)")]
    assert report.reclaimed == 1234


def test_a_plan_without_build_cache_never_calls_build_prune():
    api = FakeApi({"a": "ok"})
    apply_plan(FakeClient(api), PrunePlan(items=[vol("a")]), protect_label="maintainer.protect")
    assert api.prune_filters is None
