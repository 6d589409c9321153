//! Window functions (the `function` world), after Flink's
//! `AggregateFunction`, `ReduceFunction` and `ProcessWindowFunction`.
//!
//! The host hands a function its work in calls of many actions (fold an
//! element into a window's accumulator, merge two, drop one, fire a
//! window); [`run`] plays them against an erased [`Erased`] function,
//! keeping each (key, window)'s accumulator in memory for the call, and
//! returns the outputs and the accumulators that changed.

use crate::{Binary, Codec, Error, Event, Output, Result, Window};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The window a firing is for, and its keyed state.
#[derive(Debug, Clone, Copy)]
pub struct WindowContext<'a> {
    /// The key (empty for `window-all`).
    pub key: &'a [u8],
    /// The window.
    pub window: Window,
    /// Firings of this window before this one (0 the first time; a late
    /// element within the allowed lateness fires a window again).
    pub firing: u32,
    window_state: Option<&'a StateCell>,
    global_state: Option<&'a StateCell>,
}

/// One state value of a call, and whether the call changed it.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct StateCell {
    pub value: std::cell::RefCell<Option<Vec<u8>>>,
    pub dirty: std::cell::Cell<bool>,
}

impl StateCell {
    #[doc(hidden)]
    pub fn new(value: Option<Vec<u8>>) -> StateCell {
        StateCell { value: std::cell::RefCell::new(value), dirty: std::cell::Cell::new(false) }
    }

    fn set(&self, value: Option<&[u8]>) {
        *self.value.borrow_mut() = value.map(<[u8]>::to_vec);
        self.dirty.set(true);
    }
}

impl WindowContext<'_> {
    #[doc(hidden)]
    pub fn new(key: &[u8], window: Window, firing: u32) -> WindowContext<'_> {
        WindowContext { key, window, firing, window_state: None, global_state: None }
    }

    fn cell(&self, global: bool) -> Result<&StateCell> {
        let cell = if global { self.global_state } else { self.window_state };
        cell.ok_or_else(|| {
            Error::new(if global {
                "this window function keeps no keyed state: set `const KEYED_STATE: bool = true` in its trait impl"
            } else {
                "no window state here: session windows have none (as in Flink), and a function keeps keyed state only with `const KEYED_STATE: bool = true`; use the global state"
            })
        })
    }

    /// This window's own state for the key (Flink's `windowState()`): kept
    /// until the window is cleaned up (its end plus the allowed lateness).
    /// Not for session windows, as in Flink.
    pub fn window_state(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.cell(false)?.value.borrow().clone())
    }

    /// Replaces this window's state (`None` removes it).
    pub fn set_window_state(&self, value: Option<&[u8]>) -> Result<()> {
        self.cell(false)?.set(value);
        Ok(())
    }

    /// The key's state across all its windows (Flink's `globalState()`).
    pub fn global_state(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.cell(true)?.value.borrow().clone())
    }

    /// Replaces the key's global state (`None` removes it).
    pub fn set_global_state(&self, value: Option<&[u8]>) -> Result<()> {
        self.cell(true)?.set(value);
        Ok(())
    }
}

/// Aggregates a window's elements incrementally (Flink's
/// `AggregateFunction`, with the window function of
/// `aggregate(agg, windowFunction)` folded into `get_result`): one
/// accumulator per window, kept by the host in its keyed state backend in
/// the SDK's [`Binary`] codec.
pub trait WindowAggregateFunction: 'static {
    /// The accumulator.
    type Acc: Serialize + DeserializeOwned;

    /// Whether firings use [`WindowContext::window_state`] and
    /// [`WindowContext::global_state`] (the host then hands them over).
    const KEYED_STATE: bool = false;

    /// Called once per instance with the function's `config` from the spec.
    fn open(&mut self, config: &serde_json::Value) -> Result<()> {
        let _ = config;
        Ok(())
    }

    /// A new, empty accumulator.
    fn create_accumulator(&mut self) -> Self::Acc;

    /// Folds `event` into `acc`.
    fn add(&mut self, event: &Event<'_>, acc: &mut Self::Acc) -> Result<()>;

    /// Merges `other` into `acc` (session windows merge). Functions that do
    /// not implement it cannot be used with session windows.
    fn merge(&mut self, acc: &mut Self::Acc, other: Self::Acc) -> Result<()> {
        let _ = (acc, other);
        Err(Error::new(
            "this aggregate function cannot merge accumulators, and session windows merge; implement `merge`",
        ))
    }

    /// Emits the window's result (any number of events; their keys and
    /// timestamps are set by the host: the window's key and last
    /// millisecond).
    fn get_result(&mut self, acc: &Self::Acc, ctx: &WindowContext<'_>, out: &mut Output) -> Result<()>;
}

/// Reduces a window's elements pairwise (Flink's `ReduceFunction`): the
/// accumulator is the reduction of the values so far, each a `T` decoded
/// from the element's JSON value, and kept as JSON.
pub trait ReduceFunction: 'static {
    /// The values reduced.
    type T: Serialize + DeserializeOwned;

    /// Whether firings use [`WindowContext::window_state`] and
    /// [`WindowContext::global_state`] (the host then hands them over).
    const KEYED_STATE: bool = false;

    /// Called once per instance with the function's `config` from the spec.
    fn open(&mut self, config: &serde_json::Value) -> Result<()> {
        let _ = config;
        Ok(())
    }

    /// Combines two values into one.
    fn reduce(&mut self, a: Self::T, b: Self::T) -> Result<Self::T>;

    /// Emits the window's result; by default the reduced value as JSON.
    fn result(&mut self, value: &Self::T, ctx: &WindowContext<'_>, out: &mut Output) -> Result<()> {
        out.emit_json(ctx.key, value, None)
    }
}

/// Computes over all of a window's elements when it fires (Flink's
/// `ProcessWindowFunction`): the host keeps every element.
pub trait ProcessWindowFunction: 'static {
    /// Whether firings use [`WindowContext::window_state`] and
    /// [`WindowContext::global_state`] (the host then hands them over).
    const KEYED_STATE: bool = false;
    /// Called once per instance with the function's `config` from the spec.
    fn open(&mut self, config: &serde_json::Value) -> Result<()> {
        let _ = config;
        Ok(())
    }

    /// Emits the window's result from its elements (arrival order).
    fn process(&mut self, elements: &[Event<'_>], ctx: &WindowContext<'_>, out: &mut Output) -> Result<()>;
}

/// A window function with its types erased: accumulators as bytes.
#[doc(hidden)]
pub trait Erased {
    /// Whether firings use keyed state.
    fn keyed_state(&self) -> bool;
    /// Opens the function with its config.
    fn open(&mut self, config: &serde_json::Value) -> Result<()>;
    /// Whether the host keeps all elements (process-window).
    fn all_elements(&self) -> bool;
    fn add(&mut self, acc: &mut Option<Vec<u8>>, event: &Event<'_>) -> Result<()>;
    fn merge(&mut self, acc: &mut Option<Vec<u8>>, from: Option<Vec<u8>>) -> Result<()>;
    /// Fires over `acc`, or over `elements` when given.
    fn fire(
        &mut self,
        acc: Option<&[u8]>,
        elements: Option<&[Event<'_>]>,
        ctx: &WindowContext<'_>,
        out: &mut Output,
    ) -> Result<()>;
}

#[doc(hidden)]
#[derive(Default)]
pub struct Aggregating<A>(pub A);
#[doc(hidden)]
#[derive(Default)]
pub struct Reducing<R>(pub R);
#[doc(hidden)]
#[derive(Default)]
pub struct Processing<P>(pub P);

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    Binary::encode(v, &mut out)?;
    Ok(out)
}

impl<A: WindowAggregateFunction> Aggregating<A> {
    fn decode(&mut self, acc: Option<&[u8]>) -> Result<A::Acc> {
        match acc {
            Some(b) => Binary::decode(b),
            None => Ok(self.0.create_accumulator()),
        }
    }
}

impl<A: WindowAggregateFunction> Erased for Aggregating<A> {
    fn keyed_state(&self) -> bool {
        A::KEYED_STATE
    }

    fn open(&mut self, config: &serde_json::Value) -> Result<()> {
        self.0.open(config)
    }

    fn all_elements(&self) -> bool {
        false
    }

    fn add(&mut self, acc: &mut Option<Vec<u8>>, event: &Event<'_>) -> Result<()> {
        let mut a = self.decode(acc.as_deref())?;
        self.0.add(event, &mut a)?;
        *acc = Some(encode(&a)?);
        Ok(())
    }

    fn merge(&mut self, acc: &mut Option<Vec<u8>>, from: Option<Vec<u8>>) -> Result<()> {
        let Some(from) = from else { return Ok(()) };
        if acc.is_none() {
            // Nothing to merge into: the other accumulator moves.
            *acc = Some(from);
            return Ok(());
        }
        let other: A::Acc = Binary::decode(&from)?;
        let mut a = self.decode(acc.as_deref())?;
        self.0.merge(&mut a, other)?;
        *acc = Some(encode(&a)?);
        Ok(())
    }

    fn fire(
        &mut self,
        acc: Option<&[u8]>,
        elements: Option<&[Event<'_>]>,
        ctx: &WindowContext<'_>,
        out: &mut Output,
    ) -> Result<()> {
        let a = match elements {
            Some(elements) => {
                let mut a = self.0.create_accumulator();
                for e in elements {
                    self.0.add(e, &mut a)?;
                }
                a
            }
            None => match acc {
                Some(b) => Binary::decode(b)?,
                None => return Ok(()),
            },
        };
        self.0.get_result(&a, ctx, out)
    }
}

impl<R: ReduceFunction> Erased for Reducing<R> {
    fn keyed_state(&self) -> bool {
        R::KEYED_STATE
    }

    fn open(&mut self, config: &serde_json::Value) -> Result<()> {
        self.0.open(config)
    }

    fn all_elements(&self) -> bool {
        false
    }

    fn add(&mut self, acc: &mut Option<Vec<u8>>, event: &Event<'_>) -> Result<()> {
        let v: R::T = event.json()?;
        let next = match acc.as_deref() {
            Some(b) => self.0.reduce(serde_json::from_slice(b)?, v)?,
            None => v,
        };
        *acc = Some(serde_json::to_vec(&next)?);
        Ok(())
    }

    fn merge(&mut self, acc: &mut Option<Vec<u8>>, from: Option<Vec<u8>>) -> Result<()> {
        let Some(from) = from else { return Ok(()) };
        let next = match acc.as_deref() {
            Some(b) => self.0.reduce(serde_json::from_slice(b)?, serde_json::from_slice(&from)?)?,
            None => serde_json::from_slice(&from)?,
        };
        *acc = Some(serde_json::to_vec(&next)?);
        Ok(())
    }

    fn fire(
        &mut self,
        acc: Option<&[u8]>,
        elements: Option<&[Event<'_>]>,
        ctx: &WindowContext<'_>,
        out: &mut Output,
    ) -> Result<()> {
        let value = match elements {
            Some(elements) => {
                let mut value: Option<R::T> = None;
                for e in elements {
                    let v: R::T = e.json()?;
                    value = Some(match value {
                        Some(a) => self.0.reduce(a, v)?,
                        None => v,
                    });
                }
                value
            }
            None => acc.map(serde_json::from_slice).transpose()?,
        };
        match value {
            Some(v) => self.0.result(&v, ctx, out),
            None => Ok(()),
        }
    }
}

impl<P: ProcessWindowFunction> Erased for Processing<P> {
    fn keyed_state(&self) -> bool {
        P::KEYED_STATE
    }

    fn open(&mut self, config: &serde_json::Value) -> Result<()> {
        self.0.open(config)
    }

    fn all_elements(&self) -> bool {
        true
    }

    fn add(&mut self, _: &mut Option<Vec<u8>>, _: &Event<'_>) -> Result<()> {
        Err(Error::new("a process-window function keeps no accumulator; the host sent an element to fold"))
    }

    fn merge(&mut self, _: &mut Option<Vec<u8>>, _: Option<Vec<u8>>) -> Result<()> {
        Ok(())
    }

    fn fire(
        &mut self,
        _: Option<&[u8]>,
        elements: Option<&[Event<'_>]>,
        ctx: &WindowContext<'_>,
        out: &mut Output,
    ) -> Result<()> {
        // Called for any window that fires, even one its evictor emptied
        // (as Flink's EvictingWindowOperator does).
        match elements {
            Some(elements) => self.0.process(elements, ctx, out),
            None => Ok(()),
        }
    }
}

/// One action of a call.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Add { slot: u32, element: u32 },
    Merge { slot: u32, from: u32 },
    Clear(u32),
    Fire { slot: u32, window: Window, number: u32, elements: Option<(u32, u32)> },
}

/// What a call did: the outputs, their ends per fire, and which slots'
/// accumulators changed (`accs` holds every slot's at the end).
#[doc(hidden)]
pub struct RunOut {
    pub outputs: Output,
    pub output_ends: Vec<u32>,
    pub dirty: Vec<bool>,
}

/// The keyed state of a call's slots: per slot its window's state, and
/// per slot the global state of its key (only the first slot of each key
/// is used: the others point at it).
#[doc(hidden)]
#[derive(Default)]
pub struct States {
    pub window: Vec<StateCell>,
    pub global: Vec<StateCell>,
    /// Per slot, the slot whose global cell holds its key's state.
    pub global_of: Vec<usize>,
}

impl States {
    /// The states of `slots`, from each slot's window and global state.
    pub fn new(
        slots: &crate::trigger::Slots<'_>,
        window: Option<Vec<Option<Vec<u8>>>>,
        global: Vec<Option<Vec<u8>>>,
    ) -> Result<States> {
        let n = slots.windows.len();
        if window.as_ref().is_some_and(|w| w.len() != n) || global.len() != n {
            return Err(Error::new(
                "function table: keyed state for a different number of slots; the host and the SDK disagree on the WIT",
            ));
        }
        let mut first: std::collections::HashMap<&[u8], usize> = std::collections::HashMap::new();
        let mut global_of = Vec::with_capacity(n);
        for s in 0..n {
            let key = slot_key(slots, s)?;
            global_of.push(*first.entry(key).or_insert(s));
        }
        Ok(States {
            window: window.unwrap_or_default().into_iter().map(StateCell::new).collect(),
            global: global.into_iter().map(StateCell::new).collect(),
            global_of,
        })
    }
}

fn slot_key<'a>(slots: &crate::trigger::Slots<'a>, s: usize) -> Result<&'a [u8]> {
    let from = if s == 0 { 0 } else { slots.key_ends[s - 1] as usize };
    slots
        .keys
        .get(from..slots.key_ends[s] as usize)
        .ok_or_else(|| Error::new(format!("function table: slot {s}'s key is out of bounds")))
}

/// Plays `actions` against `f` over `elements`; `accs` holds each slot's
/// accumulator (as the call starts, and as it ends when this returns), and
/// `states` the slots' keyed state when the function keeps any.
#[doc(hidden)]
pub fn run(
    f: &mut dyn Erased,
    actions: &[Action],
    slots: &crate::trigger::Slots<'_>,
    accs: &mut [Option<Vec<u8>>],
    elements: &[Event<'_>],
    states: Option<&States>,
) -> Result<RunOut> {
    let n = slots.windows.len();
    if slots.key_ends.len() != n || accs.len() != n {
        return Err(Error::new(format!(
            "function table is malformed: {n} windows, {} key ends and {} accumulators; the host and the SDK disagree on the WIT",
            slots.key_ends.len(),
            accs.len()
        )));
    }
    let mut out = RunOut { outputs: Output::new(), output_ends: Vec::new(), dirty: vec![false; n] };
    let check = |s: u32| -> Result<usize> {
        let s = s as usize;
        if s < n { Ok(s) } else { Err(Error::new(format!("function action names slot {s} of {n}"))) }
    };
    let element = |i: u32| -> Result<&Event<'_>> {
        elements
            .get(i as usize)
            .ok_or_else(|| Error::new(format!("function action names element {i} of {}", elements.len())))
    };
    for action in actions {
        match action {
            Action::Add { slot, element: i } => {
                let s = check(*slot)?;
                f.add(&mut accs[s], element(*i)?)?;
                out.dirty[s] = true;
            }
            Action::Merge { slot, from } => {
                let (s, m) = (check(*slot)?, check(*from)?);
                if s != m {
                    let from = accs[m].take();
                    f.merge(&mut accs[s], from)?;
                    out.dirty[s] = true;
                    out.dirty[m] = true;
                }
            }
            Action::Clear(slot) => {
                let s = check(*slot)?;
                if accs[s].take().is_some() {
                    out.dirty[s] = true;
                }
            }
            Action::Fire { slot, window, number, elements: range } => {
                let s = check(*slot)?;
                let key = slot_key(slots, s)?;
                let mut ctx = WindowContext::new(key, *window, *number);
                if let Some(st) = states {
                    ctx.window_state = st.window.get(s);
                    ctx.global_state = st.global_of.get(s).and_then(|&g| st.global.get(g));
                }
                let window_elements = match range {
                    Some((first, count)) => Some(
                        elements
                            .get(*first as usize..(*first as usize).saturating_add(*count as usize))
                            .ok_or_else(|| Error::new("function action names elements past the call's"))?,
                    ),
                    None => None,
                };
                f.fire(accs[s].as_deref(), window_elements, &ctx, &mut out.outputs)?;
                out.output_ends.push(out.outputs.len() as u32);
            }
        }
    }
    Ok(out)
}
