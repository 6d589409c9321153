//! Aligned windows by slices: tumbling and sliding event-time windows with
//! the default trigger, no evictor and no allowed lateness — the common
//! case — keep one accumulator per (key, slice of `slide` ms) instead of
//! one per (key, window), and one timer per (key group, window end)
//! instead of one per (key, window). A sliding window fires by merging its
//! slices (an element is stored once, not `size / slide` times), after
//! Flink SQL's window slicing. Results are those of the general path.
//!
//! State, besides the accumulator (value 0, namespace = the slice as a
//! window): per (key group, slice), the keys with an accumulator in it
//! (list 1 under the empty key, namespace = the slice). Timers: one per
//! key group at each window's last millisecond, under the empty key and
//! namespace; each firing sets the next while the window after it holds
//! a slice with data.

use super::{ACC, At, WindowOp, items, scope};
use crate::window::Window;
use crate::window::aggregate::Num;
use weir_state::{Scope, TimerDomain};

/// List state id of a slice's keys.
const SLICE_KEYS: u32 = 1;

/// The window geometry of the sliced path.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slices {
    pub size: i64,
    pub slide: i64,
    pub offset: i64,
}

impl Slices {
    fn slice_of(self, t: i64) -> i64 {
        t - (t - self.offset).rem_euclid(self.slide)
    }

    fn slice(start: i64, slide: i64) -> Window {
        Window::Time { start, end: start.saturating_add(slide) }
    }
}

impl WindowOp {
    /// Adds an element to its slice; `false` when every window it falls
    /// in is late.
    pub(super) fn sliced_element(&mut self, s: Slices, at: At<'_>, timestamp: i64, x: Num) -> bool {
        let start = s.slice_of(timestamp);
        // The windows holding the slice end at start + slide ..= start + size;
        // the first not yet fired is the first after the watermark.
        let last_end = start.saturating_add(s.size);
        if last_end - 1 <= self.watermark {
            return false;
        }
        let mut first_end = start.saturating_add(s.slide);
        if first_end - 1 <= self.watermark {
            let behind = (self.watermark + 1 - first_end).div_euclid(s.slide) + 1;
            first_end = first_end.saturating_add(behind.saturating_mul(s.slide));
        }
        let slice = Slices::slice(start, s.slide);
        let ns = slice.namespace();
        let acc_at = scope(at, &ns, slice);
        self.buf.clear();
        let had = self.backend.value_get(ACC, acc_at, &mut self.buf);
        self.function.fold(had.then_some(&self.buf[..]), x, &mut self.acc);
        self.backend.value_put(ACC, acc_at, &self.acc);
        if !had {
            let keys_at = Scope { group: at.group, key: b"", namespace: &ns };
            self.backend.list_add(SLICE_KEYS, keys_at, at.key);
        }
        // Elements come mostly in time order: most find their group's timer
        // already registered by the one before.
        let g = at.group as usize;
        if self.registered.len() <= g {
            self.registered.resize(g + 1, i64::MIN);
        }
        if self.registered[g] != first_end - 1 {
            self.registered[g] = first_end - 1;
            self.backend.timer_register(TimerDomain::EventTime, Scope::key(at.group, b""), first_end - 1);
        }
        true
    }

    /// Fires the windows of key group `group` ending at `time + 1`: each
    /// key with data in one of its slices gets its merged result.
    pub(super) fn sliced_fire(&mut self, s: Slices, group: u16, time: i64) -> Result<(), String> {
        let end = time.saturating_add(1);
        let oldest = end.saturating_sub(s.size);
        let window = Window::Time { start: oldest, end };
        let n = (s.size / s.slide) as usize;
        let mut slices = std::mem::take(&mut self.slice_keys);
        slices.resize_with(n, Default::default);
        for (i, (data, ends)) in slices.iter_mut().enumerate() {
            let ns = Slices::slice(oldest.saturating_add(i as i64 * s.slide), s.slide).namespace();
            data.clear();
            ends.clear();
            self.backend.list_get(SLICE_KEYS, Scope { group, key: b"", namespace: &ns }, data, ends);
        }
        let later_data = slices[1..].iter().any(|(_, ends)| !ends.is_empty());
        if n == 1 {
            // Tumbling: one slice, nothing to merge.
            let ns = Slices::slice(oldest, s.slide).namespace();
            let (data, ends) = &slices[0];
            let mut acc = std::mem::take(&mut self.acc);
            for key in items(data, ends) {
                acc.clear();
                let at = Scope { group, key, namespace: &ns };
                if self.backend.value_take(ACC, at, &mut acc) {
                    self.write_output(At { group, key }, window, window, Some(&acc));
                }
            }
            self.acc = acc;
        } else {
            let mut merged = std::mem::take(&mut self.merged);
            // Sized for every key of every slice: no regrowth while filling.
            let keys: usize = slices.iter().map(|(_, ends)| ends.len()).sum();
            let mut index: std::collections::HashMap<&[u8], usize, foldhash::fast::FixedState> =
                std::collections::HashMap::with_capacity_and_hasher(keys, Default::default());
            let mut order: Vec<&[u8]> = Vec::new();
            for (i, (data, ends)) in slices.iter().enumerate() {
                let ns = Slices::slice(oldest.saturating_add(i as i64 * s.slide), s.slide).namespace();
                for key in items(data, ends) {
                    self.buf.clear();
                    let at = Scope { group, key, namespace: &ns };
                    // No later window holds the oldest slice: its state goes.
                    let found = if i == 0 {
                        self.backend.value_take(ACC, at, &mut self.buf)
                    } else {
                        self.backend.value_get(ACC, at, &mut self.buf)
                    };
                    if !found {
                        continue;
                    }
                    match index.get(key) {
                        Some(&j) => {
                            self.function.merge(&merged[j], &self.buf, &mut self.acc);
                            std::mem::swap(&mut merged[j], &mut self.acc);
                        }
                        None => {
                            let j = order.len();
                            if merged.len() <= j {
                                merged.push(Vec::new());
                            }
                            merged[j].clear();
                            merged[j].extend_from_slice(&self.buf);
                            index.insert(key, j);
                            order.push(key);
                        }
                    }
                }
            }
            for (j, key) in order.iter().enumerate() {
                self.write_output(At { group, key }, window, window, Some(&merged[j]));
            }
            self.merged = merged;
        }
        let ns = Slices::slice(oldest, s.slide).namespace();
        self.backend.list_clear(SLICE_KEYS, Scope { group, key: b"", namespace: &ns });
        self.slice_keys = slices;
        if later_data {
            self.backend.timer_register(TimerDomain::EventTime, Scope::key(group, b""), time.saturating_add(s.slide));
        }
        Ok(())
    }
}
