#!/usr/bin/env bash
# Prints the package names of every guest component crate (the crates that
# build for wasm32-wasip2): example operators, plugins and test components.
set -euo pipefail
cd "$(dirname "$0")/.."
for manifest in examples/*/operators/*/Cargo.toml plugins/*/Cargo.toml tests/components/*/Cargo.toml; do
    [ -f "$manifest" ] || continue
    sed -n 's/^name = "\(.*\)"$/\1/p' "$manifest" | head -n 1
done
