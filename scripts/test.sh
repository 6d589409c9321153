#!/usr/bin/env bash
# Quick start 2: check formatting, build everything, lint (clippy, warnings
# are errors) and run the whole test suite (unit tests,
# guest operators' native tests, doctests, and the integration tests with
# real components, files and the real `weir` binary).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
bash scripts/build.sh
cargo clippy --release --workspace --all-targets -- -D warnings
cargo test --release --workspace
