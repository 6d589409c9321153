#!/usr/bin/env bash
# Long fuzz runs, by hand (docs/fuzzing.md): builds the cargo-fuzz targets
# in fuzz/ with nightly and AddressSanitizer, seeds each corpus from the
# examples and a real compiled-component cache entry, and runs every
# target for SECONDS (default 600), FUZZ_JOBS at a time (default 2, one
# per core). Crashes land in fuzz/artifacts/<target>/ and fail the script.
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(spec spec_check file_source cache_entry)

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
rustup toolchain list | grep -q '^nightly' || { echo "cargo-fuzz needs a nightly toolchain: rustup toolchain install nightly" >&2; exit 1; }
cargo +nightly fuzz build

# Seeds.
mkdir -p fuzz/corpus/{spec,spec_check,file_source,cache_entry}
cp examples/*/pipeline.yaml fuzz/corpus/spec/ 2>/dev/null || true
for f in examples/*/pipeline.yaml; do cp "$f" "fuzz/corpus/spec/$(basename "$(dirname "$f")").yaml"; done
# file_source: the first byte picks the format (low four bits mod 3: 0 csv, 1 jsonl, 2 text), +0x10 reads `ts`.
{ printf '\x01'; cat examples/fraud-detection/data/transactions.jsonl; } > fuzz/corpus/file_source/transactions.jsonl
{ printf '\x02'; cat examples/wordcount/data/input.txt; } > fuzz/corpus/file_source/input.txt
printf '\x10id,amount,ts\n1,2.5,10\n"2","x,y",11\n3,,12\n' > fuzz/corpus/file_source/rows.csv
if [ -z "$(ls fuzz/corpus/cache_entry)" ]; then
    bash scripts/build.sh >/dev/null
    cache=$(mktemp -d)
    spec="$cache/seed.yaml"
    printf 'sources:\n  - {id: g, type: generator, count: 10}\noperators:\n  - {id: m, kind: map, component: %s, input: g}\nsinks:\n  - {id: out, type: discard, input: m}\n' \
        "$PWD/target/wasm32-wasip2/release/passthrough.wasm" > "$spec"
    WEIR_CACHE_DIR="$cache" target/release/weir run "$spec" >/dev/null
    cp "$cache"/*.cwasm fuzz/corpus/cache_entry/
    rm -rf "$cache"
fi

run() {
    local t=$1
    cargo +nightly fuzz run "$t" "fuzz/corpus/$t" -- -max_total_time="$seconds" -rss_limit_mb=4096 \
        > "fuzz/$t.log" 2>&1 && echo "$t: no crash in ${seconds}s ($(grep -o 'Done [0-9]* runs' "fuzz/$t.log" | tail -1))" \
        || { echo "$t: FAILED, see fuzz/$t.log and fuzz/artifacts/$t/"; return 1; }
}

status=0
set -- "${targets[@]}"
while [ $# -gt 0 ]; do
    run "$1" & a=$!
    if [ "${FUZZ_JOBS:-2}" -gt 1 ] && [ $# -gt 1 ]; then run "$2" & b=$!; wait $b || status=1; shift; fi
    wait $a || status=1
    shift
done
exit $status
