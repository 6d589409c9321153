//! The pipeline spec: YAML in, a validated [`Spec`] out.
//!
//! Parsing is strict (unknown keys and wrong types are errors that name
//! file:line:column); validation then checks the graph (ids, inputs,
//! parallelism, what each source type needs). Relative paths resolve
//! against the spec's folder. The rest of Weir trusts a `Spec`.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

mod checkpoints;
mod window;
pub use checkpoints::{CheckpointMode, CheckpointSpec, RestartSpec};
pub use window::{AggregateKind, ComponentSpec, EvictorSpec, TimeKind, TriggerSpec, WindowFunctionSpec, WindowSpec};

/// Default number of events a source puts in one batch.
pub const DEFAULT_BATCH_SIZE: usize = 1024;

/// A spec that could not be used: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", file.display(), location.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
pub struct SpecError {
    /// The spec file.
    pub file: PathBuf,
    /// Line and column (1-based), when known.
    pub location: Option<(usize, usize)>,
    /// What is wrong and what to do.
    pub message: String,
}

/// A pipeline: sources, operators and sinks connected by `input` names.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Spec {
    /// The job's name (defaults to the spec file's folder name).
    #[serde(default)]
    pub name: Option<String>,
    /// Default parallelism of operators and generator sources.
    #[serde(default = "one")]
    pub parallelism: u32,
    /// Number of key groups; the upper bound of any parallelism.
    #[serde(default = "default_max_parallelism")]
    pub max_parallelism: u32,
    /// Events per batch at sources.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// How long a keyed channel may hold a part of a batch, to send it
    /// with later ones as one larger batch (Flink's buffer timeout); 0:
    /// every part goes at once.
    #[serde(default = "default_buffer_timeout_ms")]
    pub buffer_timeout_ms: u64,
    /// Where streams come from.
    pub sources: Vec<SourceSpec>,
    /// What transforms them, in any order.
    #[serde(default)]
    pub operators: Vec<OperatorSpec>,
    /// Where streams end.
    pub sinks: Vec<SinkSpec>,
    /// Where keyed state lives.
    #[serde(default)]
    pub state: StateSpec,
    /// Periodic checkpoints (none without this section).
    #[serde(default)]
    pub checkpoints: Option<CheckpointSpec>,
    /// What a task failure does (see [`Spec::restart_strategy`]).
    #[serde(default)]
    pub restart: Option<RestartSpec>,
}

/// The `state:` section: which backend keeps keyed state, and its budget.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StateSpec {
    /// `memory` (hash maps) or `lsm` (memory first, fjall past the budget).
    #[serde(default)]
    pub backend: StateBackendKind,
    /// Folder in which the lsm backend makes its store, a new
    /// `weir-state-<pid>-<n>` folder per run (default: the system's
    /// temporary directory). Relative to the spec's folder.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Bytes of keyed state (in MiB) the lsm backend keeps in memory per
    /// worker, shared evenly by the keyed operator subtasks.
    #[serde(default = "default_state_memory_mb")]
    pub memory_mb: u64,
    /// Keep the run's store folder when the job ends (default: removed,
    /// as nothing can read it back before checkpoints exist).
    #[serde(default)]
    pub keep: bool,
}

impl Default for StateSpec {
    fn default() -> Self {
        StateSpec { backend: StateBackendKind::Memory, path: None, memory_mb: default_state_memory_mb(), keep: false }
    }
}

fn default_state_memory_mb() -> u64 {
    512
}

/// State backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(rename_all = "kebab-case")]
pub enum StateBackendKind {
    /// Hash maps on the heap.
    #[default]
    Memory,
    /// Memory first, spilled to fjall past `memory-mb`.
    Lsm,
}

fn one() -> u32 {
    1
}
/// Operator config for fuzzers: absent, or any text read as JSON where it
/// is JSON and kept as a string where it is not.
#[cfg(feature = "arbitrary")]
pub(crate) fn arbitrary_config(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<Option<serde_json::Value>> {
    let text: Option<String> = u.arbitrary()?;
    Ok(text.map(|t| serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t))))
}

fn default_max_parallelism() -> u32 {
    crate::keys::DEFAULT_MAX_PARALLELISM
}
fn default_batch_size() -> usize {
    DEFAULT_BATCH_SIZE
}
fn default_buffer_timeout_ms() -> u64 {
    100
}

/// Source types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(rename_all = "kebab-case")]
pub enum SourceType {
    /// A bounded file, read from the start.
    File,
    /// Seeded synthetic keyed events.
    Generator,
}

/// What a generator's events look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(rename_all = "kebab-case")]
pub enum GeneratorPattern {
    /// Seeded random keys, values of `value-size` filler bytes.
    #[default]
    Random,
    /// Keys in turn, JSON values and timestamps counting up.
    Sequence,
}

/// Formats of a file source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(rename_all = "kebab-case")]
pub enum FileFormat {
    /// One line per event; the value is the line as a JSON string.
    Text,
    /// One JSON document per line; the value is that JSON.
    Jsonl,
    /// Comma-separated with a header row; the value is a JSON object of
    /// header → cell (numbers where a cell parses as one).
    Csv,
}

/// A source.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SourceSpec {
    /// Unique id, used by `input` of operators and sinks.
    pub id: String,
    /// What kind of source.
    #[serde(rename = "type")]
    pub source_type: SourceType,
    /// File sources: the file to read.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// File sources: how to read it.
    #[serde(default)]
    pub format: Option<FileFormat>,
    /// Generator: the random seed.
    #[serde(default)]
    pub seed: u64,
    /// Generator: events to produce per subtask (absent: unbounded).
    #[serde(default)]
    pub count: Option<u64>,
    /// Generator: number of distinct keys.
    #[serde(default = "default_keys")]
    pub keys: u64,
    /// Generator: bytes per value.
    #[serde(default = "default_value_size")]
    pub value_size: usize,
    /// Generator: `random` keys and filler values (default), or
    /// `sequence`, Flink's throughput generator: event `g` (interleaved
    /// over subtasks, `g = i * parallelism + subtask`) has key `g % keys`,
    /// value `{"value":g}` and timestamp `g`.
    #[serde(default)]
    pub pattern: GeneratorPattern,
    /// Generator: events per second per subtask (absent: flat out).
    #[serde(default)]
    pub rate: Option<f64>,
    /// Generator: subtasks (file sources are always 1).
    #[serde(default)]
    pub parallelism: Option<u32>,
    /// Field holding event time in epoch milliseconds: a top-level field
    /// name or a JSON pointer (`/a/b`). Generators stamp event `i` with `i`.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// How watermarks follow event time.
    #[serde(default)]
    pub watermark: WatermarkSpec,
}

fn default_keys() -> u64 {
    1000
}
fn default_value_size() -> usize {
    100
}

/// Watermark strategy of a source.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WatermarkSpec {
    /// Bounded out-of-orderness: how late (ms) an event may be.
    #[serde(default)]
    pub out_of_orderness_ms: i64,
    /// A source subtask with no events for this long (wall clock) is idle
    /// and holds back no downstream watermark until it emits again.
    #[serde(default)]
    pub idle_timeout_ms: Option<u64>,
}

/// Operator kinds, one per WIT world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(rename_all = "kebab-case")]
pub enum OperatorKind {
    /// World `map`: map, filter, flat-map.
    Map,
    /// World `process`: keyed process function.
    Process,
    /// Keyed windows (`window:`, `trigger:`, `evictor:`, `function:`).
    Window,
    /// Windows over the whole stream, with parallelism 1 and no key.
    WindowAll,
}

impl OperatorKind {
    /// The WIT world the component must implement (none for windows with
    /// built-in functions).
    pub fn world(self) -> Option<&'static str> {
        match self {
            OperatorKind::Map => Some("map"),
            OperatorKind::Process => Some("process"),
            OperatorKind::Window | OperatorKind::WindowAll => None,
        }
    }

    /// Whether the operator windows its input.
    pub fn is_window(self) -> bool {
        matches!(self, OperatorKind::Window | OperatorKind::WindowAll)
    }
}

/// An operator backed by a component.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OperatorSpec {
    /// Unique id; also the operator uid that scopes its state.
    pub id: String,
    /// Which world the component implements.
    pub kind: OperatorKind,
    /// The `.wasm` component (map and process operators).
    #[serde(default)]
    pub component: Option<PathBuf>,
    /// Upstream ids (`op` for its main output, `op#tag` for a side output).
    pub input: Inputs,
    /// How to key the input: a field name, a JSON pointer, or `@key` for
    /// the key already on the event. Required for `process`.
    #[serde(default)]
    pub key_by: Option<String>,
    /// How an unkeyed input is spread over its subtasks (default: forward
    /// at the same parallelism, rebalance otherwise).
    #[serde(default)]
    pub partition: Option<PartitionSpec>,
    /// Subtasks (default: the spec's `parallelism`).
    #[serde(default)]
    pub parallelism: Option<u32>,
    /// Handed to the operator's `init` as JSON.
    #[serde(default)]
    #[cfg_attr(feature = "arbitrary", arbitrary(with = arbitrary_config))]
    pub config: Option<serde_json::Value>,
    /// Windows: which windows an element belongs to.
    #[serde(default)]
    pub window: Option<WindowSpec>,
    /// Windows: when they fire (default: the window's own trigger).
    #[serde(default)]
    pub trigger: Option<TriggerSpec>,
    /// Windows: which elements leave before or after the function.
    #[serde(default)]
    pub evictor: Option<EvictorSpec>,
    /// Windows: what a firing computes.
    #[serde(default)]
    pub function: Option<WindowFunctionSpec>,
    /// Windows: how long (ms of event time) a window is kept past its end
    /// for late elements, each of which fires it again.
    #[serde(default)]
    pub allowed_lateness_ms: i64,
    /// Windows: the side-output tag of elements later than the allowed
    /// lateness (read as `operator#tag`); without it they are dropped
    /// and counted.
    #[serde(default)]
    pub late_output: Option<String>,
    /// The side-output tag (read as `operator#tag`) that records the
    /// operator rejects with an error go to, as
    /// `{"error", "operator", "offset", "record"}`, instead of failing
    /// the job. Window operators only, for now.
    #[serde(default)]
    pub dead_letter: Option<String>,
}

/// Sink types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(rename_all = "kebab-case")]
pub enum SinkType {
    /// JSON lines into a file (created or truncated).
    File,
    /// JSON lines on standard output.
    Stdout,
    /// Counts and drops events (benchmarks).
    Discard,
}

/// How an unkeyed input is spread over the reader's subtasks, as Flink's
/// `rebalance()`, `rescale()` and `broadcast()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(rename_all = "kebab-case")]
pub enum PartitionSpec {
    /// Whole batches round-robin over every subtask.
    Rebalance,
    /// Whole batches round-robin over a few subtasks: each upstream
    /// subtask feeds its own share of them (watermarks, barriers and the
    /// end still go to all).
    Rescale,
    /// Every batch to every subtask.
    Broadcast,
}

impl PartitionSpec {
    /// Its name in a spec.
    pub fn name(self) -> &'static str {
        match self {
            PartitionSpec::Rebalance => "rebalance",
            PartitionSpec::Rescale => "rescale",
            PartitionSpec::Broadcast => "broadcast",
        }
    }
}

/// A sink.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SinkSpec {
    /// Unique id.
    pub id: String,
    /// What kind of sink.
    #[serde(rename = "type")]
    pub sink_type: SinkType,
    /// File sinks: the file to write.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Upstream ids.
    pub input: Inputs,
    /// How the input is spread over its subtasks (default: forward at the
    /// same parallelism, rebalance otherwise).
    #[serde(default)]
    pub partition: Option<PartitionSpec>,
    /// How values are written: `json` lines (default) or `text`, where a
    /// value that is a JSON string is written as its plain text (CSV
    /// lines, for example) and any other value as JSON.
    #[serde(default)]
    pub format: SinkFormat,
}

/// Line formats of file and stdout sinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(rename_all = "kebab-case")]
pub enum SinkFormat {
    /// Each value as it is: JSON lines.
    #[default]
    Json,
    /// JSON strings as their plain text, other values as JSON.
    Text,
}

/// One or more upstream names.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Inputs(pub Vec<String>);

impl<'de> Deserialize<'de> for Inputs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Inputs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an upstream id or a list of upstream ids")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Inputs, E> {
                Ok(Inputs(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Inputs, A::Error> {
                let mut v = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    v.push(s);
                }
                Ok(Inputs(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Inputs {
    /// Always as a list (which reads back the same).
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// A reference to an upstream stream: an id and, for side outputs, a tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct StreamRef {
    /// The upstream source or operator id.
    pub id: String,
    /// The side-output tag, `None` for the main output.
    pub tag: Option<String>,
}

impl StreamRef {
    /// Parses `id` or `id#tag`.
    pub fn parse(s: &str) -> StreamRef {
        match s.split_once('#') {
            Some((id, tag)) => StreamRef { id: id.to_owned(), tag: Some(tag.to_owned()) },
            None => StreamRef { id: s.to_owned(), tag: None },
        }
    }
}

/// How an operator keys its input.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum KeySelector {
    /// Keep the key on the event (set by the source or an operator).
    EventKey,
    /// Read a JSON value at this pointer; strings key by their text, other
    /// values by their JSON text.
    Pointer(String),
}

impl KeySelector {
    /// Parses the spec's `key-by` text.
    pub fn parse(s: &str) -> KeySelector {
        if s == "@key" { KeySelector::EventKey } else { KeySelector::Pointer(field_pointer(s)) }
    }
}

impl OperatorSpec {
    /// The components the operator names, each with the name of the WIT
    /// world it must implement (`map`, `process`, `evictor`, `trigger`,
    /// `session-gap`, `function`), in the order the spec reads (its own
    /// component, then a window's evictor, trigger, session gap and
    /// function).
    pub fn components(&self) -> Vec<(&Path, &'static str)> {
        let mut out: Vec<(&Path, &'static str)> = Vec::new();
        match (self.kind, &self.component) {
            (OperatorKind::Map, Some(path)) => out.push((path, "map")),
            (OperatorKind::Process, Some(path)) => out.push((path, "process")),
            (OperatorKind::Window | OperatorKind::WindowAll, _) => {
                if let Some(EvictorSpec::Component { component, .. }) = &self.evictor {
                    out.push((component, "evictor"));
                }
                if let Some((component, _)) = self.trigger.as_ref().and_then(|t| t.component()) {
                    out.push((component, "trigger"));
                }
                if let Some(WindowSpec::Session { gap: Some(gap), .. }) = &self.window {
                    out.push((&gap.component, "session-gap"));
                }
                if let Some(component) = self.function.as_ref().and_then(|f| f.component.as_ref()) {
                    out.push((component, "function"));
                }
            }
            _ => {}
        }
        out
    }
}

/// A field name or JSON pointer as a JSON pointer.
pub fn field_pointer(s: &str) -> String {
    if s.starts_with('/') { s.to_owned() } else { format!("/{}", s.replace('~', "~0").replace('/', "~1")) }
}

impl Spec {
    /// Reads, parses and validates the spec at `path`; relative paths in it
    /// resolve against its folder.
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            file: path.to_owned(),
            location: None,
            message: format!("cannot read the spec: {e}"),
        })?;
        let mut spec = Spec::parse(path, &text)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        spec.resolve_paths(dir);
        spec.check_files().map_err(|(near, message)| SpecError {
            file: path.to_owned(),
            location: near.and_then(|id| locate_id(&text, &id)),
            message,
        })?;
        if spec.name.is_none() {
            let folder = std::fs::canonicalize(path)
                .ok()
                .and_then(|p| p.parent().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().into_owned()));
            spec.name = Some(folder.unwrap_or_else(|| "job".to_owned()));
        }
        Ok(spec)
    }

    /// Parses and validates spec text; `file` only names it in errors.
    pub fn parse(file: &Path, text: &str) -> Result<Spec, SpecError> {
        let spec: Spec = serde_norway::from_str(text).map_err(|e| {
            let location = e.location().map(|l| (l.line(), l.column()));
            let mut message = e.to_string();
            if let Some(at) = message.find(" at line ") {
                message.truncate(at);
            }
            SpecError { file: file.to_owned(), location, message }
        })?;
        spec.validate().map_err(|(near, message)| SpecError {
            file: file.to_owned(),
            location: near.and_then(|id| locate_id(text, &id)),
            message,
        })?;
        Ok(spec)
    }

    /// Makes every relative path of the spec (files of sources and sinks,
    /// the state folder, components) relative to `dir`.
    pub fn resolve_paths(&mut self, dir: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        for s in &mut self.sources {
            s.path.as_mut().map(fix);
        }
        self.state.path.as_mut().map(fix);
        if let Some(c) = self.checkpoints.as_mut().filter(|c| !c.is_object_storage()) {
            fix(&mut c.dir);
        }
        for c in self.component_paths_mut() {
            fix(c);
        }
        for s in &mut self.sinks {
            s.path.as_mut().map(fix);
        }
    }

    /// Every component path the spec names, in spec order (an operator's
    /// own, then a window's evictor, trigger, session gap and function),
    /// to rewrite (a coordinator points them at its blob store).
    pub fn component_paths_mut(&mut self) -> Vec<&mut PathBuf> {
        let mut out = Vec::new();
        for o in &mut self.operators {
            if let Some(c) = o.component.as_mut() {
                out.push(c);
            }
            if let Some(EvictorSpec::Component { component, .. }) = &mut o.evictor {
                out.push(component);
            }
            if let Some(component) = o.trigger.as_mut().and_then(TriggerSpec::component_mut) {
                out.push(component);
            }
            if let Some(WindowSpec::Session { gap: Some(gap), .. }) = &mut o.window {
                out.push(&mut gap.component);
            }
            if let Some(component) = o.function.as_mut().and_then(|f| f.component.as_mut()) {
                out.push(component);
            }
        }
        out
    }

    /// The files and folders a job reads and writes, besides its
    /// components: (what names it, the path), for sources, sinks and the
    /// state folder. A coordinator confines them to allowed folders.
    pub fn data_paths(&self) -> Vec<(String, &Path)> {
        let mut out = Vec::new();
        for s in &self.sources {
            if let Some(p) = &s.path {
                out.push((format!("source `{}`", s.id), p.as_path()));
            }
        }
        for s in &self.sinks {
            if let Some(p) = &s.path {
                out.push((format!("sink `{}`", s.id), p.as_path()));
            }
        }
        if let Some(p) = &self.state.path {
            out.push(("state `path`".to_owned(), p.as_path()));
        }
        // (Object storage is no local path to check.)
        if let Some(c) = self.checkpoints.as_ref().filter(|c| !c.is_object_storage()) {
            out.push(("checkpoints `dir`".to_owned(), c.dir.as_path()));
        }
        out
    }

    /// [`Spec::check_files`] for a spec placed in code (a coordinator's job
    /// in its working directory): the error says which sink and why.
    pub fn check_file_conflicts(&self) -> Result<(), String> {
        self.check_files().map_err(|(_, m)| m)
    }

    /// File sinks must not write a file a source reads (it would be
    /// truncated before it is read) or another sink writes (lines would
    /// interleave). Paths are compared after resolving links and `..`.
    fn check_files(&self) -> Result<(), (Option<String>, String)> {
        fn identity(p: &Path) -> PathBuf {
            if let Ok(c) = std::fs::canonicalize(p) {
                return c;
            }
            match (p.parent().map(std::fs::canonicalize), p.file_name()) {
                (Some(Ok(dir)), Some(name)) => dir.join(name),
                _ => {
                    // Lexically: `a/sub/../b` is `a/b` whether or not `sub` exists yet.
                    let mut out = PathBuf::new();
                    for c in std::path::absolute(p).unwrap_or_else(|_| p.to_owned()).components() {
                        match c {
                            std::path::Component::ParentDir => {
                                out.pop();
                            }
                            std::path::Component::CurDir => {}
                            c => out.push(c),
                        }
                    }
                    out
                }
            }
        }
        let mut files: HashMap<PathBuf, (&str, &'static str)> = HashMap::new();
        for s in &self.sources {
            if let Some(p) = &s.path {
                files.entry(identity(p)).or_insert((&s.id, "source"));
            }
        }
        for s in self.sinks.iter().filter(|s| s.sink_type == SinkType::File) {
            let Some(p) = &s.path else { continue };
            if let Some((other, what)) = files.insert(identity(p), (&s.id, "sink")) {
                let why = if what == "source" {
                    "it would be overwritten before it is read"
                } else {
                    "their lines would interleave"
                };
                return Err((
                    Some(s.id.clone()),
                    format!(
                        "file sink `{}` writes {}, which {what} `{other}` {} too: {why}; give it another `path`",
                        s.id,
                        p.display(),
                        if what == "source" { "reads" } else { "writes" }
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Parallelism of an operator.
    pub fn operator_parallelism(&self, op: &OperatorSpec) -> u32 {
        if op.kind == OperatorKind::WindowAll {
            return 1;
        }
        op.parallelism.unwrap_or(self.parallelism)
    }

    /// Parallelism of a source.
    pub fn source_parallelism(&self, s: &SourceSpec) -> u32 {
        match s.source_type {
            SourceType::File => 1,
            SourceType::Generator => s.parallelism.unwrap_or(self.parallelism),
        }
    }

    /// The restart strategy: the `restart:` section's, else Flink's
    /// default — exponential delay when the job takes checkpoints (it
    /// restarts from the latest one), none when it does not (a restart
    /// would start over and repeat output).
    pub fn restart_strategy(&self) -> crate::restart::RestartStrategy {
        match (&self.restart, &self.checkpoints) {
            (Some(r), _) => r.strategy(),
            (None, Some(_)) => crate::restart::RestartStrategy::default(),
            (None, None) => crate::restart::RestartStrategy::None,
        }
    }

    /// Overrides the default parallelism (the CLI's `--parallelism`).
    pub fn set_parallelism(&mut self, parallelism: u32) -> Result<(), String> {
        if parallelism == 0 || parallelism > self.max_parallelism {
            return Err(format!("parallelism must be between 1 and max-parallelism ({})", self.max_parallelism));
        }
        self.parallelism = parallelism;
        Ok(())
    }

    /// Checks the graph; an error names the id it is about (to locate it)
    /// and says what is wrong.
    /// Validates a spec built in code rather than parsed: the checks
    /// [`Spec::parse`] runs after reading YAML (ids, inputs, graph shape,
    /// parallelism, what each source type needs). The error names the
    /// operator, source or sink it is about.
    pub fn check(&self) -> Result<(), String> {
        self.validate().map_err(|(near, message)| match near {
            Some(id) => format!("`{id}`: {message}"),
            None => message,
        })
    }

    fn validate(&self) -> Result<(), (Option<String>, String)> {
        let top = |m: String| (None, m);
        if self.max_parallelism == 0 || self.max_parallelism > 32768 {
            return Err(top("max-parallelism must be between 1 and 32768".into()));
        }
        if self.parallelism == 0 || self.parallelism > self.max_parallelism {
            return Err(top(format!("parallelism must be between 1 and max-parallelism ({})", self.max_parallelism)));
        }
        if self.batch_size == 0 || self.batch_size > 1 << 20 {
            return Err(top("batch-size must be between 1 and 1048576".into()));
        }
        if self.buffer_timeout_ms > 60_000 {
            return Err(top(
                "buffer-timeout-ms must be between 0 (send every batch at once) and 60000 (a minute)".into()
            ));
        }
        if self.state.memory_mb == 0 || self.state.memory_mb > 1 << 30 {
            return Err(top("state: memory-mb must be between 1 and 1073741824 (MiB)".into()));
        }
        if self.state.backend == StateBackendKind::Memory && (self.state.path.is_some() || self.state.keep) {
            return Err(top("state: `path` and `keep` are for `backend: lsm`; remove them or set the backend".into()));
        }
        if self.state.keep && self.state.path.is_none() {
            return Err(top("state: `keep` needs a `path` to keep the lsm files in".into()));
        }
        if let Some(c) = &self.checkpoints {
            c.validate().map_err(top)?;
        }
        if let Some(r) = &self.restart {
            r.validate().map_err(top)?;
        }
        if self.sources.is_empty() || self.sinks.is_empty() {
            return Err(top("a pipeline needs at least one source and one sink".into()));
        }
        let mut ids: HashMap<&str, &'static str> = HashMap::new();
        let all = self.sources.iter().map(|s| (&s.id, "source"));
        let all = all.chain(self.operators.iter().map(|o| (&o.id, "operator")));
        for (id, what) in all.chain(self.sinks.iter().map(|s| (&s.id, "sink"))) {
            let at = |m: String| (Some(id.clone()), m);
            if id.is_empty() || !id.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '_') {
                return Err(at(format!("{what} id `{id}` must be non-empty letters, digits, `-` or `_`")));
            }
            if let Some(prev) = ids.insert(id, what) {
                return Err(at(format!("id `{id}` is used twice (by a {prev} and a {what}); ids must be unique")));
            }
        }
        for s in &self.sources {
            let at = |m: String| (Some(s.id.clone()), m);
            match s.source_type {
                SourceType::File => {
                    if s.path.is_none() || s.format.is_none() {
                        return Err(at(format!(
                            "file source `{}` needs `path` and `format` (text, jsonl or csv)",
                            s.id
                        )));
                    }
                    if s.format == Some(FileFormat::Text) && s.timestamp.is_some() {
                        return Err(at(format!(
                            "file source `{}`: text lines have no fields to take a `timestamp` from; use jsonl or csv",
                            s.id
                        )));
                    }
                    if s.parallelism.is_some_and(|p| p != 1) {
                        return Err(at(format!(
                            "file source `{}` reads with parallelism 1; remove `parallelism`",
                            s.id
                        )));
                    }
                }
                SourceType::Generator => {
                    if s.keys == 0 {
                        return Err(at(format!("generator `{}`: keys must be at least 1", s.id)));
                    }
                    if s.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
                        return Err(at(format!("generator `{}`: rate must be a positive number of events/s", s.id)));
                    }
                    if s.value_size > 1 << 20 {
                        return Err(at(format!("generator `{}`: value-size is at most 1048576 bytes", s.id)));
                    }
                }
            }
            if s.watermark.out_of_orderness_ms < 0 {
                return Err(at(format!("source `{}`: watermark out-of-orderness-ms must not be negative", s.id)));
            }
            if let Some(p) = s.parallelism
                && (p == 0 || p > self.max_parallelism)
            {
                return Err(at(format!(
                    "source `{}`: parallelism must be between 1 and {}",
                    s.id, self.max_parallelism
                )));
            }
        }
        let producers: BTreeSet<&str> =
            self.sources.iter().map(|s| s.id.as_str()).chain(self.operators.iter().map(|o| o.id.as_str())).collect();
        let sources: BTreeSet<&str> = self.sources.iter().map(|s| s.id.as_str()).collect();
        let keyless: BTreeSet<&str> =
            self.sources.iter().filter(|s| s.source_type == SourceType::File).map(|s| s.id.as_str()).collect();
        let check_inputs = |id: &str, inputs: &Inputs| -> Result<(), (Option<String>, String)> {
            if inputs.0.is_empty() {
                return Err((Some(id.to_owned()), format!("`{id}` needs at least one input")));
            }
            for i in &inputs.0 {
                let r = StreamRef::parse(i);
                if r.id == id {
                    return Err((
                        Some(id.to_owned()),
                        format!("`{id}` reads its own output (`{i}`); pipelines must be acyclic"),
                    ));
                }
                if !producers.contains(r.id.as_str()) {
                    let known: Vec<&str> = producers.iter().copied().filter(|p| *p != id).collect();
                    return Err((
                        Some(id.to_owned()),
                        format!("`{id}`: input `{i}` is not a source or operator (known: {})", known.join(", ")),
                    ));
                }
                if let Some(tag) = &r.tag {
                    let why = if sources.contains(r.id.as_str()) {
                        Some(format!("`{}` is a source, and sources have no side outputs; read `{}`", r.id, r.id))
                    } else if tag.is_empty() || tag.contains('#') {
                        Some("a side output is named `operator#tag`, with one non-empty tag without `#`".to_owned())
                    } else {
                        None
                    };
                    if let Some(why) = why {
                        return Err((Some(id.to_owned()), format!("`{id}`: input `{i}` reads nothing: {why}")));
                    }
                }
            }
            Ok(())
        };
        for o in &self.operators {
            let at = |m: String| (Some(o.id.clone()), m);
            check_inputs(&o.id, &o.input)?;
            if let Some(p) = o.parallelism
                && (p == 0 || p > self.max_parallelism)
            {
                return Err(at(format!(
                    "operator `{}`: parallelism must be between 1 and {}",
                    o.id, self.max_parallelism
                )));
            }
            if o.key_by.as_deref() == Some("@key")
                && let Some(src) = o.input.0.iter().find(|i| keyless.contains(i.as_str()))
            {
                return Err(at(format!(
                    "operator `{}`: `key-by: \"@key\"` keeps the key on the event, but file source `{src}` sets none; key by a field instead",
                    o.id
                )));
            }
            if let (Some(p), Some(_)) = (o.partition, &o.key_by) {
                return Err(at(format!(
                    "operator `{}`: `partition: {}` spreads an unkeyed input, and `key-by` sends each key to its \
                     subtask; keep one of them",
                    o.id,
                    p.name()
                )));
            }
            if matches!(o.kind, OperatorKind::Process | OperatorKind::Window) && o.key_by.is_none() {
                return Err(at(format!(
                    "operator `{}`: a {} operator needs `key-by` (a field, a /json/pointer, or @key)",
                    o.id,
                    if o.kind == OperatorKind::Window { "window" } else { "process" }
                )));
            }
            let window_keys = o.window.is_some()
                || o.trigger.is_some()
                || o.evictor.is_some()
                || o.function.is_some()
                || o.allowed_lateness_ms != 0
                || o.late_output.is_some();
            match o.kind {
                OperatorKind::Map | OperatorKind::Process => {
                    if o.component.is_none() {
                        return Err(at(format!(
                            "operator `{}`: a {} operator needs `component` (a .wasm file)",
                            o.id,
                            o.kind.world().unwrap_or("")
                        )));
                    }
                    if let Some(tag) = &o.dead_letter
                        && (tag.is_empty() || tag.contains('#'))
                    {
                        return Err(at(format!("operator `{}`: dead-letter is one non-empty tag without `#`", o.id)));
                    }
                    if o.dead_letter.is_some() && o.kind == OperatorKind::Process {
                        return Err(at(format!(
                            "operator `{}`: dead-letter routes rejected records of map and window operators; a process operator cannot route its own yet (a failed call may have changed its list and map state, so its batch cannot run again without the record; its errors end the job, naming the record)",
                            o.id
                        )));
                    }
                    if window_keys {
                        return Err(at(format!(
                            "operator `{}`: window, trigger, evictor, function, allowed-lateness-ms and late-output are for `kind: window` or `window-all`",
                            o.id
                        )));
                    }
                }
                OperatorKind::Window | OperatorKind::WindowAll => {
                    if o.component.is_some() || o.config.is_some() {
                        return Err(at(format!(
                            "operator `{}`: window operators compute a built-in `function:`; remove `component` and `config`",
                            o.id
                        )));
                    }
                    if o.kind == OperatorKind::WindowAll {
                        if o.key_by.is_some() {
                            return Err(at(format!(
                                "operator `{}`: `window-all` windows the whole stream; remove `key-by`, or use `kind: window`",
                                o.id
                            )));
                        }
                        if o.parallelism.is_some_and(|p| p != 1) {
                            return Err(at(format!(
                                "operator `{}`: `window-all` runs with parallelism 1; remove `parallelism`",
                                o.id
                            )));
                        }
                    }
                    for (what, tag) in [("late-output", &o.late_output), ("dead-letter", &o.dead_letter)] {
                        if let Some(tag) = tag
                            && (tag.is_empty() || tag.contains('#'))
                        {
                            return Err(at(format!("operator `{}`: {what} is one non-empty tag without `#`", o.id)));
                        }
                    }
                    if o.late_output.is_some() && o.late_output == o.dead_letter {
                        return Err(at(format!(
                            "operator `{}`: late-output and dead-letter need different tags, so late and rejected records can be told apart",
                            o.id
                        )));
                    }
                    window::check(
                        &o.id,
                        o.window.as_ref(),
                        o.trigger.as_ref(),
                        o.evictor.as_ref(),
                        o.function.as_ref(),
                        o.allowed_lateness_ms,
                    )
                    .map_err(at)?;
                }
            }
        }
        for s in &self.sinks {
            check_inputs(&s.id, &s.input)?;
            if s.sink_type == SinkType::File && s.path.is_none() {
                return Err((Some(s.id.clone()), format!("file sink `{}` needs `path`", s.id)));
            }
        }
        self.check_acyclic()
    }

    /// Kahn's algorithm over the operators: iterative and linear, so a
    /// spec of any depth is checked without deep recursion.
    fn check_acyclic(&self) -> Result<(), (Option<String>, String)> {
        let index: HashMap<&str, usize> = self.operators.iter().enumerate().map(|(i, o)| (o.id.as_str(), i)).collect();
        let mut missing = vec![0usize; self.operators.len()];
        let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); self.operators.len()];
        for (i, o) in self.operators.iter().enumerate() {
            for input in &o.input.0 {
                if let Some(&up) = index.get(StreamRef::parse(input).id.as_str()) {
                    missing[i] += 1;
                    consumers[up].push(i);
                }
            }
        }
        let mut ready: Vec<usize> = (0..missing.len()).filter(|&i| missing[i] == 0).collect();
        let mut done = 0;
        while let Some(i) = ready.pop() {
            done += 1;
            for &c in &consumers[i] {
                missing[c] -= 1;
                if missing[c] == 0 {
                    ready.push(c);
                }
            }
        }
        if done == self.operators.len() {
            return Ok(());
        }
        let c = &self.operators[missing.iter().position(|&m| m > 0).expect("invariant: an operator is left")].id;
        Err((Some(c.clone()), format!("operator `{c}` is part of a cycle; pipelines must be acyclic")))
    }
}

/// Line and column of the `id: <id>` entry (block or flow style), for
/// errors about it.
fn locate_id(text: &str, id: &str) -> Option<(usize, usize)> {
    text.lines().enumerate().find_map(|(n, line)| {
        let mut from = 0;
        while let Some(i) = line[from..].find("id:").map(|i| i + from) {
            from = i + 3;
            let before = line[..i].chars().next_back();
            if !matches!(before, None | Some(' ' | '{' | '-' | ',')) {
                continue;
            }
            let rest = &line[i + 3..];
            let value = rest.split([',', '}', '#']).next().unwrap_or("").trim().trim_matches(|c| c == '"' || c == '\'');
            if value == id {
                return Some((n + 1, i + 1));
            }
        }
        None
    })
}

#[cfg(test)]
mod tests;
