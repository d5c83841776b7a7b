# PostgreSQL 15 (already on the machine, not on PATH), for the `jdbc` connector's tests.
# initdb refuses to run as root, so the server runs as the `postgres` user; pg_ctl daemonizes it,
# hence postgres_stop. Port $DSINK_POSTGRES_PORT (default 55432), 127.0.0.1 only, data under
# $DSINK_SERVICES_DIR/postgres.
#
# TLS is on (the certificates of `tls_certs`) and plain connections are still accepted. The role
# `dsink_cert` (a superuser of this throwaway server) may log in over TLS only, with the client
# certificate `tls/client.pem`; every other role is trusted without a password.
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
PG_PORT="${DSINK_POSTGRES_PORT:-55432}"

postgres_install() {
  if [[ ! -x "$PG_BIN/pg_ctl" ]]; then
    apt_install postgresql-15
  fi
  apt_install openssl
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
  tls_certs
  # The server refuses a key file that others can read or that it does not own.
  install -o postgres -m 600 "$DSINK_SERVICES_DIR/tls/server.key" "$d/server.key"
  install -o postgres -m 644 "$DSINK_SERVICES_DIR/tls/server.pem" "$d/server.pem"
  install -o postgres -m 644 "$DSINK_SERVICES_DIR/tls/ca.pem" "$d/ca.pem"
  local hba="$d/data/pg_hba.conf" rule="hostssl all dsink_cert 127.0.0.1/32 cert"
  if ! grep -qxF "$rule" "$hba"; then
    # The first matching line decides, so the certificate rule goes before the trust lines.
    { echo "$rule"; echo "host all dsink_cert 0.0.0.0/0 reject"; cat "$hba"; } >"$hba.new"
    chown postgres "$hba.new"
    mv "$hba.new" "$hba"
  fi
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$d/data" -l "$d/server.log" -w -t 60 \
    -o "-p $PG_PORT -k $d -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 \
        -c ssl=on -c ssl_cert_file=$d/server.pem -c ssl_key_file=$d/server.key -c ssl_ca_file=$d/ca.pem" \
    start >&2 \
    || { log "postgres did not start; its log:"; tail -n 40 "$d/server.log" >&2; return 1; }
  wait_port 127.0.0.1 "$PG_PORT" 30 postgres
  runuser -u postgres -- "$PG_BIN/psql" -h "$d" -p "$PG_PORT" -U postgres -qAt -v ON_ERROR_STOP=1 -c \
    "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dsink_cert') THEN
       CREATE ROLE dsink_cert LOGIN SUPERUSER; END IF; END \$\$" >&2
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
