#!/usr/bin/env bash
# The quick start: a sandbox PostgreSQL with a small Contrivance-like database,
# one `maintainer run backup` into a local directory, and `maintainer backups`.
#
#   bash scripts/quickstart.sh            # QS_DIR=/var/tmp/maintainer-quickstart, QS_SCALE=5
#
# Works on a fresh Debian 12 machine as root with nothing running: installs
# postgresql-15 and python3-venv with apt when missing, creates .venv, starts the
# sandbox server from local binaries (no Docker) on a free port, and stops it at
# the end whatever happens. Run it again: the backups of earlier runs stay and
# are listed too (retention keeps the last 3).
set -Eeuo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
QS_DIR="${QS_DIR:-/var/tmp/maintainer-quickstart}"
QS_SCALE="${QS_SCALE:-5}"
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
say() { printf '[quickstart] %s\n' "$*"; }
die() { printf '[quickstart] error: %s\n' "$*" >&2; exit 1; }

as_root_apt() {
	[ "$(id -u)" -eq 0 ] || die "missing $*; install it (apt-get install -y $*) or run this script as root"
	say "installing $* with apt"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# 1. Tools: PostgreSQL 15 binaries and Python with venv.
[ -x "$PGBIN/initdb" ] || as_root_apt postgresql-15
command -v python3 >/dev/null || as_root_apt python3
python3 -c 'import venv, ensurepip' 2>/dev/null || as_root_apt python3-venv
if [ ! -x "$REPO/.venv/bin/maintainer" ]; then
	say "creating $REPO/.venv and installing maintainer"
	python3 -m venv "$REPO/.venv"
	"$REPO/.venv/bin/pip" install -q -e "$REPO"
fi
MAINTAINER="$REPO/.venv/bin/maintainer"

# 2. A sandbox server: a fresh data directory each run, owned by user postgres when we are root.
mkdir -p "$QS_DIR"
RUN_AS=()
if [ "$(id -u)" -eq 0 ]; then
	id postgres >/dev/null 2>&1 || useradd --system --home-dir "$QS_DIR" --shell /bin/sh postgres
	RUN_AS=(setpriv --reuid=postgres --regid=postgres --init-groups)
fi
PGDATA="$QS_DIR/pgdata"
if [ -f "$PGDATA/postmaster.pid" ]; then
	"${RUN_AS[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate stop >/dev/null 2>&1 || true
fi
rm -rf "$PGDATA" "$QS_DIR/socket"
mkdir -p "$QS_DIR/socket" "$QS_DIR/backups"
PASSWORD_FILE="$QS_DIR/pgpassword"
python3 -c 'import secrets; print(secrets.token_urlsafe(18))' >"$PASSWORD_FILE"
chmod 600 "$PASSWORD_FILE"
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$QS_DIR" "$QS_DIR/socket" "$PASSWORD_FILE"; fi
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

say "starting a sandbox PostgreSQL 15 on 127.0.0.1:$PORT in $PGDATA"
"${RUN_AS[@]}" "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=scram-sha-256 --pwfile="$PASSWORD_FILE" >"$QS_DIR/initdb.log"
stop_server() { "${RUN_AS[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null 2>&1 || true; }
trap stop_server EXIT
"${RUN_AS[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" -w -l "$QS_DIR/server.log" \
	-o "-p $PORT -k $QS_DIR/socket -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null

# 3. A small Contrivance-like database.
export PGPASSWORD="$(cat "$PASSWORD_FILE")"
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres)
say "loading examples/contrivance (scale $QS_SCALE)"
"${PSQL[@]}" -d postgres -c 'CREATE DATABASE contrivance' >/dev/null
"${PSQL[@]}" -d contrivance -f "$REPO/examples/contrivance/schema.sql" >/dev/null
"${PSQL[@]}" -d contrivance -v scale="$QS_SCALE" -f "$REPO/examples/contrivance/seed.sql" >/dev/null
unset PGPASSWORD

# 4. Back it up and list the backups.
export QS_PGPORT="$PORT" QS_PASSWORD_FILE="$PASSWORD_FILE" QS_BACKUPS="$QS_DIR/backups"
CONFIG="$REPO/examples/quickstart/schedules.yaml"
say "maintainer -c examples/quickstart/schedules.yaml run backup"
"$MAINTAINER" --log-format text -c "$CONFIG" run backup
say "maintainer -c examples/quickstart/schedules.yaml backups"
"$MAINTAINER" -c "$CONFIG" backups
say "backups are in $QS_DIR/backups; restore one by hand with restore/README.md"
