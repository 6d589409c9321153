//! The engine, compiled-component cache and world checks.

use crate::bindings;
use crate::operator_state;
use crate::sandbox::{self, HostState};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use wasmtime::component::types::ComponentItem;

use wasmtime::component::Linker;
use wasmtime::{Config, Engine};

/// The WIT package every component implements.
pub const PACKAGE: &str = "weir:operator";
/// Its version.
pub const VERSION: &str = "0.2.0";

/// How often the epoch ticks; time budgets are counted in ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The worlds a component can implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum World {
    /// `weir:operator/map`.
    Map,
    /// `weir:operator/process`.
    Process,
    /// `weir:operator/evictor`.
    Evictor,
    /// `weir:operator/trigger`.
    Trigger,
    /// `weir:operator/session-gap`.
    SessionGap,
    /// `weir:operator/function`.
    Function,
}

impl World {
    /// Every world, in the WIT's order.
    pub const ALL: [World; 6] =
        [World::Map, World::Process, World::Evictor, World::Trigger, World::SessionGap, World::Function];

    /// The world named `name` (as [`World::name`] gives it).
    pub fn named(name: &str) -> Option<World> {
        World::ALL.into_iter().find(|w| w.name() == name)
    }

    /// The world's name in the WIT package.
    pub fn name(self) -> &'static str {
        match self {
            World::Map => "map",
            World::Process => "process",
            World::Evictor => "evictor",
            World::Trigger => "trigger",
            World::SessionGap => "session-gap",
            World::Function => "function",
        }
    }

    /// Where a spec names a component of the world.
    fn used_as(self) -> &'static str {
        match self {
            World::Map => "as `kind: map`",
            World::Process => "as `kind: process`",
            World::Evictor => "as a window's `evictor: {type: component}`",
            World::Trigger => "as a window's `trigger: {type: component}`",
            World::SessionGap => "as a session window's `gap: {component}`",
            World::Function => "as a window's `function: {type: component}`",
        }
    }

    /// The weir-sdk macro that exports the world.
    fn export_macro(self) -> &'static str {
        match self {
            World::Map => "export_map",
            World::Process => "export_process",
            World::Evictor => "export_evictor",
            World::Trigger => "export_trigger",
            World::SessionGap => "export_session_gap",
            World::Function => "export_window_function",
        }
    }

    fn export(self) -> String {
        let iface = match self {
            World::Map => "mapper",
            World::Process => "keyed-process",
            World::Evictor => "window-evictor",
            World::Trigger => "window-trigger",
            World::SessionGap => "session-gap-extractor",
            World::Function => "window-function",
        };
        format!("{PACKAGE}/{iface}@{VERSION}")
    }
}

/// Why a component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read component {path}: {source}. Build it with `cargo build --release --target wasm32-wasip2`.")]
    Read {
        /// The component path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not a valid component (a core module, or garbage).
    #[error("{path} is not a valid WebAssembly component: {message}")]
    Invalid {
        /// The component path.
        path: PathBuf,
        /// What wasmtime said.
        message: String,
    },
    /// A valid component that does not implement the world.
    #[error("component {path} does not implement world `{world}` of {PACKAGE}@{VERSION}: {message}")]
    WrongWorld {
        /// The component path.
        path: PathBuf,
        /// The world the spec asked for.
        world: &'static str,
        /// The missing or mismatched export or import.
        message: String,
    },
    /// The engine could not be set up.
    #[error("cannot start the Wasm engine: {0}")]
    Engine(String),
}

/// A compiled component, checked against its world, ready to instantiate
/// many times (one instance per subtask).
#[derive(Clone)]
pub struct Component {
    pub(crate) path: PathBuf,
    pub(crate) pre: Pre,
    /// Its `operator-state` export, when it has one (`map` and `process`
    /// components built as `stateful-map` or `stateful-process`).
    pub(crate) state: Option<Arc<crate::operator_state::StateIndices>>,
}

#[derive(Clone)]
pub(crate) enum Pre {
    Map(bindings::map::MapPre<HostState>),
    Process(bindings::process::ProcessPre<HostState>),
    Evictor(bindings::evictor::EvictorPre<HostState>),
    Trigger(bindings::trigger::TriggerPre<HostState>),
    SessionGap(bindings::session_gap::SessionGapPre<HostState>),
    Function(bindings::function::FunctionPre<HostState>),
}

impl Component {
    /// The world the component implements.
    pub fn world(&self) -> World {
        match self.pre {
            Pre::Map(_) => World::Map,
            Pre::Process(_) => World::Process,
            Pre::Evictor(_) => World::Evictor,
            Pre::Trigger(_) => World::Trigger,
            Pre::SessionGap(_) => World::SessionGap,
            Pre::Function(_) => World::Function,
        }
    }

    /// Whether it keeps operator state (exports `operator-state`).
    pub fn has_operator_state(&self) -> bool {
        self.state.is_some()
    }

    /// Where it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The wasmtime engine with its linkers and compiled-code cache. One per
/// process; cheap to share by reference.
pub struct WasmRuntime {
    pub(crate) engine: Engine,
    map_linker: Linker<HostState>,
    process_linker: Linker<HostState>,
    evictor_linker: Linker<HostState>,
    trigger_linker: Linker<HostState>,
    session_gap_linker: Linker<HostState>,
    function_linker: Linker<HostState>,
    cache_dir: Option<PathBuf>,
    ticker_stop: Arc<AtomicBool>,
    loads: AtomicUsize,
}

impl Drop for WasmRuntime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl WasmRuntime {
    /// An engine that caches compiled components under `cache_dir` (none:
    /// compile every time).
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self, LoadError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // Stated, not left to the default: deep guest recursion traps here.
        config.max_wasm_stack(1 << 20);
        // `WEIR_PERF_MAP=1` writes /tmp/perf-PID.map so `perf` names the
        // guests' compiled functions (docs/benchmarks.md, "Profiling").
        if std::env::var_os("WEIR_PERF_MAP").is_some_and(|v| v == "1") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|e| LoadError::Engine(e.to_string()))?;
        let map_linker = sandbox::linker(&engine, World::Map).map_err(|e| LoadError::Engine(e.to_string()))?;
        let process_linker = sandbox::linker(&engine, World::Process).map_err(|e| LoadError::Engine(e.to_string()))?;
        let evictor_linker = sandbox::linker(&engine, World::Evictor).map_err(|e| LoadError::Engine(e.to_string()))?;
        let trigger_linker = sandbox::linker(&engine, World::Trigger).map_err(|e| LoadError::Engine(e.to_string()))?;
        let session_gap_linker =
            sandbox::linker(&engine, World::SessionGap).map_err(|e| LoadError::Engine(e.to_string()))?;
        let function_linker =
            sandbox::linker(&engine, World::Function).map_err(|e| LoadError::Engine(e.to_string()))?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (weak_engine, stop) = (engine.weak(), ticker_stop.clone());
        std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak_engine.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| LoadError::Engine(format!("cannot start the epoch thread: {e}")))?;
        Ok(WasmRuntime {
            engine,
            map_linker,
            process_linker,
            evictor_linker,
            trigger_linker,
            session_gap_linker,
            function_linker,
            cache_dir,
            ticker_stop,
            loads: AtomicUsize::new(0),
        })
    }

    /// Components loaded so far (each read, verified and linked).
    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::Relaxed)
    }

    /// Loads the component at `path` (from the cache when compiled before)
    /// and checks that it implements `world`.
    pub fn load(&self, path: &Path, world: World) -> Result<Component, LoadError> {
        self.loads.fetch_add(1, Ordering::Relaxed);
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read { path: path.to_owned(), source })?;
        let invalid = |e: wasmtime::Error| LoadError::Invalid { path: path.to_owned(), message: format!("{e:#}") };
        let component = match self.cached(&bytes) {
            Some(c) => c,
            None => {
                let c = wasmtime::component::Component::new(&self.engine, &bytes).map_err(invalid)?;
                self.store_in_cache(&bytes, &c);
                c
            }
        };
        self.check_world(path, &component, world)?;
        let wrong = |e: wasmtime::Error| LoadError::WrongWorld {
            path: path.to_owned(),
            world: world.name(),
            message: format!("{e:#}"),
        };
        let mut state = None;
        let pre = match world {
            World::Map => {
                let ip = self.map_linker.instantiate_pre(&component).map_err(wrong)?;
                state = operator_state::StateIndices::find(&ip).map(Arc::new);
                Pre::Map(bindings::map::MapPre::new(ip).map_err(wrong)?)
            }
            World::Process => {
                let ip = self.process_linker.instantiate_pre(&component).map_err(wrong)?;
                state = operator_state::StateIndices::find(&ip).map(Arc::new);
                Pre::Process(bindings::process::ProcessPre::new(ip).map_err(wrong)?)
            }
            World::Evictor => {
                let ip = self.evictor_linker.instantiate_pre(&component).map_err(wrong)?;
                Pre::Evictor(bindings::evictor::EvictorPre::new(ip).map_err(wrong)?)
            }
            World::Trigger => {
                let ip = self.trigger_linker.instantiate_pre(&component).map_err(wrong)?;
                Pre::Trigger(bindings::trigger::TriggerPre::new(ip).map_err(wrong)?)
            }
            World::SessionGap => {
                let ip = self.session_gap_linker.instantiate_pre(&component).map_err(wrong)?;
                Pre::SessionGap(bindings::session_gap::SessionGapPre::new(ip).map_err(wrong)?)
            }
            World::Function => {
                let ip = self.function_linker.instantiate_pre(&component).map_err(wrong)?;
                Pre::Function(bindings::function::FunctionPre::new(ip).map_err(wrong)?)
            }
        };
        Ok(Component { path: path.to_owned(), pre, state })
    }

    fn check_world(
        &self,
        path: &Path,
        component: &wasmtime::component::Component,
        world: World,
    ) -> Result<(), LoadError> {
        let ty = component.component_type();
        let wanted = world.export();
        let exports: Vec<String> = ty.exports(&self.engine).map(|(name, _)| name.to_owned()).collect();
        let found = ty.exports(&self.engine).find(|(name, _)| *name == wanted);
        match found {
            Some((_, e)) if matches!(e.ty, ComponentItem::ComponentInstance(_)) => Ok(()),
            _ => {
                let other = World::ALL.into_iter().find(|w| exports.contains(&w.export()));
                let hint = match other {
                    Some(w) => format!(
                        " It implements world `{}` instead: use it {}, or build it with `weir_sdk::{}!`.",
                        w.name(),
                        w.used_as(),
                        world.export_macro()
                    ),
                    None => String::new(),
                };
                Err(LoadError::WrongWorld {
                    path: path.to_owned(),
                    world: world.name(),
                    message: format!(
                        "missing export `{wanted}` (it exports: {}).{hint}",
                        if exports.is_empty() { "nothing".to_owned() } else { exports.join(", ") }
                    ),
                })
            }
        }
    }

    fn cache_path(&self, bytes: &[u8]) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        let mut h = Sha256::new();
        h.update(bytes);
        let mut compat = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(&self.engine.precompile_compatibility_hash(), &mut compat);
        h.update(std::hash::Hasher::finish(&compat).to_le_bytes());
        let digest = h.finalize();
        let name: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        Some(dir.join(format!("{name}.cwasm")))
    }

    fn cached(&self, bytes: &[u8]) -> Option<wasmtime::component::Component> {
        let path = self.cache_path(bytes)?;
        let file = match std::fs::read(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!("cannot read the compiled-component cache file {}: {e}", path.display());
                return None;
            }
        };
        match self.load_cache_entry(&file) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("ignoring compiled-component cache file {}: {e}; compiling again", path.display());
                None
            }
        }
    }

    /// Checks the bytes of a compiled-component cache file as a load
    /// does: the trailer first, then wasmtime's own checks. Every damaged
    /// entry is an error, never a crash; the fuzz target `cache_entry`
    /// holds it to that.
    ///
    /// # Safety
    /// As for the cache directory: `file` must not be crafted. The trailer
    /// catches corruption, but bytes made to carry a matching trailer reach
    /// wasmtime's deserializer, which trusts them.
    pub unsafe fn check_cache_entry(&self, file: &[u8]) -> Result<(), String> {
        self.load_cache_entry(file).map(drop)
    }

    fn load_cache_entry(&self, file: &[u8]) -> Result<wasmtime::component::Component, String> {
        let code = verified(file).ok_or("its checksum does not match (corrupt or truncated)")?;
        // SAFETY: wasmtime requires that deserialized bytes were produced by
        // `serialize` of a compatible engine. They were: the file's SHA-256
        // trailer matches what `store_in_cache` wrote (checked just above),
        // it is named by the hash of the source bytes and of this engine's
        // compatibility hash, and wasmtime checks its header again. The
        // cache directory must be writable only by the user running Weir
        // (docs/architecture.md, "Compiled-component cache"): the checksum
        // catches corruption, not a user who can already write our files.
        unsafe { wasmtime::component::Component::deserialize(&self.engine, code) }
            .map_err(|e| format!("wasmtime cannot use it: {e}"))
    }

    fn store_in_cache(&self, bytes: &[u8], component: &wasmtime::component::Component) {
        let Some(path) = self.cache_path(bytes) else { return };
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut file = component.serialize().map_err(std::io::Error::other)?;
            let digest = Sha256::digest(&file);
            file.extend_from_slice(&digest);
            file.extend_from_slice(CACHE_MAGIC);
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, file)?;
            std::fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            tracing::warn!("cannot write the compiled-component cache {}: {e}", path.display());
        }
    }
}

/// Ends every compiled-component cache file, after the SHA-256 of the
/// serialized code.
const CACHE_MAGIC: &[u8; 8] = b"WEIRCW01";

/// The serialized code of a cache file whose trailer (SHA-256 of the code,
/// then [`CACHE_MAGIC`]) matches; `None` for anything else.
fn verified(file: &[u8]) -> Option<&[u8]> {
    let body = file.strip_suffix(CACHE_MAGIC)?;
    let split = body.len().checked_sub(32)?;
    let (code, digest) = body.split_at(split);
    (Sha256::digest(code).as_slice() == digest).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_with_a_matching_trailer_are_verified() {
        let code = b"compiled code".to_vec();
        let mut file = code.clone();
        file.extend_from_slice(&Sha256::digest(&code));
        file.extend_from_slice(CACHE_MAGIC);
        assert_eq!(verified(&file), Some(&code[..]));
        let mut flipped = file.clone();
        flipped[3] ^= 0x40;
        assert_eq!(verified(&flipped), None, "a flipped bit in the code");
        assert_eq!(verified(&file[1..]), None, "truncated at the front");
        assert_eq!(verified(&file[..file.len() - 1]), None, "truncated at the end");
        assert_eq!(verified(b"WEIRCW01"), None, "too short");
    }
}
