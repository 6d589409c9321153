//! Splits a text line (a JSON string) into lowercased words, each keyed by
//! itself. A word is a maximal run of Unicode alphanumeric characters. It
//! counts the words it emits in its own metric `words`.
use weir_sdk::metrics::Counter;
use weir_sdk::{Event, Map, Output, Result};

pub struct Split {
    words: Counter,
}

impl Default for Split {
    fn default() -> Self {
        Split { words: Counter::new("words") }
    }
}

impl Map for Split {
    fn map(&mut self, event: &Event<'_>, out: &mut Output) -> Result<()> {
        let line: String = event.json()?;
        let mut n = 0;
        for word in line.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
            let word = word.to_lowercase();
            out.emit_json(word.as_bytes(), &word, event.timestamp)?;
            n += 1;
        }
        self.words.add(n);
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
        let mut h = MapHarness::new(Split::default()).unwrap();
        let out = h.map_json(b"", "Hello, wörld! 42x  HELLO", None).unwrap();
        let words: Vec<String> = out.iter().map(|e| e.json().unwrap()).collect();
        assert_eq!(words, ["hello", "wörld", "42x", "hello"]);
        assert_eq!(out[1].key, "wörld".as_bytes());
        assert_eq!(weir_sdk::metrics::reported("words"), Some(4.0));
    }

    #[test]
    fn lines_with_quotes_and_escapes_split_too() {
        let mut h = MapHarness::new(Split::default()).unwrap();
        let out = h.map_json(b"", "say \"hi\"\tto\\them", None).unwrap();
        let words: Vec<String> = out.iter().map(|e| e.json().unwrap()).collect();
        assert_eq!(words, ["say", "hi", "to", "them"]);
    }

    #[test]
    fn a_value_that_is_not_a_string_is_an_error() {
        let mut h = MapHarness::new(Split::default()).unwrap();
        let err = h.map(b"", br#"{"a":1}"#, None).unwrap_err();
        assert!(err.message().contains("expected JSON"), "{err}");
    }
}
