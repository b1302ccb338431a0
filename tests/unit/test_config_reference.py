"""docs/configuration.md is generated from the config models, and is never out of date."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Iterator, get_args, get_type_hints

import pytest
from pydantic import BaseModel, SecretStr

from maintainer.config.jobs import JOB_MODELS, JobBase, JobSpec
from maintainer.config.models import Config
from maintainer.config.reference import COMMAND, build_sections, render_reference, type_text
from maintainer.config.yamlsource import SECRET_FIELDS

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "docs" / "configuration.md"


def models_in(hint: Any) -> Iterator[type[BaseModel]]:
    """Every model a type annotation holds: itself, list and map entries, union members."""
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        yield hint
        return
    if hint == JobSpec:
        yield from JOB_MODELS.values()
        return
    for arg in get_args(hint):
        yield from models_in(arg)


def every_model() -> list[type[BaseModel]]:
    """Config and every model below it, each once."""
    found: list[type[BaseModel]] = [Config]
    for model in found:
        for hint in get_type_hints(model, include_extras=True).values():
            found += [m for m in models_in(hint) if m not in found]
    return found


def test_docs_configuration_md_is_what_the_models_generate():
    expected = render_reference()
    actual = REFERENCE.read_text(encoding="utf-8") if REFERENCE.exists() else ""
    if actual != expected:
        diff = "".join(list(difflib.unified_diff(actual.splitlines(True), expected.splitlines(True),
                                                 "docs/configuration.md", "generated", n=1))[:60])
        pytest.fail(f"docs/configuration.md is out of date with the config models; regenerate it with\n"
                    f"    {COMMAND}\nfrom the repository root. Differences:\n{diff}", pytrace=False)


def test_the_reference_is_the_same_whatever_the_environment(monkeypatch):
    first = render_reference()
    monkeypatch.setenv("MAINTAINER_STATE_DIR", "/somewhere/else")
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    assert render_reference() == first


def test_every_option_has_a_description():
    missing = [f"{model.__name__}.{name}" for model in every_model()
               for name, info in model.model_fields.items()
               if not info.description and not (issubclass(model, JobBase) and name == "type")]
    assert not missing, f"options without a description (the reference would show nothing): {missing}"


def test_every_option_of_every_model_is_in_the_reference():
    keys = {(section.title, row.key.rpartition(".")[2]) for section in build_sections() for row in section.rows}
    names = {name for _title, name in keys}
    for model in every_model():
        for name in model.model_fields:
            assert name in names, f"{model.__name__}.{name} is not in the reference"
    for job_type in JOB_MODELS:
        assert any(title == job_type for title, _ in keys), f"job type {job_type} has no section"


@pytest.mark.parametrize("section,key,text", [
    ("pg_backup", "compression_threads", "zstd worker threads"),
    ("storage", "part_size", "first S3 parts"),
    ("storage", "session_token", "session_token_file: PATH"),
    ("daemon", "state_dir", "$MAINTAINER_STATE_DIR, else /var/lib/maintainer"),
])
def test_options_once_documented_nowhere_are_in_the_reference(section, key, text):
    rows = {row.key: row for s in build_sections() if s.title == section for row in s.rows}
    assert key in rows
    assert text in rows[key].description + rows[key].default


def test_nested_defaults_are_those_of_the_parent_not_of_the_nested_model():
    prune = {row.key: row for s in build_sections() if s.title == "docker_prune" for row in s.rows}
    assert prune["unused_images.older_than"].default == "`2w`"
    assert prune["build_cache.older_than"].default == "`1w`"


def test_every_secret_option_also_accepts_its_file_form():
    """The reference says NAME_file works for each secret; the loader decides that by key name."""
    for model in every_model():
        for name, hint in get_type_hints(model).items():
            holds_secret = hint is SecretStr or SecretStr in get_args(hint)
            if holds_secret:
                assert name in SECRET_FIELDS, f"{model.__name__}.{name} is a secret the loader reads no {name}_file for"


@pytest.mark.parametrize("hint,expected", [
    (Config.model_fields["timezone"], "str"),
    (JOB_MODELS["pg_backup"].model_fields["compression_level"], "int 1-22"),
    (JOB_MODELS["pg_backup"].model_fields["databases"], "list of str, not empty"),
    (JOB_MODELS["restore_drill"].model_fields["memory"], "size >= 6m"),
    (JOB_MODELS["restore_drill"].model_fields["tmpfs"], "one of `auto`, `true`, `false`"),
])
def test_types_read_as_a_person_writes_them(hint, expected):
    model = next(m for m in every_model() if hint in m.model_fields.values())
    name = next(n for n, info in model.model_fields.items() if info is hint)
    assert type_text(get_type_hints(model, include_extras=True)[name], hint) == expected


def test_a_type_the_reference_cannot_describe_is_an_error_not_a_guess():
    with pytest.raises(TypeError, match="cannot describe"):
        type_text(complex)
    with pytest.raises(TypeError, match="cannot describe"):
        type_text(set[int])
