"""The daemon's small HTTP server: GET /health and GET /metrics.

stdlib ThreadingHTTPServer in a daemon thread: enough for a health probe and
a Prometheus scrape, and it costs no memory for a framework.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from maintainer.config import types as config_types
from maintainer.errors import ConfigError
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


class StatusServer:
    def __init__(self, listen: str, health: Callable[[], HealthReport], metrics: Callable[[], bytes]):
        host, port = parse_listen(listen)
        self.health = health
        self.metrics = metrics
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
                    else:
                        self._send(404, "text/plain", b"not found: try /health or /metrics\n")
                except Exception as exc:  # noqa: BLE001 - a probe gets an answer, never a hang
                    log.error("http.failed", path=path, error=f"{type(exc).__name__}: {exc}")
                    body = json.dumps({"status": "failing", "failing": [
                        {"check": "internal", "ok": False, "message": f"{type(exc).__name__}: {exc}"}]}).encode()
                    self._send(503 if path == "/health" else 500, "application/json", body)

            def _send(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
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
        log.info("http.listening", address=f"{self.address[0]}:{self.address[1]}", paths="/health /metrics")

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() would wait forever for a loop that never ran
            self.httpd.shutdown()
        self.httpd.server_close()
