//! The wasmtime host: compiled components are cached on disk and reused,
//! and a component is checked against its world before it runs.

use weir_tests::component;
use weir_wasm::{Limits, MapInstance, WasmRuntime, World};

#[test]
fn compiled_components_are_cached_on_disk_and_reused() {
    let cache = tempfile::tempdir().unwrap();
    let path = component("passthrough");
    let first = WasmRuntime::new(Some(cache.path().to_owned())).unwrap();
    first.load(&path, World::Map).unwrap();
    let files: Vec<_> = std::fs::read_dir(cache.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "one compiled component in the cache: {files:?}");
    assert_eq!(files[0].extension().and_then(|e| e.to_str()), Some("cwasm"));

    // A new engine loads the cached code instead of compiling, and it runs.
    let second = WasmRuntime::new(Some(cache.path().to_owned())).unwrap();
    let loaded = second.load(&path, World::Map).unwrap();
    let mut instance = MapInstance::new(&second, &loaded, "passthrough[0]", "null", Limits::default()).unwrap();
    let mut batch = weir_core::Batch::new();
    batch.push(b"k", b"\"v\"", 5, 0);
    let out = instance.map_batch(&batch).unwrap();
    assert_eq!(out.events.event(0).value, b"\"v\"");
    assert_eq!(out.input_ends, vec![1]);
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 1, "nothing recompiled");
}

#[test]
fn a_corrupt_cache_file_is_ignored_and_the_component_compiles_again() {
    let cache = tempfile::tempdir().unwrap();
    let path = component("passthrough");
    WasmRuntime::new(Some(cache.path().to_owned())).unwrap().load(&path, World::Map).unwrap();
    let file = std::fs::read_dir(cache.path()).unwrap().next().unwrap().unwrap().path();
    std::fs::write(&file, b"garbage").unwrap();
    let rt = WasmRuntime::new(Some(cache.path().to_owned())).unwrap();
    assert!(rt.load(&path, World::Map).is_ok());
}

#[test]
fn a_map_component_is_not_a_process_component() {
    let rt = WasmRuntime::new(None).unwrap();
    let err = rt.load(&component("passthrough"), World::Process).err().expect("refused").to_string();
    assert!(
        err.contains("does not implement world `process`")
            && err.contains("missing export `weir:operator/keyed-process@0.2.0`"),
        "{err}"
    );
}

/// Flipped bytes inside the compiled code used to pass wasmtime's header
/// check and crash the host; the checksum written with each file catches them.
#[test]
fn flipped_bytes_in_a_cached_code_section_are_caught_before_loading() {
    let cache = tempfile::tempdir().unwrap();
    let path = component("passthrough");
    WasmRuntime::new(Some(cache.path().to_owned())).unwrap().load(&path, World::Map).unwrap();
    let file = std::fs::read_dir(cache.path()).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&file).unwrap();
    for i in (bytes.len() / 3..bytes.len() / 2).step_by(97) {
        bytes[i] ^= 0xff;
    }
    std::fs::write(&file, &bytes).unwrap();
    let rt = WasmRuntime::new(Some(cache.path().to_owned())).unwrap();
    let loaded = rt.load(&path, World::Map).unwrap();
    let mut instance = MapInstance::new(&rt, &loaded, "passthrough[0]", "null", Limits::default()).unwrap();
    let mut batch = weir_core::Batch::new();
    batch.push(b"k", b"\"v\"", 5, 0);
    assert_eq!(instance.map_batch(&batch).unwrap().events.event(0).value, b"\"v\"");
    assert_ne!(std::fs::read(&file).unwrap(), bytes, "the bad file was replaced by a good one");
}

#[test]
fn an_empty_weir_cache_dir_does_not_mean_the_current_directory() {
    let work = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let spec = format!(
        "sources: [{{id: s, type: generator, count: 10}}]\n\
         operators: [{{id: m, kind: map, component: {}, input: s}}]\n\
         sinks: [{{id: out, type: discard, input: m}}]\n",
        component("passthrough").display()
    );
    std::fs::write(work.path().join("p.yaml"), spec).unwrap();
    let out = std::process::Command::new(weir_tests::weir_bin())
        .args(["run", "p.yaml"])
        .current_dir(work.path())
        .env("WEIR_CACHE_DIR", "")
        .env("XDG_CACHE_HOME", "")
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let in_work: Vec<_> = std::fs::read_dir(work.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(in_work, vec![std::ffi::OsString::from("p.yaml")], "nothing cached in the current directory");
    assert_eq!(std::fs::read_dir(home.path().join(".cache/weir/components")).unwrap().count(), 1);
}
