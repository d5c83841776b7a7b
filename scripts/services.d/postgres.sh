# PostgreSQL 15 (already on the machine, not on PATH), for the `jdbc` connector's tests.
# initdb refuses to run as root, so the server runs as the `postgres` user; pg_ctl daemonizes it,
# hence postgres_stop. Port 55432, 127.0.0.1 only, data under $DSINK_SERVICES_DIR/postgres.
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
PG_PORT=55432

postgres_install() {
  if [[ ! -x "$PG_BIN/pg_ctl" ]]; then
    apt_install postgresql-15
  fi
}

postgres_start() {
  local d="$DSINK_SERVICES_DIR/postgres"
  mkdir -p "$d"
  # The postgres user must be able to reach its directory (mktemp makes the parent 0700).
  chmod a+x "$DSINK_SERVICES_DIR"
  chown postgres "$d"
  chmod 700 "$d"
  if [[ ! -f "$d/data/PG_VERSION" ]]; then
    runuser -u postgres -- "$PG_BIN/initdb" -D "$d/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$DSINK_SERVICES_DIR/postgres.log" 2>&1 \
      || { log "initdb failed:"; tail -n 40 "$DSINK_SERVICES_DIR/postgres.log" >&2; return 1; }
  fi
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$d/data" -l "$d/server.log" -w -t 60 \
    -o "-p $PG_PORT -k $d -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >&2 \
    || { log "postgres did not start; its log:"; tail -n 40 "$d/server.log" >&2; return 1; }
  wait_port 127.0.0.1 "$PG_PORT" 30 postgres
}

postgres_stop() {
  local d="$DSINK_SERVICES_DIR/postgres"
  if [[ -f "$d/data/postmaster.pid" ]]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$d/data" -m fast -w stop >&2 || true
  fi
}

postgres_env() {
  echo "DSINK_POSTGRES_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres"
}
