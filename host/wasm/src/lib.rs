//! # weir-wasm — operator components on wasmtime
//!
//! Owns everything that touches wasmtime: loading and compiling components
//! (with an on-disk cache of compiled code), checking a component against
//! the world the spec names, the sandbox (WASI with nothing granted, fixed
//! clocks, guest stdout/stderr to the task log, memory limit, time budget
//! per call), and calling operators one batch at a time. The WIT bindings
//! never leave this crate: callers see [`weir_core::Batch`], plain structs
//! and [`CallError`]. It does not know about tasks, channels or the spec.
#![warn(missing_docs)]

mod bindings;
mod engine;
mod instance;
mod operator_state;
mod sandbox;
mod session_gap;
mod trigger;
mod user_metrics;
mod window_function;

pub use engine::{Component, LoadError, PACKAGE, VERSION, WasmRuntime, World};
pub use instance::{
    CallError, CallOutput, EvictorInstance, FiredTimer, KeyTable, MapInstance, ProcessInstance, ProcessOutput,
    SideEvent, StateNames, TimerOp,
};
pub use operator_state::{MAX_LISTS, OperatorList, Redistribution};
pub use sandbox::Limits;
pub use session_gap::SessionGapInstance;
pub use trigger::{TriggerCall, TriggerInstance, TriggerOutput, TriggerTimer};
pub use user_metrics::{MAX_METRICS, UserMetric, UserMetrics};
pub use window_function::{FunctionCall, FunctionInstance, FunctionOutput};
