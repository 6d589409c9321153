//! `weir bundle build DIR` and `weir bundle inspect FILE`.

use crate::cache_dir;
use std::path::PathBuf;
use weir_bundle::{Bundle, Limits};
use weir_wasm::WasmRuntime;

/// What `weir bundle` does.
#[derive(clap::Subcommand)]
pub(crate) enum BundleCommand {
    /// Pack a folder's spec, the components it names (building Cargo
    /// package folders for wasm32-wasip2) and its sample data into one
    /// `.weir` file.
    Build {
        /// The folder with the spec (`pipeline.yaml`, or its only YAML file).
        dir: PathBuf,
        /// The spec, when the folder has several.
        #[arg(long)]
        spec: Option<PathBuf>,
        /// The bundle file to write (default: `NAME-VERSION.weir` in the current folder).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// The bundle's version.
        #[arg(long, default_value = "0.1.0")]
        version: String,
    },
    /// Check a bundle and show what it holds.
    Inspect {
        /// The `.weir` file.
        file: PathBuf,
        /// Print the manifest as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Store a bundle on a coordinator (it checks it first).
    Upload {
        /// The `.weir` file.
        file: PathBuf,
        #[command(flatten)]
        server: crate::client::Server,
    },
    /// List a coordinator's bundles.
    List {
        #[command(flatten)]
        server: crate::client::Server,
    },
    /// Remove a bundle from a coordinator (refused while a job that has
    /// not ended uses it).
    Delete {
        /// The bundle's id.
        id: String,
        #[command(flatten)]
        server: crate::client::Server,
    },
}

pub(crate) fn run(cmd: BundleCommand) -> Result<(), String> {
    match cmd {
        BundleCommand::Upload { file, server } => crate::client::bundle_upload(&file, &server),
        BundleCommand::List { server } => crate::client::bundle_list(&server),
        BundleCommand::Delete { id, server } => crate::client::bundle_delete(&id, &server),
        BundleCommand::Build { dir, spec, output, version } => {
            let rt = WasmRuntime::new(cache_dir()).map_err(|e| e.to_string())?;
            let (manifest, out, outside) = weir_bundle::build(&dir, spec.as_deref(), &version, output.as_deref(), &rt)
                .map_err(|e| e.to_string())?;
            eprintln!(
                "built {} ({} component{}, {} data file{})",
                out.display(),
                manifest.components.len(),
                if manifest.components.len() == 1 { "" } else { "s" },
                manifest.data.len(),
                if manifest.data.len() == 1 { "" } else { "s" }
            );
            for p in outside {
                eprintln!("  note: source file `{p}` lies outside the spec's folder and is not in the bundle");
            }
            Ok(())
        }
        BundleCommand::Inspect { file, json } => {
            // No compiled-code cache: a bundle from elsewhere leaves nothing behind.
            let rt = WasmRuntime::new(None).map_err(|e| e.to_string())?;
            let bytes = std::fs::read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let bundle = Bundle::open(&bytes, Limits::default(), &rt).map_err(|problems| {
                let mut m = format!(
                    "{} is not a valid bundle ({} problem{}):",
                    file.display(),
                    problems.len(),
                    if problems.len() == 1 { "" } else { "s" }
                );
                for p in problems {
                    m.push_str(&format!("\n  {p}"));
                }
                m
            })?;
            let m = &bundle.manifest;
            if json {
                println!("{}", serde_json::to_string_pretty(m).map_err(|e| e.to_string())?);
                return Ok(());
            }
            println!("bundle {} {} (format {}), valid", m.name, m.version, m.format);
            println!(
                "spec: {} ({} sources, {} operators, {} sinks)",
                m.spec,
                bundle.spec.sources.len(),
                bundle.spec.operators.len(),
                bundle.spec.sinks.len()
            );
            println!("{:<40} {:<12} {:>10}  sha256", "component", "world", "bytes");
            for c in &m.components {
                println!("{:<40} {:<12} {:>10}  {}", c.path, c.world, c.size, c.sha256.get(..16).unwrap_or(&c.sha256));
            }
            for d in &m.data {
                println!("data: {} ({} bytes)", d.path, d.size);
            }
            Ok(())
        }
    }
}
