"""Who runs an unfinished write, so a clean-up can tell a dead run from a live one.

An owner is a process: its pid and start time, and where that pid means
something (this boot of this kernel, and this PID namespace: two containers may
both have a pid 7). A clean-up in the same place can look the process up; in
any other place (another machine or container) it cannot, and only the time
since the write last showed life counts.
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Owner:
    pid: int
    start: str  # clock ticks since boot when the process started ("" when unknown)
    place: str  # boot id and PID namespace ("" when unknown: then never checked)
    host: str  # for people reading a record

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> "Owner | None":
        """The owner a record names; None when it is not one."""
        if not isinstance(data, dict):
            return None
        try:
            return cls(int(data["pid"]), str(data["start"]), str(data["place"]), str(data["host"]))
        except (KeyError, TypeError, ValueError):
            return None


def this_process() -> Owner:
    pid = os.getpid()
    return Owner(pid, process_start(pid) or "", _place(), socket.gethostname())


def is_gone(owner: Owner) -> bool | None:
    """True when the owner's process certainly ended, False when it certainly
    runs, None when this process cannot tell (another place, or no /proc)."""
    here = _place()
    if not owner.place or not here or owner.place != here or owner.pid <= 0:
        return None
    start = process_start(owner.pid)
    if start is None:
        return True
    # A pid used again by a newer process: the owner is gone.
    return bool(owner.start) and owner.start != start


def process_start(pid: int) -> str | None:
    """A process's start time in clock ticks since boot (tells pid reuse apart);
    None when it does not exist or has ended (a zombie its parent has not reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def _place() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            boot = fh.read().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""
    return f"{boot}/{namespace}"
