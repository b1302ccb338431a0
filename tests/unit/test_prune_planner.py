"""The prune planner never selects anything in use or protected, over any engine state."""

from __future__ import annotations

import fnmatch
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

from maintainer.config.jobs import DockerPruneJob
from maintainer.imageref import normalize_tag
from maintainer.prune.planner import COMPOSE_PROJECT, matches_labels, plan_prune
from maintainer.prune.state import BuildCache, Container, EngineState, Image, Network, Volume

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
PROTECT = "maintainer.protect"


def options(**overrides) -> DockerPruneJob:
    data = {"type": "docker_prune", "schedule": "0 5 * * *"}
    data.update(overrides)
    return DockerPruneJob.model_validate(data)


def ago(**kw) -> datetime:
    return NOW - timedelta(**kw)


def hexid(n: int) -> str:
    return f"{n:064x}"


# ------------------------------------------------------------------ examples


def test_an_old_stopped_container_goes_and_a_young_or_running_one_stays():
    state = EngineState(containers=[
        Container("c1", "old", "exited", ago(days=5), ago(days=3), "sha256:i"),
        Container("c2", "young", "exited", ago(days=5), ago(hours=1), "sha256:i"),
        Container("c3", "web", "running", ago(days=30), None, "sha256:i"),
    ])
    plan = plan_prune(state, options(), NOW)
    assert [i.name for i in plan.removals] == ["old"]
    rules = {i.name: i.rule for i in plan.items}
    assert "younger than 1d" in rules["young"] and rules["web"] == "running"


def test_a_dangling_unused_image_goes_but_a_used_one_stays_even_if_its_container_is_stopped():
    state = EngineState(
        containers=[Container("c1", "db", "exited", ago(days=1), ago(hours=1), "sha256:used")],
        images=[Image("sha256:dangling", (), (), ago(days=1), 100), Image("sha256:used", (), (), ago(days=99), 200)])
    plan = plan_prune(state, options(), NOW)
    assert [i.id for i in plan.removals] == ["sha256:dangling"]
    assert plan.reclaimable == 100
    assert {i.id: i.rule for i in plan.kept}["sha256:used"] == "used by container db"


def test_images_listed_in_an_image_update_job_are_kept():
    state = EngineState(images=[Image("sha256:pg", ("postgres:15",), (), ago(days=99), 1)])
    plan = plan_prune(state, options(), NOW, {normalize_tag("docker.io/library/postgres:15")})
    assert not plan.removals and plan.items[0].rule == "listed in an image_update job"


def test_volumes_are_off_by_default_and_named_volumes_stay_with_anonymous_only():
    state = EngineState(volumes=[Volume(hexid(1), "local"), Volume("data", "local")])
    assert not plan_prune(state, options(), NOW).removals
    plan = plan_prune(state, options(volumes={"enabled": True}), NOW)
    assert [i.name for i in plan.removals] == [hexid(1)]
    assert "only anonymous" in {i.name: i.rule for i in plan.items}["data"]


def test_a_stopped_postgres_volume_is_kept_with_volumes_fully_enabled():
    state = EngineState(
        containers=[Container("c", "pg", "exited", ago(days=9), ago(days=8), "sha256:pg", volumes=("pgdata",))],
        volumes=[Volume("pgdata", "local")])
    plan = plan_prune(state, options(volumes={"enabled": True, "anonymous_only": False}), NOW)
    assert [i.kind for i in plan.removals] == ["container"]
    assert {i.name: i.rule for i in plan.kept}["pgdata"] == "used by container pg"


def test_label_filter_limits_candidates_and_skips_build_cache():
    state = EngineState(
        volumes=[Volume(hexid(1), "local", {"run": "a"}), Volume(hexid(2), "local", {"run": "b"})],
        build_cache=[BuildCache("b1", 10, ago(days=30), ago(days=30), False, False)])
    plan = plan_prune(state, options(volumes={"enabled": True}, label_filter=["run=a"]), NOW)
    assert [i.name for i in plan.items] == [hexid(1)]
    assert plan.out_of_scope == 2 and plan.build_cache_until is None


def test_build_cache_shared_with_an_image_is_kept_whatever_its_age():
    state = EngineState(build_cache=[BuildCache("layer", 10, ago(days=30), ago(days=10), False, True)])
    plan = plan_prune(state, options(), NOW)
    assert plan.removals == [] and plan.build_cache_until is None and plan.reclaimable == 0
    assert plan.items[0].rule == "shared with an image"


def test_old_build_cache_is_pruned_by_age():
    state = EngineState(build_cache=[BuildCache("old", 10, ago(days=30), ago(days=10), False, False),
                                     BuildCache("new", 10, ago(days=30), ago(days=1), False, False)])
    plan = plan_prune(state, options(), NOW)
    assert [i.id for i in plan.removals] == ["old"] and plan.build_cache_until == timedelta(days=7)


# ------------------------------------------------------------------ properties

LABEL_KEYS = ["app", PROTECT, COMPOSE_PROJECT, "run"]
LABEL_VALUES = ["true", "false", "a", "b", "contrivance"]
labels_st = st.dictionaries(st.sampled_from(LABEL_KEYS), st.sampled_from(LABEL_VALUES), max_size=3)
times_st = st.integers(min_value=0, max_value=60 * 24 * 40).map(lambda m: ago(minutes=m))
names_st = st.one_of(st.integers(0, 5).map(hexid), st.sampled_from(["pgdata", "cache", "app_pgdata", "uploads", "x"]))


@st.composite
def engine_states(draw) -> EngineState:
    image_ids = [f"sha256:{n}" for n in range(draw(st.integers(0, 6)))]
    parents = {i: draw(st.sampled_from([""] + image_ids)) for i in image_ids}
    parents = {i: (p if p != i else "") for i, p in parents.items()}
    tags_pool = ["postgres:15", "nginx:1.27-alpine", "app:1", "app:2", "docker.io/library/rust:1"]
    images = [Image(i, tuple(draw(st.lists(st.sampled_from(tags_pool), max_size=2, unique=True))), (),
                    draw(times_st), draw(st.integers(0, 10**9)), parents[i], draw(labels_st)) for i in image_ids]
    volumes = {v.name: v for v in (Volume(draw(names_st), "local", draw(labels_st), None,
                                          draw(st.none() | st.integers(0, 10**9)))
                                   for _ in range(draw(st.integers(0, 6))))}
    networks = [Network(f"n{k}", draw(st.sampled_from(["bridge", "host", "none", f"net{k}"])), "bridge",
                        draw(st.sampled_from(["local", "swarm"])), draw(times_st), draw(labels_st))
                for k in range(draw(st.integers(0, 4)))]
    containers = []
    for k in range(draw(st.integers(0, 6))):
        created = draw(times_st)
        containers.append(Container(
            f"c{k}", f"c{k}", draw(st.sampled_from(["running", "exited", "created", "paused", "restarting", "dead"])),
            created, draw(st.none() | times_st), draw(st.sampled_from(image_ids + ["sha256:gone"])),
            tuple(draw(st.lists(st.sampled_from(list(volumes) + ["other"]), max_size=2, unique=True))),
            tuple(draw(st.lists(st.sampled_from([n.id for n in networks] + ["nX"]), max_size=2, unique=True))),
            draw(labels_st)))
    cache = [BuildCache(f"b{k}", 1, draw(times_st), draw(st.none() | times_st), draw(st.booleans()), draw(st.booleans()))
             for k in range(draw(st.integers(0, 3)))]
    return EngineState(containers, images, parents, list(volumes.values()), networks, cache)


@st.composite
def prune_options(draw) -> DockerPruneJob:
    dur = st.sampled_from(["0s", "1h", "1d", "7d", "30d"])
    return options(
        containers={"enabled": draw(st.booleans()), "older_than": draw(dur)},
        dangling_images={"enabled": draw(st.booleans())},
        unused_images={"enabled": draw(st.booleans()), "older_than": draw(dur)},
        networks={"enabled": draw(st.booleans())},
        build_cache={"enabled": draw(st.booleans()), "older_than": draw(dur)},
        volumes={"enabled": draw(st.booleans()), "anonymous_only": draw(st.booleans()),
                 "protected_patterns": draw(st.lists(st.sampled_from(["*pgdata*", "cache", "u*"]), max_size=2)),
                 "stateful_projects": draw(st.lists(st.sampled_from(["contrivance", "a"]), max_size=2))},
        label_filter=draw(st.lists(st.sampled_from(["app", "app=a", "run=b"]), max_size=1)),
    )


def _ancestors_of(ids, parents):
    out, todo = set(), list(ids)
    while todo:
        p = parents.get(todo.pop(), "")
        if p and p not in out:
            out.add(p)
            todo.append(p)
    return out


@settings(max_examples=200, deadline=None)
@given(engine_states(), prune_options(), st.sets(st.sampled_from(["postgres:15", "rust:1", "app:1"])))
def test_the_plan_never_selects_anything_in_use_or_protected(state, opts, listed):
    protected_refs = {normalize_tag(r) for r in listed}
    plan = plan_prune(state, opts, NOW, protected_refs)
    used_images = {c.image_id for c in state.containers}
    used_images |= _ancestors_of(used_images, state.image_parents)
    used_volumes = {v for c in state.containers for v in c.volumes}
    used_networks = {n for c in state.containers for n in c.networks}
    images = {i.id: i for i in state.images}
    volumes = {v.name: v for v in state.volumes}
    networks = {n.id: n for n in state.networks}
    containers = {c.id: c for c in state.containers}

    for item in plan.removals:
        if item.kind == "container":
            c = containers[item.id]
            assert not c.running
            assert c.labels.get(PROTECT) != "true"
            assert c.labels.get(COMPOSE_PROJECT) not in opts.volumes.stateful_projects
            assert opts.containers.enabled
        elif item.kind == "image":
            img = images[item.id]
            assert img.id not in used_images
            assert img.labels.get(PROTECT) != "true"
            assert not any(normalize_tag(t) in protected_refs for t in img.tags)
            assert img.id not in set(state.image_parents.values())
            assert opts.dangling_images.enabled if img.dangling else opts.unused_images.enabled
        elif item.kind == "volume":
            v = volumes[item.id]
            assert opts.volumes.enabled
            assert v.name not in used_volumes
            assert v.labels.get(PROTECT) != "true"
            assert not any(fnmatch.fnmatchcase(v.name, p) for p in opts.volumes.protected_patterns)
            assert v.labels.get(COMPOSE_PROJECT) not in opts.volumes.stateful_projects
            if opts.volumes.anonymous_only:
                assert len(v.name) == 64
        elif item.kind == "network":
            n = networks[item.id]
            assert n.id not in used_networks and n.name not in ("bridge", "host", "none")
            assert n.scope != "swarm" and n.labels.get(PROTECT) != "true"
            assert opts.networks.enabled
        else:
            assert opts.build_cache.enabled and not opts.label_filter
            cache = next(b for b in state.build_cache if b.id == item.id)
            assert not cache.in_use and not cache.shared

    # Every object in scope is in the plan exactly once, with a rule.
    in_scope = ([("container", c.id) for c in state.containers if matches_labels(c.labels, opts.label_filter)]
                + [("image", i.id) for i in state.images if matches_labels(i.labels, opts.label_filter)]
                + [("volume", v.name) for v in state.volumes if matches_labels(v.labels, opts.label_filter)]
                + [("network", n.id) for n in state.networks if matches_labels(n.labels, opts.label_filter)]
                + ([] if opts.label_filter else [("build_cache", b.id) for b in state.build_cache]))
    assert sorted((i.kind, i.id) for i in plan.items) == sorted(in_scope)
    assert all(i.rule for i in plan.items)
    total = len(state.containers) + len(state.images) + len(state.volumes) + len(state.networks) + len(state.build_cache)
    assert len(plan.items) + plan.out_of_scope == total
