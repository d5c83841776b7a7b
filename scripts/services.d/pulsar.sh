# pulsar-lite (PyPI; a Rust broker speaking Pulsar's binary protocol) on 127.0.0.1:$DSINK_PULSAR_PORT
# (default 56650), its metrics endpoint moved from 0.0.0.0:8080 to 127.0.0.1:$DSINK_PULSAR_METRICS_PORT
# (default 58080). The `pulsar` crate's build script
# needs `protoc`, hence protobuf-compiler. Tests read topics back with Python's `pulsar-client`:
# the Rust crate's consumer cannot decode pulsar-lite 0.2's message frames (its producer works).
PULSAR_PORT="${DSINK_PULSAR_PORT:-56650}"
PULSAR_METRICS_PORT="${DSINK_PULSAR_METRICS_PORT:-58080}"
pulsar_install() {
  apt_install protobuf-compiler
  pip_install pulsar-lite pulsar-client
}
pulsar_start() {
  local v bin pid dir="$DSINK_SERVICES_DIR/pulsar"
  v=$(venv)
  # The package ships the broker binary inside the module, not on the venv's PATH.
  bin=$("$v/bin/python" -c 'import os, pulsar_lite; print(os.path.join(os.path.dirname(pulsar_lite.__file__), "bin", "pulsar-lite"))')
  mkdir -p "$dir/db"
  cat >"$dir/pulsar-lite.toml" <<TOML
[metrics]
addr = "127.0.0.1:$PULSAR_METRICS_PORT"
TOML
  pid=$(run_bg pulsar "$bin" --config "$dir/pulsar-lite.toml" --addr "127.0.0.1:$PULSAR_PORT" --db-path "$dir/db")
  wait_port 127.0.0.1 "$PULSAR_PORT" 30 pulsar "$pid"
}
pulsar_env() {
  echo "DSINK_PULSAR_URL=pulsar://127.0.0.1:$PULSAR_PORT"
  echo "DSINK_PULSAR_PYTHON=$DSINK_VENV/bin/python"
}
