//! The local-directory backup repository: archives, their manifests, atomic publication.
//!
//! Layout: `<dir>/<id>.dump` (pg_dump custom format), `<dir>/<id>.json` (the manifest).
//! A `.partial` file is never a backup: it becomes one only by rename after fsync.

use std::{
    fs::{self, File},
    io::{Read, Write},
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};

use crate::{
    backup::{BackupError, Manifest},
    ident,
};

pub struct LocalRepository {
    dir: PathBuf,
}

impl LocalRepository {
    pub fn open(dir: &Path) -> Result<Self, BackupError> {
        fs::create_dir_all(dir).map_err(BackupError::io(dir))?;
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

    /// Moves a finished, fsynced partial archive into place, then writes its manifest.
    /// The manifest goes last: its presence means the archive is complete.
    pub fn publish(&self, manifest: &Manifest) -> Result<(), BackupError> {
        let partial = self.partial_archive_path(&manifest.backup_id)?;
        let archive = self.archive_path(&manifest.backup_id)?;
        fs::rename(&partial, &archive).map_err(BackupError::io(&archive))?;
        let body = crate::backup::manifest::seal(manifest);
        write_atomically(&self.manifest_path(&manifest.backup_id)?, &body)?;
        sync_dir(&self.dir)
    }

    /// True when `backup_id` has a manifest file, sound or not.
    pub fn has_manifest(&self, backup_id: &str) -> Result<bool, BackupError> {
        Ok(self.manifest_path(backup_id)?.is_file())
    }

    /// The manifest of `backup_id`, or NotFound.
    pub fn manifest(&self, backup_id: &str) -> Result<Manifest, BackupError> {
        let path = self.manifest_path(backup_id)?;
        let body = match fs::read(&path) {
            Ok(body) => body,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BackupError::NotFound(backup_id.to_owned()))
            }
            Err(e) => return Err(BackupError::io(&path)(e)),
        };
        crate::backup::manifest::open(&body)
            .and_then(|manifest| {
                if manifest.backup_id == backup_id {
                    Ok(manifest)
                } else {
                    Err(crate::backup::manifest::ManifestError::OtherBackup(manifest.backup_id))
                }
            })
            .map_err(|reason| BackupError::ManifestUntrusted {
                backup_id: backup_id.to_owned(),
                reason,
            })
    }

    /// Every manifest in the repository, oldest first. Unreadable ones are skipped with a warning.
    pub fn manifests(&self) -> Result<Vec<Manifest>, BackupError> {
        let mut manifests = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(BackupError::io(&self.dir))? {
            let path = entry.map_err(BackupError::io(&self.dir))?.path();
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            match self.manifest(id) {
                Ok(manifest) if manifest.backup_id == id => manifests.push(manifest),
                Ok(manifest) => {
                    tracing::warn!(file = id, inner = %manifest.backup_id, "skipping a manifest whose backup_id differs from its file name")
                }
                Err(error) => tracing::warn!(%error, "skipping an unreadable manifest"),
            }
        }
        manifests.sort_by_key(|m| m.created_at);
        Ok(manifests)
    }

    /// The newest backup by id (ids sort by time) with a manifest file, trusted or not: a
    /// drill of `latest` must not pass over a damaged newest backup to an older sound one.
    pub fn latest_backup_id(&self) -> Result<Option<String>, BackupError> {
        let mut newest: Option<String> = None;
        for entry in fs::read_dir(&self.dir).map_err(BackupError::io(&self.dir))? {
            let name = entry.map_err(BackupError::io(&self.dir))?.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if ident::validate("backup id", id).is_ok() && newest.as_deref().is_none_or(|n| id > n) {
                newest = Some(id.to_owned());
            }
        }
        Ok(newest)
    }

    /// SHA-256 of the stored archive, read in 1 MiB chunks.
    pub fn archive_sha256(&self, backup_id: &str) -> Result<String, BackupError> {
        let path = self.archive_path(backup_id)?;
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BackupError::ArchiveMissing(backup_id.to_owned()))
            }
            Err(e) => return Err(BackupError::io(&path)(e)),
        };
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buffer).map_err(BackupError::io(&path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
        }
        Ok(hex::encode(hasher.finalize()))
    }
}

/// Writes `body` to `path` through a fsynced temporary file and a rename.
pub fn write_atomically(path: &Path, body: &[u8]) -> Result<(), BackupError> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let mut file = File::create(&partial).map_err(BackupError::io(&partial))?;
    file.write_all(body).map_err(BackupError::io(&partial))?;
    file.sync_all().map_err(BackupError::io(&partial))?;
    fs::rename(&partial, path).map_err(BackupError::io(path))
}

/// Makes renames in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(BackupError::io(dir))
}
