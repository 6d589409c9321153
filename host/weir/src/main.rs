//! # weir — the command line
//!
//! `weir run SPEC.yaml` runs a pipeline in this process (local mode: a
//! coordinator and its worker in one process, serving the REST API);
//! `weir coordinator` runs a long-lived one and `weir submit`, `list`,
//! `info`, `cancel`, `exceptions` are its clients; `weir bundle` makes
//! bundles; `weir bench` measures throughput of Wasm and native
//! operators side by side. This crate owns argument parsing, the
//! compiled-component cache location, logging setup and how errors are
//! shown; the work itself is `weir-runtime`'s.

mod alloc;
mod bench;
mod bundle;
mod client;
mod serve;
mod state;

use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use weir_core::spec::Spec;
use weir_runtime::JobSummary;

#[global_allocator]
static ALLOC: alloc::HugePages = alloc::HugePages;

#[derive(Parser)]
#[command(name = "weir", version, about = "Stateful stream processing with WebAssembly operators")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline spec to the end of its input, in this process.
    Run {
        /// The pipeline spec (YAML). Relative paths in it resolve against its folder.
        spec: PathBuf,
        /// Default parallelism of operators (overrides the spec's `parallelism`).
        #[arg(long, short)]
        parallelism: Option<u32>,
        /// Where keyed state lives (overrides the spec's `state: backend`).
        #[arg(long, value_enum)]
        state_backend: Option<Backend>,
        /// MiB of keyed state the lsm backend keeps in memory (overrides
        /// the spec's `state: memory-mb`).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
        state_memory_mb: Option<u64>,
        /// Do not serve the REST API while the job runs.
        #[arg(long)]
        no_server: bool,
        /// Go on from the latest completed checkpoint of this job in its
        /// checkpoint folder (a fresh start when there is none): what a
        /// supervisor restarting the same command wants.
        #[arg(long, conflicts_with = "from_savepoint")]
        resume: bool,
        /// Start from a savepoint (or a retained checkpoint `chk-N`)
        /// folder: at another parallelism, state backend or operator
        /// version, state matched to operators by `id`.
        #[arg(long, value_name = "PATH")]
        from_savepoint: Option<PathBuf>,
        /// With --from-savepoint: drop state of operators the job no longer
        /// has, instead of refusing.
        #[arg(long, requires = "from_savepoint")]
        allow_non_restored_state: bool,
    },
    /// Run a coordinator: the REST API, stored bundles, jobs and an
    /// embedded worker, until SIGINT or SIGTERM.
    Coordinator(serve::CoordinatorArgs),
    /// Run a worker: join a coordinator's cluster with its join token and
    /// run the jobs it deploys in this process's slots.
    Worker(serve::WorkerArgs),
    /// Submit a job to a coordinator: a bundle, or a spec (bundled first).
    Submit(client::SubmitArgs),
    /// List a coordinator's jobs.
    List(client::Server),
    /// Show a job: state, vertices, metrics.
    Info(client::JobArgs),
    /// Cancel a job.
    Cancel(client::CancelArgs),
    /// Show what a checkpoint or savepoint folder holds, without running
    /// its job: operators, state names, keys per key group; or one key's
    /// state.
    State {
        /// A savepoint folder or a checkpoint's `chk-N` folder.
        path: PathBuf,
        /// With --key: the operator whose state to show.
        #[arg(long, requires = "key")]
        operator: Option<String>,
        /// With --operator: the key (its text, as `key-by` made it).
        #[arg(long, requires = "operator")]
        key: Option<String>,
    },
    /// Take a savepoint of a running job; prints its folder.
    Savepoint(client::SavepointArgs),
    /// Stop a job with a savepoint (`--savepoint`); prints its folder.
    Stop(client::StopArgs),
    /// Show a job's exceptions, the root cause first.
    Exceptions(client::JobArgs),
    /// Print the REST API's OpenAPI document (or, with --markdown, the
    /// reference of docs/rest-api.md written from it).
    #[command(hide = true)]
    Openapi {
        /// The Markdown reference instead of the JSON document.
        #[arg(long)]
        markdown: bool,
    },
    /// Measure events/s of Wasm and native operators on generated events.
    Bench(bench::BenchArgs),
    /// Make and check operator bundles (`.weir` files).
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
}

/// State backends, as `--state-backend` names them.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum Backend {
    /// Hash maps on the heap.
    Memory,
    /// Memory first, spilled to fjall past `--state-memory-mb`.
    Lsm,
}

/// Where compiled components are cached: `$WEIR_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/weir/components`, else `~/.cache/weir/components`. An
/// empty variable counts as unset (never the current directory).
pub(crate) fn cache_dir() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(d) = var("WEIR_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    let base =
        var("XDG_CACHE_HOME").map(PathBuf::from).or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("weir").join("components"))
}

fn print_summary(spec: &Spec, s: &JobSummary) {
    let name = spec.name.as_deref().unwrap_or("job");
    eprintln!("job `{name}` finished in {:.3} s", s.elapsed.as_secs_f64());
    if let Some(kb) = peak_rss_kb() {
        eprintln!("  peak resident memory: {:.1} MiB", kb as f64 / 1024.0);
    }
    eprintln!("  {:<24} {:>4} {:>14} {:>14}", "vertex", "p", "records in", "records out");
    for v in &s.vertices {
        eprintln!("  {:<24} {:>4} {:>14} {:>14}", v.id, v.parallelism, v.records_in, v.records_out);
    }
    for (op, tag, n) in &s.unread_side_outputs {
        eprintln!(
            "  warning: operator `{op}` sent {n} events to side output `{tag}`, which no sink or operator reads (add `input: {op}#{tag}` somewhere)"
        );
    }
}

/// The process's peak resident memory in KiB (`ru_maxrss`).
fn peak_rss_kb() -> Option<u64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole `rusage` into the pointer it is given.
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } == 0;
    // SAFETY: zeroed is a valid `rusage`, and a successful call filled it.
    ok.then(|| unsafe { usage.assume_init() }.ru_maxrss).and_then(|kb| u64::try_from(kb).ok())
}

/// Whether standard output was closed when the process started (`>&-`).
/// Rust's runtime reopens a closed stdout on /dev/null before `main`, so
/// the check runs earlier, from `.init_array`.
static STDOUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static CHECK_STDOUT_AT_START: extern "C" fn() = {
    extern "C" fn check() {
        // SAFETY: fcntl(F_GETFD) only reads the descriptor's flags.
        if unsafe { libc::fcntl(libc::STDOUT_FILENO, libc::F_GETFD) } == -1 {
            STDOUT_CLOSED.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    check
};

fn run(
    spec_path: &Path,
    parallelism: Option<u32>,
    backend: Option<Backend>,
    memory_mb: Option<u64>,
    no_server: bool,
    start: serve::Start,
) -> Result<(), String> {
    let mut spec = Spec::load(spec_path).map_err(|e| e.to_string())?;
    match backend {
        Some(Backend::Memory) => {
            spec.state.backend = weir_core::spec::StateBackendKind::Memory;
            spec.state.path = None;
            spec.state.keep = false;
        }
        Some(Backend::Lsm) => spec.state.backend = weir_core::spec::StateBackendKind::Lsm,
        None => {}
    }
    if let Some(mb) = memory_mb {
        spec.state.memory_mb = mb;
    }
    if STDOUT_CLOSED.load(std::sync::atomic::Ordering::Relaxed)
        && let Some(s) = spec.sinks.iter().find(|s| s.sink_type == weir_core::spec::SinkType::Stdout)
    {
        return Err(format!(
            "standard output is closed, so stdout sink `{}` would write nowhere; redirect stdout (to a file, or to /dev/null to drop the output on purpose)",
            s.id
        ));
    }
    if let Some(p) = parallelism {
        spec.set_parallelism(p).map_err(|e| format!("--parallelism: {e}"))?;
    }
    if (start.resume || start.from_savepoint.is_some()) && spec.checkpoints.is_none() {
        return Err(format!(
            "{}: --resume and --from-savepoint go on from the job's state, but the spec has no `checkpoints:` section \
             (add one: a job that keeps state takes checkpoints)",
            spec_path.display()
        ));
    }
    let summary = serve::local(spec.clone(), no_server, start)?;
    print_summary(&spec, &summary);
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour only on a terminal: never escape codes in a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                .unwrap_or_else(|_| "warn,weir::guest=info,lsm_tree::table::inner=error".into()),
        )
        .init();
    let cli = Cli::parse();
    let done = |r: Result<(), String>| r.map(|()| 0);
    let result = match cli.command {
        Command::Run {
            spec,
            parallelism,
            state_backend,
            state_memory_mb,
            no_server,
            resume,
            from_savepoint,
            allow_non_restored_state,
        } => {
            let start = serve::Start { resume, from_savepoint, allow_non_restored_state };
            done(run(&spec, parallelism, state_backend, state_memory_mb, no_server, start))
        }
        Command::Bench(args) => done(bench::run(args)),
        Command::Bundle(cmd) => done(bundle::run(cmd)),
        Command::Coordinator(args) => done(serve::coordinator(args)),
        Command::Worker(args) => done(serve::worker(args)),
        Command::Submit(args) => client::submit(args),
        Command::List(args) => client::list(args),
        Command::Info(args) => client::info(args),
        Command::Cancel(args) => client::cancel(args),
        Command::Savepoint(args) => client::savepoint(args, false),
        Command::State { path, operator, key } => done(state::run(&path, operator.as_deref(), key.as_deref())),
        Command::Stop(args) => client::savepoint(args.args, true),
        Command::Exceptions(args) => client::exceptions(args),
        Command::Openapi { markdown } => {
            if markdown {
                print!("{}", weir_coordinator::rest::reference_markdown());
            } else {
                let doc = weir_coordinator::rest::openapi();
                println!("{}", serde_json::to_string_pretty(&doc).expect("invariant: the document serializes"));
            }
            Ok(0)
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
