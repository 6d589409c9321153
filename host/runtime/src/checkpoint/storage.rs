//! Where checkpoint files live: a folder on the local file system, or a
//! prefix in S3-compatible object storage (`s3://bucket/prefix`, through
//! the `object_store` crate). Both are seen as a [`Folder`] of named
//! files and subfolders, with the few operations checkpoints need.
//!
//! Local files are written, synced and (the metadata) renamed into place,
//! so a crash never leaves a half-written file under a final name; an
//! object-store PUT is atomic by itself, and a large file goes up in
//! parts that become visible only when the upload completes.

use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Whether `location` names object storage (`scheme://…`) rather than a
/// local path.
fn is_url(location: &Path) -> bool {
    location.to_str().is_some_and(|s| s.contains("://"))
}

/// A folder of checkpoint files.
#[derive(Clone)]
pub(crate) struct Folder {
    at: At,
}

#[derive(Clone)]
enum At {
    Local(PathBuf),
    Object { bucket: Arc<Bucket>, prefix: String },
}

/// One bucket of object storage and the runtime its requests run on.
pub(crate) struct Bucket {
    /// `s3://bucket`, for messages.
    url: String,
    store: Box<dyn ObjectStore>,
}

impl std::fmt::Debug for Folder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

/// Parts of a large upload; object stores take at least 5 MiB per part.
const PART: usize = 16 << 20;

/// The runtime object-storage requests run on: its own threads, so a
/// caller on any thread (a tokio task included) just waits.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("weir-object-store")
            .enable_all()
            .build()
            .expect("invariant: a tokio runtime starts")
    })
}

/// Runs `f` on the object-storage runtime and waits for it.
fn wait<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(f.await);
    });
    rx.recv().expect("invariant: object-storage requests run to their end")
}

fn io(e: object_store::Error) -> std::io::Error {
    match e {
        object_store::Error::NotFound { .. } => std::io::Error::new(std::io::ErrorKind::NotFound, e.to_string()),
        e => std::io::Error::other(e.to_string()),
    }
}

impl Folder {
    /// The folder at `location`: a local path, or `s3://bucket/prefix`
    /// (credentials, region and endpoint from the `AWS_*` environment
    /// variables, as the AWS tools read them; `AWS_ENDPOINT_URL` for
    /// S3-compatible stores, `AWS_ALLOW_HTTP=true` for one without TLS).
    pub fn at(location: &Path) -> Result<Folder, String> {
        if !is_url(location) {
            return Ok(Folder { at: At::Local(location.to_owned()) });
        }
        let text = location.to_str().unwrap_or_default();
        let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a valid URL: {e}"))?;
        if url.scheme() != "s3" {
            return Err(format!(
                "`{text}`: checkpoints go on the local file system or on S3-compatible storage (`s3://bucket/prefix`), \
                 not `{}://`",
                url.scheme()
            ));
        }
        let Some(bucket) = url.host_str().filter(|b| !b.is_empty()) else {
            return Err(format!("`{text}` names no bucket: write `s3://bucket/prefix`"));
        };
        let store = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| format!("cannot use `{text}`: {e}. Set AWS_REGION, the credentials and, for a store other than AWS, AWS_ENDPOINT_URL"))?;
        let prefix = url.path().trim_matches('/').to_owned();
        let bucket = Arc::new(Bucket { url: format!("s3://{bucket}"), store: Box::new(store) });
        Ok(Folder { at: At::Object { bucket, prefix } })
    }

    /// Where it is, for messages: its path, or its URL.
    pub fn display(&self) -> String {
        match &self.at {
            At::Local(p) => p.display().to_string(),
            At::Object { bucket, prefix } if prefix.is_empty() => bucket.url.clone(),
            At::Object { bucket, prefix } => format!("{}/{prefix}", bucket.url),
        }
    }

    /// Where it is, as a path (a URL for object storage).
    pub fn path(&self) -> PathBuf {
        match &self.at {
            At::Local(p) => p.clone(),
            At::Object { .. } => PathBuf::from(self.display()),
        }
    }

    /// Where file `name` in it is, for messages.
    pub fn display_file(&self, name: &str) -> String {
        match &self.at {
            At::Local(p) => p.join(name).display().to_string(),
            At::Object { .. } => format!("{}/{name}", self.display()),
        }
    }

    /// Its subfolder `name`.
    pub fn join(&self, name: &str) -> Folder {
        let at = match &self.at {
            At::Local(p) => At::Local(p.join(name)),
            At::Object { bucket, prefix } if prefix.is_empty() => {
                At::Object { bucket: bucket.clone(), prefix: name.to_owned() }
            }
            At::Object { bucket, prefix } => At::Object { bucket: bucket.clone(), prefix: format!("{prefix}/{name}") },
        };
        Folder { at }
    }

    /// The folder it is in (itself at the top of a bucket).
    pub fn parent(&self) -> Folder {
        let at = match &self.at {
            At::Local(p) => At::Local(p.parent().unwrap_or(p).to_owned()),
            At::Object { bucket, prefix } => {
                At::Object { bucket: bucket.clone(), prefix: prefix.rsplit_once('/').map_or("", |(p, _)| p).to_owned() }
            }
        };
        Folder { at }
    }

    fn object(prefix: &str, name: &str) -> ObjectPath {
        if prefix.is_empty() { ObjectPath::from(name) } else { ObjectPath::from(format!("{prefix}/{name}")) }
    }

    /// Makes the folder (object storage has none to make).
    pub fn create(&self) -> std::io::Result<()> {
        match &self.at {
            At::Local(p) => std::fs::create_dir_all(p),
            At::Object { .. } => Ok(()),
        }
    }

    /// Writes file `name`, durably: synced, or uploaded whole. With
    /// `atomic`, a local file is written beside and renamed into place.
    pub fn put(&self, name: &str, data: &[u8], atomic: bool) -> std::io::Result<()> {
        match &self.at {
            At::Local(p) => {
                let target = p.join(name);
                let written = if atomic { p.join(format!("{name}.tmp")) } else { target.clone() };
                let mut f = std::fs::File::create(&written)?;
                f.write_all(data)?;
                f.sync_all()?;
                if atomic {
                    std::fs::rename(&written, &target)?;
                }
                Ok(())
            }
            At::Object { bucket, prefix } => {
                let path = Self::object(prefix, name);
                let bucket = bucket.clone();
                // (One copy into the request's buffer: the upload outlives
                // the borrow.)
                let data = data.to_vec();
                wait(async move {
                    if data.len() <= PART {
                        bucket.store.put(&path, data.into()).await.map(|_| ())
                    } else {
                        let upload = bucket.store.put_multipart(&path).await?;
                        let mut w = object_store::WriteMultipart::new_with_chunk_size(upload, PART);
                        w.write(&data);
                        w.finish().await.map(|_| ())
                    }
                })
                .map_err(io)
            }
        }
    }

    /// Syncs the folder's entries (local only: object storage has no
    /// folder entries).
    pub fn sync(&self) -> std::io::Result<()> {
        match &self.at {
            At::Local(p) => std::fs::File::open(p)?.sync_all(),
            At::Object { .. } => Ok(()),
        }
    }

    /// Reads file `name`.
    pub fn get(&self, name: &str) -> std::io::Result<Vec<u8>> {
        match &self.at {
            At::Local(p) => std::fs::read(p.join(name)),
            At::Object { bucket, prefix } => {
                let path = Self::object(prefix, name);
                let bucket = bucket.clone();
                wait(async move { bucket.store.get(&path).await?.bytes().await }).map(|b| b.to_vec()).map_err(io)
            }
        }
    }

    /// Whether file `name` exists.
    pub fn exists(&self, name: &str) -> bool {
        match &self.at {
            At::Local(p) => p.join(name).is_file(),
            At::Object { bucket, prefix } => {
                let path = Self::object(prefix, name);
                let bucket = bucket.clone();
                wait(async move { bucket.store.head(&path).await }).is_ok()
            }
        }
    }

    /// The names of its files and subfolders (none when it does not
    /// exist).
    pub fn list(&self) -> Vec<String> {
        match &self.at {
            At::Local(p) => {
                let Ok(entries) = std::fs::read_dir(p) else { return Vec::new() };
                entries.filter_map(|e| e.ok()).filter_map(|e| e.file_name().to_str().map(str::to_owned)).collect()
            }
            At::Object { bucket, prefix } => {
                let bucket = bucket.clone();
                let at = (!prefix.is_empty()).then(|| ObjectPath::from(prefix.as_str()));
                let listed = wait(async move { bucket.store.list_with_delimiter(at.as_ref()).await });
                let Ok(listed) = listed.inspect_err(|e| tracing::warn!("cannot list {}: {e}", self.display())) else {
                    return Vec::new();
                };
                let names = listed.common_prefixes.iter().chain(listed.objects.iter().map(|o| &o.location));
                names.filter_map(|p| p.filename().map(str::to_owned)).collect()
            }
        }
    }

    /// Removes file `name` (gone already is fine).
    pub fn remove(&self, name: &str) -> std::io::Result<()> {
        let r = match &self.at {
            At::Local(p) => std::fs::remove_file(p.join(name)),
            At::Object { bucket, prefix } => {
                let path = Self::object(prefix, name);
                let bucket = bucket.clone();
                wait(async move { bucket.store.delete(&path).await }).map_err(io)
            }
        };
        match r {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes the folder and everything in it (gone already is fine).
    pub fn remove_all(&self) -> std::io::Result<()> {
        match &self.at {
            At::Local(p) => match std::fs::remove_dir_all(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            At::Object { bucket, prefix } => {
                use futures::{StreamExt, TryStreamExt};
                let bucket = bucket.clone();
                let at = ObjectPath::from(prefix.as_str());
                wait(async move {
                    let locations = bucket.store.list(Some(&at)).map_ok(|m| m.location).boxed();
                    bucket.store.delete_stream(locations).try_collect::<Vec<_>>().await.map(|_| ())
                })
                .map_err(io)
            }
        }
    }
}
