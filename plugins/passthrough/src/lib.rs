//! Forwards every event unchanged, without decoding its value: the
//! smallest useful map, and the benchmark's measure of what crossing the
//! Wasm boundary costs.
use weir_sdk::{Event, Map, Output, Result};

#[derive(Default)]
pub struct Passthrough;

impl Map for Passthrough {
    fn map(&mut self, event: &Event<'_>, out: &mut Output) -> Result<()> {
        out.emit(event.key, event.value, event.timestamp)
    }
}

weir_sdk::export_map!(Passthrough);

#[cfg(test)]
mod tests {
    #[test]
    fn forwards_key_value_and_timestamp() {
        let mut h = weir_sdk::testing::MapHarness::new(super::Passthrough).unwrap();
        let out = h.map(b"k", b"\x00raw", Some(9)).unwrap();
        assert_eq!(
            (out[0].key.as_slice(), out[0].value.as_slice(), out[0].timestamp),
            (&b"k"[..], &b"\x00raw"[..], Some(9))
        );
    }
}
