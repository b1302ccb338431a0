#!/bin/bash
# Entrypoint of the locally built test image maintainer-test/postgres:<major>.
#
# It honours the interface of the official postgres image (POSTGRES_PASSWORD,
# POSTGRES_USER, POSTGRES_DB, POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD,
# PGDATA, /docker-entrypoint-initdb.d, "postgres -c ..." arguments), so code and
# tests written against it work unchanged with the official image in production.
# Like the official image, a first start initialises the cluster with a
# temporary server that listens only on the unix socket, then starts the real
# server: a client polling TCP never sees a half-initialised database.
set -Eeo pipefail

log() { printf '%s [entrypoint] %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# "docker run IMAGE -c fsync=off" means "postgres -c fsync=off".
if [ "${1:0:1}" = '-' ]; then
	set -- postgres "$@"
fi

# Anything other than the server (psql, bash, pg_dump ...) runs as given.
if [ "$1" != 'postgres' ]; then
	exec "$@"
fi

export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
POSTGRES_HOST_AUTH_METHOD="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
export POSTGRES_USER POSTGRES_DB POSTGRES_HOST_AUTH_METHOD

# As root: prepare directories, then run this script again as user postgres.
if [ "$(id -u)" = '0' ]; then
	mkdir -p "$PGDATA" /var/run/postgresql
	chown postgres:postgres /var/run/postgresql
	chmod 3777 /var/run/postgresql
	# Only take over a data directory we are allowed to (not a bind mount owned by
	# someone else that is already initialised).
	if [ ! -s "$PGDATA/PG_VERSION" ]; then
		chown -R postgres:postgres "$PGDATA"
	fi
	chmod 700 "$PGDATA" || true
	exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
fi

initialise_cluster() {
	if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != 'trust' ]; then
		die "the database is uninitialized and superuser password is not specified.
  Set POSTGRES_PASSWORD to a non-empty value for the superuser,
  or POSTGRES_HOST_AUTH_METHOD=trust to allow all connections without a password."
	fi
	log "initialising cluster in $PGDATA for user $POSTGRES_USER"
	local pwfile
	pwfile="$(mktemp)"
	printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
	# shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of words by contract
	initdb --username="$POSTGRES_USER" --pwfile="$pwfile" $POSTGRES_INITDB_ARGS >&2
	rm -f "$pwfile"

	printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >> "$PGDATA/pg_hba.conf"
	printf "\nlisten_addresses = '*'\n" >> "$PGDATA/postgresql.conf"

	# Temporary server: unix socket only, so nobody reaches it over TCP.
	pg_ctl -D "$PGDATA" -w -t 60 \
		-o "-c listen_addresses='' -p ${PGPORT:-5432}" start >&2

	local psql=(psql -v ON_ERROR_STOP=1 --no-password --no-psqlrc --username "$POSTGRES_USER" --dbname postgres)
	if [ "$POSTGRES_DB" != 'postgres' ]; then
		log "creating database $POSTGRES_DB"
		"${psql[@]}" --set db="$POSTGRES_DB" <<-'EOSQL' >&2
			CREATE DATABASE :"db" ;
		EOSQL
	fi

	local f
	for f in /docker-entrypoint-initdb.d/*; do
		[ -e "$f" ] || continue
		case "$f" in
			*.sh)
				if [ -x "$f" ]; then log "running $f"; "$f"
				else log "sourcing $f"; . "$f"; fi ;;
			*.sql) log "running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" >&2 ;;
			*.sql.gz) log "running $f"; gunzip -c "$f" | "${psql[@]}" --dbname "$POSTGRES_DB" >&2 ;;
			*.sql.zst) log "running $f"; zstd -dc "$f" | "${psql[@]}" --dbname "$POSTGRES_DB" >&2 ;;
			*) log "ignoring $f" ;;
		esac
	done

	pg_ctl -D "$PGDATA" -m fast -w stop >&2
	log "initialisation complete; ready for start up"
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	initialise_cluster
fi

exec "$@"
