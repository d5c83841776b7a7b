# ClickHouse (Debian's clickhouse-server 18.16): HTTP $DSINK_CLICKHOUSE_PORT (default 58123), native
# TCP $DSINK_CLICKHOUSE_TCP_PORT (59000), interserver $DSINK_CLICKHOUSE_INTERSERVER_PORT (59009),
# listening on 127.0.0.1 only, data and logs under $DSINK_SERVICES_DIR/clickhouse.
CLICKHOUSE_PORT="${DSINK_CLICKHOUSE_PORT:-58123}"
CLICKHOUSE_TCP_PORT="${DSINK_CLICKHOUSE_TCP_PORT:-59000}"
CLICKHOUSE_INTERSERVER_PORT="${DSINK_CLICKHOUSE_INTERSERVER_PORT:-59009}"

clickhouse_install() {
  apt_install clickhouse-server clickhouse-client
}

clickhouse_start() {
  local d="$DSINK_SERVICES_DIR/clickhouse"
  mkdir -p "$d/data" "$d/tmp" "$d/user_files" "$d/format_schemas" "$d/log"
  # Copy the packaged configuration, pointing every path into $d and moving every port.
  sed -e "s#/var/lib/clickhouse/#$d/data/#g" \
      -e "s#/var/log/clickhouse-server/#$d/log/#g" \
      -e "s#<tmp_path>[^<]*</tmp_path>#<tmp_path>$d/tmp/</tmp_path>#" \
      -e "s#<user_files_path>[^<]*</user_files_path>#<user_files_path>$d/user_files/</user_files_path>#" \
      -e "s#<format_schema_path>[^<]*</format_schema_path>#<format_schema_path>$d/format_schemas/</format_schema_path>#" \
      -e "s#<http_port>8123</http_port>#<http_port>$CLICKHOUSE_PORT</http_port>#" \
      -e "s#<tcp_port>9000</tcp_port>#<tcp_port>$CLICKHOUSE_TCP_PORT</tcp_port>#" \
      -e "s#<interserver_http_port>9009</interserver_http_port>#<interserver_http_port>$CLICKHOUSE_INTERSERVER_PORT</interserver_http_port>#" \
      -e "s#<listen_host>[^<]*</listen_host>##g" \
      -e "s#<!-- <listen_host>[^<]*</listen_host> -->##g" \
      -e "s#<mysql_port>[^<]*</mysql_port>##g" \
      -e "s#<tcp_port_secure>[^<]*</tcp_port_secure>##g" \
      -e "s#<https_port>[^<]*</https_port>##g" \
      -e "s#<yandex>#<yandex><listen_host>127.0.0.1</listen_host>#" \
      /etc/clickhouse-server/config.xml >"$d/config.xml"
  cp /etc/clickhouse-server/users.xml "$d/users.xml"
  sed -i -e "s#<users_config>[^<]*</users_config>#<users_config>$d/users.xml</users_config>#" "$d/config.xml"
  # The packaged config.d may hold fragments with default ports/paths: do not include them.
  sed -i -e "s#<include_from>[^<]*</include_from>##" "$d/config.xml"
  local pid
  pid=$(run_bg clickhouse clickhouse-server --config-file="$d/config.xml")
  wait_port 127.0.0.1 "$CLICKHOUSE_PORT" 60 clickhouse "$pid"
  # The port opens before the server answers queries: wait for a real answer.
  local i
  for ((i = 0; i < 300; i++)); do
    if [[ "$(curl -s "http://127.0.0.1:$CLICKHOUSE_PORT/?query=SELECT%201" 2>/dev/null)" == "1" ]]; then return 0; fi
    sleep 0.1
  done
  log "clickhouse does not answer queries"; tail -n 40 "$d/log/clickhouse-server.err.log" >&2 || true
  return 1
}

clickhouse_env() {
  echo "DSINK_CLICKHOUSE_URL=http://127.0.0.1:$CLICKHOUSE_PORT"
}
