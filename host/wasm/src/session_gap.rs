//! Dynamic session gaps: one Wasm call per input batch of a session
//! window operator gives every element's gap.

use crate::bindings::session_gap as sb;
use crate::engine::{Component, Pre, WasmRuntime};
use crate::instance::{CallError, budget_ticks, call_error, start_instance};
use crate::sandbox::{HostState, Limits};
use wasmtime::Store;
use weir_core::Batch;

/// An instance of a `session-gap` component.
pub struct SessionGapInstance {
    store: Store<HostState>,
    bindings: sb::SessionGap,
    limits: Limits,
    gaps: Vec<Result<i64, String>>,
}

impl SessionGapInstance {
    /// The operator's own metrics, as it reports them.
    pub fn user_metrics(&self) -> std::sync::Arc<crate::UserMetrics> {
        self.store.data().user_metrics.clone()
    }

    /// Instantiates `component` for `operator` and calls `init` with
    /// `config` (JSON).
    pub fn new(
        rt: &WasmRuntime,
        component: &Component,
        operator: &str,
        config: &str,
        limits: Limits,
    ) -> Result<Self, CallError> {
        let Pre::SessionGap(pre) = &component.pre else {
            return Err(CallError::Init(format!("{} is not a session-gap component", component.path.display())));
        };
        let (store, bindings, ()) = start_instance(
            rt,
            operator,
            limits,
            |s| pre.instantiate(s),
            |b: &sb::SessionGap, s| b.weir_operator_session_gap_extractor().call_init(s, config),
        )?;
        Ok(SessionGapInstance { store, bindings, limits, gaps: Vec::new() })
    }

    /// The gap of each element of `elements` (one per element, checked),
    /// or why the component gave it none. The caller checks that gaps are
    /// positive.
    pub fn gaps(&mut self, elements: &Batch) -> Result<&[Result<i64, String>], CallError> {
        self.store.set_epoch_deadline(budget_ticks(self.limits));
        // (Owned: bindgen's borrowing mode does not compile for this world,
        // as for the evictor's; one copy per batch.)
        let batch = sb::weir::operator::types::Batch {
            data: elements.data().to_vec(),
            offsets: elements.offsets().to_vec(),
            timestamps: elements.timestamps().to_vec(),
        };
        let r = self.bindings.weir_operator_session_gap_extractor().call_gaps(&mut self.store, &batch);
        let gaps = r
            .map_err(|e| call_error(&self.store, e, self.limits))?
            .map_err(|message| CallError::Operator { index: 0, message })?;
        if gaps.len() != elements.len() {
            return Err(CallError::Protocol(format!(
                "gaps returned {} gaps for {} elements; return one per element",
                gaps.len(),
                elements.len()
            )));
        }
        self.gaps = gaps;
        Ok(&self.gaps)
    }
}
