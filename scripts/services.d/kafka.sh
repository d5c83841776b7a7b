# Kafka protocol: the tansu broker (Apache-2.0, https://github.com/tansu-io/tansu) 0.6.0, built from
# crates.io with scripts/patches/tansu-0.6.0.patch, in-memory storage. Also installs what the rdkafka
# crate's bundled librdkafka build (`cmake-build`) needs: cmake, and the curl headers (librdkafka
# 2.12's rdkafka_conf.c includes <curl/curl.h> under `#ifdef WITH_OAUTHBEARER_OIDC`, which is
# defined, as 0, even when curl is off; nothing links against curl).
#
# The patch makes four changes, to tansu's transactions and offsets:
# - it routes EndTxn requests (API key 26) to the storage's `txn_end`: the 0.6.0 release on
#   crates.io has the storage side but no route, so commit_transaction fails with "EndTxnRequest
#   not supported by broker";
# - each EndTxn ends only its own transaction. 0.6.0 also commits the other transactions it
#   "overlaps" on a partition once all of them are prepared; when workers end transactions at the
#   same moment, transaction A can be committed by B's EndTxn while A still writes its commit
#   markers, those writes register A again as producing on the partition, in state Committed, and
#   every later transaction there then stays prepared for ever: the last stable offset stops and
#   read_committed readers wait until they time out (about half of the runs of the multi-worker
#   exactly-once tests). Without it, the last stable offset (the first offset of the oldest
#   transaction neither committed nor aborted) still hides later commits while an earlier
#   transaction is open, as in Apache Kafka;
# - ListOffsets answers "earliest" with the lowest stored base offset and "latest" with the high
#   watermark (the last stable offset for read_committed). 0.6.0 picked the batch stored first
#   (earliest) or last (latest, plus one): when two producers' batches on a partition were stored
#   out of offset order, a reader starting at "earliest" skipped the lower batch for good — a few
#   percent of the multi-worker tests read back fewer records than were written — and "latest"
#   was wrong for any batch of more than one record;
# - a fetch starts with the batch holding the requested offset and stops at a gap: an offset is
#   allocated before its batch is stored, so a reader that went past a batch still being stored by
#   another producer would never see it.
# The build takes 10-15 minutes on 2 cores, once: the binary is cached under $DSINK_CACHE_DIR.
#
# Secured listeners. tansu 0.6.0 cannot serve TLS itself (`--cert` and `--key` conflict, and with
# `--cert` alone it still speaks plaintext), so Debian's stunnel terminates TLS in front of three
# more in-memory brokers, each advertising the TLS port, so that clients make every connection
# (bootstrap and partition leaders) through it. Certificates are those of `tls_certs`:
#   $DSINK_KAFKA_TLS_BOOTSTRAP    TLS, server certificate only (`security.protocol = SSL`);
#   $DSINK_KAFKA_MTLS_BOOTSTRAP   TLS that requires a client certificate signed by the test CA;
#   $DSINK_KAFKA_SASL_BOOTSTRAP   TLS in front of a broker run with `--authentication`
#                                 (`security.protocol = SASL_SSL`).
# tansu's `--authentication` offers SCRAM-SHA-256 and SCRAM-SHA-512 only (PLAIN is refused at the
# handshake), and its in-memory and S3 storage keep no SCRAM credentials (`tansu user create`
# succeeds, and the broker answers every login with `unknown-user`; only its PostgreSQL and SlateDB
# storage, not in the build here, keep users). So a successful SASL login cannot be had here: the
# SASL listener verifies that the client negotiates SCRAM over TLS and that a refused login stops
# the sink with a clear authentication error.
# $DSINK_KAFKA_ADVERTISED_PORT (default: the same) is the port the broker tells clients to use,
# e.g. a fault test's proxy in front of a private broker.
KAFKA_PORT="${DSINK_KAFKA_PORT:-59092}"
TANSU_VERSION=0.6.0
TANSU_BUILD="tansu-$TANSU_VERSION-$(cksum <"$ROOT/scripts/patches/tansu-$TANSU_VERSION.patch" | cut -d' ' -f1)"

kafka_tansu() {
  echo "${DSINK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/differential-sinks}/$TANSU_BUILD/bin/tansu"
}

kafka_build_tansu() {
  local bin root work storage
  bin=$(kafka_tansu)
  root=$(dirname "$(dirname "$bin")")
  work=$(mktemp -d)
  log "building tansu $TANSU_VERSION from crates.io with scripts/patches/tansu-$TANSU_VERSION.patch (once, into $root)"
  # Fetch the published sources through cargo, from the registry this machine reaches.
  mkdir -p "$work/fetch/src"
  cat >"$work/fetch/Cargo.toml" <<TOML
[package]
name = "fetch-tansu"
version = "0.0.0"
edition = "2021"
publish = false
[dependencies]
tansu = { version = "=$TANSU_VERSION", default-features = false }
tansu-broker = { version = "=$TANSU_VERSION", default-features = false }
tansu-storage = { version = "=$TANSU_VERSION", default-features = false }
TOML
  echo 'fn main() {}' >"$work/fetch/src/main.rs"
  cargo fetch --manifest-path "$work/fetch/Cargo.toml" -q >&2
  storage=$(cargo metadata --manifest-path "$work/fetch/Cargo.toml" --format-version 1 | python3 -c \
    'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"]=="tansu-storage"))')
  storage=$(dirname "$storage")
  for c in tansu tansu-broker tansu-storage; do cp -r "$(dirname "$storage")/$c-$TANSU_VERSION" "$work/$c"; done
  patch -d "$work" -p1 --quiet <"$ROOT/scripts/patches/tansu-$TANSU_VERSION.patch"
  printf '\n[patch.crates-io]\ntansu-storage = { path = "../tansu-storage" }\ntansu-broker = { path = "../tansu-broker" }\n' \
    >>"$work/tansu/Cargo.toml"
  # --locked: the versions tansu was released with (its Cargo.lock).
  CARGO_TARGET_DIR="$work/target" cargo install --quiet --locked --path "$work/tansu" --root "$root" \
    --no-default-features --features dynostore >&2
  rm -rf "$work"
}

kafka_install() {
  # libssl-dev and pkg-config: librdkafka is built with OpenSSL (TLS, SASL SCRAM); libsasl2-dev:
  # the `kafka-gssapi` feature links Cyrus SASL; stunnel4: the TLS listeners.
  apt_install cmake libcurl4-openssl-dev patch python3 libssl-dev pkg-config libsasl2-dev stunnel4
  [[ -x "$(kafka_tansu)" ]] || kafka_build_tansu
}

kafka_start() {
  local bin pid; bin=$(kafka_tansu)
  [[ -x "$bin" ]] || { log "tansu not found at $bin: run scripts/services install kafka"; return 1; }
  # tansu logs every request at RUST_LOG=info (tens of GB over a test run): keep it to warnings.
  pid=$(RUST_LOG="${DSINK_KAFKA_LOG:-warn}" run_bg kafka "$bin" broker \
    --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:${DSINK_KAFKA_ADVERTISED_PORT:-$KAFKA_PORT}" \
    --storage-engine memory://tansu/)
  wait_port 127.0.0.1 "$KAFKA_PORT" 20 kafka "$pid"
  kafka_start_secured "$bin"
}

# kafka_start_secured TANSU: the three brokers behind stunnel (see the file's header).
kafka_start_secured() {
  local bin=$1 tls="$DSINK_SERVICES_DIR/tls" conf="$DSINK_SERVICES_DIR/kafka-stunnel.conf" name port pid extra
  tls_certs
  for name in tls mtls sasl; do
    port=$(kafka_secured_port "$name")
    extra=()
    [[ $name == sasl ]] && extra=(--authentication)
    pid=$(RUST_LOG="${DSINK_KAFKA_LOG:-warn}" run_bg "kafka-$name" "$bin" broker \
      --listener-url "tcp://127.0.0.1:$((port - 1))" \
      --advertised-listener-url "tcp://127.0.0.1:$port" \
      --storage-engine memory://tansu/ "${extra[@]}")
    wait_port 127.0.0.1 "$((port - 1))" 20 "kafka-$name" "$pid"
  done
  {
    printf 'foreground = yes\npid =\n'
    for name in tls mtls sasl; do
      port=$(kafka_secured_port "$name")
      printf '[kafka-%s]\naccept = 127.0.0.1:%s\nconnect = 127.0.0.1:%s\ncert = %s\nkey = %s\n' \
        "$name" "$port" "$((port - 1))" "$tls/server.pem" "$tls/server.key"
      [[ $name == mtls ]] && printf 'CAfile = %s\nverifyChain = yes\n' "$tls/ca.pem"
    done
  } >"$conf"
  pid=$(run_bg kafka-stunnel stunnel4 "$conf")
  for name in tls mtls sasl; do
    wait_port 127.0.0.1 "$(kafka_secured_port "$name")" 20 kafka-stunnel "$pid"
  done
}

# The TLS port of a secured broker (the broker itself listens on the port below it).
kafka_secured_port() {
  case $1 in tls) echo 59194 ;; mtls) echo 59196 ;; sasl) echo 59198 ;; esac
}

kafka_env() {
  echo "DSINK_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT"
  echo "DSINK_KAFKA_TLS_BOOTSTRAP=127.0.0.1:$(kafka_secured_port tls)"
  echo "DSINK_KAFKA_MTLS_BOOTSTRAP=127.0.0.1:$(kafka_secured_port mtls)"
  echo "DSINK_KAFKA_SASL_BOOTSTRAP=127.0.0.1:$(kafka_secured_port sasl)"
}
