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
  apt_install cmake libcurl4-openssl-dev patch python3
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
}

kafka_env() {
  echo "DSINK_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT"
}
