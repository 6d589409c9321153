//! Splits a text line (a JSON string) into lowercased words, each keyed by
//! itself. A word is a maximal run of Unicode alphanumeric characters.
use weir_sdk::{Event, Map, Output, Result};

#[derive(Default)]
pub struct Split;

impl Map for Split {
    fn map(&mut self, event: &Event<'_>, out: &mut Output) -> Result<()> {
        let line: String = event.json()?;
        for word in line.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
            let word = word.to_lowercase();
            out.emit_json(word.as_bytes(), &word, event.timestamp)?;
        }
        Ok(())
    }
}

weir_sdk::export_map!(Split);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::testing::MapHarness;

    #[test]
    fn splits_on_non_alphanumeric_and_lowercases() {
        let mut h = MapHarness::new(Split).unwrap();
        let out = h.map_json(b"", "Hello, wörld! 42x  HELLO", None).unwrap();
        let words: Vec<String> = out.iter().map(|e| e.json().unwrap()).collect();
        assert_eq!(words, ["hello", "wörld", "42x", "hello"]);
        assert_eq!(out[1].key, "wörld".as_bytes());
    }

    #[test]
    fn lines_with_quotes_and_escapes_split_too() {
        let mut h = MapHarness::new(Split).unwrap();
        let out = h.map_json(b"", "say \"hi\"\tto\\them", None).unwrap();
        let words: Vec<String> = out.iter().map(|e| e.json().unwrap()).collect();
        assert_eq!(words, ["say", "hi", "to", "them"]);
    }

    #[test]
    fn a_value_that_is_not_a_string_is_an_error() {
        let mut h = MapHarness::new(Split).unwrap();
        let err = h.map(b"", br#"{"a":1}"#, None).unwrap_err();
        assert!(err.message().contains("expected JSON"), "{err}");
    }
}
