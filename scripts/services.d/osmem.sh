# osmem-server (PyPI), an in-memory OpenSearch-compatible server for the Elasticsearch `_bulk`
# API, on 127.0.0.1:59200.

osmem_install() {
  pip_install osmem-server
}

osmem_start() {
  local pid bin
  # The package ships the server binary inside the module (no console script).
  bin=$("$DSINK_VENV/bin/python" -c 'import os, osmem_server; print(os.path.join(os.path.dirname(osmem_server.__file__), "bin", "osmem-server"))')
  pid=$(run_bg osmem "$bin" -addr 127.0.0.1:59200 -no-stdin-watch -no-ja)
  wait_port 127.0.0.1 59200 30 osmem "$pid"
}

osmem_env() {
  echo "DSINK_ELASTICSEARCH_URL=http://127.0.0.1:59200"
}
