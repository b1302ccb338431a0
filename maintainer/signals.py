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
        if count["n"] > 1:
            raise KeyboardInterrupt

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield event
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
