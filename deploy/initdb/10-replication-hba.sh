#!/bin/sh
# Lets maintainer's wal_archive and pg_basebackup jobs connect for replication
# from the backend network (the official image allows replication only over the
# socket and loopback). The official image runs this once, when it initialises
# an empty data directory; for an existing cluster add the line by hand and run
# SELECT pg_reload_conf(); (docs/pitr.md).
set -e
echo "host replication all samenet scram-sha-256" >> "$PGDATA/pg_hba.conf"
