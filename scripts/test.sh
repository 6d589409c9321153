#!/usr/bin/env bash
# Quick start 2: check formatting, build everything, lint (clippy, warnings
# are errors) and run the whole test suite (unit tests,
# guest operators' native tests, doctests, and the integration tests with
# real components, files, the real `weir` binary and a real coordinator,
# fuzzed by schemathesis from PyPI, and the dashboard in Debian's
# Chromium, installed if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
bash scripts/build.sh
bash scripts/py-tools.sh
bash scripts/browser.sh
bash scripts/web.sh
cargo clippy --release --workspace --all-targets -- -D warnings
cargo test --release --workspace
