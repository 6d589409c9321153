//! `weir bench`: events/s of generator → map → discard and generator →
//! key_by → process (ValueState counter) → discard, with Wasm components
//! and with native Rust operators in the same run, at each parallelism.

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
    /// Runs per configuration; the best is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Folder with passthrough.wasm and keyed_counter.wasm (default: the
    /// build's wasm32-wasip2/release folder next to this binary's).
    #[arg(long)]
    components: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq)]
enum Pipeline {
    Map,
    Process,
}

fn spec_text(p: Pipeline, components: &Path, events: u64, keys: u64, value_size: usize, parallelism: u32) -> String {
    let per_subtask = (events / u64::from(parallelism)).max(1);
    let source = format!(
        "parallelism: {parallelism}\nsources:\n  - {{id: gen, type: generator, seed: 1, count: {per_subtask}, keys: {keys}, value-size: {value_size}}}\n"
    );
    let op = match p {
        Pipeline::Map => format!(
            "  - {{id: op, kind: map, component: {}, input: gen}}\n",
            components.join("passthrough.wasm").display()
        ),
        Pipeline::Process => format!(
            "  - {{id: op, kind: process, component: {}, input: gen, key-by: '@key'}}\n",
            components.join("keyed_counter.wasm").display()
        ),
    };
    format!("{source}operators:\n{op}sinks:\n  - {{id: out, type: discard, input: op}}\n")
}

fn native(p: Pipeline) -> Native {
    match p {
        Pipeline::Map => Native::Map(Box::new(|| Box::new(|e, out| out.push(e.key, e.value, e.timestamp, e.origin)))),
        Pipeline::Process => Native::Process(Box::new(|| {
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
    }
}

fn measure(rt: &WasmRuntime, text: &str, p: Pipeline, native_op: bool, runs: u32) -> Result<(f64, u64), String> {
    let spec = Spec::parse(Path::new("bench.yaml"), text).map_err(|e| e.to_string())?;
    let mut best = 0f64;
    let mut events = 0;
    for _ in 0..runs {
        let mut options = RunOptions::default();
        if native_op {
            options.native.insert("op".into(), native(p));
        }
        let s = weir_runtime::run(&spec, rt, options).map_err(|e| e.to_string())?;
        events = s.vertices.iter().find(|v| v.id == "out").map_or(0, |v| v.records_in);
        best = best.max(events as f64 / s.elapsed.as_secs_f64());
    }
    Ok((best, events))
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
    println!(
        "weir bench: {} events, {} keys, {}-byte values, best of {} runs; {cpus} CPUs ({model})",
        args.events, args.keys, args.value_size, args.runs
    );
    println!("{:<44} {:>3} {:>14} {:>14} {:>11}", "pipeline", "p", "wasm ev/s", "native ev/s", "slowdown");
    for (p, name) in [
        (Pipeline::Map, "generator → map → discard"),
        (Pipeline::Process, "generator → key_by → process(ValueState) → discard"),
    ] {
        for &par in &args.parallelism {
            let text = spec_text(p, &components, args.events, args.keys, args.value_size, par);
            // Warm up: compile (or load from the cache) and touch every code path once.
            let warm = spec_text(p, &components, 100_000, args.keys, args.value_size, par);
            measure(&rt, &warm, p, false, 1)?;
            let (wasm, n1) = measure(&rt, &text, p, false, args.runs)?;
            let (native, n2) = measure(&rt, &text, p, true, args.runs)?;
            if n1 != n2 {
                return Err(format!("the Wasm and native runs delivered different event counts ({n1} vs {n2})"));
            }
            println!("{:<44} {:>3} {:>14.0} {:>14.0} {:>10.2}x", name, par, wasm, native, native / wasm);
        }
    }
    Ok(())
}
