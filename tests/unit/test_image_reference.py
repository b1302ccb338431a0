"""Image references as people write them, and one clear line per registry failure."""

from __future__ import annotations

import pytest

from maintainer.errors import ConfigError
from maintainer.imageref import normalize_tag, parse_ref
from maintainer.images.update import ImageUpdate, _classify

pytestmark = pytest.mark.unit

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("text, registry, repository, tag, name", [
    ("postgres:15", "docker.io", "library/postgres", "15", "postgres"),
    ("nginx", "docker.io", "library/nginx", "latest", "nginx"),
    ("bitnami/redis:7", "docker.io", "bitnami/redis", "7", "bitnami/redis"),
    ("127.0.0.1:5555/base/x:1", "127.0.0.1:5555", "base/x", "1", "127.0.0.1:5555/base/x"),
    ("ghcr.io/o/r:v2", "ghcr.io", "o/r", "v2", "ghcr.io/o/r"),
    ("localhost/x", "localhost", "x", "latest", "localhost/x"),
])
def test_references_are_split_into_registry_repository_and_tag(text, registry, repository, tag, name):
    ref = parse_ref(text)
    assert (ref.registry, ref.repository, ref.tag, ref.name, ref.digest) == (registry, repository, tag, name, None)


def test_a_tag_at_digest_reference_keeps_its_pin():
    ref = parse_ref(f"nginx:1.27-alpine@{DIGEST}")
    assert ref.digest == DIGEST and ref.tagged == "nginx:1.27-alpine" and str(ref) == f"nginx:1.27-alpine@{DIGEST}"


@pytest.mark.parametrize("text", ["nginx@sha256:short", "Bad Name:1", ":1"])
def test_malformed_references_are_config_errors_naming_them(text):
    with pytest.raises(ConfigError, match="is not"):
        parse_ref(text)


def test_short_and_long_forms_of_one_tag_normalize_alike():
    assert normalize_tag("postgres:15") == normalize_tag("docker.io/library/postgres:15")
    assert normalize_tag("postgres:15") != normalize_tag("postgres:16")


class _ApiError(Exception):
    def __init__(self, explanation):
        super().__init__(explanation)
        self.explanation = explanation


@pytest.mark.parametrize("message, expected", [
    ('Get "https://127.0.0.1:9/v2/": dial tcp 127.0.0.1:9: connect: connection refused', "registry 127.0.0.1:9 unreachable"),
    ("manifest unknown: manifest unknown", "not found in registry 127.0.0.1:9"),
    ("unauthorized: authentication required", "registry 127.0.0.1:9 refused access (check its credentials)"),
])
def test_registry_failures_are_classified_into_one_clear_line(message, expected):
    line = _classify(parse_ref("127.0.0.1:9/a/b:1"), _ApiError(message))
    assert line.startswith(expected) and "\n" not in line


def test_an_update_line_names_image_and_both_digests():
    u = ImageUpdate("postgres:15", "updated", old_digest="sha256:old", new_digest="sha256:new")
    assert u.line() == "postgres:15: updated sha256:old -> sha256:new"


def test_a_malformed_image_in_the_config_is_reported_before_anything_runs():
    from pydantic import ValidationError

    from maintainer.config.jobs import ImageUpdateJob

    with pytest.raises(ValidationError, match="'Bad Ref' is not an image reference"):
        ImageUpdateJob.model_validate({"type": "image_update", "schedule": "0 2 * * 1", "images": ["Bad Ref"]})
