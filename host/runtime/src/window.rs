//! Windows as Flink defines them: the window type and its namespace bytes,
//! the assigners, and the merging-window set of session windows. The
//! operator that drives them is `operators::window`; triggers and the
//! built-in functions and evictors are in the submodules.

pub(crate) mod aggregate;
pub(crate) mod trigger;

use weir_core::spec::{TimeKind, WindowSpec};

/// A window: a time interval `[start, end)`, or the one global window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Window {
    /// `[start, end)` in ms.
    Time { start: i64, end: i64 },
    /// All of time (global and count windows).
    Global,
}

/// Bytes of a time window's namespace.
pub(crate) const NAMESPACE_BYTES: usize = 16;

/// An i64 as big-endian bytes whose byte order is the numbers' order.
fn ordered(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

fn from_ordered(b: &[u8]) -> i64 {
    (u64::from_be_bytes(b.try_into().expect("invariant: eight bytes")) ^ (1 << 63)) as i64
}

impl Window {
    /// The last timestamp inside the window (Flink's `maxTimestamp`).
    pub fn max_timestamp(self) -> i64 {
        match self {
            Window::Time { end, .. } => end.saturating_sub(1),
            Window::Global => i64::MAX,
        }
    }

    /// The window's state namespace: start and end, each big-endian with
    /// the sign bit flipped (so namespaces sort as windows do); empty for
    /// the global window. A contract of the stored state (`docs/state.md`).
    pub fn namespace(self) -> [u8; NAMESPACE_BYTES] {
        match self {
            Window::Time { start, end } => {
                let mut ns = [0u8; NAMESPACE_BYTES];
                ns[..8].copy_from_slice(&ordered(start));
                ns[8..].copy_from_slice(&ordered(end));
                ns
            }
            Window::Global => [0u8; NAMESPACE_BYTES],
        }
    }

    /// The namespace as a slice (empty for the global window).
    pub fn namespace_len(self) -> usize {
        match self {
            Window::Time { .. } => NAMESPACE_BYTES,
            Window::Global => 0,
        }
    }

    /// `(start, end)`, the global window `(i64::MIN, i64::MAX)`, as the
    /// Wasm worlds carry a window.
    pub fn bounds(self) -> (i64, i64) {
        match self {
            Window::Time { start, end } => (start, end),
            Window::Global => (i64::MIN, i64::MAX),
        }
    }

    /// The window a namespace names, if it names one.
    pub fn from_namespace(ns: &[u8]) -> Option<Window> {
        match ns.len() {
            0 => Some(Window::Global),
            NAMESPACE_BYTES => Some(Window::Time { start: from_ordered(&ns[..8]), end: from_ordered(&ns[8..]) }),
            _ => None,
        }
    }

    /// Whether two time windows overlap or touch (Flink's `intersects`:
    /// sessions exactly a gap apart merge).
    fn intersects(self, other: Window) -> bool {
        match (self, other) {
            (Window::Time { start: a, end: b }, Window::Time { start: c, end: d }) => a <= d && b >= c,
            _ => false,
        }
    }

    /// The smallest window covering both.
    fn cover(self, other: Window) -> Window {
        match (self, other) {
            (Window::Time { start: a, end: b }, Window::Time { start: c, end: d }) => {
                Window::Time { start: a.min(c), end: b.max(d) }
            }
            _ => Window::Global,
        }
    }

    fn start(self) -> i64 {
        match self {
            Window::Time { start, .. } => start,
            Window::Global => i64::MIN,
        }
    }
}

/// Flink's `TimeWindow.getWindowStartWithOffset`.
fn window_start(timestamp: i64, offset: i64, size: i64) -> i64 {
    let remainder = (timestamp - offset).rem_euclid(size);
    timestamp - remainder
}

/// Which windows an element belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Assigner {
    Tumbling { size: i64, offset: i64, event_time: bool },
    Sliding { size: i64, slide: i64, offset: i64, event_time: bool },
    Session { gap: i64, event_time: bool },
    Global,
}

impl Assigner {
    /// The assigner of a spec (count windows are global windows).
    pub fn of(spec: &WindowSpec) -> Assigner {
        let event = |t: &TimeKind| *t == TimeKind::Event;
        match spec {
            WindowSpec::Tumbling { size_ms, offset_ms, time } => {
                Assigner::Tumbling { size: *size_ms, offset: *offset_ms, event_time: event(time) }
            }
            WindowSpec::Sliding { size_ms, slide_ms, offset_ms, time } => {
                Assigner::Sliding { size: *size_ms, slide: *slide_ms, offset: *offset_ms, event_time: event(time) }
            }
            // (A dynamic gap is set per element by the window operator.)
            WindowSpec::Session { gap_ms, time, .. } => {
                Assigner::Session { gap: gap_ms.unwrap_or(1), event_time: event(time) }
            }
            WindowSpec::Global | WindowSpec::Count { .. } => Assigner::Global,
        }
    }

    /// Whether windows follow event time (and so can be late).
    pub fn is_event_time(self) -> bool {
        match self {
            Assigner::Tumbling { event_time, .. }
            | Assigner::Sliding { event_time, .. }
            | Assigner::Session { event_time, .. } => event_time,
            Assigner::Global => false,
        }
    }

    /// Whether windows merge (sessions).
    pub fn is_merging(self) -> bool {
        matches!(self, Assigner::Session { .. })
    }

    /// The windows of an element at `timestamp` (event time) arriving at
    /// `now` (processing time), newest first as Flink lists them.
    pub fn assign(self, timestamp: i64, now: i64, out: &mut Vec<Window>) {
        out.clear();
        let t = if self.is_event_time() { timestamp } else { now };
        match self {
            Assigner::Tumbling { size, offset, .. } => {
                let start = window_start(t, offset, size);
                out.push(Window::Time { start, end: start.saturating_add(size) });
            }
            Assigner::Sliding { size, slide, offset, .. } => {
                let mut start = window_start(t, offset, slide);
                while start > t.saturating_sub(size) {
                    out.push(Window::Time { start, end: start.saturating_add(size) });
                    start = start.saturating_sub(slide);
                }
            }
            Assigner::Session { gap, .. } => out.push(Window::Time { start: t, end: t.saturating_add(gap) }),
            Assigner::Global => out.push(Window::Global),
        }
    }
}

/// The session windows of one key: each window, and the window whose
/// namespace holds its state (the first window of a merge keeps its
/// namespace, so merging moves no state but the merged-in windows').
/// Flink's `MergingWindowSet`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct MergingSet {
    pub mapping: Vec<(Window, Window)>,
}

/// One merge `add` made: the new window, the windows merged into it
/// (without the element's own window), the state window that keeps the
/// state, and the state windows merged into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Merge {
    pub result: Window,
    pub merged: Vec<Window>,
    pub state_window: Window,
    pub merged_state: Vec<Window>,
}

impl MergingSet {
    /// Decodes the stored form: per window, start and end of it and of
    /// its state window, 32 bytes. `None` when malformed.
    pub fn decode(bytes: &[u8]) -> Option<MergingSet> {
        if !bytes.len().is_multiple_of(32) {
            return None;
        }
        let mapping = bytes
            .chunks_exact(32)
            .map(|c| {
                let w = |b: &[u8]| Window::Time { start: from_ordered(&b[..8]), end: from_ordered(&b[8..16]) };
                (w(&c[..16]), w(&c[16..]))
            })
            .collect();
        Some(MergingSet { mapping })
    }

    /// The stored form.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        for (w, s) in &self.mapping {
            out.extend_from_slice(&w.namespace());
            out.extend_from_slice(&s.namespace());
        }
    }

    /// The state window of `window`, if it is a current window.
    pub fn state_window(&self, window: Window) -> Option<Window> {
        self.mapping.iter().find(|(w, _)| *w == window).map(|(_, s)| *s)
    }

    /// Forgets `window` (its state was cleared).
    pub fn retire(&mut self, window: Window) {
        self.mapping.retain(|(w, _)| *w != window);
    }

    /// Adds an element's window, merging it with the windows it overlaps
    /// or touches: returns the window the element is now in and the
    /// merges to apply to state and triggers, in order (Flink's
    /// `MergingWindowSet.addWindow` with `TimeWindow.mergeWindows`).
    pub fn add(&mut self, new: Window) -> (Window, Vec<Merge>) {
        // A window apart from every other one (the common case: a key's
        // first element, or one after a gap) merges with nothing.
        if !self.mapping.iter().any(|(w, _)| w.intersects(new)) {
            self.mapping.push((new, new));
            return (new, Vec::new());
        }
        let mut windows: Vec<Window> = self.mapping.iter().map(|(w, _)| *w).collect();
        windows.push(new);
        windows.sort_by_key(|w| w.start());
        // Groups of windows that merge, each with its cover.
        let mut groups: Vec<(Window, Vec<Window>)> = Vec::new();
        for w in windows {
            match groups.last_mut() {
                Some((cover, members)) if cover.intersects(w) => {
                    *cover = cover.cover(w);
                    if !members.contains(&w) {
                        members.push(w);
                    }
                }
                _ => groups.push((w, vec![w])),
            }
        }
        let mut result = new;
        let mut merged_new = false;
        let mut merges = Vec::new();
        let mut any = false;
        for (cover, mut members) in groups.into_iter().filter(|(_, m)| m.len() > 1) {
            any = true;
            if let Some(i) = members.iter().position(|w| *w == new) {
                members.remove(i);
                merged_new = true;
                result = cover;
            }
            let state_window =
                self.state_window(members[0]).expect("invariant: merged windows other than the new one are mapped");
            let mut merged_state = Vec::new();
            for m in &members {
                if let Some(i) = self.mapping.iter().position(|(w, _)| w == m) {
                    merged_state.push(self.mapping.remove(i).1);
                }
            }
            self.mapping.push((cover, state_window));
            merged_state.retain(|s| *s != state_window);
            if !(members.contains(&cover) && members.len() == 1) {
                merges.push(Merge { result: cover, merged: members, state_window, merged_state });
            }
        }
        if !any || (result == new && !merged_new) {
            match self.mapping.iter_mut().find(|(w, _)| *w == result) {
                Some(entry) => entry.1 = result,
                None => self.mapping.push((result, result)),
            }
        }
        (result, merges)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(start: i64, end: i64) -> Window {
        Window::Time { start, end }
    }

    #[test]
    fn tumbling_and_sliding_windows_start_at_epoch_aligned_multiples() {
        let mut out = Vec::new();
        Assigner::Tumbling { size: 5000, offset: 0, event_time: true }.assign(12_345, 0, &mut out);
        assert_eq!(out, vec![w(10_000, 15_000)]);
        Assigner::Tumbling { size: 5000, offset: 0, event_time: true }.assign(-1, 0, &mut out);
        assert_eq!(out, vec![w(-5000, 0)], "negative timestamps round down");
        Assigner::Tumbling { size: 5000, offset: 1000, event_time: true }.assign(500, 0, &mut out);
        assert_eq!(out, vec![w(-4000, 1000)]);
        Assigner::Sliding { size: 10_000, slide: 5000, offset: 0, event_time: true }.assign(12_345, 0, &mut out);
        assert_eq!(out, vec![w(10_000, 20_000), w(5000, 15_000)], "newest first");
        Assigner::Tumbling { size: 1000, offset: 0, event_time: false }.assign(5, 2_500, &mut out);
        assert_eq!(out, vec![w(2000, 3000)], "processing time assigns by the clock");
    }

    #[test]
    fn namespaces_round_trip_and_sort_as_windows() {
        for win in [w(-5, 3), w(0, 1), w(i64::MIN, i64::MAX), Window::Global] {
            let ns = win.namespace();
            assert_eq!(Window::from_namespace(&ns[..win.namespace_len()]), Some(win));
        }
        assert!(w(-5, 0).namespace() < w(3, 4).namespace());
        assert_eq!(Window::from_namespace(b"abc"), None);
        assert_eq!(w(0, 5).max_timestamp(), 4);
    }

    #[test]
    fn sessions_merge_when_they_overlap_or_touch_and_keep_the_first_state_window() {
        let mut set = MergingSet::default();
        assert_eq!(set.add(w(0, 3)), (w(0, 3), vec![]));
        assert_eq!(set.add(w(10, 13)), (w(10, 13), vec![]));
        // Touching [0,3) and [3,6): one session.
        let (win, merges) = set.add(w(3, 6));
        assert_eq!(win, w(0, 6));
        assert_eq!(
            merges,
            vec![Merge { result: w(0, 6), merged: vec![w(0, 3)], state_window: w(0, 3), merged_state: vec![] }]
        );
        assert_eq!(set.state_window(w(0, 6)), Some(w(0, 3)));
        // [5,11) bridges both sessions: the earlier's state window stays.
        let (win, merges) = set.add(w(5, 11));
        assert_eq!(win, w(0, 13));
        assert_eq!(merges[0].merged, vec![w(0, 6), w(10, 13)]);
        assert_eq!(merges[0].state_window, w(0, 3));
        assert_eq!(merges[0].merged_state, vec![w(10, 13)]);
        assert_eq!(set.mapping, vec![(w(0, 13), w(0, 3))]);
        // Inside an existing session: nothing merges.
        assert_eq!(set.add(w(1, 4)), (w(0, 13), vec![]));
        let mut bytes = Vec::new();
        set.encode(&mut bytes);
        assert_eq!(MergingSet::decode(&bytes), Some(set.clone()));
        assert_eq!(MergingSet::decode(&bytes[1..]), None);
        set.retire(w(0, 13));
        assert!(set.mapping.is_empty());
    }
}
