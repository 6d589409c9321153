//! `weir bench`: events/s of generator → map → discard, generator →
//! key_by → process (ValueState counter) → discard and the same with a
//! MapState counter, with Wasm components and with native Rust operators
//! in the same run, at each parallelism, on the state backend chosen.

use std::path::{Path, PathBuf};
use weir_core::spec::Spec;
use weir_runtime::{Native, RunOptions};
use weir_wasm::WasmRuntime;

#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    /// Events per pipeline run (split evenly over generator subtasks).
    #[arg(long, default_value_t = 20_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    events: u64,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    keys: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Parallelisms to measure, comma-separated.
    #[arg(long, default_value = "1,2", value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..=128))]
    parallelism: Vec<u32>,
    /// Runs per configuration; the median is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Pipelines to measure, comma-separated: `map`, `value` (ValueState
    /// counter), `mapstate` (MapState counter).
    #[arg(long, default_value = "map,value", value_delimiter = ',')]
    pipelines: Vec<Pipeline>,
    /// Where keyed state lives.
    #[arg(long, value_enum, default_value_t = crate::Backend::Memory)]
    state_backend: crate::Backend,
    /// MiB of keyed state the lsm backend keeps in memory.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
    state_memory_mb: u64,
    /// Skip the native stand-ins (only the Wasm operators run).
    #[arg(long)]
    no_native: bool,
    /// Folder with passthrough.wasm and keyed_counter.wasm (default: the
    /// build's wasm32-wasip2/release folder next to this binary's).
    #[arg(long)]
    components: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Debug, clap::ValueEnum)]
pub(crate) enum Pipeline {
    /// generator → map → discard.
    Map,
    /// generator → key_by → process (ValueState counter) → discard.
    Value,
    /// generator → key_by → process (MapState counter) → discard.
    Mapstate,
    /// generator (Flink's sequence) → key_by → tumbling 1 s window sum → discard.
    Tumble,
    /// generator (Flink's sequence) → key_by → sliding 10 s / 1 s window sum → discard.
    Slide,
    /// generator (Flink's sequence) → key_by → session window (gap 5 s) sum → discard.
    Session,
}

impl Pipeline {
    fn name(self) -> &'static str {
        match self {
            Pipeline::Map => "generator → map → discard",
            Pipeline::Value => "generator → key_by → process(ValueState) → discard",
            Pipeline::Mapstate => "generator → key_by → process(MapState) → discard",
            Pipeline::Tumble => "generator → key_by → tumbling 1 s sum → discard",
            Pipeline::Slide => "generator → key_by → sliding 10 s/1 s sum → discard",
            Pipeline::Session => "generator → key_by → session 5 s sum → discard",
        }
    }

    /// The window of the window pipelines (these have no native stand-in:
    /// the window operator is the host's own).
    fn window(self) -> Option<&'static str> {
        match self {
            Pipeline::Tumble => Some("{type: tumbling, size-ms: 1000}"),
            Pipeline::Slide => Some("{type: sliding, size-ms: 10000, slide-ms: 1000}"),
            Pipeline::Session => Some("{type: session, gap-ms: 5000}"),
            _ => None,
        }
    }
}

/// What every run of one configuration shares.
struct Setup<'a> {
    components: &'a Path,
    keys: u64,
    value_size: usize,
    parallelism: u32,
    backend: crate::Backend,
    memory_mb: u64,
}

fn spec_text(p: Pipeline, s: &Setup<'_>, events: u64) -> String {
    let Setup { components, keys, value_size, parallelism, .. } = *s;
    let per_subtask = (events / u64::from(parallelism)).max(1);
    let backend = match s.backend {
        crate::Backend::Memory => "memory",
        crate::Backend::Lsm => "lsm",
    };
    let pattern = if p.window().is_some() { "sequence" } else { "random" };
    let source = format!(
        "parallelism: {parallelism}\nstate: {{backend: {backend}, memory-mb: {}}}\nsources:\n  - {{id: gen, type: generator, seed: 1, count: {per_subtask}, keys: {keys}, value-size: {value_size}, pattern: {pattern}}}\n",
        s.memory_mb
    );
    let op = match p {
        Pipeline::Map => format!(
            "  - {{id: op, kind: map, component: {}, input: gen}}\n",
            components.join("passthrough.wasm").display()
        ),
        Pipeline::Value => format!(
            "  - {{id: op, kind: process, component: {}, input: gen, key-by: '@key'}}\n",
            components.join("keyed_counter.wasm").display()
        ),
        Pipeline::Mapstate => format!(
            "  - {{id: op, kind: process, component: {}, input: gen, key-by: '@key', config: {{state: map}}}}\n",
            components.join("keyed_counter.wasm").display()
        ),
        Pipeline::Tumble | Pipeline::Slide | Pipeline::Session => format!(
            "  - {{id: op, kind: window, input: gen, key-by: '@key', window: {}, function: {{type: sum, field: value}}}}\n",
            p.window().unwrap_or_default()
        ),
    };
    format!("{source}operators:\n{op}sinks:\n  - {{id: out, type: discard, input: op}}\n")
}

/// The native stand-in of a pipeline's operator (none for windows).
fn native(p: Pipeline) -> Option<Native> {
    Some(match p {
        Pipeline::Tumble | Pipeline::Slide | Pipeline::Session => return None,
        Pipeline::Map => Native::Map(Box::new(|| Box::new(|e, out| out.push(e.key, e.value, e.timestamp, e.origin)))),
        Pipeline::Mapstate => Native::Process(Box::new(|| {
            let mut buf = Vec::with_capacity(8);
            Box::new(move |e, group, state, out| {
                buf.clear();
                let at = weir_state::Scope::key(group, e.key);
                let bucket = [e.value.first().map_or(0, |b| b % 8)];
                let n = if state.map_get(0, at, &bucket, &mut buf) {
                    u64::from_le_bytes(buf[..8].try_into().expect("invariant: the counter stores 8 bytes")) + 1
                } else {
                    1
                };
                state.map_put(0, at, &bucket, &n.to_le_bytes());
                out.push(e.key, &n.to_le_bytes(), e.timestamp, e.origin);
            })
        })),
        Pipeline::Value => Native::Process(Box::new(|| {
            let mut buf = Vec::with_capacity(8);
            Box::new(move |e, group, state, out| {
                buf.clear();
                let at = weir_state::Scope::key(group, e.key);
                let n = if state.value_get(0, at, &mut buf) {
                    u64::from_le_bytes(buf[..8].try_into().expect("invariant: the counter stores 8 bytes")) + 1
                } else {
                    1
                };
                state.value_put(0, at, &n.to_le_bytes());
                out.push(e.key, &n.to_le_bytes(), e.timestamp, e.origin);
            })
        })),
    })
}

/// The median events/s of `runs` runs, and the events delivered.
fn measure(rt: &WasmRuntime, text: &str, p: Pipeline, native_op: bool, runs: u32) -> Result<(f64, u64), String> {
    let spec = Spec::parse(Path::new("bench.yaml"), text).map_err(|e| e.to_string())?;
    let mut rates = Vec::with_capacity(runs as usize);
    let mut events = 0;
    for _ in 0..runs {
        let mut options = RunOptions::default();
        if native_op && let Some(n) = native(p) {
            options.native.insert("op".into(), n);
        }
        let s = weir_runtime::run(&spec, rt, options).map_err(|e| e.to_string())?;
        events = s.vertices.iter().find(|v| v.id == "gen").map_or(0, |v| v.records_out);
        rates.push(events as f64 / s.elapsed.as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    Ok((rates[rates.len() / 2], events))
}

pub(crate) fn run(args: BenchArgs) -> Result<(), String> {
    let components = match args.components {
        Some(c) => c,
        None => {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let release = exe.parent().ok_or("cannot locate the weir binary's folder")?;
            release.join("../wasm32-wasip2/release")
        }
    };
    for c in ["passthrough.wasm", "keyed_counter.wasm"] {
        if !components.join(c).exists() {
            return Err(format!(
                "{} is missing: build the plugins with `cargo build --release --target wasm32-wasip2 -p passthrough -p keyed-counter`, or pass --components",
                components.join(c).display()
            ));
        }
    }
    let rt = WasmRuntime::new(crate::cache_dir()).map_err(|e| e.to_string())?;
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let backend = match args.state_backend {
        crate::Backend::Memory => "memory".to_owned(),
        crate::Backend::Lsm => format!("lsm ({} MiB)", args.state_memory_mb),
    };
    println!(
        "weir bench: {} events, {} keys, {}-byte values, {backend} state, median of {} runs; {cpus} CPUs ({model})",
        args.events, args.keys, args.value_size, args.runs
    );
    println!("{:<52} {:>3} {:>14} {:>14} {:>11}", "pipeline", "p", "wasm ev/s", "native ev/s", "slowdown");
    for &p in &args.pipelines {
        for &par in &args.parallelism {
            let setup = Setup {
                components: &components,
                keys: args.keys,
                value_size: args.value_size,
                parallelism: par,
                backend: args.state_backend,
                memory_mb: args.state_memory_mb,
            };
            let text = spec_text(p, &setup, args.events);
            // Warm up: compile (or load from the cache) and touch every code path once.
            measure(&rt, &spec_text(p, &setup, 100_000), p, false, 1)?;
            let (wasm, n1) = measure(&rt, &text, p, false, args.runs)?;
            if args.no_native || p.window().is_some() {
                println!("{:<52} {:>3} {:>14.0} {:>14} {:>11}", p.name(), par, wasm, "-", "-");
                continue;
            }
            let (native, n2) = measure(&rt, &text, p, true, args.runs)?;
            if n1 != n2 {
                return Err(format!("the Wasm and native runs delivered different event counts ({n1} vs {n2})"));
            }
            println!("{:<52} {:>3} {:>14.0} {:>14.0} {:>10.2}x", p.name(), par, wasm, native, native / wasm);
        }
    }
    Ok(())
}
