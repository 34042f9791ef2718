//! The local-directory backup store, the embedded default: archives, their manifests, atomic
//! publication.
//!
//! Layout: `<dir>/<id>.dump` (pg_dump custom format), `<dir>/<id>.json` (the manifest).
//! A `.partial` file is never a backup: it becomes one only by rename after fsync. Files are
//! created 0600 and the directory 0700: they hold the database's data. What is read back is
//! opened without following links or blocking, and only a regular file is accepted.

pub use crate::api::FileState;

use std::{
    fs::{self, File, OpenOptions},
    io::{Read, Seek, Write},
    os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use crate::{
    backup::{
        store::{sha256_of, ArchiveWriter, BackupStore, StagedArchive},
        BackupError, Manifest,
    },
    fsio::{self, partial_of},
    ident::{self, BackupId},
};

/// A manifest larger than this is not one of ours (a baseline of 100,000 tables is ~30 MB).
use crate::backup::store::{manifest_of, MANIFEST_LIMIT};

/// Suffixes of the files a backup in progress writes; left behind, they are stale.
const PARTIAL_SUFFIXES: [&str; 3] = [".dump.partial", ".json.partial", ".dump.partial.sequences"];

pub struct LocalRepository {
    dir: PathBuf,
}

impl LocalRepository {
    /// Opens the repository, creating its directory (0700) when only the last component is
    /// missing: a mistyped parent is an error, not a new tree.
    pub fn open(dir: &Path) -> Result<Self, BackupError> {
        create_private_dir(dir)?;
        crate::backup::store::remove_stale_copies(dir);
        Ok(Self { dir: dir.to_owned() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The archive path of a validated id.
    pub fn archive_path(&self, backup_id: &str) -> Result<PathBuf, BackupError> {
        ident::validate("backup id", backup_id)?;
        Ok(self.dir.join(format!("{backup_id}.dump")))
    }

    pub fn partial_archive_path(&self, backup_id: &str) -> Result<PathBuf, BackupError> {
        ident::validate("backup id", backup_id)?;
        Ok(self.dir.join(format!("{backup_id}.dump.partial")))
    }

    fn manifest_path(&self, backup_id: &str) -> Result<PathBuf, BackupError> {
        ident::validate("backup id", backup_id)?;
        Ok(self.dir.join(format!("{backup_id}.json")))
    }

    /// Makes a finished, fsynced partial archive a backup. The manifest is written (fsynced)
    /// beside it first, then the archive renamed into place, then the manifest: a failure
    /// anywhere leaves no archive that looks complete, and the manifest's presence still
    /// means the archive is complete.
    pub fn publish(&self, manifest: &Manifest) -> Result<(), BackupError> {
        let partial = self.partial_archive_path(manifest.backup_id.as_str())?;
        let archive = self.archive_path(manifest.backup_id.as_str())?;
        let manifest_path = self.manifest_path(manifest.backup_id.as_str())?;
        let manifest_partial = partial_of(&manifest_path);
        let body = crate::backup::manifest::seal(manifest);
        if let Err(error) = write_private(&manifest_partial, &body) {
            let _ = fs::remove_file(&manifest_partial);
            return Err(error);
        }
        if let Err(error) = fs::rename(&partial, &archive).map_err(BackupError::io(&archive)) {
            let _ = fs::remove_file(&manifest_partial);
            return Err(error);
        }
        if let Err(error) = fs::rename(&manifest_partial, &manifest_path).map_err(BackupError::io(&manifest_path)) {
            // Put the archive back out of sight: the caller removes the partial.
            let _ = fs::rename(&archive, &partial);
            let _ = fs::remove_file(&manifest_partial);
            return Err(error);
        }
        sync_dir(&self.dir)
    }

    /// True when `backup_id` has a manifest entry, sound or not.
    pub fn has_manifest(&self, backup_id: &str) -> Result<bool, BackupError> {
        Ok(fs::symlink_metadata(self.manifest_path(backup_id)?).is_ok())
    }

    /// The manifest of `backup_id`, or NotFound.
    pub fn manifest(&self, backup_id: &str) -> Result<Manifest, BackupError> {
        let path = self.manifest_path(backup_id)?;
        let file = match open_regular(&path) {
            Ok(file) => file,
            Err(BackupError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(BackupError::NotFound(backup_id.to_owned()))
            }
            Err(error) => return Err(error),
        };
        let mut body = Vec::new();
        file.take(MANIFEST_LIMIT + 1)
            .read_to_end(&mut body)
            .map_err(BackupError::io(&path))?;
        manifest_of(backup_id, &body)
    }

    /// The ids of the directory's entries named `<valid id><suffix>`.
    fn entries_with_suffix(&self, suffix: &str) -> Result<Vec<BackupId>, BackupError> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(BackupError::io(&self.dir))? {
            let name = entry.map_err(BackupError::io(&self.dir))?.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(suffix)) {
                if let Ok(id) = BackupId::parse(id) {
                    ids.push(id);
                }
            }
        }
        Ok(ids)
    }

    /// Opens the stored archive for reading: a regular file, not followed through a link.
    pub fn open_archive(&self, backup_id: &str) -> Result<File, BackupError> {
        match open_regular(&self.archive_path(backup_id)?) {
            Err(BackupError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Err(BackupError::ArchiveMissing(backup_id.to_owned()))
            }
            other => other,
        }
    }

    /// SHA-256 of the stored archive, read in 1 MiB chunks.
    pub fn archive_sha256(&self, backup_id: &str) -> Result<String, BackupError> {
        let mut file = self.open_archive(backup_id)?;
        hash_from_start(&mut file, &self.archive_path(backup_id)?)
    }

    /// Where a completed backup's files stand, by one `lstat` each.
    pub fn file_state(&self, backup_id: &str) -> Result<FileState, BackupError> {
        let kind = |path: PathBuf| fs::symlink_metadata(path).ok().map(|m| m.file_type().is_file());
        Ok(
            match (
                kind(self.archive_path(backup_id)?),
                kind(self.manifest_path(backup_id)?),
            ) {
                (Some(true), Some(true)) => FileState::Present,
                (Some(false), _) | (_, Some(false)) => FileState::NotRegular,
                (None, Some(true)) => FileState::ArchiveMissing,
                (Some(true), None) => FileState::ManifestMissing,
                (None, None) => FileState::BothMissing,
            },
        )
    }

    /// The partial files in the repository: (backup id, file name).
    pub fn partial_files(&self) -> Result<Vec<(BackupId, String)>, BackupError> {
        let mut found = Vec::new();
        for suffix in PARTIAL_SUFFIXES {
            for id in self.entries_with_suffix(suffix)? {
                found.push((id.clone(), format!("{id}{suffix}")));
            }
        }
        Ok(found)
    }

    /// Removes these files of the repository (names as [`Self::partial_files`] gives them);
    /// returns the ones it removed.
    pub fn remove_files(&self, names: &[String]) -> Result<Vec<String>, BackupError> {
        let mut removed = Vec::new();
        for name in names {
            let path = self.dir.join(name);
            match fs::remove_file(&path) {
                Ok(()) => removed.push(name.clone()),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(BackupError::io(&path)(error)),
            }
        }
        Ok(removed)
    }
}

impl BackupStore for LocalRepository {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn scratch_dir(&self) -> &Path {
        &self.dir
    }

    fn create_archive(&self, backup_id: &str) -> Result<Box<dyn ArchiveWriter>, BackupError> {
        let path = self.partial_archive_path(backup_id)?;
        let file = create_private(&path)?;
        Ok(Box::new(LocalArchiveWriter {
            file: Some(file),
            path,
            finished: false,
        }))
    }

    fn stage_unpublished(&self, backup_id: &str) -> Result<StagedArchive, BackupError> {
        let path = self.partial_archive_path(backup_id)?;
        Ok(StagedArchive::in_place(open_regular(&path)?, path))
    }

    fn publish(&self, manifest: &Manifest) -> Result<(), BackupError> {
        LocalRepository::publish(self, manifest)
    }

    fn discard(&self, backup_id: &str) {
        if let Ok(partial) = self.partial_archive_path(backup_id) {
            let _ = fs::remove_file(partial);
        }
    }

    fn unpublish(&self, backup_id: &str) -> Result<(), BackupError> {
        let manifest = self.manifest_path(backup_id)?;
        match fs::remove_file(&manifest) {
            Ok(()) => sync_dir(&self.dir),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(BackupError::io(&manifest)(error)),
        }
    }

    fn read_archive(&self, backup_id: &str) -> Result<Box<dyn Read + Send>, BackupError> {
        Ok(Box::new(self.open_archive(backup_id)?))
    }

    fn stage_archive(&self, backup_id: &str) -> Result<StagedArchive, BackupError> {
        // The stored file itself: opened once, so what is hashed is what is read after.
        Ok(StagedArchive::in_place(
            self.open_archive(backup_id)?,
            self.archive_path(backup_id)?,
        ))
    }

    fn has_manifest(&self, backup_id: &str) -> Result<bool, BackupError> {
        LocalRepository::has_manifest(self, backup_id)
    }

    fn manifest(&self, backup_id: &str) -> Result<Manifest, BackupError> {
        LocalRepository::manifest(self, backup_id)
    }

    fn manifest_ids(&self) -> Result<Vec<BackupId>, BackupError> {
        self.entries_with_suffix(".json")
    }

    fn file_state(&self, backup_id: &str) -> Result<FileState, BackupError> {
        LocalRepository::file_state(self, backup_id)
    }

    fn leftovers(&self) -> Result<Vec<(BackupId, String)>, BackupError> {
        self.partial_files()
    }

    fn foreign_objects(&self) -> Result<Vec<String>, BackupError> {
        let ours = |name: &str| {
            [".dump", ".json"]
                .iter()
                .chain(PARTIAL_SUFFIXES.iter())
                .any(|suffix| name.strip_suffix(suffix).is_some_and(|id| BackupId::parse(id).is_ok()))
        };
        let mut foreign = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(BackupError::io(&self.dir))? {
            let name = entry
                .map_err(BackupError::io(&self.dir))?
                .file_name()
                .to_string_lossy()
                .into_owned();
            if !ours(&name) && !crate::backup::store::is_staged_copy(&name) {
                foreign.push(name);
            }
        }
        foreign.sort();
        Ok(foreign)
    }

    fn remove_leftovers(&self, names: &[String]) -> Result<Vec<String>, BackupError> {
        self.remove_files(names)
    }

    fn archive_sha256(&self, backup_id: &str) -> Result<String, BackupError> {
        LocalRepository::archive_sha256(self, backup_id)
    }
}

/// An archive streamed into `<id>.dump.partial`; removed unless finished.
struct LocalArchiveWriter {
    file: Option<File>,
    path: PathBuf,
    finished: bool,
}

impl ArchiveWriter for LocalArchiveWriter {
    fn write_chunk(&mut self, chunk: &[u8]) -> Result<(), BackupError> {
        let file = self.file.as_mut().expect("open until finished");
        file.write_all(chunk).map_err(BackupError::io(&self.path))
    }

    fn finish(mut self: Box<Self>) -> Result<(), BackupError> {
        let file = self.file.take().expect("finished once");
        file.sync_all().map_err(BackupError::io(&self.path))?;
        self.finished = true;
        Ok(())
    }
}

impl Drop for LocalArchiveWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Creates `dir` (0700) unless it is there: only its last component, so a mistyped parent is
/// an error, not a new tree. Another node starting at the same moment may create it first.
pub fn create_private_dir(dir: &Path) -> Result<(), BackupError> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if !(e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir()) => Err(BackupError::io(dir)(e)),
        _ => Ok(()),
    }
}

/// SHA-256 of `file` from its first byte, leaving it positioned at the start again.
pub fn hash_from_start(file: &mut File, path: &Path) -> Result<String, BackupError> {
    file.rewind().map_err(BackupError::io(path))?;
    let sha256 = sha256_of(file, path)?;
    file.rewind().map_err(BackupError::io(path))?;
    Ok(sha256)
}

/// Opens `path` for reading only if it is a regular file: a link is not followed, and a FIFO
/// or device is refused at once instead of blocking in `open` (O_NONBLOCK, which a regular
/// file ignores).
pub fn open_regular(path: &Path) -> Result<File, BackupError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|source| {
            if source.raw_os_error() == Some(libc::ELOOP) {
                BackupError::NotRegularFile {
                    path: path.to_owned(),
                    kind: "a symbolic link",
                }
            } else {
                BackupError::io(path)(source)
            }
        })?;
    let file_type = file.metadata().map_err(BackupError::io(path))?.file_type();
    let kind = if file_type.is_file() {
        return Ok(file);
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    };
    Err(BackupError::NotRegularFile {
        path: path.to_owned(),
        kind,
    })
}

/// Creates `path` (0600, replacing a file or link by that name) for a backup's data.
pub fn create_private(path: &Path) -> Result<File, BackupError> {
    fsio::create_replacing(path, 0o600).map_err(BackupError::io(path))
}

/// Writes `body` to `path` (0600) and fsyncs it.
fn write_private(path: &Path, body: &[u8]) -> Result<(), BackupError> {
    fsio::write_synced(path, body, 0o600).map_err(BackupError::io(path))
}

/// Makes renames in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    fsio::sync_dir(dir).map_err(BackupError::io(dir))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_fifo_link_or_directory_is_refused_at_once() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let fifo = dir.path().join("fifo");
        nix_mkfifo(&fifo);
        let target = dir.path().join("target");
        fs::write(&target, b"data").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        for (path, kind) in [
            (&fifo, "a FIFO"),
            (&link, "a symbolic link"),
            (&dir.path().to_owned(), "a directory"),
        ] {
            match open_regular(path) {
                Err(BackupError::NotRegularFile { kind: found, .. }) => assert_eq!(found, kind),
                other => panic!("{} must be refused as {kind}, got {other:?}", path.display()),
            }
        }
        assert!(open_regular(&target).is_ok());
    }

    fn nix_mkfifo(path: &Path) {
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
    }

    #[test]
    fn the_directory_and_written_files_are_private() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let repo = LocalRepository::open(&dir.path().join("backups")).expect("open");
        write_private(&repo.dir().join("x.json"), b"{}").unwrap();
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(repo.dir()), 0o700);
        assert_eq!(mode(&repo.dir().join("x.json")), 0o600);
    }

    #[test]
    fn a_failed_manifest_write_leaves_no_complete_looking_archive() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let repo = LocalRepository::open(dir.path()).expect("open");
        let manifest: Manifest = serde_json::from_value(serde_json::json!({
            "manifest_version": 3, "backup_id": "bk-1", "created_at": "2026-12-01T00:00:00Z",
            "completed_at": "2026-12-01T00:00:01Z", "database": "app", "server_version": "15",
            "size_bytes": 4, "sha256": "00", "duration_ms": 1, "status": "completed", "node_id": "n1",
            "epoch": 1, "excluded_schemas": [],
            "storage": { "kind": "local", "format": "pg_dump_custom", "encryption": "none" }
        }))
        .expect("a manifest");
        fs::write(repo.partial_archive_path("bk-1").unwrap(), b"dump").unwrap();
        // The manifest cannot be written: a directory sits where its partial file goes.
        fs::create_dir(dir.path().join("bk-1.json.partial")).unwrap();
        assert!(repo.publish(&manifest).is_err());
        assert!(
            !repo.archive_path("bk-1").unwrap().exists(),
            "a complete-looking archive was left"
        );
        assert!(!dir.path().join("bk-1.json").exists());
        assert!(
            repo.partial_archive_path("bk-1").unwrap().exists(),
            "the partial is the caller's to remove"
        );
    }

    #[test]
    fn a_directory_whose_parent_is_missing_is_not_created() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let typo = dir.path().join("no-such-parent").join("backups");
        assert!(LocalRepository::open(&typo).is_err());
        assert!(!dir.path().join("no-such-parent").exists());
    }
}
