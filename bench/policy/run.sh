#!/usr/bin/env bash
# Network policy benchmark: time to apply one policy change on a router that holds 1 000
# policies and 5 000 workloads, and overlay throughput (iperf3 between two workloads through the
# bridge and table `inet weft`) with those 1 000 policies loaded vs none.
# Needs root, iperf3, python3 and `cargo build -p weft-router --bins`. Everything runs in network
# namespaces it creates and deletes (wbp<pid>-*); nothing touches the root namespace.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
weft=${WEFT:-$here/../../target/debug/weft}
policies=${POLICIES:-1000}
workloads=${WORKLOADS:-5000}
secs=${SECONDS_PER_RUN:-5}
p="wbp$$"
work=$(mktemp -d)
sock="$work/weft.sock"
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    for n in h c s; do ip netns del "$p-$n" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
for n in h c s; do ip netns add "$p-$n"; ip netns exec "$p-$n" ip link set lo up; done

launch() {
    ip netns exec "$p-h" "$weft" --socket "$sock" launch --data-dir "$work/data" --mtu 1450 \
        --ipalloc-init consensus=1 >>"$work/weft.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do "$weft" --socket "$sock" status >/dev/null 2>&1 && return; sleep 0.1; done
    echo "weft did not start:"; cat "$work/weft.log"; exit 1
}
stop() { "$weft" --socket "$sock" stop >/dev/null 2>&1 || true; wait "$pid" 2>/dev/null || true; pid=""; }
w() { "$weft" --socket "$sock" "$@"; }
attach_both() {
    w attach 10.32.0.1/12 --netns "$p-c" --name client --namespace ns0 --label app=app1 --label tier=t0 >/dev/null
    w attach 10.32.0.2/12 --netns "$p-s" --name server --namespace ns0 --label app=app0 --label tier=t1 >/dev/null
}
throughput() {
    ip netns exec "$p-s" iperf3 -s -1 -p 8000 >/dev/null 2>&1 &
    sleep 0.5
    ip netns exec "$p-c" iperf3 -c 10.32.0.2 -p 8000 -t "$secs" -J |
        python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))'
}

echo "== no policies"
launch
attach_both
none=$(throughput)
echo "throughput, no policies: $none Gbit/s"
w detach --netns "$p-c" >/dev/null; w detach --netns "$p-s" >/dev/null
stop

echo "== $policies policies, $workloads workloads"
python3 "$here/gen_state.py" "$policies" "$workloads" >"$work/data/policy.json"
launch
attach_both
echo "policies loaded: $(( $(w policy list | wc -l) - 1 ))"
times=()
for i in 1 2 3 4 5; do
    cat >"$work/change.yaml" <<YAML
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bench-change, namespace: ns0}
spec:
  podSelector: {matchLabels: {app: app0}}
  ingress:
  - from: [{podSelector: {matchLabels: {tier: t0}}}]
    ports: [{protocol: TCP, port: $((8000 + i % 2))}]
YAML
    start=$(date +%s%N)
    w policy apply -f "$work/change.yaml" >/dev/null
    times+=($(( ($(date +%s%N) - start) / 1000000 )))
done
label_times=()
for i in 1 2 3 4 5; do
    start=$(date +%s%N)
    w label ns0/client "bench=v$i" >/dev/null
    label_times+=($(( ($(date +%s%N) - start) / 1000000 )))
done
loaded=$(throughput)
echo "apply one policy change (ms, 5 runs, until in force): ${times[*]}"
echo "label change (ms, 5 runs, until in force): ${label_times[*]}"
echo "throughput, $policies policies loaded: $loaded Gbit/s"
python3 -c "print('ratio loaded/none: %.2f' % ($loaded / $none))"
stop
