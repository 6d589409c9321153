//! Short forms of the fuzz targets in `fuzz/` (docs/fuzzing.md): the same
//! entry points, on proptest's inputs and on mutations of real seeds, for
//! a few seconds each, so the suite keeps them honest between the long
//! cargo-fuzz runs. Every input must give a result or a clear error; a
//! panic fails the test.

use arbitrary::{Arbitrary, Unstructured};
use proptest::prelude::*;
use std::path::Path;
use std::sync::LazyLock;
use weir_connectors::{Poll, SourceError, open_source};
use weir_core::Batch;
use weir_core::spec::Spec;
use weir_tests::{component, root};
use weir_wasm::{WasmRuntime, World};

/// Reads `contents` as a file source of `format` to its end: the events
/// read, or the error. Fails the test if the source never ends.
fn read_file_source(format: &str, timestamp: bool, contents: &[u8]) -> Result<usize, SourceError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input");
    std::fs::write(&path, contents).unwrap();
    // Text lines have no fields, so no event time (the spec refuses it).
    let ts = if timestamp && format != "text" { ", timestamp: ts" } else { "" };
    let text = format!(
        "sources:\n  - {{id: in, type: file, path: '{}', format: {format}{ts}}}\nsinks:\n  - {{id: out, type: discard, input: in}}\n",
        path.display()
    );
    let spec = Spec::parse(Path::new("fuzz.yaml"), &text).unwrap();
    let mut source = open_source(&spec.sources[0], 0, 1)?;
    let (mut batch, mut events) = (Batch::new(), 0);
    for _ in 0..=contents.len() + 1 {
        batch.clear();
        let poll = source.next_batch(&mut batch, 7)?;
        events += batch.len();
        match poll {
            Poll::Ready => {}
            Poll::End => return Ok(events),
            Poll::Wait(_) | Poll::Idle(_) => panic!("a file source never waits"),
        }
    }
    panic!("a file source of {} bytes did not end", contents.len())
}

fn example(path: &str) -> Vec<u8> {
    std::fs::read(root().join(path)).unwrap()
}

/// `seed` with bytes overwritten at `edits` (positions taken modulo its
/// length) and cut to `keep` bytes.
fn mutate(mut seed: Vec<u8>, edits: &[(usize, u8)], keep: usize) -> Vec<u8> {
    if !seed.is_empty() {
        let n = seed.len();
        for &(at, byte) in edits {
            seed[at % n] = byte;
        }
    }
    seed.truncate(keep);
    seed
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8)>> {
    proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6)
}

/// A real cache entry of the passthrough component, written by a load.
static CACHE_ENTRY: LazyLock<(WasmRuntime, Vec<u8>)> = LazyLock::new(|| {
    let cache = tempfile::tempdir().unwrap();
    let rt = WasmRuntime::new(Some(cache.path().to_owned())).unwrap();
    rt.load(&component("passthrough"), World::Map).unwrap();
    let file = std::fs::read_dir(cache.path()).unwrap().next().unwrap().unwrap().path();
    (rt, std::fs::read(file).unwrap())
});

#[test]
fn a_real_cache_entry_passes_the_check() {
    let (rt, entry) = &*CACHE_ENTRY;
    // SAFETY: the entry is the one the load above wrote.
    unsafe { rt.check_cache_entry(entry) }.unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_spec_text_gives_a_spec_or_an_error(text in ".{0,400}") {
        let _ = Spec::parse(Path::new("fuzz.yaml"), &text);
    }

    #[test]
    fn mutated_example_specs_give_a_spec_or_an_error(
        which in 0usize..2, edits in edits(), keep in any::<usize>(),
    ) {
        let seed = example(["examples/wordcount/pipeline.yaml", "examples/fraud-detection/pipeline.yaml"][which]);
        let text = String::from_utf8_lossy(&mutate(seed, &edits, keep)).into_owned();
        let _ = Spec::parse(Path::new("fuzz.yaml"), &text);
    }

    #[test]
    fn specs_built_in_code_validate_or_give_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        if let Ok(spec) = Spec::arbitrary(&mut Unstructured::new(&bytes)) {
            let _ = spec.check();
        }
    }

    #[test]
    fn any_bytes_read_as_csv_jsonl_or_text_give_events_or_an_error(
        format in prop::sample::select(vec!["csv", "jsonl", "text"]),
        timestamp in any::<bool>(),
        contents in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let _ = read_file_source(format, timestamp, &contents);
    }

    #[test]
    fn mutated_example_inputs_give_events_or_an_error(
        timestamp in any::<bool>(), edits in edits(), keep in 0usize..4000,
    ) {
        let jsonl = mutate(example("examples/fraud-detection/data/transactions.jsonl"), &edits, keep);
        let _ = read_file_source("jsonl", timestamp, &jsonl);
        let csv = mutate(b"id,amount,ts\n1,2.5,10\n\"2\",\"x,y\",11\n3,,12\n".to_vec(), &edits, keep);
        let _ = read_file_source("csv", timestamp, &csv);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_changed_cache_entry_is_refused_never_loaded(edits in proptest::collection::vec((any::<usize>(), 1u8..), 1..4), cut in any::<bool>()) {
        let (rt, entry) = &*CACHE_ENTRY;
        let mut changed = entry.clone();
        let n = changed.len();
        for &(at, flip) in &edits {
            changed[at % n] ^= flip;
        }
        if cut {
            changed.truncate(edits[0].0 % n);
        }
        prop_assume!(changed != *entry);
        // SAFETY: flipped and truncated bytes, not a crafted trailer.
        let checked = unsafe { rt.check_cache_entry(&changed) };
        prop_assert!(checked.is_err(), "a changed cache entry was accepted");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    /// A data frame from a peer (weir-net): any bytes, and real frames of
    /// arbitrary batches changed and given a checksum that fits (what a
    /// sender's bug would send), decode to a checked batch or an error.
    #[test]
    fn any_data_frame_decodes_to_a_checked_batch_or_an_error(
        noise in proptest::collection::vec(any::<u8>(), 0..300),
        seed in proptest::collection::vec(any::<u8>(), 0..400),
        edits in proptest::collection::vec((any::<usize>(), 1u8..), 0..4),
    ) {
        use weir_net::frame::{Frame, Received, WireBatch, decode, encode};
        let _ = decode(&noise, 128);
        let batch = Batch::arbitrary(&mut Unstructured::new(&seed)).unwrap_or_default();
        let bytes = encode(&Frame::Data(WireBatch::of(&batch)));
        let mut archive = bytes[..bytes.len() - 4].to_vec();
        for &(at, flip) in &edits {
            let n = archive.len();
            archive[at % n] ^= flip;
        }
        archive.extend_from_slice(&crc32fast::hash(&archive).to_le_bytes());
        // (Arbitrary batches have key groups of any u16.)
        match decode(&archive, 1 << 16) {
            Ok(Received::Data(b)) => {
                let end = b.offsets().last().copied().unwrap_or(0) as usize;
                prop_assert!(end <= b.data().len() && b.key_groups().len() == b.len());
                if edits.is_empty() {
                    prop_assert_eq!(b, batch);
                }
            }
            Ok(_) => {}
            Err(e) => prop_assert!(!edits.is_empty() && e.to_string().starts_with("malformed data frame"), "{}", e),
        }
    }
}
