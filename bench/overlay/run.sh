#!/usr/bin/env bash
# Overlay benchmark (issue 5): in one run, on the same two network namespaces joined by a veth
# pair through an underlay bridge, measures iperf3 TCP throughput (1 and 4 streams) and ping
# round-trip p50/p99 for: the raw underlay veth, plain kernel VXLAN set up by hand, weft's fast
# path, weft's sleeve unencrypted (UDP 6784 dropped so the path choice falls back), weft's
# sleeve encrypted (--password), and boringtun (WireGuard in userspace). Prints a table and the
# ratios. Needs root; leaves nothing behind. Usage: bench/overlay/run.sh [seconds-per-test]
# (WEFT_BIN=path/to/weft skips the release build).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-10}
PINGS=${PINGS:-200}
P=wbench$$
U=$P-u; H0=$P-h0; H1=$P-h1; W0=$P-w0; W1=$P-w1
A0=198.18.0.1; A1=198.18.0.2
DIR=$(mktemp -d /tmp/$P.XXXX)
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    sleep 0.5
    for ns in $W0 $W1 $H0 $H1 $U; do ip netns del "$ns" 2>/dev/null || true; done
}
trap cleanup EXIT

bash scripts/install-deps.sh "bench/overlay/run.sh builds network namespaces and needs root"
for tool in iperf3 ping nft; do
    command -v $tool >/dev/null || { echo "bench needs $tool"; exit 1; }
done
if [ -n "${WEFT_BIN:-}" ]; then
    WEFT=$(realpath "$WEFT_BIN")   # a weft binary given by the caller
else
    echo "== building weft (release)"
    cargo build --release -q -p weft-router --bins
    WEFT=$PWD/target/release/weft
fi

echo "== namespaces"
for ns in $U $H0 $H1 $W0 $W1; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip -n $U link add br0 type bridge
ip -n $U link set br0 up
for i in 0 1; do
    h=$P-h$i; a=198.18.0.$((i + 1))
    ip link add "$P-v$i" type veth peer name eth0 netns "$h"
    ip link set "$P-v$i" netns $U
    ip -n $U link set "$P-v$i" master br0 up
    ip -n "$h" addr add "$a/24" dev eth0
    ip -n "$h" link set eth0 up
    ip -n "$h" route add default via "$a" dev eth0 2>/dev/null || true
done

# iperf3 TCP throughput in Gbit/s from namespace $1 to server $3 running in namespace $2.
throughput() {
    local cns=$1 sns=$2 addr=$3 streams=$4
    ip netns exec "$sns" iperf3 -s -1 -D -p 5201 >/dev/null 2>&1
    sleep 0.5
    ip netns exec "$cns" iperf3 -c "$addr" -p 5201 -t "$SECS" -P "$streams" -J 2>/dev/null |
        python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))' ||
        echo "n/a"
}

# ping p50 and p99 in microseconds.
latency() {
    local ns=$1 addr=$2
    ip netns exec "$ns" ping -q -c 3 -W 1 "$addr" >/dev/null 2>&1 || true
    ip netns exec "$ns" ping -n -i 0.01 -c "$PINGS" "$addr" 2>/dev/null |
        python3 -c '
import re, sys
t = sorted(float(m.group(1)) * 1000 for m in map(re.compile(r"time=([0-9.]+) ms").search, sys.stdin) if m)
if not t: print("n/a n/a"); sys.exit()
q = lambda p: t[min(len(t) - 1, int(p * len(t)))]
print("%.0f %.0f" % (q(0.50), q(0.99)))'
}

ROWS=()
measure() {
    local name=$1 cns=$2 sns=$3 addr=$4
    echo "== $name"
    local t1 t4 lat
    t1=$(throughput "$cns" "$sns" "$addr" 1)
    t4=$(throughput "$cns" "$sns" "$addr" 4)
    lat=$(latency "$cns" "$addr")
    ROWS+=("$name|$t1|$t4|${lat% *}|${lat#* }")
    echo "   1 stream $t1 Gbit/s, 4 streams $t4 Gbit/s, ping p50/p99 ${lat% *}/${lat#* } us"
}

measure "underlay veth" $H0 $H1 $A1

# Plain kernel VXLAN set up by hand in the same shape as weft's fast path (VNI 42, port 4789,
# a bridge per host, a veth into the workload namespace), so the ratio measures weft itself.
for i in 0 1; do
    h=$P-h$i; w=$P-w$i; remote=198.18.0.$((2 - i))
    ip -n "$h" link add brbench type bridge
    ip -n "$h" link add vxbench type vxlan id 42 dstport 4789 remote "$remote" local 198.18.0.$((i + 1)) dev eth0
    ip -n "$h" link add vethbench type veth peer name ethbench netns "$w"
    for dev in vxbench vethbench; do ip -n "$h" link set $dev mtu 1450 master brbench up; done
    ip -n "$h" link set brbench up
    ip -n "$w" link set ethbench mtu 1450 up
    ip -n "$w" addr add 10.99.0.$((i + 1))/24 dev ethbench
done
measure "kernel VXLAN (by hand)" $W0 $W1 10.99.0.2
for h in $H0 $H1; do ip -n "$h" link del vxbench; ip -n "$h" link del vethbench; ip -n "$h" link del brbench; done

start_weft() {
    local extra=("$@")
    for i in 0 1; do
        h=$P-h$i
        local peers=()
        [ $i = 1 ] && peers=($A0)
        ip netns exec "$h" "$WEFT" launch --data-dir "$DIR/h$i" --socket "$DIR/h$i.sock" \
            --status-addr 127.0.0.1:6784 "${extra[@]}" "${peers[@]}" >"$DIR/h$i.log" 2>&1 &
        PIDS+=($!)
    done
    for i in 0 1; do
        for _ in $(seq 100); do
            ip netns exec $P-h$i "$WEFT" --socket "$DIR/h$i.sock" status >/dev/null 2>&1 && break
            sleep 0.1
        done
    done
    for i in 0 1; do
        ip netns exec $P-h$i "$WEFT" --socket "$DIR/h$i.sock" attach 10.32.0.$((i + 1))/12 \
            --netns /var/run/netns/$P-w$i --name w$i >/dev/null
    done
}

stop_weft() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
    for w in $W0 $W1; do ip -n "$w" link del ethwe 2>/dev/null || true; done
    for h in $H0 $H1; do ip -n "$h" link del weft 2>/dev/null || true; ip -n "$h" link del vxlan-weft 2>/dev/null || true; done
    rm -rf "$DIR"/h0 "$DIR"/h1
}

# Waits until h0 shows its peer on path $1.
wait_path() {
    for _ in $(seq 100); do
        ip netns exec $H0 "$WEFT" --socket "$DIR/h0.sock" status connections 2>/dev/null | grep -q " $1 " && return 0
        sleep 0.2
    done
    echo "   weft never reported path $1"; return 1
}

start_weft
wait_path fastdp
ip netns exec $W0 ping -q -c 3 -W 2 10.32.0.2 >/dev/null || true
measure "weft fast path" $W0 $W1 10.32.0.2
# Drop VXLAN between the hosts (in the underlay): the path choice moves to the sleeve.
ip netns exec $U nft -f - <<NFT
table bridge wbench {
    chain f {
        type filter hook forward priority 0;
        udp dport 6784 drop
    }
}
NFT
wait_path sleeve
ip netns exec $W0 ping -q -c 3 -W 2 10.32.0.2 >/dev/null || true
measure "weft sleeve" $W0 $W1 10.32.0.2
ip netns exec $U nft delete table bridge wbench
stop_weft

start_weft --password bench-secret
wait_path sleeve
ip netns exec $W0 ping -q -c 3 -W 2 10.32.0.2 >/dev/null || true
measure "weft sleeve encrypted" $W0 $W1 10.32.0.2
stop_weft

# boringtun: WireGuard in userspace between the same hosts.
BT=$(command -v boringtun-cli || echo "$HOME/.cargo/bin/boringtun-cli")
if [ ! -x "$BT" ]; then
    echo "== installing boringtun-cli"
    cargo install -q boringtun-cli >"$DIR/boringtun-install.log" 2>&1 || true
fi
if [ ! -x "$BT" ]; then
    why=$(tail -3 "$DIR/boringtun-install.log" | tr '\n' ' ')
    echo "   boringtun-cli could not be installed: $why"
    ROWS+=("boringtun (not installed)|n/a|n/a|n/a|n/a")
elif ! command -v wg >/dev/null; then
    echo "   boringtun needs the wg tool (wireguard-tools) to be configured; not found"
    ROWS+=("boringtun (no wg tool)|n/a|n/a|n/a|n/a")
else
    k0=$(wg genkey); k1=$(wg genkey)
    for i in 0 1; do
        h=$P-h$i; key=$([ $i = 0 ] && echo "$k0" || echo "$k1"); other=$([ $i = 0 ] && echo "$k1" || echo "$k0")
        ip netns exec "$h" env WG_SUDO=1 "$BT" --foreground --disable-drop-privileges wgbench >"$DIR/bt$i.log" 2>&1 &
        PIDS+=($!)
        for _ in $(seq 50); do ip -n "$h" link show wgbench >/dev/null 2>&1 && break; sleep 0.1; done
        echo "$key" >"$DIR/k$i"
        ip netns exec "$h" wg set wgbench private-key "$DIR/k$i" listen-port 51820 \
            peer "$(echo "$other" | wg pubkey)" allowed-ips 10.98.0.0/24 endpoint 198.18.0.$((2 - i)):51820
        ip -n "$h" addr add 10.98.0.$((i + 1))/24 dev wgbench
        ip -n "$h" link set wgbench mtu 1420 up
    done
    measure "boringtun" $H0 $H1 10.98.0.2
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    PIDS=()
    for h in $H0 $H1; do ip -n "$h" link del wgbench 2>/dev/null || true; done
fi

echo
echo "== results ($(nproc) cores, ${SECS}s per iperf3 run, $PINGS pings, $(date -u +%F))"
printf "%-26s %12s %12s %10s %10s\n" "path" "1 stream" "4 streams" "p50 us" "p99 us"
get() { for r in "${ROWS[@]}"; do [ "${r%%|*}" = "$1" ] && echo "$r"; done; }
for r in "${ROWS[@]}"; do
    IFS='|' read -r n t1 t4 p50 p99 <<<"$r"
    printf "%-26s %9s Gb/s %7s Gb/s %10s %10s\n" "$n" "$t1" "$t4" "$p50" "$p99"
done
ratio() {
    local a b
    IFS='|' read -r _ a1 a4 _ a99 <<<"$(get "$1")"
    IFS='|' read -r _ b1 b4 _ b99 <<<"$(get "$2")"
    python3 -c "
import sys
def r(x, y):
    try: return '%.2fx' % (float(x) / float(y))
    except (ValueError, ZeroDivisionError): return 'n/a'
print('%-48s 1 stream %s, 4 streams %s, p99 %s' % ('$1 / $2:', r('$a1','$b1'), r('$a4','$b4'), r('$a99','$b99')))"
}
echo
ratio "weft fast path" "kernel VXLAN (by hand)"
ratio "kernel VXLAN (by hand)" "underlay veth"
ratio "weft sleeve" "weft fast path"
ratio "weft sleeve encrypted" "boringtun"
