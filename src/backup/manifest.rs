//! The manifest written beside each archive, and the inventory record shown to operators.

pub use crate::api::BackupStatus;

pub use crate::api::{BackupRecord, RestoreReport, RestoreRequest, RestoreStatus};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ident::{BackupId, NodeId};

/// How an archive is stored: the store, the archive's format and its encryption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Storage {
    pub kind: String,
    pub format: String,
    /// `none`, or `openpgp` with `openpgp` saying how.
    pub encryption: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openpgp: Option<OpenPgpSeal>,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            kind: "local".into(),
            format: "pg_dump_custom".into(),
            encryption: "none".into(),
            openpgp: None,
        }
    }
}

/// How an encrypted archive was sealed. The manifest's `sha256` and `size_bytes` are those of
/// the stored (encrypted) bytes, checkable without any key; these are the plaintext's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenPgpSeal {
    /// The symmetric cipher (`AES256`).
    pub cipher: String,
    /// The primary-key fingerprints of every recipient: any one of their secret keys opens it.
    pub recipients: Vec<String>,
    pub plaintext_sha256: String,
    pub plaintext_size_bytes: u64,
}

/// `<backup-dir>/<id>.json`: the catalog of record for one completed archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub manifest_version: u32,
    pub backup_id: BackupId,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub completed_at: OffsetDateTime,
    pub database: String,
    pub server_version: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub duration_ms: u64,
    pub status: BackupStatus,
    pub node_id: NodeId,
    pub epoch: i64,
    pub excluded_schemas: Vec<String>,
    pub storage: Storage,
    /// What the database held in the dump's snapshot (manifest_version 2); absent in older
    /// manifests, whose restores then report no proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<crate::backup::proof::Baseline>,
    /// SHA-256 of this manifest without this field (manifest_version 3 on, see [`seal`]): an
    /// edited baseline, size or archive checksum is caught before the manifest is trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_sha256: Option<String>,
    /// The shared signing key's signature over `manifest_sha256` (outside the seal, which it
    /// signs); absent when the writing node had no --manifest-signing-key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_signature: Option<ManifestSignature>,
}

/// An OpenPGP detached signature over a manifest's seal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestSignature {
    /// The signing key's primary fingerprint.
    pub signer: String,
    /// The armored signature (`gpg --verify` takes it, over the `manifest_sha256` text).
    pub signature: String,
}

/// The version new manifests are written with; from 3 on they carry `manifest_sha256`.
pub const MANIFEST_VERSION: u32 = 3;

/// Why a manifest file cannot be trusted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("the manifest is not valid JSON of a manifest: {0}")]
    Malformed(String),
    #[error("the manifest (version {0}) has no manifest_sha256; it was edited or truncated")]
    Unsealed(u32),
    #[error("the manifest describes another backup, `{0}`")]
    OtherBackup(String),
    #[error("the manifest was changed after it was written (its manifest_sha256 says {expected}, its content hashes to {actual})")]
    Tampered { expected: String, actual: String },
    #[error("the manifest is version {found}, older than the sealed format {current} this node writes, so nothing proves it unchanged; if the backup really predates sealed manifests, restore it with --allow-unsealed-manifest")]
    Unsealable { found: u32, current: u32 },
    #[error("the manifest is not signed, and this node accepts only manifests signed by {0} (--manifest-signing-key); it was written by a node without the signing key, or its signature was removed")]
    Unsigned(String),
    #[error("the manifest's signature (by {signer}) is refused: {reason}")]
    BadSignature {
        signer: String,
        reason: crate::backup::openpgp::SignatureError,
    },
    #[error("the manifest's {field} is `{manifest}` but the inventory recorded `{inventory}` when the backup was made: the manifest was replaced or downgraded")]
    DisagreesWithInventory {
        field: &'static str,
        manifest: String,
        inventory: String,
    },
}

/// Whether a manifest (its seal already checked by [`open`]) may be restored: it must agree
/// with the inventory's record of the backup on format, size and archive checksum, and an
/// unsealed one (older than [`MANIFEST_VERSION`]) needs the operator's explicit consent.
/// Without a record, the manifest alone decides.
pub fn trust_for_restore(
    manifest: &Manifest,
    recorded: Option<&BackupRecord>,
    allow_unsealed: bool,
) -> Result<(), ManifestError> {
    if let Some(recorded) = recorded {
        agree("manifest_version", manifest.manifest_version, recorded.manifest_version)?;
        agree("sha256", &manifest.sha256, recorded.checksum.as_ref())?;
        agree("size_bytes", manifest.size_bytes, recorded.size_bytes)?;
    }
    if manifest.manifest_version < MANIFEST_VERSION && !allow_unsealed {
        return Err(ManifestError::Unsealable {
            found: manifest.manifest_version,
            current: MANIFEST_VERSION,
        });
    }
    Ok(())
}

/// The manifest's signature against the trusted keys, when the node has any: an unsigned
/// manifest, or one whose signature does not verify over its (already checked) seal, is
/// refused. Returns the fingerprint of the key that signed it.
pub fn check_signature(
    manifest: &Manifest,
    verifier: Option<&crate::backup::openpgp::ManifestVerifier>,
) -> Result<Option<String>, ManifestError> {
    let Some(verifier) = verifier else {
        return Ok(None);
    };
    let unsigned = || ManifestError::Unsigned(verifier.fingerprints().join(", "));
    let (Some(seal), Some(signed)) = (&manifest.manifest_sha256, &manifest.manifest_signature) else {
        return Err(unsigned());
    };
    verifier
        .verify(seal, &signed.signature)
        .map(Some)
        .map_err(|reason| ManifestError::BadSignature {
            signer: signed.signer.clone(),
            reason,
        })
}

/// The seal `manifest` will carry once published (see [`checksum_of`]): what its signature signs.
pub fn seal_of(manifest: &Manifest) -> String {
    checksum_of(&serde_json::to_value(manifest).expect("a manifest always serialises"))
}

/// The manifest's `field` against the inventory's, where the inventory recorded one.
fn agree<T: PartialEq + std::fmt::Display>(
    field: &'static str,
    manifest: T,
    inventory: Option<T>,
) -> Result<(), ManifestError> {
    match inventory {
        Some(inventory) if inventory != manifest => Err(ManifestError::DisagreesWithInventory {
            field,
            manifest: manifest.to_string(),
            inventory: inventory.to_string(),
        }),
        _ => Ok(()),
    }
}

/// SHA-256 of the manifest document without its `manifest_sha256` and `manifest_signature`
/// fields (the signature signs the seal, so it cannot be inside it), serialised compactly
/// with its keys in sorted order (serde_json's map is ordered): independent of how the file
/// was indented, and of fields later versions add with defaults.
pub fn checksum_of(document: &serde_json::Value) -> String {
    let mut document = document.clone();
    if let Some(fields) = document.as_object_mut() {
        fields.remove("manifest_sha256");
        fields.remove("manifest_signature");
    }
    let canonical = serde_json::to_vec(&document).expect("a JSON value always serialises");
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&canonical))
}

/// The manifest's file body, sealed with its checksum.
pub fn seal(manifest: &Manifest) -> Vec<u8> {
    let mut document = serde_json::to_value(manifest).expect("a manifest always serialises");
    let checksum = checksum_of(&document);
    document["manifest_sha256"] = serde_json::Value::String(checksum);
    serde_json::to_vec_pretty(&document).expect("a JSON value always serialises")
}

/// Reads a manifest file's body, checking its seal. Versions before 3 had none and are read
/// as they are.
pub fn open(body: &[u8]) -> Result<Manifest, ManifestError> {
    let document: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ManifestError::Malformed(e.to_string()))?;
    let manifest: Manifest =
        serde_json::from_value(document.clone()).map_err(|e| ManifestError::Malformed(e.to_string()))?;
    if manifest.manifest_version < 3 {
        return Ok(manifest);
    }
    let expected = manifest
        .manifest_sha256
        .clone()
        .ok_or(ManifestError::Unsealed(manifest.manifest_version))?;
    let actual = checksum_of(&document);
    if expected != actual {
        return Err(ManifestError::Tampered { expected, actual });
    }
    Ok(manifest)
}

impl From<&Manifest> for BackupRecord {
    fn from(m: &Manifest) -> Self {
        Self {
            backup_id: m.backup_id.to_string(),
            status: m.status,
            created_at: m.created_at,
            completed_at: Some(m.completed_at),
            database: m.database.clone(),
            server_version: Some(m.server_version.clone()),
            size_bytes: Some(m.size_bytes),
            checksum: Some(m.sha256.clone()),
            duration_ms: Some(m.duration_ms),
            node_id: m.node_id.to_string(),
            epoch: m.epoch,
            error: None,
            last_verified_at: None,
            last_verify_outcome: None,
            manifest_version: Some(m.manifest_version),
            last_restored_at: None,
            last_restore_outcome: None,
            files: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            manifest_version: MANIFEST_VERSION,
            backup_id: BackupId::parse("bk-1").unwrap(),
            created_at: OffsetDateTime::UNIX_EPOCH,
            completed_at: OffsetDateTime::UNIX_EPOCH,
            database: "app".into(),
            server_version: "15".into(),
            size_bytes: 10,
            sha256: "ab".repeat(32),
            duration_ms: 5,
            status: BackupStatus::Completed,
            node_id: NodeId::parse("n1").unwrap(),
            epoch: 3,
            excluded_schemas: vec!["autonomy_ha".into()],
            storage: Storage::default(),
            baseline: None,
            manifest_sha256: None,
            manifest_signature: None,
        }
    }

    #[test]
    fn a_sealed_manifest_opens_whatever_its_indentation() {
        let body = seal(&manifest());
        let opened = open(&body).expect("sealed");
        assert_eq!(opened.backup_id, "bk-1");
        assert_eq!(opened.manifest_sha256.as_deref().map(str::len), Some(64));
        let compact = serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(&body).unwrap()).unwrap();
        assert_eq!(open(&compact).expect("same content"), opened);
    }

    #[test]
    fn an_edited_field_breaks_the_seal() {
        let mut document: serde_json::Value = serde_json::from_slice(&seal(&manifest())).unwrap();
        document["size_bytes"] = serde_json::json!(11);
        let error = open(&serde_json::to_vec(&document).unwrap()).unwrap_err();
        assert!(matches!(error, ManifestError::Tampered { .. }), "{error}");
    }

    fn record_of(m: &Manifest) -> BackupRecord {
        BackupRecord::from(m)
    }

    #[test]
    fn a_downgraded_manifest_is_refused_with_or_without_the_flag() {
        let original = manifest();
        let recorded = record_of(&original);
        let mut downgraded = original.clone();
        downgraded.manifest_version = 2;
        downgraded.sha256 = "cd".repeat(32);
        downgraded.size_bytes = 99;
        // The field the inventory's record disagrees on.
        let disagreeing = |manifest: &Manifest, allow: bool| match trust_for_restore(manifest, Some(&recorded), allow) {
            Err(ManifestError::DisagreesWithInventory { field, .. }) => field,
            other => panic!("expected a disagreement with the inventory, got {other:?}"),
        };
        for allow in [false, true] {
            assert_eq!(disagreeing(&downgraded, allow), "manifest_version");
        }
        // Same version, but another backup's archive figures.
        let mut swapped = original.clone();
        swapped.sha256 = "cd".repeat(32);
        assert_eq!(disagreeing(&swapped, true), "sha256");
        let mut resized = original.clone();
        resized.size_bytes = 11;
        assert_eq!(disagreeing(&resized, true), "size_bytes");
        assert_eq!(trust_for_restore(&original, Some(&recorded), false), Ok(()));
    }

    #[test]
    fn an_unsealed_manifest_needs_the_flag() {
        let mut old = manifest();
        old.manifest_version = 2;
        let mut recorded = record_of(&old);
        recorded.manifest_version = None; // indexed before versions were recorded
        assert_eq!(
            trust_for_restore(&old, Some(&recorded), false),
            Err(ManifestError::Unsealable { found: 2, current: 3 })
        );
        assert_eq!(trust_for_restore(&old, Some(&recorded), true), Ok(()));
        assert_eq!(trust_for_restore(&old, None, true), Ok(()));
    }

    #[test]
    fn a_removed_seal_is_refused_from_version_3_and_absent_before() {
        let mut document: serde_json::Value = serde_json::from_slice(&seal(&manifest())).unwrap();
        document.as_object_mut().unwrap().remove("manifest_sha256");
        let body = serde_json::to_vec(&document).unwrap();
        assert_eq!(open(&body).unwrap_err(), ManifestError::Unsealed(3));
        document["manifest_version"] = serde_json::json!(2);
        assert!(open(&serde_json::to_vec(&document).unwrap()).is_ok());
    }
}
