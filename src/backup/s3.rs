//! The S3 backup store: archives and manifests as objects of one bucket (under a prefix), so
//! every node sees every backup and a lost machine loses none. Any S3-compatible server that
//! speaks SigV4 will do; the lab runs s3s-fs.
//!
//! Layout: `<prefix><id>.dump` (the archive) and `<prefix><id>.json` (its sealed manifest).
//! An archive is streamed as a multipart upload while pg_dump runs, so memory is bounded by
//! the part size and no full local copy is made; S3 shows nothing of an upload until it
//! completes. A backup exists once its manifest does, and the manifest is written last with a
//! conditional put (If-None-Match), so a partial upload never looks like a backup and two
//! writers cannot overwrite each other's manifest. An archive without a manifest is a leftover
//! (reconciliation removes it unless its inventory row is still `running`).
//!
//! Two reads stage a local file, because pg_restore must seek in them: `stage_unpublished`
//! (pg_restore lists the new archive's sequence positions before the manifest is written) and
//! `stage_archive` (a restore and a drill restore by section from one file, hashing and
//! replaying the very same bytes). Everything else streams.

use std::{
    io::{Read, Write},
    path::{Path as FsPath, PathBuf},
    sync::Arc,
};

use futures_util::StreamExt;
use object_store::{
    aws::AmazonS3Builder, path::Path, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart,
};

use crate::{
    api::FileState,
    backup::{
        manifest::seal,
        store::{manifest_of, ArchiveWriter, BackupStore, StagedArchive, MANIFEST_LIMIT},
        BackupError, Manifest,
    },
    ident::{self, BackupId},
    secret::Secret,
};

/// Parts of a multipart upload: S3's minimum is 5 MiB; this bounds what a backup buffers.
const PART_SIZE: usize = 8 << 20;
/// Parts in flight at once (memory: about this many parts).
const PARTS_IN_FLIGHT: usize = 2;

/// A refused connection, a timeout or a 5xx answer (503 SlowDown included) is retried: at most
/// four times, backing off from 0.1 s to 2 s, within 20 s of the first attempt; then the
/// operation fails (a backup is then `failed`, and nothing is published). A node never hangs
/// for minutes on an S3 outage.
fn retry_policy() -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: std::time::Duration::from_millis(100),
            max_backoff: std::time::Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 4,
        retry_timeout: std::time::Duration::from_secs(20),
    }
}

/// Where the S3 store is and how to sign for it. The secret is never printed.
#[derive(Clone, Debug)]
pub struct S3Settings {
    /// `https://s3.eu-west-1.amazonaws.com`, or a loopback `http://` URL.
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    /// Prepended to every key (`""`, or ending in `/`).
    pub prefix: String,
    /// Path-style requests (`endpoint/bucket/key`), as most S3-compatible servers want.
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// How long one request may take, its answer included, before it is retried.
    pub request_timeout: std::time::Duration,
}

/// Backups in an S3 bucket. Blocking, like every `BackupStore`: it runs the S3 client on a
/// runtime of its own, so it may be called from any thread that is not itself driving
/// asynchronous tasks (the service calls stores from `spawn_blocking`).
pub struct S3Store {
    store: Arc<dyn ObjectStore>,
    runtime: Arc<StoreRuntime>,
    /// `s3://<bucket>/<prefix>`, for messages.
    location: String,
    bucket: String,
    prefix: String,
    /// Where staged archives are written (private temporary files, removed when dropped).
    staging_dir: PathBuf,
}

impl S3Store {
    /// The store of `settings`, staging its copies in `staging_dir` (created 0700: they hold
    /// the database's data).
    pub fn open(settings: &S3Settings, staging_dir: &FsPath) -> Result<Self, BackupError> {
        crate::backup::repository::create_private_dir(staging_dir)?;
        crate::backup::store::remove_stale_copies(staging_dir);
        let location = format!("s3://{}/{}", settings.bucket, settings.prefix);
        // Client options first: setting them replaces every one set before (allow_http too).
        let store = AmazonS3Builder::new()
            .with_client_options(object_store::ClientOptions::new().with_timeout(settings.request_timeout))
            .with_endpoint(&settings.endpoint)
            .with_region(&settings.region)
            .with_bucket_name(&settings.bucket)
            .with_access_key_id(&settings.access_key_id)
            .with_secret_access_key(settings.secret_access_key.expose())
            .with_virtual_hosted_style_request(!settings.path_style)
            .with_allow_http(settings.endpoint.starts_with("http://"))
            .with_retry(retry_policy())
            .build()
            .map_err(|e| io_error(&location, e))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("autonomy-s3")
            .enable_all()
            .build()
            .map_err(|e| BackupError::io(FsPath::new(&location))(e))?;
        Ok(Self {
            store: Arc::new(store),
            runtime: Arc::new(StoreRuntime(Some(runtime))),
            location,
            bucket: settings.bucket.clone(),
            prefix: settings.prefix.clone(),
            staging_dir: staging_dir.to_owned(),
        })
    }

    fn key(&self, backup_id: &str, suffix: &str) -> Result<Path, BackupError> {
        ident::validate("backup id", backup_id)?;
        Ok(Path::from(format!("{}{backup_id}{suffix}", self.prefix)))
    }

    /// The object as messages name it: `s3://<bucket>/<key>`.
    fn named(&self, key: &Path) -> PathBuf {
        PathBuf::from(format!("s3://{}/{key}", self.bucket))
    }

    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// The object's size, or None when there is none.
    fn size_of(&self, key: &Path) -> Result<Option<u64>, BackupError> {
        match self.block_on(self.store.head(key)) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(io_error(&self.named(key).display().to_string(), error)),
        }
    }

    /// The keys under the prefix, without it.
    fn names(&self) -> Result<Vec<String>, BackupError> {
        let prefix = (!self.prefix.is_empty()).then(|| Path::from(self.prefix.trim_end_matches('/')));
        let listed: Vec<_> = self.block_on(self.store.list(prefix.as_ref()).collect::<Vec<_>>());
        let mut names = Vec::new();
        for entry in listed {
            let key = entry.map_err(|e| io_error(&self.location, e))?.location.to_string();
            if let Some(name) = key.strip_prefix(&self.prefix) {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    /// The ids of the objects named `<prefix><valid id><suffix>`.
    fn ids_with_suffix(&self, suffix: &str) -> Result<Vec<BackupId>, BackupError> {
        Ok(self
            .names()?
            .iter()
            .filter_map(|name| BackupId::parse(name.strip_suffix(suffix)?).ok())
            .collect())
    }

    /// Copies the object into a private temporary file of the staging directory.
    fn stage(&self, key: &Path, missing: BackupError) -> Result<StagedArchive, BackupError> {
        let mut stream = match self.open_stream(key) {
            Ok(stream) => stream,
            Err(BackupError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(missing)
            }
            Err(error) => return Err(error),
        };
        let (mut file, path) = crate::backup::store::private_copy(&self.staging_dir)?;
        let copied = std::io::copy(&mut stream, &mut file)
            .and_then(|_| file.flush())
            .and_then(|_| std::io::Seek::rewind(&mut file));
        if let Err(error) = copied {
            let _ = std::fs::remove_file(&path);
            return Err(BackupError::io(&path)(error));
        }
        Ok(StagedArchive::temporary(file, path))
    }

    fn open_stream(&self, key: &Path) -> Result<Box<dyn Read + Send>, BackupError> {
        let name = self.named(key);
        let got = self
            .block_on(self.store.get(key))
            .map_err(|e| io_error(&name.display().to_string(), e))?;
        Ok(Box::new(ObjectReader {
            stream: got.into_stream(),
            runtime: self.runtime.clone(),
            chunk: bytes::Bytes::new(),
            name: name.display().to_string(),
        }))
    }
}

impl BackupStore for S3Store {
    fn kind(&self) -> &'static str {
        "s3"
    }

    fn create_archive(&self, backup_id: &str) -> Result<Box<dyn ArchiveWriter>, BackupError> {
        let key = self.key(backup_id, ".dump")?;
        let name = self.named(&key).display().to_string();
        let upload = self
            .block_on(self.store.put_multipart(&key))
            .map_err(|e| io_error(&name, e))?;
        Ok(Box::new(S3ArchiveWriter {
            upload: Some(WriteMultipart::new_with_chunk_size(upload, PART_SIZE)),
            runtime: self.runtime.clone(),
            name,
        }))
    }

    fn stage_unpublished(&self, backup_id: &str) -> Result<StagedArchive, BackupError> {
        let key = self.key(backup_id, ".dump")?;
        self.stage(&key, BackupError::ArchiveMissing(backup_id.to_owned()))
    }

    fn publish(&self, manifest: &Manifest) -> Result<(), BackupError> {
        let key = self.key(manifest.backup_id.as_str(), ".json")?;
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let body = PutPayload::from(seal(manifest));
        match self.block_on(self.store.put_opts(&key, body, options)) {
            Ok(_) => Ok(()),
            Err(error) => Err(io_error(&self.named(&key).display().to_string(), error)),
        }
    }

    fn discard(&self, backup_id: &str) {
        if let Ok(key) = self.key(backup_id, ".dump") {
            let _ = self.block_on(self.store.delete(&key));
        }
    }

    fn unpublish(&self, backup_id: &str) -> Result<(), BackupError> {
        let key = self.key(backup_id, ".json")?;
        match self.block_on(self.store.delete(&key)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(io_error(&self.named(&key).display().to_string(), error)),
        }
    }

    fn read_archive(&self, backup_id: &str) -> Result<Box<dyn Read + Send>, BackupError> {
        match self.open_stream(&self.key(backup_id, ".dump")?) {
            Err(BackupError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Err(BackupError::ArchiveMissing(backup_id.to_owned()))
            }
            other => other,
        }
    }

    fn scratch_dir(&self) -> &FsPath {
        &self.staging_dir
    }

    fn stage_archive(&self, backup_id: &str) -> Result<StagedArchive, BackupError> {
        let key = self.key(backup_id, ".dump")?;
        self.stage(&key, BackupError::ArchiveMissing(backup_id.to_owned()))
    }

    fn has_manifest(&self, backup_id: &str) -> Result<bool, BackupError> {
        Ok(self.size_of(&self.key(backup_id, ".json")?)?.is_some())
    }

    fn manifest(&self, backup_id: &str) -> Result<Manifest, BackupError> {
        let key = self.key(backup_id, ".json")?;
        let mut stream = match self.open_stream(&key) {
            Ok(stream) => stream,
            Err(BackupError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(BackupError::NotFound(backup_id.to_owned()))
            }
            Err(error) => return Err(error),
        };
        let mut body = Vec::new();
        stream
            .by_ref()
            .take(MANIFEST_LIMIT + 1)
            .read_to_end(&mut body)
            .map_err(BackupError::io(&self.named(&key)))?;
        manifest_of(backup_id, &body)
    }

    fn manifest_ids(&self) -> Result<Vec<BackupId>, BackupError> {
        self.ids_with_suffix(".json")
    }

    fn file_state(&self, backup_id: &str) -> Result<FileState, BackupError> {
        let archive = self.size_of(&self.key(backup_id, ".dump")?)?;
        let manifest = self.size_of(&self.key(backup_id, ".json")?)?;
        Ok(match (archive.is_some(), manifest.is_some()) {
            (true, true) => FileState::Present,
            (false, true) => FileState::ArchiveMissing,
            (true, false) => FileState::ManifestMissing,
            (false, false) => FileState::BothMissing,
        })
    }

    fn leftovers(&self) -> Result<Vec<(BackupId, String)>, BackupError> {
        let manifests = self.ids_with_suffix(".json")?;
        Ok(self
            .ids_with_suffix(".dump")?
            .into_iter()
            .filter(|id| !manifests.contains(id))
            .map(|id| {
                let name = format!("{id}.dump");
                (id, name)
            })
            .collect())
    }

    fn foreign_objects(&self) -> Result<Vec<String>, BackupError> {
        let ours = |name: &str| {
            [".dump", ".json"]
                .iter()
                .any(|suffix| name.strip_suffix(suffix).is_some_and(|id| BackupId::parse(id).is_ok()))
        };
        let mut foreign: Vec<String> = self.names()?.into_iter().filter(|name| !ours(name)).collect();
        foreign.sort();
        Ok(foreign)
    }

    fn remove_leftovers(&self, names: &[String]) -> Result<Vec<String>, BackupError> {
        let mut removed = Vec::new();
        for name in names {
            let Some(id) = name.strip_suffix(".dump") else { continue };
            let key = self.key(id, ".dump")?;
            match self.block_on(self.store.delete(&key)) {
                Ok(()) => removed.push(name.clone()),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(io_error(&self.named(&key).display().to_string(), error)),
            }
        }
        Ok(removed)
    }
}

/// The store's own runtime for the S3 client. Shut down in the background when the last user
/// goes, so dropping a store inside an async task (the node's shutdown) never blocks or panics.
struct StoreRuntime(Option<tokio::runtime::Runtime>);

impl StoreRuntime {
    /// Runs `future` to its end on the store's runtime. Called from a worker of the node's
    /// own runtime (a caller that did not move to a blocking thread), it first hands that
    /// worker's other tasks to the rest of the pool, so nothing else waits on the S3 call.
    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        let runtime = self.0.as_ref().expect("alive until dropped");
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| runtime.block_on(future))
            }
            _ => runtime.block_on(future),
        }
    }

    fn enter(&self) -> tokio::runtime::EnterGuard<'_> {
        self.0.as_ref().expect("alive until dropped").enter()
    }
}

impl Drop for StoreRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// An archive streamed as a multipart upload; aborted unless finished.
struct S3ArchiveWriter {
    upload: Option<WriteMultipart>,
    runtime: Arc<StoreRuntime>,
    name: String,
}

impl ArchiveWriter for S3ArchiveWriter {
    fn write_chunk(&mut self, chunk: &[u8]) -> Result<(), BackupError> {
        let upload = self.upload.as_mut().expect("open until finished");
        // Backpressure: at most PARTS_IN_FLIGHT parts are buffered or uploading.
        self.runtime
            .block_on(upload.wait_for_capacity(PARTS_IN_FLIGHT))
            .map_err(|e| io_error(&self.name, e))?;
        // A full part is handed to a task of the store's runtime.
        let _inside = self.runtime.enter();
        upload.write(chunk);
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), BackupError> {
        let upload = self.upload.take().expect("finished once");
        self.runtime
            .block_on(upload.finish())
            .map(|_| ())
            .map_err(|e| io_error(&self.name, e))
    }
}

impl Drop for S3ArchiveWriter {
    fn drop(&mut self) {
        if let Some(upload) = self.upload.take() {
            // Nothing of an aborted upload stays in the bucket (its parts are freed).
            let _ = self.runtime.block_on(upload.abort());
        }
    }
}

/// An object read as a blocking stream, chunk by chunk as S3 sends it.
struct ObjectReader {
    stream: futures_util::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>,
    runtime: Arc<StoreRuntime>,
    chunk: bytes::Bytes,
    name: String,
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.runtime.block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(error)) => return Err(std::io::Error::other(format!("reading {}: {error}", self.name))),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// An S3 error as the repository I/O error operators already know (`repository_io`); a missing
/// object keeps its NotFound kind, so callers can tell it apart.
fn io_error(name: &str, error: object_store::Error) -> BackupError {
    let kind = match &error {
        object_store::Error::NotFound { .. } => std::io::ErrorKind::NotFound,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
            std::io::ErrorKind::AlreadyExists
        }
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
            std::io::ErrorKind::PermissionDenied
        }
        _ => std::io::ErrorKind::Other,
    };
    BackupError::Io {
        path: PathBuf::from(name),
        source: std::io::Error::new(kind, error.to_string()),
    }
}
