#!/usr/bin/env bash
# Starts a private PostgreSQL 15 cluster on 127.0.0.1 for the tests.
#   source .ci/postgres.sh start   -> exports DGM_TEST_POSTGRES_URL, PGROOT
#   .ci/postgres.sh stop           -> stops the cluster started by `start`
# The data dir lives in a temp dir owned by user `postgres`.
set -euo pipefail
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PORT=${DGM_PG_PORT:-55432}
case "${1:-}" in
  start)
    PGROOT=$(mktemp -d /tmp/dgm-pg.XXXXXX)
    chown postgres:postgres "$PGROOT"; chmod 700 "$PGROOT"
    runuser -u postgres -- "$PGBIN/initdb" -D "$PGROOT/data" -U postgres --auth=trust >"$PGROOT/initdb.log" 2>&1
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGROOT/data" -l "$PGROOT/log" -w \
      -o "-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$PGROOT -c fsync=off -c max_connections=300" start >/dev/null
    export PGROOT
    export DGM_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$PORT/postgres"
    echo "postgres: started on 127.0.0.1:$PORT (data in $PGROOT)"
    ;;
  stop)
    if [ -n "${PGROOT:-}" ] && [ -d "$PGROOT/data" ]; then
      runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGROOT/data" -m fast -w stop >/dev/null || true
      rm -rf "$PGROOT"
      echo "postgres: stopped"
    fi
    ;;
  *) echo "usage: source .ci/postgres.sh start | .ci/postgres.sh stop" >&2; exit 2 ;;
esac
