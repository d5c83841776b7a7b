# moto's server: in-memory AWS APIs (Kinesis, S3, ...) on 127.0.0.1:55000. One server serves every
# AWS-shaped test; state is shared, `POST /moto-api/reset` clears it.
moto_install() { pip_install "moto[server]"; }
moto_start() {
  local v pid
  v=$(venv)
  pid=$(run_bg moto "$v/bin/moto_server" -H 127.0.0.1 -p 55000)
  wait_port 127.0.0.1 55000 30 moto "$pid"
}
moto_env() { echo "DSINK_MOTO_URL=http://127.0.0.1:55000"; }
