"""Helpers for the status page tests: a real `maintainer daemon`, and headless
Chromium to load its page as a person's browser would (no tests here)."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

MAINTAINER = str(Path(sys.executable).parent / "maintainer")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
                  "--disable-dev-shm-usage"]


def chromium() -> str:
    path = shutil.which("chromium")
    assert path, "chromium is not installed: run scripts/testbed.sh"
    return path


def dump_dom(url: str, profile: Path, timeout: float = 90) -> str:
    """The DOM Chromium rendered for ``url`` (its stderr's dbus lines are ignored)."""
    proc = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0 and "<html" in proc.stdout, proc.stderr[-2000:]
    return proc.stdout


def screenshot(url: str, out: Path, profile: Path, size: str = "1200,900", timeout: float = 90) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={out}",
                           f"--window-size={size}", "--hide-scrollbars", url],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0 and out.exists() and out.stat().st_size > 10_000, proc.stderr[-2000:]
    return out


def visible_text(dom: str) -> str:
    """The DOM's text without tags, whitespace collapsed (good enough for assertions)."""
    text = re.sub(r"<style.*?</style>", " ", dom, flags=re.S)
    text = re.sub(r"<[^>]+>", " ", text)
    return " ".join(html.unescape(text).split())


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


class DaemonProcess:
    """``maintainer daemon`` as a user starts it; its JSON log lines are kept."""

    def __init__(self, config: Path, env: dict[str, str] | None = None):
        env = {**os.environ, "MAINTAINER_CATALOG_TTL": "1", **(env or {})}
        self.proc = subprocess.Popen([MAINTAINER, "-c", str(config), "--log-format", "json", "daemon"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, event: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for line in list(self.lines):
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("event") == event:
                    return record
            assert self.proc.poll() is None, "daemon exited:\n" + "".join(self.lines)
            assert time.monotonic() < deadline, f"no {event} in:\n" + "".join(self.lines)
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
