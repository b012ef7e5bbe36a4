#!/usr/bin/env bash
# DNS benchmark (issue 6): in one run, in one fresh network namespace, dnsperf asks weft and
# dnsmasq for the same 1 000 names (weft from records added with `weft dns-add`, dnsmasq from a
# hosts file), for the same duration with the same client settings. Prints QPS and latency
# percentiles (from dnsperf's per-query latencies) for both, and the ratios. Needs root; leaves
# nothing behind. Usage: bench/dns/run.sh [seconds] (default 10).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-10}
NAMES=${NAMES:-1000}
CLIENTS=${CLIENTS:-4}
NS=wdnsbench$$
DIR=$(mktemp -d /tmp/$NS.XXXX)
chmod 755 "$DIR" # dnsmasq reads the hosts file after dropping root
WEFT_ADDR=10.99.0.1
DNSMASQ_ADDR=10.99.0.2
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    sleep 0.5
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT

bash scripts/install-deps.sh "bench/dns/run.sh builds a network namespace and needs root"
if ! command -v dnsperf >/dev/null; then
    echo "== installing dnsperf"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 dnsperf >/dev/null
fi
for tool in dnsperf dnsmasq dig python3; do
    command -v $tool >/dev/null || { echo "bench needs $tool"; exit 1; }
done
echo "== building weft (release)"
cargo build --release -q -p weft-router --bins
WEFT=$PWD/target/release/weft

ip netns add "$NS"
ip -n "$NS" link set lo up
# A veth pair inside the namespace holding both servers' addresses: getaddrinfo (in dnsperf)
# wants a non-loopback IPv4 address.
ip -n "$NS" link add bench0 type veth peer name bench1
ip -n "$NS" addr add "$WEFT_ADDR/24" dev bench0
ip -n "$NS" addr add "$DNSMASQ_ADDR/24" dev bench0
ip -n "$NS" link set bench1 up
ip -n "$NS" link set bench0 up
in_ns() { ip netns exec "$NS" "$@"; }

echo "== $NAMES names"
: >"$DIR/hosts"
: >"$DIR/queries"
for i in $(seq 1 "$NAMES"); do
    addr="10.32.$((i / 250)).$((i % 250 + 1))"
    echo "$addr host$i.weft.local" >>"$DIR/hosts"
    echo "host$i.weft.local A" >>"$DIR/queries"
done

echo "== starting weft (DNS on $WEFT_ADDR:53) and dnsmasq (on $DNSMASQ_ADDR:53)"
# Started with `ip netns exec` directly (it execs), so $! is the server itself and cleanup kills it.
ip netns exec "$NS" "$WEFT" launch --data-dir "$DIR/weft" --socket "$DIR/weft.sock" \
    --dns-listen-address "$WEFT_ADDR:53" --resolv-conf /dev/null >"$DIR/weft.log" 2>&1 &
PIDS+=($!)
ip netns exec "$NS" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
    --bind-interfaces --listen-address="$DNSMASQ_ADDR" --pid-file="$DIR/dnsmasq.pid" \
    --local=/weft.local/ --addn-hosts="$DIR/hosts" --cache-size=10000 >"$DIR/dnsmasq.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    in_ns "$WEFT" --socket "$DIR/weft.sock" status >/dev/null 2>&1 && break
    sleep 0.2
done
while read -r addr name; do
    in_ns "$WEFT" --socket "$DIR/weft.sock" dns-add "$addr" -h "$name" >/dev/null
done <"$DIR/hosts"
for server in $WEFT_ADDR $DNSMASQ_ADDR; do
    got=$(in_ns dig +short +tries=1 +time=2 @"$server" "host$NAMES.weft.local")
    want=$(tail -n 1 "$DIR/hosts" | cut -d' ' -f1)
    [ "$got" = "$want" ] || { echo "$server answers '$got' for host$NAMES, want $want"; exit 1; }
done

# dnsperf against $1 for $SECS seconds; prints "qps p50_us p99_us p999_us lost".
perf() {
    in_ns dnsperf -f inet -s "$1" -d "$DIR/queries" -l "$SECS" -c "$CLIENTS" -T 2 -t 2 -v 2>/dev/null |
        python3 -c '
import sys
lat, qps, lost = [], "n/a", "n/a"
for line in sys.stdin:
    w = line.split()
    if line.startswith("> ") and len(w) >= 5:
        lat.append(float(w[-1]) * 1e6)
    elif "Queries per second:" in line:
        qps = w[-1]
    elif "Queries lost:" in line:
        lost = w[2]
lat.sort()
q = lambda p: "%.0f" % lat[min(len(lat) - 1, int(p * len(lat)))] if lat else "n/a"
print(qps, q(0.50), q(0.99), q(0.999), lost)'
}

echo "== dnsperf, $SECS s each, $CLIENTS clients, 2 threads"
read -r w_qps w_p50 w_p99 w_p999 w_lost < <(perf $WEFT_ADDR)
read -r d_qps d_p50 d_p99 d_p999 d_lost < <(perf $DNSMASQ_ADDR)
printf '%-8s %12s %10s %10s %10s %8s\n' server qps p50_us p99_us p99.9_us lost
printf '%-8s %12s %10s %10s %10s %8s\n' weft "$w_qps" "$w_p50" "$w_p99" "$w_p999" "$w_lost"
printf '%-8s %12s %10s %10s %10s %8s\n' dnsmasq "$d_qps" "$d_p50" "$d_p99" "$d_p999" "$d_lost"
python3 -c '
import sys
wq, dq, wp, dp = map(float, sys.argv[1:])
print("weft/dnsmasq: QPS %.2fx, p99 latency %.2fx" % (wq / dq, wp / dp))' \
    "$w_qps" "$d_qps" "$w_p99" "$d_p99"
