//! The compiled-component cache loader on any file contents: a usable
//! component or an error, never a crash. Seeded with a real cache entry
//! (docs/fuzzing.md), so mutations of a valid file are what it tries;
//! without the checksum, wasmtime's deserializer would run on them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use weir_wasm::WasmRuntime;

static RUNTIME: LazyLock<WasmRuntime> = LazyLock::new(|| WasmRuntime::new(None).expect("an engine"));

fuzz_target!(|file: &[u8]| {
    // SAFETY: the fuzzer mutates bytes; it does not craft trailers (a
    // SHA-256 over the mutated code), so what passes the check is an
    // entry `store_in_cache` wrote.
    let _ = unsafe { RUNTIME.check_cache_entry(file) };
});
