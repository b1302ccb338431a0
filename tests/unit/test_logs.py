"""Log lines: JSON with the run's context off a terminal, text on one, secrets scrubbed."""

from __future__ import annotations

import io
import json

import pytest

from maintainer import redact
from maintainer.logs import get_logger, run_context, setup_logging

pytestmark = pytest.mark.unit


def test_json_lines_carry_event_job_run_id_and_fields():
    out = io.StringIO()
    setup_logging("json", stream=out)
    with run_context("backup", "20261126T031500Z-abc123"):
        get_logger("test").info("backup.stored", key="pg/x/1/dump", bytes=123)
    line = json.loads(out.getvalue().strip())
    assert line["event"] == "backup.stored" and line["level"] == "info"
    assert line["job"] == "backup" and line["run_id"] == "20261126T031500Z-abc123"
    assert line["key"] == "pg/x/1/dump" and line["bytes"] == 123
    assert line["timestamp"].endswith("+00:00")


def test_text_lines_are_readable():
    out = io.StringIO()
    setup_logging("text", stream=out)
    with run_context("prune", "r1"):
        get_logger("test").warning("prune.skipped", item="volume x")
    text = out.getvalue()
    assert "WARNING" in text and "[prune]" in text and "prune.skipped" in text and 'item="volume x"' in text


def test_registered_secrets_never_reach_a_log_line():
    out = io.StringIO()
    setup_logging("json", stream=out)
    redact.register("Very-Secret-Password-42")
    get_logger("test").error("connect.failed", error="password Very-Secret-Password-42 rejected")
    assert "Very-Secret-Password-42" not in out.getvalue()
    assert "***" in out.getvalue()


def test_auto_format_is_json_off_a_terminal():
    out = io.StringIO()
    setup_logging(None, stream=out)
    get_logger("test").info("hello")
    assert json.loads(out.getvalue())["event"] == "hello"
