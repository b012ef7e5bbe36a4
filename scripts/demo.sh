#!/usr/bin/env bash
# The demo: builds weft, starts 3 routers in network namespaces joined in one encrypted mesh,
# prints `weft status` from each, and tears everything down. Needs root; installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh "scripts/demo.sh: the demo builds network namespaces and needs root"
echo "== building weft"
cargo build -p weft-router -p weft-netns-tests --bins
exec target/debug/weft-demo
