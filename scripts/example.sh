#!/usr/bin/env bash
# Quick start 1: build Weir and the components, then run the wordcount
# example end to end. Afterwards `target/release/weir run
# examples/<name>/pipeline.yaml` works for every example.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
./target/release/weir run examples/wordcount/pipeline.yaml
echo
echo "wordcount wrote $(wc -l < examples/wordcount/out/counts.jsonl) counts to examples/wordcount/out/counts.jsonl:"
head -n 5 examples/wordcount/out/counts.jsonl
echo "the weir binary is target/release/weir"
