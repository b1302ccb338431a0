"""The daemon's small HTTP server: the status page (GET /), /health and /metrics.

stdlib ThreadingHTTPServer in a daemon thread: enough for a health probe, a
Prometheus scrape and a person looking at the page, and it costs no memory
for a framework. Every path is read-only (anything but GET and HEAD is 405).
Basic auth, when configured, guards the page only: /health and /metrics stay
open for the container's health check and for Prometheus.
"""

from __future__ import annotations

import base64
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from maintainer.config import types as config_types
from maintainer.errors import ConfigError, MaintainerError
from maintainer.health import HealthReport
from maintainer.logs import get_logger

log = get_logger("http")


def parse_listen(listen: str) -> tuple[str, int]:
    """'host:port' (or '[v6]:port') -> (host, port) by the config's own rule;
    ConfigError when malformed (the loader has normally rejected it already)."""
    try:
        return config_types.parse_listen(listen)
    except ValueError as exc:
        raise ConfigError(f"daemon.listen: {exc}") from None


def health_url(listen: str) -> str:
    """The URL a local client uses to reach ``listen``."""
    host, port = parse_listen(listen)
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/health"


def check_basic_auth(header: str | None, credentials: tuple[str, str]) -> bool:
    """True when an ``Authorization: Basic ...`` header carries exactly these
    credentials (compared in constant time)."""
    if not header or not header.startswith("Basic "):
        return False
    try:
        given = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return False
    user, sep, password = given.partition(":")
    expected_user, expected_password = credentials
    same_user = hmac.compare_digest(user.encode(), expected_user.encode())
    same_password = hmac.compare_digest(password.encode(), expected_password.encode())
    return bool(sep) and same_user and same_password


class StatusServer:
    """``page`` renders the HTML of ``GET /`` (None: / answers 404);
    ``page_auth`` returns (user, password) when the page needs basic auth, or
    None, and may raise MaintainerError when its secret cannot be read (the
    page is then refused, never served open). Both are called per request."""

    def __init__(self, listen: str, health: Callable[[], HealthReport], metrics: Callable[[], bytes],
                 page: Callable[[], bytes] | None = None,
                 page_auth: Callable[[], tuple[str, str] | None] | None = None):
        host, port = parse_listen(listen)
        self.health = health
        self.metrics = metrics
        self.page = page
        self.page_auth = page_auth
        server = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "maintainer"
            sys_version = ""

            def do_GET(self):  # noqa: N802 - http.server's name
                path = self.path.split("?", 1)[0]
                try:
                    if path == "/health":
                        report = server.health()
                        body = json.dumps(report.to_dict(), indent=2).encode()
                        self._send(200 if report.ok else 503, "application/json", body)
                    elif path == "/metrics":
                        # prometheus_client: 0.1 s, not for `maintainer healthcheck`
                        from maintainer.metrics import CONTENT_TYPE

                        self._send(200, CONTENT_TYPE, server.metrics())
                    elif path in ("/", "/index.html") and server.page is not None:
                        if self._authorized():
                            self._send(200, "text/html; charset=utf-8", server.page(), page=True)
                    else:
                        self._send(404, "text/plain", b"not found: try /, /health or /metrics\n")
                except Exception as exc:  # noqa: BLE001 - a probe gets an answer, never a hang
                    log.error("http.failed", path=path, error=f"{type(exc).__name__}: {exc}")
                    body = json.dumps({"status": "failing", "failing": [
                        {"check": "internal", "ok": False, "message": f"{type(exc).__name__}: {exc}"}]}).encode()
                    self._send(503 if path == "/health" else 500, "application/json", body)

            def do_HEAD(self):  # noqa: N802 - http.server's name
                self.do_GET()

            def _refuse(self):
                self.send_response(405)
                self.send_header("Allow", "GET, HEAD")
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = do_DELETE = do_PATCH = _refuse  # noqa: N815 - read-only

            def _authorized(self) -> bool:
                """True when the page may be served; otherwise the answer (401, 503) is sent."""
                try:
                    credentials = server.page_auth() if server.page_auth else None
                except MaintainerError as exc:
                    log.error("http.page_auth_unavailable", error=exc.message)
                    self._send(503, "text/plain", b"the status page's basic auth password cannot be read\n")
                    return False
                if credentials is None or check_basic_auth(self.headers.get("Authorization"), credentials):
                    return True
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="maintainer", charset="UTF-8"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return False

            def _send(self, code: int, content_type: str, body: bytes, page: bool = False) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                if page:  # nothing from elsewhere, no script, no framing by other sites
                    self.send_header("Content-Security-Policy",
                                     "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                                     "frame-ancestors 'none'")
                    self.send_header("X-Content-Type-Options", "nosniff")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def log_message(self, format, *args):  # noqa: A002 - quiet: probes come every few seconds
                log.debug("http.request", line=format % args)

        try:
            self.httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {listen} (daemon.listen): {exc.strerror or exc}",
                              hint="another process holds that address, or it is not this machine's: "
                                   "choose another daemon.listen") from None
        self.httpd.daemon_threads = True
        self.address = self.httpd.server_address
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()
        paths = "/ /health /metrics" if self.page is not None else "/health /metrics"
        log.info("http.listening", address=f"{self.address[0]}:{self.address[1]}", paths=paths)

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() would wait forever for a loop that never ran
            self.httpd.shutdown()
        self.httpd.server_close()
