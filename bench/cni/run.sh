#!/usr/bin/env bash
# CNI benchmark (issue 8): ADD+DEL latency of weft's CNI plugin (talking to a running weft
# router) against the reference `bridge` + `host-local` plugins, on the same host namespace,
# N iterations each (default 200), one workload namespace reused. Prints p50/p99 per plugin and
# the weft/reference ratio. Needs root; leaves nothing behind.
# Usage: bench/cni/run.sh [iterations]   (WEFT_BIN_DIR=dir holding weft and weft-cni skips the
# release build).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-200}
P=wcni$$
H=$P-h; W=$P-w
DIR=$(mktemp -d /tmp/$P.XXXX)
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    sleep 0.5
    for ns in $W $H; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$DIR"
}
trap cleanup EXIT

bash scripts/install-deps.sh "bench/cni/run.sh builds network namespaces and needs root"
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] || {
    echo "bench needs containernetworking-plugins (/usr/lib/cni)"; exit 1; }
if [ -n "${WEFT_BIN_DIR:-}" ]; then
    BIN=$(realpath "$WEFT_BIN_DIR")
else
    echo "== building weft and weft-cni (release)"
    cargo build --release -q -p weft-router -p weft-cni --bins
    BIN=$PWD/target/release
fi

echo "== namespaces and router"
for ns in $H $W; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
SOCK=$DIR/weft.sock
ip netns exec $H "$BIN/weft" launch --data-dir "$DIR/data" --socket "$SOCK" \
    --ipalloc-init consensus=1 >"$DIR/weft.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    ip netns exec $H "$BIN/weft" --socket "$SOCK" status >/dev/null 2>&1 && break
    sleep 0.2
done
ip netns exec $H "$BIN/weft" --socket "$SOCK" status >/dev/null
ip netns exec $H "$BIN/weft" --socket "$SOCK" setup-cni --bin-dir "$DIR/bin" \
    --conf-dir "$DIR/net.d" --plugin "$BIN/weft-cni" >/dev/null

echo "== $N x ADD+DEL each"
ip netns exec $H python3 - "$N" "$DIR" "$W" <<'PY'
import json, os, subprocess, sys, time

n, d, w = int(sys.argv[1]), sys.argv[2], sys.argv[3]
conflist = json.load(open(f"{d}/net.d/10-weft.conflist"))
weft = dict(conflist["plugins"][0], cniVersion="1.0.0", name=conflist["name"])
ref = {"cniVersion": "1.0.0", "name": "ref", "type": "bridge", "bridge": "cnibr0",
       "ipam": {"type": "host-local", "dataDir": f"{d}/host-local",
                "ranges": [[{"subnet": "10.99.0.0/16"}]]}}
plugins = {"weft": (f"{d}/bin/weft", weft), "bridge+host-local": ("/usr/lib/cni/bridge", ref)}

def run(binary, conf, command, cid):
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": command,
           "CNI_CONTAINERID": cid, "CNI_NETNS": f"/run/netns/{w}", "CNI_IFNAME": "eth0",
           "CNI_PATH": f"{d}/bin:/usr/lib/cni"}
    r = subprocess.run([binary], input=json.dumps(conf).encode(), env=env, capture_output=True)
    if r.returncode != 0:
        sys.exit(f"{binary} {command} failed: {r.stdout!r} {r.stderr!r}")

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]

results = {}
for name, (binary, conf) in plugins.items():
    run(binary, conf, "ADD", "warmup"); run(binary, conf, "DEL", "warmup")
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        run(binary, conf, "ADD", f"bench{i}")
        run(binary, conf, "DEL", f"bench{i}")
        times.append((time.perf_counter() - t0) * 1000)
    results[name] = (pct(times, 50), pct(times, 99))
    print(f"{name:>18}: ADD+DEL p50 {results[name][0]:7.2f} ms   p99 {results[name][1]:7.2f} ms")
(w50, w99), (r50, r99) = results["weft"], results["bridge+host-local"]
print(f"{'ratio weft/ref':>18}: p50 {w50 / r50:.2f}x   p99 {w99 / r99:.2f}x   (target <= 1.5x)")
PY
