"""Turn SIGTERM/SIGINT into a cancel flag that jobs poll, so they clean up.

A job that holds a subprocess or a container checks ``ctx.cancel`` and
removes what it started. A second signal while cancelling raises
KeyboardInterrupt to stop waiting.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

_callbacks: list = []
_lock = threading.Lock()


def on_cancel(callback) -> None:
    """Call ``callback()`` (from the signal handler) when a stop is requested."""
    with _lock:
        _callbacks.append(callback)


def remove_on_cancel(callback) -> None:
    with _lock:
        if callback in _callbacks:
            _callbacks.remove(callback)


@contextlib.contextmanager
def cancel_on_signals(signals=(signal.SIGTERM, signal.SIGINT)) -> Iterator[threading.Event]:
    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return
    count = {"n": 0}

    def handler(signum, frame):
        count["n"] += 1
        event.set()
        with _lock:
            callbacks = list(_callbacks)
        for cb in callbacks:
            try:
                cb()
            except Exception:  # noqa: BLE001 - a cleanup hook must not break the handler
                pass
        if count["n"] > 1:
            raise KeyboardInterrupt

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield event
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
