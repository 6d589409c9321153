#!/usr/bin/env bash
# Quick start 2: build everything and run the whole test suite (unit tests,
# guest operators' native tests, doctests, and the integration tests with
# real components, files and the real `weir` binary).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
cargo test --release --workspace
