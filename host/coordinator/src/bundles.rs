//! Stored bundles: an upload is checked whole (every problem listed),
//! then its components and sample data go to the blob store and its
//! record (`bundles/<id>.json`, the manifest and the spec) is written
//! last, atomically: a bundle is stored whole or not at all.

use crate::api::{BundleInfo, BundleList, ComponentInfo, ComponentUploaded, ErrorItem};
use crate::blobs::{is_sha256, write_atomic};
use crate::{ApiError, Coordinator, lock, now_ms};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use weir_bundle::{Bundle, Manifest, sha256_hex};

/// What the coordinator keeps of a bundle besides its blobs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct BundleRecord {
    pub id: String,
    pub size: u64,
    pub uploaded_at: u64,
    pub manifest: Manifest,
    pub spec_text: String,
}

impl BundleRecord {
    /// The blobs it holds: components and sample data.
    pub fn blobs(&self) -> impl Iterator<Item = &str> {
        let c = self.manifest.components.iter().map(|c| c.sha256.as_str());
        c.chain(self.manifest.data.iter().map(|d| d.sha256.as_str()))
    }
}

/// Reads every record in `dir` (made if missing). A record that cannot be
/// read is skipped with a warning: one damaged file does not stop the
/// coordinator.
pub(crate) fn load_records(dir: &Path) -> std::io::Result<BTreeMap<String, BundleRecord>> {
    std::fs::create_dir_all(dir)?;
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir)? {
        let path = e?.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<BundleRecord>(&b).map_err(|e| e.to_string()))
        {
            Ok(r) => {
                out.insert(r.id.clone(), r);
            }
            Err(e) => tracing::warn!("skipping bundle record {}: {e}", path.display()),
        }
    }
    Ok(out)
}

impl Coordinator {
    fn bundle_info(&self, r: &BundleRecord) -> BundleInfo {
        let jobs = lock(&self.jobs).of_bundle(&r.id);
        BundleInfo {
            id: r.id.clone(),
            name: r.manifest.name.clone(),
            version: r.manifest.version.clone(),
            size: r.size,
            uploaded_at: r.uploaded_at,
            components: r
                .manifest
                .components
                .iter()
                .map(|c| ComponentInfo {
                    path: c.path.clone(),
                    world: c.world.clone(),
                    wit: c.wit.clone(),
                    sha256: c.sha256.clone(),
                    size: c.size,
                    refs: c.refs.clone(),
                })
                .collect(),
            data: r.manifest.data.iter().map(|d| d.path.strip_prefix("files/").unwrap_or(&d.path).to_owned()).collect(),
            spec: r.spec_text.clone(),
            jobs,
        }
    }

    /// Checks and stores an uploaded bundle. `Ok((true, _))`: stored now;
    /// `Ok((false, _))`: the same file was stored before.
    pub fn upload_bundle(&self, bytes: &[u8]) -> Result<(bool, BundleInfo), ApiError> {
        let id = sha256_hex(bytes);
        let existing = lock(&self.bundles).get(&id).cloned();
        if let Some(r) = existing {
            return Ok((false, self.bundle_info(&r)));
        }
        let bundle = Bundle::open(bytes, self.config.limits, &self.check_rt).map_err(|problems| {
            ApiError::problems(problems.into_iter().map(|p| ErrorItem { place: p.place, message: p.message }).collect())
        })?;
        let store = |sha: &str, path: &str| {
            let b = bundle.entries.get(path).expect("invariant: Bundle::open checked every listed entry is there");
            self.blobs.put(sha, b).map_err(|e| ApiError::internal(path, format!("cannot store it: {e}")))
        };
        let entries = || {
            let c = bundle.manifest.components.iter().map(|c| (c.sha256.as_str(), c.path.as_str()));
            c.chain(bundle.manifest.data.iter().map(|d| (d.sha256.as_str(), d.path.as_str())))
        };
        // Written before the lock (they may be large), then made sure of
        // under it: a deletion meanwhile may have removed a shared one.
        for (sha, path) in entries() {
            store(sha, path)?;
        }
        let mut bundles = lock(&self.bundles);
        for (sha, path) in entries() {
            store(sha, path)?;
        }
        let record = BundleRecord {
            id: id.clone(),
            size: bytes.len() as u64,
            uploaded_at: now_ms(),
            manifest: bundle.manifest,
            spec_text: bundle.spec_text,
        };
        let json = serde_json::to_vec_pretty(&record).expect("invariant: records serialize");
        write_atomic(&self.config.data_dir.join("bundles").join(format!("{id}.json")), &json)
            .map_err(|e| ApiError::internal("bundle", format!("cannot store its record: {e}")))?;
        bundles.insert(id, record.clone());
        drop(bundles);
        tracing::info!("stored bundle {} ({} {})", record.id, record.manifest.name, record.manifest.version);
        Ok((true, self.bundle_info(&record)))
    }

    /// Every stored bundle, newest first.
    pub fn bundles(&self) -> BundleList {
        let mut records: Vec<BundleRecord> = lock(&self.bundles).values().cloned().collect();
        records.sort_by(|a, b| b.uploaded_at.cmp(&a.uploaded_at).then_with(|| a.id.cmp(&b.id)));
        BundleList { bundles: records.iter().map(|r| self.bundle_info(r)).collect() }
    }

    pub(crate) fn bundle_record(&self, id: &str) -> Result<BundleRecord, ApiError> {
        lock(&self.bundles).get(id).cloned().ok_or_else(|| {
            ApiError::not_found("bundle", format!("no bundle `{id}` is stored (GET /v1/bundles lists them)"))
        })
    }

    /// A stored bundle.
    pub fn bundle(&self, id: &str) -> Result<BundleInfo, ApiError> {
        Ok(self.bundle_info(&self.bundle_record(id)?))
    }

    /// Removes a bundle no job that has not ended uses, and the blobs
    /// nothing else holds.
    pub fn delete_bundle(&self, id: &str) -> Result<(), ApiError> {
        let jobs = lock(&self.jobs);
        let record = self.bundle_record(id)?;
        let active = jobs.active_from_bundle(id);
        if !active.is_empty() {
            return Err(ApiError::conflict(
                "bundle",
                format!("bundle `{id}` is used by jobs that have not ended ({}); cancel them first", active.join(", ")),
            ));
        }
        let mut bundles = lock(&self.bundles);
        match std::fs::remove_file(self.config.data_dir.join("bundles").join(format!("{id}.json"))) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(ApiError::internal("bundle", format!("cannot remove its record: {e}")));
            }
            _ => {}
        }
        bundles.remove(id);
        let mut held: HashSet<&str> = bundles.values().flat_map(|r| r.blobs()).collect();
        let job_blobs = jobs.active_blobs();
        held.extend(job_blobs.iter().map(String::as_str));
        let standalone = lock(&self.standalone);
        held.extend(standalone.iter().map(String::as_str));
        for sha in record.blobs().filter(|s| !held.contains(s)) {
            self.blobs.remove(sha);
        }
        Ok(())
    }

    /// Stores a component uploaded alone (for a job submitted as a spec):
    /// it must be a WebAssembly component within the size limit; its
    /// world is checked when a job uses it.
    pub fn upload_component(&self, bytes: &[u8]) -> Result<ComponentUploaded, ApiError> {
        if bytes.len() as u64 > self.config.limits.component_bytes {
            return Err(ApiError::bad_request(
                "component",
                format!(
                    "{} bytes is more than the {} a component may have",
                    bytes.len(),
                    self.config.limits.component_bytes
                ),
            ));
        }
        // A component's preamble: the magic, then version 0x0d and layer 1.
        if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
            return Err(ApiError::bad_request("component", "not a WebAssembly file (it does not start with `\\0asm`)"));
        }
        if bytes[4..8] != [0x0d, 0x00, 0x01, 0x00] {
            return Err(ApiError::bad_request(
                "component",
                "a core WebAssembly module, not a component: build it for `wasm32-wasip2`",
            ));
        }
        let sha = sha256_hex(bytes);
        let mut standalone = lock(&self.standalone);
        self.blobs.put(&sha, bytes).map_err(|e| ApiError::internal("component", format!("cannot store it: {e}")))?;
        if standalone.insert(sha.clone()) {
            // A component uploaded alone stays, whatever bundles come and go.
            let marker = self.config.data_dir.join("components").join(&sha);
            write_atomic(&marker, b"")
                .map_err(|e| ApiError::internal("component", format!("cannot record it: {e}")))?;
        }
        Ok(ComponentUploaded { sha256: sha, size: bytes.len() as u64 })
    }

    pub(crate) fn blob_path(&self, sha: &str) -> Option<std::path::PathBuf> {
        (is_sha256(sha) && self.blobs.contains(sha)).then(|| self.blobs.path(sha))
    }

    pub(crate) fn copy_blob(&self, sha: &str, to: &Path) -> std::io::Result<()> {
        self.blobs.copy_to(sha, to)
    }
}
