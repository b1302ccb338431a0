"""pg_receivewal, run where the client tools run, with its finished files streamed back.

pg_receivewal can only write into a directory. So, wherever it runs (locally,
in a throwaway container of the server's major version, or by docker exec in
the database container), it runs under a small POSIX shell script (SCRIPT) that
watches that directory and writes each finished file to stdout as one frame::

    F <name> <size>\\n<size bytes>      a completed segment or a .history file
    P <name> <size>\\n<size bytes>      the .partial segment, when it changed, every flush interval

A finished file is renamed ``<name>.sent`` before it is sent, and deleted only
when the archiver has stored it (``PgClient.remove_path``), so a file sent but
not stored (the archiver was killed) is sent again by the next script started
in the same directory. The
directory is stable per job where it survives a restart (local: under the
temp directory; exec: /tmp in the database container). The script records its
own pid and pg_receivewal's, and first stops (and waits for) a script and a
receiver that an earlier, killed archiver left in the same directory, since a
slot serves one receiver at a time and two scripts must not share the files.
Only a process whose environment names this directory is touched: a reused
pid is left alone. With MAINTAINER_SEED (a segment name) and MAINTAINER_SEGSIZE,
a directory that holds no WAL file yet is first seeded with a zero-filled
``<segment>.partial`` of the segment size: pg_receivewal's FindStreamingStart
takes the highest segment in its directory, and a ``.partial`` one makes it
stream from that segment's start on that segment's timeline (a zero-filled
file of the full size is what it reuses as "already padded"), before it would
ask the slot. The archiver uses this to start a new timeline at its switch
point (see ``Archiver._seed_segment``). The seed is made by the script, so it
lands where pg_receivewal runs: on this machine, in the throwaway container or
in the database container. On SIGTERM it stops pg_receivewal (which
closes its partial), sends what is left and exits with pg_receivewal's code.
Raises DatabaseError for a stream that breaks the frame format.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

from maintainer.errors import DatabaseError

SCRIPT = r'''
set -u
d="$MAINTAINER_WALDIR"; every="$MAINTAINER_FLUSH"
mkdir -p "$d" && chmod 700 "$d" || exit 70
ours() {  # $1 is a live process of an earlier script or receiver for this directory
  [ -n "$1" ] && tr '\0' '\n' < "/proc/$1/environ" 2>/dev/null | grep -qx "MAINTAINER_WALDIR=$d"
}
for pidfile in .script.pid .receiver.pid; do
  old=$(cat "$d/$pidfile" 2>/dev/null || true)
  if ours "$old"; then
    kill -TERM "$old" 2>/dev/null
    n=0; while [ -d "/proc/$old" ] && [ $n -lt 150 ]; do sleep 0.1; n=$((n + 1)); done
    kill -KILL "$old" 2>/dev/null
  fi
done
echo $$ > "$d/.script.pid"
for f in "$d"/*.sent; do [ -f "$f" ] && mv -f "$f" "${f%.sent}"; done
seeded=""
seed="${MAINTAINER_SEED:-}"
if [ -n "$seed" ] && ! ls "$d" | grep -q '^[0-9A-F]\{24\}'; then
  head -c "$MAINTAINER_SEGSIZE" /dev/zero > "$d/$seed.partial.tmp" && mv -f "$d/$seed.partial.tmp" "$d/$seed.partial" || exit 70
  seeded="$d/$seed.partial $(stat -c '%y %s' "$d/$seed.partial" 2>/dev/null)"
fi
stopfile="$d/.stop.$$"
rm -f "$stopfile"
emit() {
  size=$(wc -c < "$2") || return 1
  printf '%s %s %s\n' "$1" "$3" "$size"
  head -c "$size" "$2"
}
sendall() {
  for f in "$d"/*; do
    [ -f "$f" ] || continue
    n=${f##*/}
    case "$n" in *.partial|*.sent|*.tmp|.*) continue ;; esac
    mv -f "$f" "$f.sent" && emit F "$f.sent" "$n"
  done
}
"$@" -D "$d" &
pid=$!
echo "$pid" > "$d/.receiver.pid"
(
  trap '' TERM INT HUP
  tick=0; last="$seeded"  # a seed pg_receivewal has not written to yet is not sent
  while [ ! -f "$stopfile" ]; do
    sendall
    tick=$((tick + 1))
    if [ $tick -ge "$every" ]; then
      tick=0
      for f in "$d"/*.partial; do
        [ -f "$f" ] || continue
        stamp="$f $(stat -c '%y %s' "$f" 2>/dev/null || date +%s)"
        if [ "$stamp" != "$last" ]; then last="$stamp"; emit P "$f" "${f##*/}"; fi
      done
    fi
    sleep 1
  done
) &
watcher=$!
trap 'kill -TERM $pid 2>/dev/null' TERM INT HUP
wait $pid; code=$?
while kill -0 $pid 2>/dev/null; do wait $pid; code=$?; done
touch "$stopfile"
wait $watcher
while kill -0 $watcher 2>/dev/null; do wait $watcher; done
sendall
rm -f "$stopfile"
[ "$(cat "$d/.receiver.pid" 2>/dev/null)" = "$pid" ] && rm -f "$d/.receiver.pid"
[ "$(cat "$d/.script.pid" 2>/dev/null)" = "$$" ] && rm -f "$d/.script.pid"
exit $code
'''


@dataclass
class Frame:
    kind: str  # "F" complete file, "P" partial segment
    name: str
    size: int


class FrameReader:
    """Frames from a DumpProcess's stdout: ``next_frame()`` (None at the end), then
    ``read_body(n)`` until the frame's bytes are consumed."""

    def __init__(self, proc):
        self.proc = proc
        self._buffer = bytearray()
        self._left = 0

    def _fill(self) -> bool:
        data = self.proc.read(1024 * 1024)
        if not data:
            return False
        self._buffer += data
        return True

    def next_frame(self) -> Frame | None:
        while self._left:  # a body the caller left unread
            self.read_body(self._left)
        while b"\n" not in self._buffer:
            if len(self._buffer) > 512:
                raise DatabaseError("pg_receivewal's helper wrote something that is not a frame header")
            if not self._fill():
                if self._buffer:
                    raise DatabaseError("pg_receivewal's helper stopped inside a frame header")
                return None
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        parts = line.decode(errors="replace").split(" ")
        if len(parts) != 3 or parts[0] not in ("F", "P") or not parts[2].isdigit() or "/" in parts[1]:
            raise DatabaseError(f"pg_receivewal's helper wrote a bad frame header: {line[:80]!r}")
        self._left = int(parts[2])
        return Frame(parts[0], parts[1], self._left)

    def read_body(self, n: int) -> bytes:
        """Up to ``n`` bytes of the current frame (b'' when it is consumed)."""
        n = min(n, self._left)
        if n <= 0:
            return b""
        while not self._buffer:
            if not self._fill():
                raise DatabaseError("pg_receivewal's helper stopped inside a file")
        data = bytes(self._buffer[:n])
        del self._buffer[:len(data)]
        self._left -= len(data)
        return data


def local_directory(job: str, system_identifier: str) -> str:
    """Where a local receiver of ``job`` writes: stable across restarts of the daemon, and
    never shared by two clusters (a file left unsent goes only into its own archive)."""
    return os.path.join(tempfile.gettempdir(), f"maintainer-wal-{job}-{system_identifier}")


def container_directory(job: str, system_identifier: str) -> str:
    return f"/tmp/maintainer-wal-{job}-{system_identifier}"


def receivewal_args(slot: str, host: str, port: int, user: str, *, status_interval: int,
                    synchronous: bool) -> list[str]:
    """pg_receivewal's options (the script adds ``-D``); --no-loop: a lost connection ends it,
    so the archiver sees it, counts a restart and alerts."""
    args = ["--slot", slot, "--no-loop", "--status-interval", str(max(1, status_interval)),
            "--host", host, "--port", str(port), "--username", user, "--no-password", "--verbose"]
    return args + (["--synchronous"] if synchronous else [])
