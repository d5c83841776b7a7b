# MariaDB (Debian's mariadb-server), speaking the MySQL protocol, for the `jdbc` connector's
# MySQL / TiDB tests. Port $DSINK_MARIADB_PORT (default 53306), 127.0.0.1 only, data under
# $DSINK_SERVICES_DIR/mariadb; the database `dsink` is created for the tests. Root has no password
# over TCP.
#
# TLS is on (the certificates of `tls_certs`) and plain connections are still accepted. The user
# `dsink_cert` (all privileges) must present a client certificate signed by the test CA.
#
# InnoDB runs without native asynchronous I/O (`--innodb-use-native-aio=0`): with io_uring, which
# it takes by default where the kernel has it, MariaDB aborts when it cannot submit an I/O (a full
# ring under load, a locked-memory limit, a sandbox's io_uring), and the suite's heavy disk use
# beside it is exactly that load. The tests measure the sink, not the server's I/O.
MARIADB_PORT="${DSINK_MARIADB_PORT:-53306}"

mariadb_install() {
  apt_install mariadb-server openssl
}

mariadb_start() {
  local d="$DSINK_SERVICES_DIR/mariadb"
  mkdir -p "$d"
  if [[ ! -d "$d/data/mysql" ]]; then
    mariadb-install-db --no-defaults --datadir="$d/data" --user=root \
      --auth-root-authentication-method=normal --skip-test-db >"$DSINK_SERVICES_DIR/mariadb.log" 2>&1 \
      || { log "mariadb-install-db failed:"; tail -n 40 "$DSINK_SERVICES_DIR/mariadb.log" >&2; return 1; }
  fi
  tls_certs
  local pid t="$DSINK_SERVICES_DIR/tls"
  pid=$(run_bg mariadb mariadbd --no-defaults --datadir="$d/data" --user=root \
    --ssl-ca="$t/ca.pem" --ssl-cert="$t/server.pem" --ssl-key="$t/server.key" \
    --bind-address=127.0.0.1 --port="$MARIADB_PORT" --socket="$d/s.sock" --pid-file="$d/pid" \
    --log-error="$d/err.log" --skip-log-bin --innodb-buffer-pool-size=128M --innodb-use-native-aio=0 \
    --innodb-flush-log-at-trx-commit=2 --max-connections=300 --character-set-server=utf8mb4 \
    --collation-server=utf8mb4_bin)
  wait_port 127.0.0.1 "$MARIADB_PORT" 60 mariadb "$pid" \
    || { tail -n 40 "$d/err.log" >&2 || true; return 1; }
  mariadb --no-defaults --protocol=socket --socket="$d/s.sock" -uroot \
    -e "CREATE DATABASE IF NOT EXISTS dsink CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
        CREATE USER IF NOT EXISTS 'dsink_cert'@'%' REQUIRE X509;
        GRANT ALL ON *.* TO 'dsink_cert'@'%'" >&2
}

mariadb_env() {
  echo "DSINK_MYSQL_URL=mysql://root@127.0.0.1:$MARIADB_PORT/dsink"
}
