#!/usr/bin/env bash
# Builds everything: the wasm32-wasip2 target (installed if missing), the
# dashboard (web/, embedded in the binary), the `weir` binary and host
# crates, and every guest component. Idempotent; one target directory, release profile throughout (tests use it too, so
# nothing is built twice).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi
bash scripts/web.sh --optional
cargo build --release --workspace
guests=()
for g in $(bash scripts/guests.sh); do guests+=(-p "$g"); done
cargo build --release --target wasm32-wasip2 "${guests[@]}"
