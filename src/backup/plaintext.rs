//! The archive a restore or drill replays, checked before any database is touched: the stored
//! bytes against the manifest's SHA-256 (no key needed), and for an encrypted backup the key
//! against its recipients first, then the decrypted copy, staged privately for pg_restore to
//! seek, against the plaintext's SHA-256.

use std::io::{BufReader, Read, Seek, Write};

use sha2::{Digest, Sha256};

use crate::backup::{
    error::KeyProblem,
    manifest::OpenPgpSeal,
    openpgp::{self, BackupKeys},
    store::{private_copy, BackupStore, StagedArchive},
    BackupError, Manifest,
};

/// Whether the caller already hashed the stored archive (a drill does, to report it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredBytes {
    Check,
    AlreadyChecked,
}

/// The plaintext archive of `manifest`, ready for pg_restore. Blocking.
pub fn open(
    store: &dyn BackupStore,
    manifest: &Manifest,
    keys: &BackupKeys,
    stored: StoredBytes,
) -> Result<StagedArchive, BackupError> {
    let backup_id = manifest.backup_id.as_str();
    let seal = match (manifest.storage.encryption.as_str(), &manifest.storage.openpgp) {
        ("none", None) => None,
        (openpgp::stream::ENCRYPTION, Some(seal)) => Some(seal),
        (found, _) => {
            return Err(BackupError::UnknownEncryption {
                backup_id: backup_id.to_owned(),
                found: found.to_owned(),
            })
        }
    };
    // The key is checked before a byte is fetched: a missing or foreign key is the operator's
    // to fix, and must not look like a damaged archive.
    let key = seal.map(|seal| usable_key(backup_id, seal, keys)).transpose()?;
    let mut staged = store.stage_archive(backup_id)?;
    if stored == StoredBytes::Check {
        let actual = staged.sha256()?;
        if actual != manifest.sha256 {
            return Err(BackupError::ChecksumMismatch {
                backup_id: backup_id.to_owned(),
                expected: manifest.sha256.clone(),
                actual,
            });
        }
    }
    match (seal, key) {
        (Some(seal), Some(key)) => decrypt_staged(store, backup_id, seal, key, &staged),
        _ => Ok(staged),
    }
}

/// This node's decryption key, if it is one of the backup's recipients.
fn usable_key<'a>(
    backup_id: &str,
    seal: &OpenPgpSeal,
    keys: &'a BackupKeys,
) -> Result<&'a openpgp::DecryptionKey, BackupError> {
    let refuse = |problem| BackupError::Undecryptable {
        backup_id: backup_id.to_owned(),
        recipients: seal.recipients.clone(),
        problem,
    };
    let key = keys.decryption.as_ref().ok_or_else(|| refuse(KeyProblem::NoKey))?;
    if !seal.recipients.contains(&key.fingerprint) {
        return Err(refuse(KeyProblem::NotRecipient(key.fingerprint.clone())));
    }
    Ok(key)
}

/// Decrypts `staged` into a private copy beside it, checked against the plaintext's digest.
fn decrypt_staged(
    store: &dyn BackupStore,
    backup_id: &str,
    seal: &OpenPgpSeal,
    key: &openpgp::DecryptionKey,
    staged: &StagedArchive,
) -> Result<StagedArchive, BackupError> {
    let failed = |reason: String| BackupError::Undecryptable {
        backup_id: backup_id.to_owned(),
        recipients: seal.recipients.clone(),
        problem: KeyProblem::Failed {
            key: key.fingerprint.clone(),
            reason,
        },
    };
    let mut sealed = staged.file.try_clone().map_err(BackupError::io(&staged.path))?;
    sealed.rewind().map_err(BackupError::io(&staged.path))?;
    let mut message = openpgp::stream::decrypt(BufReader::new(sealed), key).map_err(|e| failed(e.to_string()))?;
    let (file, path) = private_copy(store.scratch_dir())?;
    // From here on the copy is removed however this ends.
    let mut opened = StagedArchive::temporary(file, path);
    let (size, actual) = copy_hashing(&mut message, &mut opened).map_err(|e| match e {
        CopyError::Read(reason) => failed(reason),
        CopyError::Write(error) => BackupError::io(&opened.path)(error),
    })?;
    if actual != seal.plaintext_sha256 || size != seal.plaintext_size_bytes {
        return Err(BackupError::PlaintextMismatch {
            backup_id: backup_id.to_owned(),
            expected: seal.plaintext_sha256.clone(),
            actual,
        });
    }
    opened.file.rewind().map_err(BackupError::io(&opened.path))?;
    Ok(opened)
}

enum CopyError {
    Read(String),
    Write(std::io::Error),
}

/// Copies the decrypted stream into the staged copy; its size and SHA-256.
fn copy_hashing(source: &mut dyn Read, into: &mut StagedArchive) -> Result<(u64, String), CopyError> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buffer = vec![0u8; 1 << 20];
    let mut out = std::io::BufWriter::with_capacity(1 << 20, &mut into.file);
    loop {
        let n = match source.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e.to_string())),
        };
        hasher.update(&buffer[..n]);
        size += n as u64;
        out.write_all(&buffer[..n]).map_err(CopyError::Write)?;
    }
    out.flush().map_err(CopyError::Write)?;
    Ok((size, hex::encode(hasher.finalize())))
}
