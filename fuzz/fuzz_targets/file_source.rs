//! The file source's decoders (CSV with a header, JSON lines, text lines)
//! on any bytes: every record read or a `SourceError` naming the place,
//! never a panic or a hang. The first byte picks the format and whether
//! event time is read from a field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use weir_connectors::{Poll, open_source};
use weir_core::Batch;
use weir_core::spec::Spec;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, contents)) = data.split_first() else { return };
    let format = ["csv", "jsonl", "text"][(pick & 0x0f) as usize % 3];
    // Text lines have no fields, so no event time (the spec refuses it).
    let timestamp = if pick & 0x10 != 0 && format != "text" { ", timestamp: ts" } else { "" };
    let path = std::env::temp_dir().join(format!("weir-fuzz-input-{}", std::process::id()));
    std::fs::write(&path, contents).expect("the fuzzer can write its temporary folder");
    let text = format!(
        "sources:\n  - {{id: in, type: file, path: '{}', format: {format}{timestamp}}}\nsinks:\n  - {{id: out, type: discard, input: in}}\n",
        path.display()
    );
    let spec = Spec::parse(Path::new("fuzz.yaml"), &text).expect("the harness's spec is valid");
    let Ok(mut source) = open_source(&spec.sources[0], 0, 1) else { return };
    let mut batch = Batch::new();
    let max = 1 + (pick as usize >> 5);
    // Each call consumes input or ends: bounded by the input's length.
    for _ in 0..=contents.len() + 1 {
        batch.clear();
        match source.next_batch(&mut batch, max) {
            Ok(Poll::Ready) => {}
            Ok(Poll::End) | Err(_) => return,
            Ok(Poll::Wait(_) | Poll::Idle(_)) => panic!("a file source never waits"),
        }
    }
    panic!("a file source of {} bytes did not end", contents.len());
});
