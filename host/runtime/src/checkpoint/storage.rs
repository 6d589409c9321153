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
        let Some(rest) = text.strip_prefix("s3://") else {
            let scheme = text.split("://").next().unwrap_or_default();
            return Err(format!(
                "`{text}`: checkpoints go on the local file system or on S3-compatible storage \
                 (`s3://bucket/prefix`), not `{scheme}://`"
            ));
        };
        // Taken as text, segment by segment (a URL parser would cut at `#`
        // or `?`, fold `..` and re-encode `%`): such names are refused.
        if text.contains(['%', '#', '?', '\\']) || rest.split('/').any(|s| s == ".." || s == ".") {
            return Err(format!(
                "`{text}`: an object-storage location (and the job's name in it) takes no `%`, `#`, `?`, `\\`, `.` \
                 or `..`; rename the job or the prefix"
            ));
        }
        let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("`{text}` names no bucket: write `s3://bucket/prefix`"));
        }
        // Bounded waits: a checkpoint against an unreachable store fails
        // within about a minute per request, rather than three.
        let retry = object_store::RetryConfig {
            max_retries: 3,
            retry_timeout: std::time::Duration::from_secs(60),
            ..Default::default()
        };
        let store =
            object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket).with_retry(retry).build().map_err(
                |e| {
                    format!(
                        "cannot use `{text}`: {e}. Set AWS_REGION, the credentials and, for a store other than AWS, \
                     AWS_ENDPOINT_URL"
                    )
                },
            )?;
        let prefix = path.split('/').filter(|s| !s.is_empty()).collect::<Vec<_>>().join("/");
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
    pub fn put(&self, name: &str, data: Vec<u8>, atomic: bool) -> std::io::Result<()> {
        match &self.at {
            At::Local(p) => {
                let target = p.join(name);
                let written = if atomic { p.join(format!("{name}.tmp")) } else { target.clone() };
                let mut f = std::fs::File::create(&written)?;
                f.write_all(&data)?;
                f.sync_all()?;
                if atomic {
                    std::fs::rename(&written, &target)?;
                }
                Ok(())
            }
            At::Object { bucket, prefix } => {
                let path = Self::object(prefix, name);
                let bucket = bucket.clone();
                wait(async move {
                    if data.len() <= PART {
                        return bucket.store.put(&path, data.into()).await.map(|_| ());
                    }
                    // In parts, a few at a time; a failed one aborts the
                    // upload (no parts are left behind in the bucket).
                    let upload = bucket.store.put_multipart(&path).await?;
                    let mut w = object_store::WriteMultipart::new_with_chunk_size(upload, PART);
                    let mut rest = bytes::Bytes::from(data);
                    let mut sent = Ok(());
                    while sent.is_ok() && !rest.is_empty() {
                        sent = w.wait_for_capacity(4).await;
                        w.put(rest.split_to(rest.len().min(PART)));
                    }
                    if sent.is_ok() {
                        sent = w.wait_for_capacity(0).await;
                    }
                    match sent {
                        Ok(()) => w.finish().await.map(|_| ()),
                        Err(e) => {
                            let _ = w.abort().await;
                            Err(e)
                        }
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
                wait(async move { bucket.store.get(&path).await?.bytes().await }).map(Vec::from).map_err(io)
            }
        }
    }

    /// Whether file `name` exists; `Err` when that cannot be told (only
    /// "not found" is absence).
    pub fn exists(&self, name: &str) -> std::io::Result<bool> {
        match &self.at {
            At::Local(p) => match std::fs::metadata(p.join(name)) {
                Ok(m) => Ok(m.is_file()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e),
            },
            At::Object { bucket, prefix } => {
                let path = Self::object(prefix, name);
                let bucket = bucket.clone();
                match wait(async move { bucket.store.head(&path).await }) {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::NotFound { .. }) => Ok(false),
                    Err(e) => Err(io(e)),
                }
            }
        }
    }

    /// The names of its files and subfolders (none when it does not
    /// exist); `Err` when it cannot be listed.
    pub fn list(&self) -> std::io::Result<Vec<String>> {
        match &self.at {
            At::Local(p) => {
                let entries = match std::fs::read_dir(p) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(e),
                };
                let mut names = Vec::new();
                for e in entries {
                    if let Some(n) = e?.file_name().to_str() {
                        names.push(n.to_owned());
                    }
                }
                Ok(names)
            }
            At::Object { bucket, prefix } => {
                let bucket = bucket.clone();
                let at = (!prefix.is_empty()).then(|| ObjectPath::from(prefix.as_str()));
                let listed = wait(async move { bucket.store.list_with_delimiter(at.as_ref()).await }).map_err(io)?;
                let names = listed.common_prefixes.iter().chain(listed.objects.iter().map(|o| &o.location));
                Ok(names.filter_map(|p| p.filename().map(str::to_owned)).collect())
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
            At::Object { prefix, .. } if prefix.is_empty() => {
                Err(std::io::Error::other("refusing to remove a whole bucket"))
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::process::{Command, Stdio};

    /// moto's S3 server (installed by `scripts/py-tools.sh`) on a free
    /// loopback port with bucket `weir-unit`, stopped when dropped.
    struct Moto(std::process::Child, u16);

    impl Drop for Moto {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn moto() -> Moto {
        let server = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/py/bin/moto_server");
        assert!(
            server.exists(),
            "{} is missing: run `bash scripts/py-tools.sh` (scripts/test.sh does)",
            server.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Owned at once: dropped (killed and waited for) on every path.
        let m = Moto(child, port);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                let request = format!(
                    "PUT /weir-unit HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                s.write_all(request.as_bytes()).unwrap();
                let mut answer = String::new();
                let _ = s.read_to_string(&mut answer);
                assert!(answer.starts_with("HTTP/1.1 200"), "cannot make bucket `weir-unit`: {answer}");
                return m;
            }
            assert!(std::time::Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    fn folder(port: u16, prefix: &str) -> Folder {
        let store = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name("weir-unit")
            .with_endpoint(format!("http://127.0.0.1:{port}"))
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("k")
            .with_secret_access_key("s")
            .build()
            .unwrap();
        let bucket = Arc::new(Bucket { url: "s3://weir-unit".into(), store: Box::new(store) });
        Folder { at: At::Object { bucket, prefix: prefix.into() } }
    }

    #[test]
    fn object_storage_keeps_files_small_and_in_parts_lists_and_removes_them() {
        let m = moto();
        let job = folder(m.1, "checkpoints/job");
        let chk = job.join("chk-1");
        // Three and a half parts, and a small file.
        let big: Vec<u8> = (0..(PART * 7 / 2)).map(|i| (i % 251) as u8).collect();
        chk.put("task-0", big.clone(), false).unwrap();
        chk.put("_metadata", b"{}".to_vec(), true).unwrap();
        job.join("chk-10").put("task-0", b"x".to_vec(), false).unwrap();
        assert_eq!(chk.get("task-0").unwrap(), big);
        assert!(chk.exists("_metadata").unwrap() && !chk.exists("task-1").unwrap());
        let mut names = job.list().unwrap();
        names.sort();
        assert_eq!(names, ["chk-1", "chk-10"]);
        assert_eq!(chk.get("nothing").unwrap_err().kind(), std::io::ErrorKind::NotFound);
        chk.remove_all().unwrap();
        assert_eq!(job.list().unwrap(), ["chk-10"], "chk-1 went, chk-10 stayed");
        assert_eq!(folder(m.1, "").display(), "s3://weir-unit");
        assert!(folder(m.1, "").remove_all().is_err(), "never a whole bucket");
    }

    #[test]
    fn locations_are_checked_as_text() {
        assert!(matches!(Folder::at(Path::new("/tmp/x")).unwrap().at, At::Local(_)));
        for bad in ["s3://b/a#b", "s3://b/a/../c", "s3://b/%20", "s3:///p"] {
            assert!(Folder::at(Path::new(bad)).is_err(), "{bad}");
        }
        let e = Folder::at(Path::new("gs://b/p")).unwrap_err();
        assert!(e.contains("not `gs://`"), "{e}");
    }
}
