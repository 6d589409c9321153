//! Making a bundle from a folder with a spec (`weir bundle build DIR`).

use crate::{ComponentEntry, DataEntry, FORMAT, MANIFEST, Manifest, Problem, problem, sha256_hex, wit_version};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use weir_core::spec::{SourceType, Spec};
use weir_wasm::{WasmRuntime, World};

/// Why a bundle could not be built: every problem found.
#[derive(Debug)]
pub struct BuildError(pub Vec<Problem>);

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the bundle was not built ({} problem{}):", self.0.len(), if self.0.len() == 1 { "" } else { "s" })?;
        for p in &self.0 {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for BuildError {}

/// The spec of folder `dir`: `spec` when given, else `pipeline.yaml`, else
/// its only `.yaml`/`.yml` file.
fn find_spec(dir: &Path, spec: Option<&Path>) -> Result<PathBuf, Problem> {
    if let Some(s) = spec {
        return Ok(if s.is_relative() { dir.join(s) } else { s.to_owned() });
    }
    let default = dir.join("pipeline.yaml");
    if default.is_file() {
        return Ok(default);
    }
    let here = dir.display().to_string();
    let read = std::fs::read_dir(dir).map_err(|e| problem(&here, format!("cannot read the folder: {e}")))?;
    let mut yamls: Vec<PathBuf> = read
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    yamls.sort();
    match yamls.len() {
        1 => Ok(yamls.remove(0)),
        0 => Err(problem(&here, "holds no spec: add `pipeline.yaml`, or name the spec with `--spec`")),
        _ => Err(problem(&here, "holds several `.yaml` files and no `pipeline.yaml`: name the spec with `--spec`")),
    }
}

/// Builds the Cargo package in `dir` for `wasm32-wasip2` and returns its
/// component.
fn cargo_component(dir: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(dir)
        .args(["build", "--release", "--target", "wasm32-wasip2", "--message-format=json-render-diagnostics"])
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run cargo to build it: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(12).collect::<Vec<_>>().into_iter().rev().collect();
        return Err(format!(
            "`cargo build --release --target wasm32-wasip2` failed (is the target installed? `rustup target add wasm32-wasip2`):\n{}",
            tail.join("\n")
        ));
    }
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if msg["reason"] != "compiler-artifact"
            || !msg["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "cdylib"))
        {
            continue;
        }
        let manifest = msg["manifest_path"].as_str().map(PathBuf::from);
        if manifest.as_deref() != Some(&dir.join("Cargo.toml"))
            && manifest.and_then(|m| m.canonicalize().ok()) != dir.join("Cargo.toml").canonicalize().ok()
        {
            continue;
        }
        for f in msg["filenames"].as_array().into_iter().flatten().filter_map(|f| f.as_str()) {
            if f.ends_with(".wasm") {
                found.push(PathBuf::from(f));
            }
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err("the package builds no `.wasm` component: give it `[lib] crate-type = [\"cdylib\"]`".into()),
        _ => Err("the package builds several `.wasm` files; name the component file instead".into()),
    }
}

/// Builds the bundle of the spec in folder `dir` (`spec`, else
/// `pipeline.yaml`, else its only YAML file) into `out` (default
/// `NAME-VERSION.weir` in the current folder), with `version`; returns
/// its manifest, its path and the source files left out.
///
/// Components the spec names as Cargo package folders are built for
/// `wasm32-wasip2`; `.wasm` files are taken as they are. Each is checked
/// against the world the spec uses it as. Sample data is each file
/// source's file that lies inside the spec's folder; the others are
/// returned (a job reads them where the coordinator allows). The file is
/// written whole or not at all.
pub fn build(
    dir: &Path,
    spec: Option<&Path>,
    version: &str,
    out: Option<&Path>,
    rt: &WasmRuntime,
) -> Result<(Manifest, PathBuf, Vec<String>), BuildError> {
    let one = |p: Problem| BuildError(vec![p]);
    let spec_path = find_spec(dir, spec).map_err(one)?;
    let place = spec_path.display().to_string();
    let text = std::fs::read_to_string(&spec_path).map_err(|e| one(problem(&place, format!("cannot read: {e}"))))?;
    let parsed = Spec::parse(&spec_path, &text).map_err(|e| {
        let at = match e.location {
            Some((l, c)) => format!("{place}:{l}:{c}"),
            None => place.clone(),
        };
        one(problem(at, e.message))
    })?;
    let base = spec_path.parent().unwrap_or(Path::new("."));
    let mut problems = Vec::new();
    // By file: (world, refs as written).
    let mut files: BTreeMap<PathBuf, (World, Vec<String>)> = BTreeMap::new();
    for o in &parsed.operators {
        for (path, world_name) in o.components() {
            let written = path.to_string_lossy().into_owned();
            let at = format!("{place}: operator `{}`", o.id);
            let world = World::named(world_name).expect("invariant: the spec names only worlds that exist");
            let resolved = base.join(path);
            let file = if resolved.join("Cargo.toml").is_file() {
                match cargo_component(&resolved) {
                    Ok(f) => f,
                    Err(e) => {
                        problems.push(problem(at, format!("component `{written}`: {e}")));
                        continue;
                    }
                }
            } else if resolved.is_file() {
                resolved
            } else {
                problems.push(problem(
                    at,
                    format!(
                        "component `{written}` is neither a file nor a Cargo package folder (looked at {})",
                        resolved.display()
                    ),
                ));
                continue;
            };
            let key = file.canonicalize().unwrap_or(file);
            let entry = files.entry(key).or_insert_with(|| (world, Vec::new()));
            if entry.0 != world {
                problems.push(problem(
                    at,
                    format!(
                        "uses `{written}` as world `{}`, where another operator uses it as `{}`",
                        world.name(),
                        entry.0.name()
                    ),
                ));
            }
            if !entry.1.contains(&written) {
                entry.1.push(written);
            }
        }
    }
    let mut archive: Vec<(String, Vec<u8>)> = vec![("spec.yaml".into(), text.clone().into_bytes())];
    let mut components = Vec::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for (file, (world, refs)) in &files {
        if let Err(e) = rt.load(file, *world) {
            problems.push(problem(file.display().to_string(), e.to_string()));
            continue;
        }
        let bytes = match std::fs::read(file) {
            Ok(b) => b,
            Err(e) => {
                problems.push(problem(file.display().to_string(), format!("cannot read: {e}")));
                continue;
            }
        };
        let stem = file.file_stem().map_or("component".into(), |s| s.to_string_lossy().into_owned());
        let stem: String =
            stem.chars().map(|c| if c.is_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
        let n = names.entry(stem.clone()).or_insert(1);
        let mut path = format!("components/{stem}.wasm");
        while archive.iter().any(|(p, _)| *p == path) {
            *n += 1;
            path = format!("components/{stem}-{n}.wasm");
        }
        components.push(ComponentEntry {
            path: path.clone(),
            world: world.name().into(),
            wit: wit_version(),
            sha256: sha256_hex(&bytes),
            size: bytes.len() as u64,
            refs: refs.clone(),
        });
        archive.push((path, bytes));
    }
    let mut data = Vec::new();
    let mut outside = Vec::new();
    for s in parsed.sources.iter().filter(|s| s.source_type == SourceType::File) {
        let Some(p) = &s.path else { continue };
        let rel = p.to_string_lossy().replace('\\', "/");
        let rel: String = rel.split('/').filter(|part| !part.is_empty() && *part != ".").collect::<Vec<_>>().join("/");
        // Inside the folder once links are resolved, not only as written.
        let inside = match (base.join(&rel).canonicalize(), base.canonicalize()) {
            (Ok(file), Ok(folder)) => file.starts_with(folder),
            _ => true, // unreadable: reported below
        };
        if p.is_absolute() || !crate::safe_name(&rel) || !inside {
            outside.push(rel);
            continue;
        }
        match std::fs::read(base.join(&rel)) {
            Ok(bytes) => {
                let path = format!("files/{rel}");
                if !data.iter().any(|d: &DataEntry| d.path == path) {
                    data.push(DataEntry { path: path.clone(), sha256: sha256_hex(&bytes), size: bytes.len() as u64 });
                    archive.push((path, bytes));
                }
            }
            Err(e) => {
                problems.push(problem(format!("{place}: source `{}`", s.id), format!("cannot read `{rel}`: {e}")))
            }
        }
    }
    if !problems.is_empty() {
        return Err(BuildError(problems));
    }
    let name = parsed.name.clone().unwrap_or_else(|| {
        std::fs::canonicalize(dir)
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "job".into())
    });
    let file_name: String = format!("{name}-{version}")
        .chars()
        .map(|c| if c.is_alphanumeric() || "-_.".contains(c) { c } else { '_' })
        .collect();
    let out = out.map_or_else(|| PathBuf::from(format!("{file_name}.weir")), Path::to_owned);
    let manifest =
        Manifest { format: FORMAT, name, version: version.into(), spec: "spec.yaml".into(), components, data };
    write_zip(&out, &manifest, &archive)
        .map_err(|e| one(problem(out.display().to_string(), format!("cannot write the bundle: {e}"))))?;
    Ok((manifest, out, outside))
}

/// Writes the archive to a temporary file beside `out`, then renames it
/// into place: never a half-written bundle under its name.
fn write_zip(out: &Path, manifest: &Manifest, archive: &[(String, Vec<u8>)]) -> std::io::Result<()> {
    let dir = out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    {
        let mut zip = zip::ZipWriter::new(tmp.as_file_mut());
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        let json = serde_json::to_vec_pretty(manifest).map_err(std::io::Error::other)?;
        zip.start_file(MANIFEST, options).map_err(std::io::Error::other)?;
        zip.write_all(&json)?;
        for (name, bytes) in archive {
            zip.start_file(name.as_str(), options).map_err(std::io::Error::other)?;
            zip.write_all(bytes)?;
        }
        zip.finish().map_err(std::io::Error::other)?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(out).map_err(|e| e.error)?;
    Ok(())
}
