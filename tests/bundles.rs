//! Bundles: `weir bundle build` and `inspect` through the real binary,
//! and every malformed bundle refused by `Bundle::open` with its own
//! message (a corrupt archive, a missing component, a wrong world, path
//! traversal, a link, an oversize entry, a decompression bomb, a bad
//! spec), all problems listed at once.

use std::path::Path;
use weir_bundle::{Bundle, Limits, Manifest, Problem};
use weir_tests::{assert_clean_failure, component, entries_of, example_copy, rezip, root, weir, zip_of};
use weir_wasm::WasmRuntime;

fn runtime() -> WasmRuntime {
    WasmRuntime::new(None).unwrap()
}

/// The word count's bundle, built by the library.
fn wordcount_bundle(dir: &Path) -> (Manifest, Vec<u8>) {
    let example = example_copy("wordcount");
    let out = dir.join("wc.weir");
    let (manifest, path, _) = weir_bundle::build(example.path(), None, "1.0.0", Some(&out), &runtime()).unwrap();
    assert_eq!(path, out);
    (manifest, std::fs::read(out).unwrap())
}

fn problems(bytes: &[u8], limits: Limits) -> Vec<Problem> {
    Bundle::open(bytes, limits, &runtime()).expect_err("the bundle should be refused")
}

fn has(problems: &[Problem], place: &str, text: &str) {
    assert!(
        problems.iter().any(|p| p.place.contains(place) && p.message.contains(text)),
        "no problem at `{place}` saying `{text}` in {problems:#?}"
    );
}

#[test]
fn the_word_count_bundles_and_inspects_through_the_binary() {
    let example = example_copy("wordcount");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("wc.weir");
    let cache = dir.path().join("cache");
    let built = weir(&["bundle", "build", example.path().to_str().unwrap(), "-o", out.to_str().unwrap()], &cache);
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    assert!(String::from_utf8_lossy(&built.stderr).contains("2 components, 1 data file"));
    let shown = weir(&["bundle", "inspect", out.to_str().unwrap()], &cache);
    let stdout = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    assert!(stdout.contains("valid") && stdout.contains("components/wordcount_split.wasm") && stdout.contains("map"));
    let json = weir(&["bundle", "inspect", "--json", out.to_str().unwrap()], &cache);
    let m: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(m["format"], 1);
    assert_eq!(m["data"][0]["path"], "files/data/input.txt");

    std::fs::write(dir.path().join("bad.weir"), b"not a zip").unwrap();
    let bad = weir(&["bundle", "inspect", dir.path().join("bad.weir").to_str().unwrap()], &cache);
    let stderr = assert_clean_failure(&bad);
    assert!(stderr.contains("not a readable zip archive"), "{stderr}");
}

#[test]
fn a_bundle_opens_with_its_spec_components_and_data() {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, bytes) = wordcount_bundle(dir.path());
    let b = Bundle::open(&bytes, Limits::default(), &runtime()).unwrap();
    assert_eq!(b.manifest, manifest);
    assert_eq!(b.spec.operators.len(), 2);
    let split = manifest.components.iter().find(|c| c.world == "map").unwrap();
    assert_eq!(b.entries[&split.path], std::fs::read(component("wordcount-split")).unwrap());
    assert_eq!(manifest.version, "1.0.0");
    assert_eq!(manifest.components.iter().map(|c| c.refs.len()).sum::<usize>(), 2);
}

#[test]
fn operator_crates_named_as_folders_are_built_for_wasm() {
    let dir = tempfile::tempdir().unwrap();
    let ops = root().join("examples/wordcount/operators");
    std::fs::write(
        dir.path().join("pipeline.yaml"),
        format!(
            "sources: [{{id: gen, type: generator, count: 10, keys: 3}}]\n\
             operators:\n  - {{id: count, kind: process, component: {}, input: gen, key-by: '@key'}}\n\
             sinks: [{{id: out, type: discard, input: count}}]\n",
            ops.join("count").display()
        ),
    )
    .unwrap();
    let (m, _, _) = weir_bundle::build(dir.path(), None, "1", Some(&dir.path().join("b.weir")), &runtime()).unwrap();
    assert_eq!(m.components.len(), 1);
    assert_eq!(m.components[0].world, "process");
    assert_eq!(m.components[0].sha256, weir_bundle::sha256_hex(&std::fs::read(component("wordcount-count")).unwrap()));
}

#[test]
fn a_build_lists_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pipeline.yaml"),
        format!(
            "sources: [{{id: gen, type: generator, count: 10, keys: 3}}]\n\
             operators:\n  - {{id: a, kind: process, component: {}, input: gen, key-by: '@key'}}\n\
             \x20 - {{id: b, kind: map, component: nowhere.wasm, input: a}}\n\
             sinks: [{{id: out, type: discard, input: b}}]\n",
            component("wordcount-split").display()
        ),
    )
    .unwrap();
    let e = weir_bundle::build(dir.path(), None, "1", Some(&dir.path().join("b.weir")), &runtime()).unwrap_err();
    has(&e.0, "operator `b`", "neither a file nor a Cargo package folder");
    has(&e.0, "wordcount_split.wasm", "does not implement world `process`");
    assert!(!dir.path().join("b.weir").exists(), "nothing is written when a problem is found");
}

#[test]
fn malformed_bundles_are_refused_each_with_its_own_message() {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, bytes) = wordcount_bundle(dir.path());
    let entries = entries_of(&bytes);
    let limits = Limits::default();

    // A corrupt or truncated archive.
    has(&problems(b"PK\x03\x04garbage", limits), "the archive", "not a readable zip archive");
    has(&problems(&bytes[..bytes.len() / 2], limits), "the archive", "not a readable zip archive");

    // A component missing, and another changed: both listed.
    let split = manifest.components.iter().find(|c| c.world == "map").unwrap().path.clone();
    let count = manifest.components.iter().find(|c| c.world == "process").unwrap().path.clone();
    let mut e: Vec<(String, Vec<u8>)> = entries.iter().filter(|(n, _)| *n != split).cloned().collect();
    e.iter_mut().find(|(n, _)| *n == count).unwrap().1.push(0);
    let p = problems(&rezip(&e), limits);
    has(&p, &split, "not in the archive");
    has(&p, &count, "does not match the manifest");
    assert!(p.len() >= 2, "{p:#?}");

    // The manifest claims the wrong world.
    let mut m = manifest.clone();
    m.components.iter_mut().find(|c| c.path == split).unwrap().world = "process".into();
    let mut e = entries.clone();
    e.iter_mut().find(|(n, _)| n == "manifest.json").unwrap().1 = serde_json::to_vec(&m).unwrap();
    let p = problems(&rezip(&e), limits);
    has(&p, &split, "does not implement world `process`");
    has(&p, "operator `split`", "as world `map`, but the bundle holds it as world `process`");

    // Path traversal and absolute names.
    for name in ["../evil.txt", "/etc/evil", "files/../../evil", "a\\..\\b"] {
        let mut e = entries.clone();
        e.push((name.into(), b"x".to_vec()));
        has(&problems(&rezip(&e), limits), &name.escape_debug().to_string(), "relative path without `..`");
    }

    // An oversize component, and a bomb: a small archive that inflates
    // far past the limit stops being read at it.
    let small = Limits { component_bytes: 1 << 20, ..limits };
    has(&problems(&bytes, small), &count, "larger than");
    let bomb = vec![0u8; 64 << 20];
    let zipped = zip_of(&[("manifest.json", b"{}"), ("files/zeros", &bomb)]);
    assert!(zipped.len() < 1 << 20, "{} bytes", zipped.len());
    has(&problems(&zipped, Limits { total_bytes: 16 << 20, ..limits }), "the archive", "inflate to more than");
    // A name with a drive letter or a control character, and a folder
    // entry that climbs out.
    for name in ["C:/evil", "files/a\nb", "../up/"] {
        let mut e = entries.clone();
        e.push((name.into(), Vec::new()));
        let p = problems(&rezip(&e), limits);
        assert!(p.iter().any(|p| p.message.contains("relative path without `..`")), "{name:?}: {p:#?}");
    }

    // A bad spec: its line and column.
    let mut e = entries.clone();
    e.iter_mut().find(|(n, _)| n == "spec.yaml").unwrap().1 = b"sources: [\n  {id: x, type: nope}\n]\n".to_vec();
    let p = problems(&rezip(&e), limits);
    assert!(p.iter().any(|p| p.place.starts_with("spec.yaml:2:")), "{p:#?}");

    // Sample data that is a file and a folder at once.
    let mut m = manifest.clone();
    let mut e = entries.clone();
    for path in ["files/a", "files/a/b"] {
        m.data.push(weir_bundle::DataEntry { path: path.into(), sha256: weir_bundle::sha256_hex(b"x"), size: 1 });
        e.push((path.into(), b"x".to_vec()));
    }
    e.iter_mut().find(|(n, _)| n == "manifest.json").unwrap().1 = serde_json::to_vec(&m).unwrap();
    has(&problems(&rezip(&e), limits), "files/a", "a file here and a folder of `files/a/b`");

    // No manifest, or another format.
    has(&problems(&zip_of(&[("spec.yaml", b"x")]), limits), "manifest.json", "not a Weir bundle");
    let mut m = manifest.clone();
    m.format = 99;
    let mut e = entries.clone();
    e.iter_mut().find(|(n, _)| n == "manifest.json").unwrap().1 = serde_json::to_vec(&m).unwrap();
    has(&problems(&rezip(&e), limits), "manifest.json", "format 99");
}

#[test]
fn a_link_in_the_archive_is_refused() {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        z.add_symlink("files/link", "/etc/passwd", zip::write::SimpleFileOptions::default()).unwrap();
        z.finish().unwrap();
    }
    has(&problems(&buf.into_inner(), Limits::default()), "files/link", "a link");
}
