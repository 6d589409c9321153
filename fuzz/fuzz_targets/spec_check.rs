//! Validation of specs built in code (structured, from `Arbitrary`):
//! arbitrary graphs of sources, operators and sinks, deep chains and
//! cycles included; an error or a valid spec, never a panic or a stack
//! overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_core::spec::Spec;

fuzz_target!(|spec: Spec| {
    let _ = spec.check();
});
