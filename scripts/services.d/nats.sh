# NATS server with JetStream (Debian's nats-server 2.9), on 127.0.0.1:54222; and two secured
# servers with the certificates of `tls_certs` (valid for the IP address 127.0.0.1 only):
#   54223  TLS (`tls://`), server certificate only;
#   54224  TLS that verifies a client certificate signed by the test CA, and a user `dsink` with
#          the password `dsink-secret` (the tests' own throwaway credentials).
NATS_SECURE_PASSWORD=dsink-secret
nats_install() { apt_install nats-server openssl; }
nats_start() {
  local pid tls="$DSINK_SERVICES_DIR/tls"
  tls_certs
  mkdir -p "$DSINK_SERVICES_DIR/nats" "$DSINK_SERVICES_DIR/nats-tls" "$DSINK_SERVICES_DIR/nats-auth"
  pid=$(run_bg nats nats-server -js -a 127.0.0.1 -p 54222 -sd "$DSINK_SERVICES_DIR/nats")
  wait_port 127.0.0.1 54222 20 nats "$pid"
  pid=$(run_bg nats-tls nats-server -js -a 127.0.0.1 -p 54223 -sd "$DSINK_SERVICES_DIR/nats-tls" \
    --tls --tlscert "$tls/server.pem" --tlskey "$tls/server.key")
  wait_port 127.0.0.1 54223 20 nats-tls "$pid"
  pid=$(run_bg nats-auth nats-server -js -a 127.0.0.1 -p 54224 -sd "$DSINK_SERVICES_DIR/nats-auth" \
    --tlsverify --tlscert "$tls/server.pem" --tlskey "$tls/server.key" --tlscacert "$tls/ca.pem" \
    --user dsink --pass "$NATS_SECURE_PASSWORD")
  wait_port 127.0.0.1 54224 20 nats-auth "$pid"
}
nats_env() {
  echo "DSINK_NATS_URL=nats://127.0.0.1:54222"
  echo "DSINK_NATS_TLS_URL=tls://127.0.0.1:54223"
  echo "DSINK_NATS_AUTH_URL=tls://127.0.0.1:54224"
  echo "DSINK_NATS_AUTH_PASSWORD=$NATS_SECURE_PASSWORD"
}
