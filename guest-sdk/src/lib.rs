//! # weir-sdk — write Weir operators in Rust
//!
//! This crate owns the operator author's side of the `weir:operator` WIT
//! contract: the [`Map`] and [`KeyedProcessFunction`] traits, the export
//! macros that turn an implementation into a WebAssembly component, typed
//! keyed state ([`ValueState`], [`ListState`], [`MapState`],
//! [`ReducingState`], [`AggregatingState`]; values in a compact binary
//! codec, [`Binary`], or in [`Json`]) and a native
//! test harness ([`testing`]) that runs an operator without Wasm. It knows
//! nothing about the host's runtime: batches, key tables and state cells are
//! decoded here and nowhere else on the guest side.
//!
//! A map operator is about ten lines:
//!
//! ```
//! use weir_sdk::{Event, Map, Output, Result};
//!
//! #[derive(Default)]
//! struct Upper;
//!
//! impl Map for Upper {
//!     fn map(&mut self, event: &Event<'_>, out: &mut Output) -> Result<()> {
//!         let line: String = event.json()?;
//!         out.emit_json(event.key, &line.to_uppercase(), event.timestamp)
//!     }
//! }
//! // In the operator crate: weir_sdk::export_map!(Upper);
//!
//! let mut h = weir_sdk::testing::MapHarness::new(Upper).unwrap();
//! let out = h.map_json(b"", &"hi", Some(7)).unwrap();
//! assert_eq!(out[0].json::<String>().unwrap(), "HI");
//! ```
//!
//! Values are JSON by default: [`Event::json`] and [`Output::emit_json`] use
//! serde. Raw bytes are always available through [`Event::value`] and
//! [`Output::emit`] for operators that bring their own encoding.
#![warn(missing_docs)]

extern crate self as weir_sdk;

mod event;
mod evictor;
pub mod metrics;
mod operator_state;
mod session_gap;
mod state;
pub mod testing;
mod timers;
mod trigger;
#[doc(hidden)]
pub mod window_function;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod __wasm;

pub use event::{Event, Output};
pub use evictor::{Evictor, EvictorContext, Window};
pub use operator_state::{CheckpointedFunction, OperatorState, Redistribution};
pub use serde_json;
pub use session_gap::SessionGap;
pub use trigger::{MergedWindow, Trigger, TriggerContext, TriggerResult};
pub use window_function::{ProcessWindowFunction, ReduceFunction, WindowAggregateFunction, WindowContext};

/// Log levels for [`log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Very detailed.
    Trace,
    /// For debugging.
    Debug,
    /// Normal operation.
    Info,
    /// Something looks wrong.
    Warn,
    /// Something failed.
    Error,
}

/// Writes a line to the task's log, tagged with the operator and subtask
/// (natively, in tests: to stderr).
///
/// ```
/// weir_sdk::log(weir_sdk::Level::Info, "opened");
/// ```
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        use __wasm::map_bindings::weir::operator::{host, types::Level as L};
        let level = match level {
            Level::Trace => L::Trace,
            Level::Debug => L::Debug,
            Level::Info => L::Info,
            Level::Warn => L::Warn,
            Level::Error => L::Error,
        };
        host::log(level, message);
    }
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}
pub use state::{
    AggregateFunction, AggregatingState, Binary, Codec, CodecKind, Context, Json, ListState, MapState, OpenContext,
    ReducingState, StateTtl, TimeDomain, TtlUpdate, ValueState,
};

/// The error an operator returns. The host shows its message together with
/// the operator id, the subtask and the offset of the record being
/// processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Error { message: message.into() }
    }

    /// The message shown to the user.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::new(format!("JSON: {e}"))
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error { message }
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::new(message)
    }
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A stateless operator: map, filter or flat-map.
///
/// `map` is called once per input event and may emit any number of events
/// (none filters the event out). An emitted event may carry a new key.
///
/// With a `dead-letter:` output in the spec, a batch in which `map`
/// returned an error for one event is sent again without that event (its
/// earlier events once more): give the same output for the same input,
/// and keep nothing between events that a second pass would break (a
/// de-duplication cache, a sequence number).
pub trait Map: 'static {
    /// Called once per instance before any event, with the operator's
    /// `config` from the spec (JSON `null` when the spec has none).
    fn open(&mut self, config: &serde_json::Value) -> Result<()> {
        let _ = config;
        Ok(())
    }

    /// Maps one event.
    fn map(&mut self, event: &Event<'_>, out: &mut Output) -> Result<()>;
}

/// A keyed process function, after Flink's `KeyedProcessFunction`.
///
/// Events arrive grouped by key; state handles declared in `open` read and
/// write the state of the current key; timers fire per key.
pub trait KeyedProcessFunction: 'static {
    /// Declares state (see [`OpenContext`]) and reads the operator's config.
    fn open(&mut self, ctx: &mut OpenContext) -> Result<()>;

    /// Processes one event of the current key.
    fn process(&mut self, event: &Event<'_>, ctx: &mut Context<'_>, out: &mut Output) -> Result<()>;

    /// Called when a timer of the current key fires. `ctx.timestamp()` is
    /// the timer's timestamp.
    fn on_timer(&mut self, timestamp: i64, domain: TimeDomain, ctx: &mut Context<'_>, out: &mut Output) -> Result<()> {
        let _ = (timestamp, domain, ctx, out);
        Ok(())
    }
}

/// Exports an [`Evictor`] implementation as the component's `evictor`
/// world. The type must implement `Default`. On native targets (tests) it
/// expands to nothing.
#[cfg(target_arch = "wasm32")]
#[macro_export]
macro_rules! export_evictor {
    ($ty:ty) => {
        #[doc(hidden)]
        pub struct __WeirEvictorExport;
        impl $crate::__wasm::evictor_bindings::exports::weir::operator::window_evictor::Guest for __WeirEvictorExport {
            fn init(config: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                $crate::__wasm::evictor_init::<$ty>(config)
            }
            fn evict(
                window: $crate::__wasm::evictor_bindings::exports::weir::operator::window_evictor::Window,
                elements: $crate::__wasm::evictor_bindings::weir::operator::types::Batch,
                before: bool,
                watermark: i64,
                processing_time: i64,
            ) -> ::std::result::Result<::std::vec::Vec<bool>, ::std::string::String> {
                $crate::__wasm::evictor_evict(window, elements, before, watermark, processing_time)
            }
        }
        $crate::__wasm::evictor_bindings::__export_evictor_world!(__WeirEvictorExport with_types_in $crate::__wasm::evictor_bindings);
    };
}

/// Exports an [`Evictor`] (native targets: nothing to export).
#[cfg(not(target_arch = "wasm32"))]
#[macro_export]
macro_rules! export_evictor {
    ($ty:ty) => {
        const _: fn() = || {
            fn check<T: $crate::Evictor + ::std::default::Default>() {}
            check::<$ty>();
        };
    };
}

/// Exports a window function as the component's `function` world: an
/// [`WindowAggregateFunction`] (`export_window_function!(aggregate T)`), a
/// [`ReduceFunction`] (`reduce T`) or a [`ProcessWindowFunction`]
/// (`process T`). The type must implement `Default`. On native targets
/// (tests) it expands to nothing.
#[cfg(target_arch = "wasm32")]
#[macro_export]
macro_rules! export_window_function {
    (aggregate $ty:ty) => {
        $crate::export_window_function!(@world $crate::window_function::Aggregating::<$ty>);
    };
    (reduce $ty:ty) => {
        $crate::export_window_function!(@world $crate::window_function::Reducing::<$ty>);
    };
    (process $ty:ty) => {
        $crate::export_window_function!(@world $crate::window_function::Processing::<$ty>);
    };
    (@world $wrapped:ty) => {
        #[doc(hidden)]
        pub struct __WeirFunctionExport;
        impl $crate::__wasm::function_bindings::exports::weir::operator::window_function::Guest for __WeirFunctionExport {
            fn init(
                config: ::std::string::String,
            ) -> ::std::result::Result<
                $crate::__wasm::function_bindings::exports::weir::operator::window_function::FunctionInfo,
                ::std::string::String,
            > {
                $crate::__wasm::function_init(::std::boxed::Box::new(<$wrapped>::default()), config)
            }
            fn run(
                actions: ::std::vec::Vec<$crate::__wasm::function_bindings::exports::weir::operator::window_function::Action>,
                table: $crate::__wasm::function_bindings::exports::weir::operator::window_function::FunctionTable,
                elements: $crate::__wasm::function_bindings::weir::operator::types::Batch,
            ) -> ::std::result::Result<
                $crate::__wasm::function_bindings::exports::weir::operator::window_function::FunctionResult,
                ::std::string::String,
            > {
                $crate::__wasm::function_run(actions, table, elements)
            }
        }
        $crate::__wasm::function_bindings::__export_function_world!(__WeirFunctionExport with_types_in $crate::__wasm::function_bindings);
    };
}

/// Exports a window function (native targets: nothing to export).
#[cfg(not(target_arch = "wasm32"))]
#[macro_export]
macro_rules! export_window_function {
    (aggregate $ty:ty) => {
        const _: fn() = || {
            fn check<T: $crate::WindowAggregateFunction + ::std::default::Default>() {}
            check::<$ty>();
        };
    };
    (reduce $ty:ty) => {
        const _: fn() = || {
            fn check<T: $crate::ReduceFunction + ::std::default::Default>() {}
            check::<$ty>();
        };
    };
    (process $ty:ty) => {
        const _: fn() = || {
            fn check<T: $crate::ProcessWindowFunction + ::std::default::Default>() {}
            check::<$ty>();
        };
    };
}

/// Exports a [`SessionGap`] implementation as the component's
/// `session-gap` world. The type must implement `Default`. On native
/// targets (tests) it expands to nothing.
#[cfg(target_arch = "wasm32")]
#[macro_export]
macro_rules! export_session_gap {
    ($ty:ty) => {
        #[doc(hidden)]
        pub struct __WeirSessionGapExport;
        impl $crate::__wasm::session_gap_bindings::exports::weir::operator::session_gap_extractor::Guest
            for __WeirSessionGapExport
        {
            fn init(config: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                $crate::__wasm::session_gap_init::<$ty>(config)
            }
            fn gaps(
                elements: $crate::__wasm::session_gap_bindings::weir::operator::types::Batch,
            ) -> ::std::result::Result<
                ::std::vec::Vec<::std::result::Result<i64, ::std::string::String>>,
                ::std::string::String,
            > {
                $crate::__wasm::session_gap_gaps(elements)
            }
        }
        $crate::__wasm::session_gap_bindings::__export_session_gap_world!(__WeirSessionGapExport with_types_in $crate::__wasm::session_gap_bindings);
    };
}

/// Exports a [`SessionGap`] (native targets: nothing to export).
#[cfg(not(target_arch = "wasm32"))]
#[macro_export]
macro_rules! export_session_gap {
    ($ty:ty) => {
        const _: fn() = || {
            fn check<T: $crate::SessionGap + ::std::default::Default>() {}
            check::<$ty>();
        };
    };
}

/// Exports a [`Trigger`] implementation as the component's `trigger`
/// world. The type must implement `Default`. On native targets (tests) it
/// expands to nothing.
#[cfg(target_arch = "wasm32")]
#[macro_export]
macro_rules! export_trigger {
    ($ty:ty) => {
        #[doc(hidden)]
        pub struct __WeirTriggerExport;
        impl $crate::__wasm::trigger_bindings::exports::weir::operator::window_trigger::Guest for __WeirTriggerExport {
            fn init(config: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                $crate::__wasm::trigger_init::<$ty>(config)
            }
            fn run(
                actions: ::std::vec::Vec<$crate::__wasm::trigger_bindings::exports::weir::operator::window_trigger::Action>,
                table: $crate::__wasm::trigger_bindings::exports::weir::operator::window_trigger::TriggerTable,
                watermark: i64,
                processing_time: i64,
            ) -> ::std::result::Result<
                $crate::__wasm::trigger_bindings::exports::weir::operator::window_trigger::TriggerResult,
                ::std::string::String,
            > {
                $crate::__wasm::trigger_run(actions, table, watermark, processing_time)
            }
        }
        $crate::__wasm::trigger_bindings::__export_trigger_world!(__WeirTriggerExport with_types_in $crate::__wasm::trigger_bindings);
    };
}

/// Exports a [`Trigger`] (native targets: nothing to export).
#[cfg(not(target_arch = "wasm32"))]
#[macro_export]
macro_rules! export_trigger {
    ($ty:ty) => {
        const _: fn() = || {
            fn check<T: $crate::Trigger + ::std::default::Default>() {}
            check::<$ty>();
        };
    };
}

/// Exports a [`Map`] implementation as the component's `stateful-map`
/// world (the `map` world and operator state): `export_map!(T)`, or
/// `export_map!(checkpointed T)` for a `T` that also implements
/// [`CheckpointedFunction`] (without it the operator keeps no lists). The
/// type must implement `Default`; the host calls `open` once per
/// instance. On native targets (tests) it expands to nothing.
#[cfg(target_arch = "wasm32")]
#[macro_export]
macro_rules! export_map {
    (checkpointed $ty:ty) => {
        $crate::export_map!(@mapper $ty, map_init_checkpointed);
        $crate::export_operator_state!(__WeirMapExport, map_bindings);
        $crate::__wasm::map_bindings::__export_map_world!(__WeirMapExport with_types_in $crate::__wasm::map_bindings);
    };
    ($ty:ty) => {
        $crate::export_map!(@mapper $ty, map_init);
        $crate::export_operator_state!(__WeirMapExport, map_bindings);
        $crate::__wasm::map_bindings::__export_map_world!(__WeirMapExport with_types_in $crate::__wasm::map_bindings);
    };
    (@mapper $ty:ty, $init:ident) => {
        #[doc(hidden)]
        pub struct __WeirMapExport;
        impl $crate::__wasm::map_bindings::exports::weir::operator::mapper::Guest for __WeirMapExport {
            fn init(config: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                $crate::__wasm::$init::<$ty>(config)
            }
            fn map_batch(
                input: $crate::__wasm::map_bindings::weir::operator::types::Batch,
            ) -> ::std::result::Result<
                $crate::__wasm::map_bindings::weir::operator::types::Output,
                $crate::__wasm::map_bindings::weir::operator::types::OperatorError,
            > {
                $crate::__wasm::map_batch(input)
            }
        }
    };
}

/// The operator-state functions of a map or process world (used by the
/// export macros; without `checkpointed` they keep no lists).
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
#[macro_export]
macro_rules! export_operator_state {
    ($export:ident, $bindings:ident) => {
        impl $crate::__wasm::$bindings::Guest for $export {
            fn restore_state(
                lists: ::std::vec::Vec<$crate::__wasm::map_bindings::weir::operator::operator_state::OperatorList>,
                restored: bool,
            ) -> ::std::result::Result<(), ::std::string::String> {
                $crate::__wasm::restore_state(lists, restored)
            }
            fn snapshot_state(
                checkpoint: u64,
            ) -> ::std::result::Result<
                ::std::vec::Vec<$crate::__wasm::map_bindings::weir::operator::operator_state::OperatorList>,
                ::std::string::String,
            > {
                $crate::__wasm::snapshot_state(checkpoint)
            }
        }
    };
}

/// Exports a [`KeyedProcessFunction`] implementation as the component's
/// `stateful-process` world: `export_process!(T)`, or
/// `export_process!(checkpointed T)` for a `T` that also implements
/// [`CheckpointedFunction`]. The type must implement `Default`. On native
/// targets (tests) it expands to nothing.
#[cfg(target_arch = "wasm32")]
#[macro_export]
macro_rules! export_process {
    (checkpointed $ty:ty) => {
        $crate::export_process!(@process $ty, process_init_checkpointed);
        $crate::export_operator_state!(__WeirProcessExport, process_bindings);
        $crate::__wasm::process_bindings::__export_process_world!(__WeirProcessExport with_types_in $crate::__wasm::process_bindings);
    };
    ($ty:ty) => {
        $crate::export_process!(@process $ty, process_init);
        $crate::export_operator_state!(__WeirProcessExport, process_bindings);
        $crate::__wasm::process_bindings::__export_process_world!(__WeirProcessExport with_types_in $crate::__wasm::process_bindings);
    };
    (@process $ty:ty, $init:ident) => {
        #[doc(hidden)]
        pub struct __WeirProcessExport;
        impl $crate::__wasm::process_bindings::exports::weir::operator::keyed_process::Guest
            for __WeirProcessExport
        {
            fn init(
                config: ::std::string::String,
            ) -> ::std::result::Result<
                $crate::__wasm::process_bindings::exports::weir::operator::keyed_process::StateDeclaration,
                ::std::string::String,
            > {
                $crate::__wasm::$init::<$ty>(config)
            }
            fn process_batch(
                input: $crate::__wasm::process_bindings::weir::operator::types::Batch,
                key_slots: ::std::vec::Vec<u32>,
                marks: ::std::vec::Vec<$crate::__wasm::process_bindings::weir::operator::types::Mark>,
                table: $crate::__wasm::process_bindings::exports::weir::operator::keyed_process::KeyTable,
                ctx: $crate::__wasm::process_bindings::exports::weir::operator::keyed_process::CallContext,
            ) -> ::std::result::Result<
                $crate::__wasm::process_bindings::exports::weir::operator::keyed_process::ProcessResult,
                $crate::__wasm::process_bindings::weir::operator::types::OperatorError,
            > {
                $crate::__wasm::process_batch(input, key_slots, marks, table, ctx)
            }
            fn on_timers(
                timers: ::std::vec::Vec<$crate::__wasm::process_bindings::exports::weir::operator::keyed_process::FiredTimer>,
                table: $crate::__wasm::process_bindings::exports::weir::operator::keyed_process::KeyTable,
                ctx: $crate::__wasm::process_bindings::exports::weir::operator::keyed_process::CallContext,
            ) -> ::std::result::Result<
                $crate::__wasm::process_bindings::exports::weir::operator::keyed_process::ProcessResult,
                $crate::__wasm::process_bindings::weir::operator::types::OperatorError,
            > {
                $crate::__wasm::on_timers(timers, table, ctx)
            }
        }
    };
}

/// Exports a [`Map`] implementation as the component's `map` world
/// (native build: nothing to export; the operator runs in tests through
/// [`testing::MapHarness`]).
#[cfg(not(target_arch = "wasm32"))]
#[macro_export]
macro_rules! export_map {
    (checkpointed $ty:ty) => {
        const _: fn() = || {
            fn check<T: $crate::Map + $crate::CheckpointedFunction + ::std::default::Default>() {}
            check::<$ty>();
        };
    };
    ($ty:ty) => {
        const _: fn() = || {
            fn check<T: $crate::Map + ::std::default::Default>() {}
            check::<$ty>();
        };
    };
}

/// Exports a [`KeyedProcessFunction`] implementation as the component's
/// `process` world (native build: nothing to export; the operator runs in
/// tests through [`testing::ProcessHarness`]).
#[cfg(not(target_arch = "wasm32"))]
#[macro_export]
macro_rules! export_process {
    (checkpointed $ty:ty) => {
        const _: fn() = || {
            fn check<T: $crate::KeyedProcessFunction + $crate::CheckpointedFunction + ::std::default::Default>() {}
            check::<$ty>();
        };
    };
    ($ty:ty) => {
        const _: fn() = || {
            fn check<T: $crate::KeyedProcessFunction + ::std::default::Default>() {}
            check::<$ty>();
        };
    };
}
