#!/usr/bin/env bash
# The demo: builds weft, starts 3 routers in network namespaces joined in one encrypted mesh,
# prints `weft status` from each, and tears everything down. Needs root; installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "scripts/demo.sh: the demo builds network namespaces and needs root; run it as root (e.g. with sudo)" >&2
  exit 1
fi
bash scripts/install-deps.sh
echo "== building weft"
cargo build --locked -p weft-router -p weft-netns-tests --bins
exec target/debug/weft-demo
