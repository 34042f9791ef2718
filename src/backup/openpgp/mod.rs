//! OpenPGP encryption at rest of backup archives, with rPGP (the `pgp` crate): pure Rust,
//! MIT/Apache-2.0 like this project, and a streaming message builder and reader, so archives
//! of any size pass through in bounded memory. Sequoia (LGPL-2.0+, a C crypto backend by
//! default) does as much but would bind its licence to the binary. docs/ARCHITECTURE.md,
//! "Encryption at rest".

pub mod keys;
pub mod signing;
pub mod stream;

pub use keys::{DecryptionKey, KeyError, Recipients};
pub use signing::{ManifestSigner, ManifestVerifier, SignatureError};

/// The keys a node was configured with.
#[derive(Debug, Default)]
pub struct BackupKeys {
    /// Whom new backups are encrypted to; `None` writes them unencrypted.
    pub recipients: Option<Recipients>,
    /// What restores and drills of encrypted backups decrypt with.
    pub decryption: Option<DecryptionKey>,
    /// What this node signs the manifests it publishes with.
    pub signer: Option<ManifestSigner>,
    /// Whose manifest signatures restores and drills accept; `None` accepts unsigned manifests.
    pub verifier: Option<ManifestVerifier>,
}
