#!/usr/bin/env bash
# TSDB benchmark: weft's metrics store against Prometheus 2.42 (--web.enable-remote-write-receiver),
# same machine, same run, same load. Everything runs inside a network namespace this script
# creates (and deletes), on its loopback; nothing touches the root namespace's network.
#
# Measures, for both: samples/s accepted (remote_write), bytes per sample on disk, RSS growth per
# active series, p50/p99 of a fixed set of range queries; prints the ratios weft/Prometheus.
#
# Usage: bench/tsdb/run.sh [SERIES] [ROUNDS]   (defaults 100000 series, 30 rounds at 10 s)
# Needs root, prometheus (scripts/install-deps.sh) and release builds (made here).
set -euo pipefail
cd "$(dirname "$0")/../.."
SERIES=${1:-100000}
ROUNDS=${2:-30}
THREADS=${THREADS:-2}
[ "$(id -u)" = 0 ] || { echo "bench/tsdb: needs root (network namespace)" >&2; exit 1; }
command -v prometheus >/dev/null || { echo "bench/tsdb: prometheus missing: run scripts/install-deps.sh" >&2; exit 1; }

cargo build --release -q -p weft-router --bin weft
cargo build --release -q -p weft-metrics --example loadgen
WEFT=$PWD/target/release/weft
LOADGEN=$PWD/target/release/examples/loadgen

NS=weftbench$$
DIR=$(mktemp -d /tmp/weft-bench-tsdb.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
inns() { ip netns exec "$NS" "$@"; }

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
wait_http() { # addr path
  for _ in $(seq 100); do
    inns bash -c "exec 3<>/dev/tcp/${1%:*}/${1#*:} && printf 'GET $2 HTTP/1.0\r\n\r\n' >&3 && head -1 <&3" 2>/dev/null | grep -q ' 200 ' && return 0
    sleep 0.2
  done
  echo "bench/tsdb: $1 did not answer" >&2; exit 1
}

END_MS=$(( $(date +%s) * 1000 / 60000 * 60000 ))
COMMON=(--series "$SERIES" --rounds "$ROUNDS" --interval-ms 10000 --end-ms "$END_MS")

# --- weft ---
ip netns exec "$NS" "$WEFT" --socket "$DIR/weft.sock" launch --data-dir "$DIR/weft" --metrics-addr 127.0.0.1:6782 \
  --metrics-tenancy off --metrics-ingestion-rate 1e12 --metrics-ingestion-burst 1e12 \
  --metrics-max-series 100000000 --log-level warn >"$DIR/weft.log" 2>&1 &
WEFT_PID=$!; PIDS+=("$WEFT_PID")
wait_http 127.0.0.1:6782 /api/v1/status/buildinfo
W_RSS0=$(rss_kb "$WEFT_PID")
W_PUSH=$(inns "$LOADGEN" push 127.0.0.1:6782 "${COMMON[@]}" --threads "$THREADS")
W_RSS1=$(rss_kb "$WEFT_PID")
W_QUERY=$(inns "$LOADGEN" query 127.0.0.1:6782 "${COMMON[@]}")
W_DISK=$(du -sb "$DIR/weft/tsdb" | cut -f1)
kill "$WEFT_PID"; wait "$WEFT_PID" 2>/dev/null || true

# --- Prometheus 2.42 ---
printf 'global:\n  scrape_interval: 1h\n' >"$DIR/prometheus.yml"
ip netns exec "$NS" prometheus --config.file="$DIR/prometheus.yml" --storage.tsdb.path="$DIR/prom" \
  --web.listen-address=127.0.0.1:9090 --web.enable-remote-write-receiver --log.level=warn \
  >"$DIR/prom.log" 2>&1 &
PROM_PID=$!; PIDS+=("$PROM_PID")
wait_http 127.0.0.1:9090 /-/ready
P_RSS0=$(rss_kb "$PROM_PID")
P_PUSH=$(inns "$LOADGEN" push 127.0.0.1:9090 "${COMMON[@]}" --threads "$THREADS" --path /api/v1/write)
P_RSS1=$(rss_kb "$PROM_PID")
P_QUERY=$(inns "$LOADGEN" query 127.0.0.1:9090 "${COMMON[@]}")
P_DISK=$(du -sb "$DIR/prom" | cut -f1)
kill "$PROM_PID"; wait "$PROM_PID" 2>/dev/null || true

field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<<"$2" | head -1; }
SAMPLES=$(( SERIES * ROUNDS ))
echo "TSDB benchmark: $SERIES series x $ROUNDS rounds (10 s interval) = $SAMPLES samples, $THREADS push threads, $(nproc) cores, $(date -u +%F)"
printf '%-28s %14s %14s %8s\n' metric weft prometheus ratio
row() { awk -v n="$1" -v w="$2" -v p="$3" 'BEGIN { printf "%-28s %14.2f %14.2f %8.2f\n", n, w, p, (p > 0 ? w / p : 0) }'; }
for e in "$W_PUSH" "$P_PUSH"; do
  [ "$(field errors "$e")" = 0 ] || echo "WARNING: push errors: $e"
done
row "samples/s accepted" "$(field samples_per_s "$W_PUSH")" "$(field samples_per_s "$P_PUSH")"
row "bytes/sample on disk" "$(awk -v b="$W_DISK" -v s="$SAMPLES" 'BEGIN{print b/s}')" "$(awk -v b="$P_DISK" -v s="$SAMPLES" 'BEGIN{print b/s}')"
row "RSS bytes/active series" "$(awk -v a="$W_RSS0" -v b="$W_RSS1" -v s="$SERIES" 'BEGIN{print (b-a)*1024/s}')" "$(awk -v a="$P_RSS0" -v b="$P_RSS1" -v s="$SERIES" 'BEGIN{print (b-a)*1024/s}')"
for q in 0 1 2 3 4; do
  wl=$(grep "^query=$q " <<<"$W_QUERY"); pl=$(grep "^query=$q " <<<"$P_QUERY")
  row "query $q p50 ms" "$(field p50_ms "$wl")" "$(field p50_ms "$pl")"
  row "query $q p99 ms" "$(field p99_ms "$wl")" "$(field p99_ms "$pl")"
done
echo "(disk: whole data dir right after ingest; with < 2 h of data neither store has cut a block yet, so this is WAL + head chunks, not compacted blocks)"
