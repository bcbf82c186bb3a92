#!/bin/bash
# The official postgres image's contract, for the stand-in: on an empty PGDATA, create the
# cluster with POSTGRES_USER (password POSTGRES_PASSWORD, scram-sha-256 over TCP) and the database
# POSTGRES_DB; then run the server as the postgres user, listening on every address. The first
# start's setup runs on a private socket, so pg_isready answers only once the real server is up.
set -euo pipefail

as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

if [ "${1:-}" != "postgres" ]; then
  exec "$@"
fi
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"

mkdir -p "$PGDATA" /var/run/postgresql
chown postgres:postgres "$PGDATA" /var/run/postgresql
chmod 700 "$PGDATA"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile="$(mktemp)"
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
  chown postgres "$pwfile"
  as_postgres initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  setup_socket="$(mktemp -d)"
  chown postgres "$setup_socket"
  as_postgres pg_ctl -D "$PGDATA" -w -s \
    -o "-c listen_addresses='' -c unix_socket_directories=$setup_socket" start
  if [ "$POSTGRES_DB" != "postgres" ]; then
    as_postgres psql -v ON_ERROR_STOP=1 -q -h "$setup_socket" -U "$POSTGRES_USER" -d postgres \
      -c "CREATE DATABASE \"$POSTGRES_DB\""
  fi
  as_postgres pg_ctl -D "$PGDATA" -w -s -m fast stop
  rmdir "$setup_socket"
  echo "database $POSTGRES_DB created for $POSTGRES_USER"
fi

shift
exec setpriv --reuid=postgres --regid=postgres --init-groups postgres -D "$PGDATA" -c listen_addresses='*' "$@"
