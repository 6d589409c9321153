//! The spec parser and validator on any text: a `Spec` or a `SpecError`,
//! never a panic, a hang or a stack overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use weir_core::spec::Spec;

fuzz_target!(|text: &str| {
    if let Ok(mut spec) = Spec::parse(Path::new("fuzz.yaml"), text) {
        // Setting the parallelism at and past its bounds: an error or a
        // new parallelism, never a panic (overflow, division by zero).
        let max = spec.max_parallelism;
        for p in [0, 1, max, max.saturating_add(1)] {
            let _ = spec.set_parallelism(p);
        }
    }
});
