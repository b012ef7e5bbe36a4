#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit/property/simulation tests and the
# network-namespace end-to-end tests (these need root). Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh "scripts/test.sh: the namespace tests need root"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo build (binaries used by the namespace tests)"
cargo build --workspace --bins
echo "== cargo test"
cargo test --workspace --no-fail-fast
