//! # weir-bundle: operator bundles (`.weir` files)
//!
//! A bundle is one zip archive that holds a pipeline: its spec verbatim,
//! the Wasm components the spec names, optional sample data, and a
//! manifest (`manifest.json`) that lists each component with its world,
//! WIT version, size and SHA-256 (see `docs/bundles.md`). This crate
//! writes bundles ([`build`]) and reads them back ([`Bundle::open`]),
//! checking everything an uploaded file could get wrong and reporting
//! **every** problem found, not the first. It owns the format; it does
//! not store bundles or run jobs (the coordinator does).
//!
//! Reading is safe on hostile files: entry names are checked before
//! anything is used (no absolute paths, no `..`, no links, no
//! backslashes), sizes are bounded by [`Limits`] and counted as bytes are
//! read (a declared size can lie: decompression bombs stop at the limit),
//! and nothing is written to disk but components copied to a temporary
//! folder to be checked by wasmtime.
#![warn(missing_docs)]

mod build;

pub use build::{BuildError, build};

use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Component as PathPart, Path};
use weir_core::spec::Spec;
use weir_wasm::{WasmRuntime, World};

/// The bundle format this crate writes and reads.
pub const FORMAT: u32 = 1;

/// Where the manifest lives in the archive.
pub const MANIFEST: &str = "manifest.json";

/// A bundle's manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Manifest {
    /// The bundle format ([`FORMAT`]).
    pub format: u32,
    /// The pipeline's name.
    pub name: String,
    /// The bundle's version, as its author gives it.
    pub version: String,
    /// The archive path of the spec, kept verbatim.
    pub spec: String,
    /// The components.
    pub components: Vec<ComponentEntry>,
    /// Sample data, unpacked into a job's working directory.
    #[serde(default)]
    pub data: Vec<DataEntry>,
}

/// A component in a bundle.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ComponentEntry {
    /// Its archive path (`components/NAME.wasm`).
    pub path: String,
    /// The WIT world it implements (`map`, `process`, …).
    pub world: String,
    /// The WIT package and version it was built against.
    pub wit: String,
    /// Its SHA-256, lowercase hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// The `component:` values of the spec that name it, as written.
    pub refs: Vec<String>,
}

/// A file of sample data.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DataEntry {
    /// Its archive path: `files/` and its path relative to the spec.
    pub path: String,
    /// Its SHA-256, lowercase hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Bounds on what a bundle may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Entries in the archive.
    pub entries: usize,
    /// Bytes of one component.
    pub component_bytes: u64,
    /// Bytes of the manifest or a spec (`.yaml`, `.yml`).
    pub text_bytes: u64,
    /// Bytes of all entries, uncompressed.
    pub total_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { entries: 10_000, component_bytes: 64 << 20, text_bytes: 1 << 20, total_bytes: 1 << 30 }
    }
}

/// One thing wrong with a bundle: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The archive entry, spec place or component it is about.
    pub place: String,
    /// What is wrong, and what to do.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

fn problem(place: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem { place: place.into(), message: message.into() }
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The WIT package and version components are built against today.
pub fn wit_version() -> String {
    format!("{}@{}", weir_wasm::PACKAGE, weir_wasm::VERSION)
}

/// A bundle read and checked: its manifest, spec and entries.
#[derive(Debug)]
pub struct Bundle {
    /// The manifest.
    pub manifest: Manifest,
    /// The spec, as written.
    pub spec_text: String,
    /// The spec, parsed (paths as written, not resolved).
    pub spec: Spec,
    /// Every entry's bytes, by archive path.
    pub entries: BTreeMap<String, Vec<u8>>,
}

/// Whether `name` is a safe relative archive path: forward slashes, no
/// empty, `.` or `..` parts, not absolute, no backslash or NUL.
pub fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && !name.contains('\\')
        && !name.contains(':')
        && !name.chars().any(char::is_control)
        && name.split('/').all(|p| !p.is_empty() && p != "." && p != "..")
        && Path::new(name).components().all(|c| matches!(c, PathPart::Normal(_)))
}

impl Bundle {
    /// Reads the bundle in `bytes` and checks it: the archive and its
    /// entry names and sizes, the manifest, the spec (with line and
    /// column), each component's size, hash, WIT version and world
    /// (loaded by `rt`), that every component the spec names is in the
    /// manifest for the world it is used as, and the sample data's
    /// hashes. Returns every problem found (problems with the archive
    /// itself or the manifest stop the checks at that point).
    ///
    /// Give an untrusted bundle a runtime without a compiled-code cache
    /// (`WasmRuntime::new(None)`): `load` would store each component's
    /// compiled code there.
    pub fn open(bytes: &[u8], limits: Limits, rt: &WasmRuntime) -> Result<Bundle, Vec<Problem>> {
        let entries = read_entries(bytes, limits)?;
        let mut problems = Vec::new();
        let Some(manifest_bytes) = entries.get(MANIFEST) else {
            return Err(vec![problem(
                MANIFEST,
                "missing: this is not a Weir bundle (make one with `weir bundle build`)",
            )]);
        };
        let manifest: Manifest = match serde_json::from_slice(manifest_bytes) {
            Ok(m) => m,
            Err(e) => return Err(vec![problem(MANIFEST, format!("not a valid manifest: {e}"))]),
        };
        if manifest.format != FORMAT {
            return Err(vec![problem(
                MANIFEST,
                format!(
                    "bundle format {} is not format {FORMAT}, the one this weir reads; build it again with this weir",
                    manifest.format
                ),
            )]);
        }
        let spec_text = match entries.get(&manifest.spec).map(|b| String::from_utf8(b.clone())) {
            Some(Ok(t)) if t.len() as u64 > limits.text_bytes => {
                problems.push(problem(
                    &manifest.spec,
                    format!("the spec is larger than the {} bytes a spec may have", limits.text_bytes),
                ));
                None
            }
            Some(Ok(t)) => Some(t),
            Some(Err(_)) => {
                problems.push(problem(&manifest.spec, "the spec is not UTF-8 text"));
                None
            }
            None => {
                problems.push(problem(&manifest.spec, "the spec the manifest names is not in the archive"));
                None
            }
        };
        let spec = spec_text.as_ref().and_then(|t| match Spec::parse(Path::new(&manifest.spec), t) {
            Ok(s) => Some(s),
            Err(e) => {
                let place = match e.location {
                    Some((line, column)) => format!("{}:{line}:{column}", manifest.spec),
                    None => manifest.spec.clone(),
                };
                problems.push(problem(place, e.message));
                None
            }
        });
        check_components(&manifest, &entries, limits, rt, &mut problems);
        if let Some(spec) = &spec {
            check_refs(&manifest, spec, &mut problems);
        }
        for d in &manifest.data {
            match entries.get(&d.path) {
                None => problems.push(problem(&d.path, "sample data the manifest lists is not in the archive")),
                Some(b) if sha256_hex(b) != d.sha256 => {
                    problems.push(problem(&d.path, "its SHA-256 does not match the manifest's: the file was changed"))
                }
                Some(_) => {}
            }
            if !d.path.starts_with("files/") {
                problems.push(problem(&d.path, "sample data must lie under `files/`"));
            }
        }
        // A path that is another's folder cannot be unpacked as both.
        let data_paths: HashSet<&str> = manifest.data.iter().map(|d| d.path.as_str()).collect();
        for d in &manifest.data {
            for (i, _) in d.path.match_indices('/') {
                if data_paths.contains(&d.path[..i]) {
                    problems.push(problem(
                        &d.path[..i],
                        format!("sample data is a file here and a folder of `{}`: rename one", d.path),
                    ));
                }
            }
        }
        match (problems.is_empty(), spec, spec_text) {
            (true, Some(spec), Some(spec_text)) => Ok(Bundle { manifest, spec_text, spec, entries }),
            _ => Err(problems),
        }
    }
}

/// Every entry of the archive, its name checked and its size bounded.
fn read_entries(bytes: &[u8], limits: Limits) -> Result<BTreeMap<String, Vec<u8>>, Vec<Problem>> {
    let here = "the archive";
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| vec![problem(here, format!("not a readable zip archive ({e}); is the file complete?"))])?;
    if zip.len() > limits.entries {
        return Err(vec![problem(here, format!("{} entries, more than the {} allowed", zip.len(), limits.entries))]);
    }
    if zip.has_duplicate_names() {
        return Err(vec![problem(
            here,
            "holds two entries of one name; build the bundle again with `weir bundle build`",
        )]);
    }
    // Declared sizes first (the zip reader refuses data past an entry's
    // declared size), so a bomb is refused before anything inflates.
    if zip.decompressed_size().is_none_or(|n| n > u128::from(limits.total_bytes)) {
        return Err(vec![problem(
            here,
            format!("its entries inflate to more than the {} bytes a bundle may hold", limits.total_bytes),
        )]);
    }
    let mut problems = Vec::new();
    let mut entries = BTreeMap::new();
    let mut total = 0u64;
    for i in 0..zip.len() {
        let mut file = match zip.by_index(i) {
            Ok(f) => f,
            Err(e) => {
                problems.push(problem(format!("entry {i}"), format!("cannot be read: {e}")));
                continue;
            }
        };
        let name = match file.name() {
            Ok(n) => n.into_owned(),
            Err(e) => {
                problems.push(problem(format!("entry {i}"), format!("has no readable name: {e}")));
                continue;
            }
        };
        if file.is_dir() {
            if !safe_name(name.trim_end_matches(['/', '\\'])) || file.size() > 0 {
                problems.push(problem(
                    name.escape_debug().to_string(),
                    "a folder entry must be a relative path without `..` and hold nothing; refused",
                ));
            }
            continue;
        }
        if !safe_name(&name) {
            problems.push(problem(
                name.escape_debug().to_string(),
                "an entry name must be a relative path without `..`, `.`, backslashes or a leading `/`; refused",
            ));
            continue;
        }
        if file.is_symlink() {
            problems.push(problem(&name, "a link; bundles hold plain files only"));
            continue;
        }
        let cap = if name.ends_with(".wasm") {
            limits.component_bytes
        } else if name == MANIFEST || name.ends_with(".yaml") || name.ends_with(".yml") {
            limits.text_bytes
        } else {
            limits.total_bytes
        };
        let cap = cap.min(limits.total_bytes.saturating_sub(total));
        let mut data = Vec::new();
        // One byte past the cap tells a file at the cap from one over it.
        match (&mut file).take(cap.saturating_add(1)).read_to_end(&mut data) {
            Ok(_) if data.len() as u64 > cap => {
                // Stop here: the entries after it are not inflated.
                problems.push(problem(
                    &name,
                    format!(
                        "larger than the {cap} bytes allowed for it (a component may have {}, the manifest or a spec {}, the bundle {})",
                        limits.component_bytes, limits.text_bytes, limits.total_bytes
                    ),
                ));
                return Err(problems);
            }
            Ok(_) => {}
            Err(e) => {
                problems.push(problem(&name, format!("cannot be decompressed: {e}; the archive is damaged")));
                continue;
            }
        }
        total += data.len() as u64;
        if entries.insert(name.clone(), data).is_some() {
            problems.push(problem(&name, "appears twice in the archive"));
        }
    }
    if problems.is_empty() { Ok(entries) } else { Err(problems) }
}

fn check_components(
    manifest: &Manifest,
    entries: &BTreeMap<String, Vec<u8>>,
    limits: Limits,
    rt: &WasmRuntime,
    problems: &mut Vec<Problem>,
) {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            problems.push(problem("the bundle", format!("cannot make a temporary folder to check components: {e}")));
            return;
        }
    };
    let mut seen: HashSet<&str> = HashSet::new();
    let mut loaded: HashSet<(String, World)> = HashSet::new();
    for (n, c) in manifest.components.iter().enumerate() {
        let place = &c.path;
        if !seen.insert(&c.path) {
            problems.push(problem(place, "listed twice in the manifest; build the bundle again"));
            continue;
        }
        if !c.path.starts_with("components/") || !c.path.ends_with(".wasm") {
            problems.push(problem(place, "a component must lie under `components/` and end in `.wasm`"));
            continue;
        }
        let Some(bytes) = entries.get(&c.path) else {
            problems.push(problem(place, "a component the manifest lists is not in the archive"));
            continue;
        };
        if bytes.len() as u64 > limits.component_bytes {
            problems
                .push(problem(place, format!("larger than the {} bytes a component may have", limits.component_bytes)));
            continue;
        }
        let sha = sha256_hex(bytes);
        if bytes.len() as u64 != c.size || sha != c.sha256 {
            problems.push(problem(
                place,
                "its size or SHA-256 does not match the manifest's: the file was changed; build the bundle again",
            ));
            continue;
        }
        if c.wit != wit_version() {
            problems.push(problem(
                place,
                format!(
                    "built against {}, but this weir runs {}: rebuild it against this weir-sdk",
                    c.wit,
                    wit_version()
                ),
            ));
            continue;
        }
        let Some(world) = World::named(&c.world) else {
            let known: Vec<&str> = World::ALL.iter().map(|w| w.name()).collect();
            problems.push(problem(place, format!("unknown world `{}` (known: {})", c.world, known.join(", "))));
            continue;
        };
        if !loaded.insert((sha, world)) {
            continue;
        }
        let file = dir.path().join(format!("{n}.wasm"));
        if let Err(e) = std::fs::write(&file, bytes) {
            problems.push(problem(place, format!("cannot be copied out to be checked: {e}")));
            continue;
        }
        if let Err(e) = rt.load(&file, world) {
            let message = e.to_string().replace(&file.display().to_string(), place);
            problems.push(problem(place, message));
        }
        let _ = std::fs::remove_file(&file);
    }
}

/// Every component the spec names is in the manifest, for the world the
/// spec uses it as.
fn check_refs(manifest: &Manifest, spec: &Spec, problems: &mut Vec<Problem>) {
    let mut by_ref: HashMap<&str, &ComponentEntry> = HashMap::new();
    for c in &manifest.components {
        for r in &c.refs {
            if by_ref.insert(r, c).is_some() {
                problems.push(problem(MANIFEST, format!("the spec's component `{r}` is mapped to two components")));
            }
        }
    }
    for o in &spec.operators {
        for (path, world) in o.components() {
            let written = path.to_string_lossy();
            match by_ref.get(written.as_ref()) {
                None => problems.push(problem(
                    format!("{}: operator `{}`", manifest.spec, o.id),
                    format!("names component `{written}`, which the bundle does not hold; build the bundle again"),
                )),
                Some(c) if c.world != world => problems.push(problem(
                    format!("{}: operator `{}`", manifest.spec, o.id),
                    format!(
                        "uses `{written}` as world `{}`, but the bundle holds it as world `{}` ({})",
                        world, c.world, c.path
                    ),
                )),
                Some(_) => {}
            }
        }
    }
}
