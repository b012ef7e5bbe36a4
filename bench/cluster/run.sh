#!/usr/bin/env bash
# Cluster benchmark (issue 10 part 9): ingest throughput of 3 weft routers replicating with RF=3
# against one weft router alone and against Prometheus 2.42 (--web.enable-remote-write-receiver),
# and query latency on the 3-router cluster against one router; same machine, same run, same
# load (metrics/examples/loadgen). Routers run in network namespaces this script creates and
# deletes (three hosts on a bridge in a fourth namespace); nothing touches the root namespace.
#
# Usage: bench/cluster/run.sh [SERIES] [ROUNDS]   (defaults 20000 series, 10 rounds at 10 s)
# Needs root, prometheus (scripts/install-deps.sh) and release builds (made here).
set -euo pipefail
cd "$(dirname "$0")/../.."
SERIES=${1:-20000}
ROUNDS=${2:-10}
THREADS=${THREADS:-2}
[ "$(id -u)" = 0 ] || { echo "bench/cluster: needs root (network namespaces)" >&2; exit 1; }
command -v prometheus >/dev/null || { echo "bench/cluster: prometheus missing: run scripts/install-deps.sh" >&2; exit 1; }

cargo build --release -q -p weft-router --bin weft
cargo build --release -q -p weft-metrics --example loadgen
WEFT=$PWD/target/release/weft
LOADGEN=$PWD/target/release/examples/loadgen

TAG=wcb$$
SW=${TAG}sw
DIR=$(mktemp -d /tmp/weft-bench-cluster.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for i in 1 2 3; do ip netns del "$TAG$i" 2>/dev/null || true; done
  ip netns del "$SW" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT

# Three hosts 10.99.0.{1,2,3}/24 on a bridge in the switch namespace.
ip netns add "$SW"
ip -n "$SW" link add br0 type bridge
ip -n "$SW" link set br0 up
for i in 1 2 3; do
  ip netns add "$TAG$i"
  ip -n "$TAG$i" link set lo up
  ip link add "${TAG}h$i" netns "$TAG$i" type veth peer name "p$i" netns "$SW"
  ip -n "$TAG$i" link set "${TAG}h$i" name eth0
  ip -n "$TAG$i" addr add "10.99.0.$i/24" dev eth0
  ip -n "$TAG$i" link set eth0 up
  ip -n "$SW" link set "p$i" master br0 up
done
inns() { local n=$1; shift; ip netns exec "$TAG$n" "$@"; }

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
wait_http() { # ns addr path
  for _ in $(seq 150); do
    inns "$1" bash -c "exec 3<>/dev/tcp/${2%:*}/${2#*:} && printf 'GET $3 HTTP/1.0\r\n\r\n' >&3 && head -1 <&3" 2>/dev/null | grep -q ' 200 ' && return 0
    sleep 0.2
  done
  echo "bench/cluster: $2 in $TAG$1 did not answer" >&2; exit 1
}
launch() { # host replication peers...
  local n=$1 rf=$2; shift 2
  # Started directly (not through a shell function) so that $! is the router itself.
  ip netns exec "$TAG$n" "$WEFT" --socket "$DIR/weft$n.sock" launch --data-dir "$DIR/weft$n" \
    --metrics-tenancy off --metrics-ingestion-rate 1e12 --metrics-ingestion-burst 1e12 \
    --metrics-max-series 100000000 --metrics-replication "$rf" --log-level warn "$@" \
    >"$DIR/weft$n.log" 2>&1 &
  PIDS+=("$!")
  wait_http "$n" 127.0.0.1:6782 /api/v1/status/buildinfo
}
established() { # host: the router's established mesh connections
  "$WEFT" --socket "$DIR/weft$1.sock" report 2>/dev/null | grep -o '"state": *"established"' | wc -l || true
}
stop_all() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  PIDS=()
}

END_MS=$(( $(date +%s) * 1000 / 60000 * 60000 ))
COMMON=(--series "$SERIES" --rounds "$ROUNDS" --interval-ms 10000 --end-ms "$END_MS")

# --- one weft router ---
launch 1 3
S_PUSH=$(inns 1 "$LOADGEN" push 127.0.0.1:6782 "${COMMON[@]}" --threads "$THREADS")
S_QUERY=$(inns 1 "$LOADGEN" query 127.0.0.1:6782 "${COMMON[@]}")
stop_all
rm -rf "$DIR"/weft*

# --- three weft routers, RF=3, all writes and queries through router 1 ---
launch 1 3
launch 2 3 10.99.0.1
launch 3 3 10.99.0.1 10.99.0.2
for _ in $(seq 150); do
  [ "$(established 1)" -ge 2 ] && [ "$(established 2)" -ge 2 ] && [ "$(established 3)" -ge 2 ] && break
  sleep 0.2
done
[ "$(established 1)" -ge 2 ] || { echo "bench/cluster: the 3 routers did not mesh" >&2; tail -n 5 "$DIR"/weft*.log >&2; exit 1; }
sleep 3 # the ring settles and the first (empty) hand-overs finish
C_PUSH=$(inns 1 "$LOADGEN" push 127.0.0.1:6782 "${COMMON[@]}" --threads "$THREADS")
C_QUERY=$(inns 1 "$LOADGEN" query 127.0.0.1:6782 "${COMMON[@]}")
C_DISK=$(for n in 1 2 3; do du -sb "$DIR/weft$n/tsdb" | cut -f1; done | tr '\n' ' ')
stop_all

# --- Prometheus 2.42 ---
printf 'global:\n  scrape_interval: 1h\n' >"$DIR/prometheus.yml"
ip netns exec "${TAG}1" prometheus --config.file="$DIR/prometheus.yml" --storage.tsdb.path="$DIR/prom" \
  --web.listen-address=127.0.0.1:9090 --web.enable-remote-write-receiver --log.level=warn \
  >"$DIR/prom.log" 2>&1 &
PIDS+=("$!")
wait_http 1 127.0.0.1:9090 /-/ready
P_PUSH=$(inns 1 "$LOADGEN" push 127.0.0.1:9090 "${COMMON[@]}" --threads "$THREADS" --path /api/v1/write)
stop_all

field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<<"$2" | head -1; }
echo "Cluster benchmark: $SERIES series x $ROUNDS rounds (10 s interval) = $(( SERIES * ROUNDS )) samples, $THREADS push threads, $(nproc) cores, $(date -u +%F)"
for e in "$S_PUSH" "$C_PUSH" "$P_PUSH"; do
  [ "$(field errors "$e")" = 0 ] || echo "WARNING: push errors: $e"
done
printf '%-26s %14s %14s %14s %10s %10s\n' metric "3 routers RF3" "1 router" "prometheus" "3r/1r" "3r/prom"
row() { awk -v n="$1" -v c="$2" -v s="$3" -v p="$4" 'BEGIN { printf "%-26s %14.2f %14.2f %14s %10.2f %10s\n", n, c, s, (p == "" ? "-" : p), (s > 0 ? c / s : 0), (p > 0 ? sprintf("%.2f", c / p) : "-") }'; }
row "samples/s accepted" "$(field samples_per_s "$C_PUSH")" "$(field samples_per_s "$S_PUSH")" "$(field samples_per_s "$P_PUSH")"
for q in 0 1 2 3 4; do
  cl=$(grep "^query=$q " <<<"$C_QUERY"); sl=$(grep "^query=$q " <<<"$S_QUERY")
  row "query $q p50 ms" "$(field p50_ms "$cl")" "$(field p50_ms "$sl")" ""
  row "query $q p99 ms" "$(field p99_ms "$cl")" "$(field p99_ms "$sl")" ""
done
echo "(3 routers: data dir bytes per router after ingest: $C_DISK)"
