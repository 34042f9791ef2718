//! The backup store seam: where archives and their manifests live. The backup service, the
//! restore and the drill see only this trait: streams to write and read, manifests, listings
//! and staged local copies where pg_restore must seek. They never touch a repository path.
//!
//! The local directory (`repository.rs`) is the first implementation and the embedded default.

use std::{
    fs::File,
    io::Read,
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};

use crate::{
    backup::{repository::FileState, BackupError, Manifest},
    ident::BackupId,
};

/// Where backups are kept. Blocking: call it from a blocking thread.
pub trait BackupStore: Send + Sync + 'static {
    /// What the manifest's `storage.kind` records: `local` or `s3`.
    fn kind(&self) -> &'static str;

    /// The private (0700) local directory where copies for pg_restore are staged (see
    /// [`private_copy`]): decrypted archives, and for S3 downloaded ones.
    fn scratch_dir(&self) -> &Path;

    /// Starts an archive. Nothing is visible until `publish`; a writer dropped before
    /// `finish`, or a finished archive `discard`ed, leaves nothing behind.
    fn create_archive(&self, backup_id: &str) -> Result<Box<dyn ArchiveWriter>, BackupError>;

    /// The finished but unpublished archive as a local file, for readers that must seek
    /// (pg_restore reading the archive's sequence positions before the manifest is written).
    fn stage_unpublished(&self, backup_id: &str) -> Result<StagedArchive, BackupError>;

    /// Makes a finished archive a backup, with `manifest` written last: a failure anywhere
    /// leaves no backup that looks complete, and a manifest means its archive is complete.
    fn publish(&self, manifest: &Manifest) -> Result<(), BackupError>;

    /// Removes what an unpublished backup left (best effort: reconciliation removes the rest).
    fn discard(&self, backup_id: &str);

    /// Takes a published backup's manifest away (durably), for retention: from then on it is no
    /// longer a backup, and its archive is a leftover (`remove_leftovers` takes it next). A
    /// manifest already gone is no error.
    fn unpublish(&self, backup_id: &str) -> Result<(), BackupError>;

    /// The stored archive as a stream, from its first byte.
    fn read_archive(&self, backup_id: &str) -> Result<Box<dyn Read + Send>, BackupError>;

    /// The stored archive as a local, seekable file that stays valid while the value lives:
    /// pg_restore restores by section from a file, and a restore hashes and replays the very
    /// same bytes.
    fn stage_archive(&self, backup_id: &str) -> Result<StagedArchive, BackupError>;

    /// True when `backup_id` has a manifest entry, sound or not.
    fn has_manifest(&self, backup_id: &str) -> Result<bool, BackupError>;

    /// The manifest of `backup_id` (NotFound, or ManifestUntrusted if it does not open).
    fn manifest(&self, backup_id: &str) -> Result<Manifest, BackupError>;

    /// The ids of every manifest entry, sound or not, in no particular order.
    fn manifest_ids(&self) -> Result<Vec<BackupId>, BackupError>;

    /// Every readable manifest, oldest first; an unreadable one is skipped with a warning.
    fn manifests(&self) -> Result<Vec<Manifest>, BackupError> {
        let mut manifests = Vec::new();
        for id in self.manifest_ids()? {
            match self.manifest(id.as_str()) {
                Ok(manifest) => manifests.push(manifest),
                Err(error) => tracing::warn!(%error, "skipping an unreadable manifest"),
            }
        }
        manifests.sort_by_key(|m| m.created_at);
        Ok(manifests)
    }

    /// The newest backup by id (ids sort by time) with a manifest entry, trusted or not: a
    /// drill of `latest` must not pass over a damaged newest backup to an older sound one.
    fn latest_backup_id(&self) -> Result<Option<BackupId>, BackupError> {
        Ok(self.manifest_ids()?.into_iter().max())
    }

    /// Whether a completed backup's archive and manifest are where they should be.
    fn file_state(&self, backup_id: &str) -> Result<FileState, BackupError>;

    /// What unfinished backups left: (backup id, name of the leftover).
    fn leftovers(&self) -> Result<Vec<(BackupId, String)>, BackupError>;

    /// What the store holds that is not a backup's: no archive, manifest or leftover of a
    /// valid backup id (something another system wrote there). Never read, never removed.
    fn foreign_objects(&self) -> Result<Vec<String>, BackupError>;

    /// Removes these leftovers (names as `leftovers` gives them); returns those it removed.
    fn remove_leftovers(&self, names: &[String]) -> Result<Vec<String>, BackupError>;

    /// SHA-256 of the stored archive, read as a stream.
    fn archive_sha256(&self, backup_id: &str) -> Result<String, BackupError> {
        let mut stream = self.read_archive(backup_id)?;
        sha256_of(&mut stream, Path::new(backup_id))
    }
}

/// An archive being written.
pub trait ArchiveWriter: Send {
    fn write_chunk(&mut self, chunk: &[u8]) -> Result<(), BackupError>;
    /// Makes what was written durable; still invisible until the store publishes it.
    fn finish(self: Box<Self>) -> Result<(), BackupError>;
}

/// A local copy of an archive (or the stored file itself, for the local store), open for
/// reading from its start.
pub struct StagedArchive {
    pub file: File,
    pub path: PathBuf,
    /// A temporary copy, removed when this is dropped.
    temporary: bool,
}

impl StagedArchive {
    /// The stored file itself: nothing is copied, nothing removed.
    pub fn in_place(file: File, path: PathBuf) -> Self {
        Self {
            file,
            path,
            temporary: false,
        }
    }

    /// A copy made for this reader, removed when it is dropped.
    pub fn temporary(file: File, path: PathBuf) -> Self {
        Self {
            file,
            path,
            temporary: true,
        }
    }

    /// SHA-256 of the staged bytes from the first, leaving the file at its start again.
    pub fn sha256(&mut self) -> Result<String, BackupError> {
        crate::backup::repository::hash_from_start(&mut self.file, &self.path)
    }
}

impl Drop for StagedArchive {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What every staged copy's name starts with, in whichever directory it is staged.
pub const STAGED_PREFIX: &str = ".staged-";

/// A new private (0600) file for a staged copy in `dir`, locked (flock) for as long as it is
/// open: a node starting beside others in a shared directory tells a copy another process
/// is reading from one a killed process left ([`remove_stale_copies`]). The caller removes it
/// (a [`StagedArchive::temporary`] does when dropped).
pub fn private_copy(dir: &Path) -> Result<(File, PathBuf), BackupError> {
    let staged = tempfile::Builder::new()
        .prefix(STAGED_PREFIX)
        .suffix(".dump")
        .tempfile_in(dir)
        .map_err(BackupError::io(dir))?;
    let (file, path) = staged.keep().map_err(|e| BackupError::io(dir)(e.error))?;
    if let Err(error) = lock(&file, libc::LOCK_EX) {
        let _ = std::fs::remove_file(&path);
        return Err(BackupError::io(&path)(error));
    }
    Ok((file, path))
}

/// Removes the staged copies in `dir` that no process holds (killed mid-restore): they may
/// hold a decrypted database. A copy in use is locked by its reader and left alone.
pub fn remove_stale_copies(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if !is_staged_copy(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let Ok(file) = File::open(entry.path()) else {
            continue;
        };
        if lock(&file, libc::LOCK_EX | libc::LOCK_NB).is_ok() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether `name` is a staged copy's (never a backup's, never foreign).
pub fn is_staged_copy(name: &str) -> bool {
    name.starts_with(STAGED_PREFIX) && name.ends_with(".dump")
}

fn lock(file: &File, operation: i32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this File owns; it touches no memory.
    match unsafe { libc::flock(file.as_raw_fd(), operation) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// A manifest larger than this is refused unread: no backup writes one anywhere near it.
pub const MANIFEST_LIMIT: u64 = 256 << 20;

/// The manifest of `backup_id` from the stored `body` (read up to `MANIFEST_LIMIT` + 1 bytes):
/// ManifestUntrusted when it is too large, does not open, or names another backup.
pub fn manifest_of(backup_id: &str, body: &[u8]) -> Result<Manifest, BackupError> {
    let untrusted = |reason| BackupError::ManifestUntrusted {
        backup_id: backup_id.to_owned(),
        reason,
    };
    if body.len() as u64 > MANIFEST_LIMIT {
        return Err(untrusted(crate::backup::manifest::ManifestError::Malformed(format!(
            "the file is larger than {} MiB",
            MANIFEST_LIMIT >> 20
        ))));
    }
    let manifest = crate::backup::manifest::open(body).map_err(untrusted)?;
    if manifest.backup_id != *backup_id {
        return Err(untrusted(crate::backup::manifest::ManifestError::OtherBackup(
            manifest.backup_id.to_string(),
        )));
    }
    Ok(manifest)
}

/// SHA-256 of a stream, read in 1 MiB chunks; `name` is what a read error names.
pub fn sha256_of(stream: &mut dyn Read, name: &Path) -> Result<String, BackupError> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(BackupError::io(name)(e)),
        };
        hasher.update(&buffer[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
