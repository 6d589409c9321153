//! [`ProcessDriver`]: one keyed `process` operator subtask driven by hand,
//! through the same operator a job runs, so tests can control what a job
//! cannot: processing time between batches, and the state backend
//! (reading back and dropping key groups) between calls.

use crate::TaskError;
use crate::operators::{Emit, Fail, Operator, ProcessOp};
use weir_core::Batch;
use weir_core::keys::key_group;
use weir_state::{Clock, KeyedStateBackend};
use weir_wasm::{Component, Limits, ProcessInstance, SideEvent, WasmRuntime};

/// Emitted events as (key, value) pairs.
pub type Emitted = Vec<(Vec<u8>, Vec<u8>)>;

/// A keyed process operator subtask, driven by hand.
pub struct ProcessDriver {
    op: ProcessOp,
    max_parallelism: u32,
    clock: Clock,
}

/// Collects what the operator emits.
#[derive(Default)]
struct Collect(Emitted);

impl Emit for Collect {
    fn emit(&mut self, batch: Batch) -> Result<(), TaskError> {
        for i in 0..batch.len() {
            self.0.push((batch.key(i).to_vec(), batch.value(i).to_vec()));
        }
        Ok(())
    }

    fn side(&mut self, _: Vec<SideEvent>) -> Result<(), TaskError> {
        Ok(())
    }
}

fn message(f: Fail) -> String {
    match f {
        Fail::Op(e) => e.message,
        Fail::Downstream(e) => e.to_string(),
    }
}

impl ProcessDriver {
    /// Instantiates `component` as operator `name` with `config` (JSON),
    /// over `backend`, reading processing time from `clock`.
    pub fn new(
        rt: &WasmRuntime,
        component: &Component,
        config: &str,
        backend: Box<dyn KeyedStateBackend>,
        clock: Clock,
        max_parallelism: u32,
    ) -> Result<Self, String> {
        let limits = Limits::default();
        let instance = ProcessInstance::new(rt, component, "driven", config, limits, backend, clock.clone())
            .map_err(|e| e.to_string())?;
        Ok(ProcessDriver { op: ProcessOp::new(instance, limits, clock.clone()), max_parallelism, clock })
    }

    /// Processes `(key, value, timestamp)` events as one batch, keyed as the
    /// router keys them; returns the main output as (key, value) pairs.
    pub fn process(&mut self, events: &[(&[u8], &[u8], i64)]) -> Result<Emitted, String> {
        let mut batch = Batch::new();
        for (i, (k, v, ts)) in events.iter().enumerate() {
            batch.push_keyed(k, key_group(k, self.max_parallelism) as u16, v, *ts, i as u64);
        }
        let mut out = Collect::default();
        self.op.process(batch, &mut out).map_err(message)?;
        Ok(out.0)
    }

    /// Processes events as [`ProcessDriver::process`] does, with their
    /// state and timers in `namespace` (as a window operator would).
    pub fn process_in(&mut self, namespace: &[u8], events: &[(&[u8], &[u8], i64)]) -> Result<Emitted, String> {
        self.op.set_namespace(namespace);
        let out = self.process(events);
        self.op.set_namespace(&[]);
        out
    }

    /// Advances the watermark to `watermark`, firing due event-time timers.
    pub fn advance_watermark(&mut self, watermark: i64) -> Result<Emitted, String> {
        let mut out = Collect::default();
        self.op.process(Batch::watermark(watermark), &mut out).map_err(message)?;
        Ok(out.0)
    }

    /// Runs the operator's processing-time work at the clock's time now
    /// (due timers, the sweep of expired state).
    pub fn tick(&mut self) -> Result<Emitted, String> {
        let mut out = Collect::default();
        self.op.on_processing_time(self.clock.now(), &mut out).map_err(message)?;
        Ok(out.0)
    }

    /// The subtask's state backend.
    pub fn backend(&mut self) -> &mut dyn KeyedStateBackend {
        self.op.backend()
    }
}
