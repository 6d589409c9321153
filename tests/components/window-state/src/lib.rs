//! A test process-window function with keyed state (Flink's
//! `windowState()` and `globalState()`): each firing emits the window's
//! element count, how often this window fired so far (window state) and
//! how often any window of the key fired (global state).
use serde_json::json;
use weir_sdk::{Event, Output, ProcessWindowFunction, Result, WindowContext};

#[derive(Default)]
pub struct Counting;

fn count(v: Option<Vec<u8>>) -> u64 {
    v.and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes)
}

impl ProcessWindowFunction for Counting {
    const KEYED_STATE: bool = true;

    fn process(&mut self, elements: &[Event<'_>], ctx: &WindowContext<'_>, out: &mut Output) -> Result<()> {
        let window_firings = count(ctx.window_state()?) + 1;
        ctx.set_window_state(Some(&window_firings.to_le_bytes()))?;
        let key_firings = count(ctx.global_state()?) + 1;
        ctx.set_global_state(Some(&key_firings.to_le_bytes()))?;
        let v = json!({
            "key": String::from_utf8_lossy(ctx.key),
            "start": ctx.window.start,
            "count": elements.len(),
            "window_firings": window_firings,
            "key_firings": key_firings,
        });
        out.emit_json(ctx.key, &v, None)
    }
}

weir_sdk::export_window_function!(process Counting);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::Window;
    use weir_sdk::testing::WindowFunctionHarness;

    #[test]
    fn window_state_counts_a_windows_firings_and_global_state_the_keys() {
        let mut h = WindowFunctionHarness::process_with(Counting, serde_json::Value::Null).unwrap();
        let (w1, w2) = (Window { start: 0, end: 10 }, Window { start: 10, end: 20 });
        h.add_json(b"k", w1, &1, 1).unwrap();
        let fire =
            |h: &mut WindowFunctionHarness, w| -> serde_json::Value { h.fire(b"k", w).unwrap()[0].json().unwrap() };
        assert_eq!(fire(&mut h, w1)["window_firings"], 1);
        assert_eq!(fire(&mut h, w1)["window_firings"], 2);
        h.add_json(b"k", w2, &2, 11).unwrap();
        let v = fire(&mut h, w2);
        assert_eq!((v["window_firings"].clone(), v["key_firings"].clone()), (json!(1), json!(3)));
        h.clean_up(b"k", w1).unwrap();
        h.add_json(b"k", w1, &1, 1).unwrap();
        assert_eq!(fire(&mut h, w1)["window_firings"], 1, "the window state went at cleanup");
        assert_eq!(h.global_state(b"k"), Some(&4u64.to_le_bytes()[..]));
    }
}
