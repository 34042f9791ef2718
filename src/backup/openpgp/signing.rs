//! Signed manifests: every node signs the manifests it publishes with the cluster's shared
//! OpenPGP signing key, and restores and drills accept only manifests signed by a trusted key.
//! The signature is over the manifest's seal (`manifest_sha256`, the SHA-256 of everything
//! else in it), so it binds every field; whoever can write the repository but lacks the key
//! can neither forge a backup nor re-seal an edited one.

use std::path::{Path, PathBuf};

use pgp::{
    composed::{ArmorOptions, Deserializable, DetachedSignature, SignedPublicKey},
    crypto::hash::HashAlgorithm,
};

use super::keys::{fingerprint_of, public_keys, KeyError, SecretKeyFile};
use crate::secret::Secret;

/// The key this node signs manifests with.
#[derive(Debug)]
pub struct ManifestSigner(SecretKeyFile);

/// The keys whose manifest signatures are accepted.
#[derive(Debug, Clone)]
pub struct ManifestVerifier {
    keys: Vec<(String, SignedPublicKey)>,
}

/// Why a signature does not make a manifest trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature is not an OpenPGP signature: {0}")]
    Malformed(String),
    #[error("the signature does not verify with any trusted key ({0}): it was made by another key, or the manifest's seal was changed")]
    Invalid(String),
}

impl ManifestSigner {
    /// The secret key in `path`, proven to sign (with `passphrase`) what its public half verifies.
    pub fn load(path: &Path, passphrase: Secret) -> Result<Self, KeyError> {
        let signer = Self(SecretKeyFile::load("--manifest-signing-key", path, passphrase)?);
        let probe = "autonomy signing probe";
        let proven = signer
            .sign(probe)
            .map_err(|e| e.to_string())
            .and_then(|signature| signer.verifier().verify(probe, &signature).map_err(|e| e.to_string()));
        proven.map_err(|reason| KeyError::CannotSign {
            path: path.to_owned(),
            fingerprint: signer.fingerprint().to_owned(),
            reason,
        })?;
        Ok(signer)
    }

    pub fn fingerprint(&self) -> &str {
        &self.0.fingerprint
    }

    /// An armored detached signature over `seal`.
    pub fn sign(&self, seal: &str) -> Result<String, pgp::errors::Error> {
        let signature = DetachedSignature::sign_binary_data(
            rand::thread_rng(),
            &self.0.key.primary_key,
            &self.0.password(),
            HashAlgorithm::Sha256,
            seal.as_bytes(),
        )?;
        signature.to_armored_string(ArmorOptions::default())
    }

    /// This key's public half as the only trusted key.
    pub fn verifier(&self) -> ManifestVerifier {
        ManifestVerifier {
            keys: vec![(self.0.fingerprint.clone(), self.0.key.to_public_key())],
        }
    }
}

impl ManifestVerifier {
    /// The public keys in `paths` (`--manifest-verify-key`), added to `base`.
    pub fn with_keys(mut self, paths: &[PathBuf]) -> Result<Self, KeyError> {
        for path in paths {
            for key in public_keys("--manifest-verify-key", path)? {
                self.keys.push((fingerprint_of(&key.primary_key), key));
            }
        }
        self.keys.dedup_by(|a, b| a.0 == b.0);
        Ok(self)
    }

    /// The fingerprints of the trusted keys.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys.iter().map(|(fingerprint, _)| fingerprint.clone()).collect()
    }

    /// Checks `signature` (armored) over `seal`; the fingerprint of the key that made it.
    pub fn verify(&self, seal: &str, signature: &str) -> Result<String, SignatureError> {
        let (signature, _) = DetachedSignature::from_armor_single(std::io::Cursor::new(signature.as_bytes()))
            .map_err(|e| SignatureError::Malformed(e.to_string()))?;
        self.keys
            .iter()
            .find(|(_, key)| signature.verify(key, seal.as_bytes()).is_ok())
            .map(|(fingerprint, _)| fingerprint.clone())
            .ok_or_else(|| SignatureError::Invalid(self.fingerprints().join(", ")))
    }
}
