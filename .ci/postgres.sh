#!/usr/bin/env bash
# A private PostgreSQL 15 cluster for the tests, on 127.0.0.1 only.
#   eval "$(bash .ci/postgres.sh start)"   # prints export lines: PGROOT, DGM_TEST_POSTGRES_URL
#   bash .ci/postgres.sh stop "$PGROOT"
# The data dir lives in a temp dir owned by user `postgres` (which must be able
# to write its log there).
set -euo pipefail
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
case "${1:-}" in
  start)
    PORT=${DGM_PG_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
    PGROOT=$(mktemp -d /tmp/dgm-pg.XXXXXX)
    chown postgres:postgres "$PGROOT"; chmod 700 "$PGROOT"
    runuser -u postgres -- "$PGBIN/initdb" -D "$PGROOT/data" -U postgres --auth=trust >"$PGROOT/initdb.log" 2>&1 \
      || { cat "$PGROOT/initdb.log" >&2; exit 1; }
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGROOT/data" -l "$PGROOT/log" -w \
      -o "-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$PGROOT -c fsync=off -c max_connections=400" \
      start >/dev/null || { cat "$PGROOT/log" >&2; exit 1; }
    echo "postgres: started on 127.0.0.1:$PORT (data in $PGROOT)" >&2
    echo "export PGROOT=$PGROOT"
    echo "export DGM_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$PORT/postgres"
    ;;
  stop)
    root=${2:-${PGROOT:-}}
    if [ -n "$root" ] && [ -d "$root/data" ]; then
      runuser -u postgres -- "$PGBIN/pg_ctl" -D "$root/data" -m fast -w stop >/dev/null 2>&1 || true
      rm -rf "$root"
      echo "postgres: stopped" >&2
    fi
    ;;
  *) echo "usage: eval \"\$(bash .ci/postgres.sh start)\" | bash .ci/postgres.sh stop PGROOT" >&2; exit 2 ;;
esac
