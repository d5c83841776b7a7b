# NATS server with JetStream (Debian's nats-server 2.9), on 127.0.0.1:54222.
nats_install() { apt_install nats-server; }
nats_start() {
  mkdir -p "$DSINK_SERVICES_DIR/nats"
  local pid
  pid=$(run_bg nats nats-server -js -a 127.0.0.1 -p 54222 -sd "$DSINK_SERVICES_DIR/nats")
  wait_port 127.0.0.1 54222 20 nats "$pid"
}
nats_env() { echo "DSINK_NATS_URL=nats://127.0.0.1:54222"; }
