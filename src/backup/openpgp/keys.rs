//! OpenPGP keys as an operator's GPG exports them: the recipients' public keys a backup is
//! encrypted to, and the one secret key a restore decrypts with. Loaded and checked at start,
//! so a key that cannot work stops the node there and not at the first restore.

use std::path::{Path, PathBuf};

use pgp::{
    composed::{Deserializable, SignedPublicKey, SignedPublicSubKey, SignedSecretKey},
    types::{KeyDetails, Password},
};

use crate::secret::Secret;

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{flag} {}: cannot read it: {source}", path.display())]
    Read {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{flag} {}: not an OpenPGP {what} (armored or binary, as `gpg --export{}` writes it): {reason}", path.display(), if *.what == "secret key" { "-secret-keys" } else { "" })]
    NotAKey {
        flag: &'static str,
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("{flag} {}: key {fingerprint} has no valid encryption subkey (`gpg --list-keys` shows one marked [E]); add one with `gpg --quick-add-key {fingerprint} rsa4096 encr`", path.display())]
    NoEncryptionSubkey {
        flag: &'static str,
        path: PathBuf,
        fingerprint: String,
    },
    #[error("--manifest-signing-key {}: key {fingerprint} cannot sign a manifest ({reason}); check AUTONOMY_MANIFEST_KEY_PASSPHRASE or --manifest-key-passphrase-file, and that the primary key can sign (gpg shows [SC])", path.display())]
    CannotSign {
        path: PathBuf,
        fingerprint: String,
        reason: String,
    },
    #[error("--backup-decrypt-key {}: the passphrase does not unlock key {fingerprint} (or the key cannot decrypt): {reason}. Set AUTONOMY_BACKUP_KEY_PASSPHRASE or --backup-key-passphrase-file to its passphrase", path.display())]
    Locked {
        path: PathBuf,
        fingerprint: String,
        reason: String,
    },
}

/// One recipient: its primary key's fingerprint (what `gpg --list-keys` shows) and the
/// subkey a backup's session key is encrypted to.
#[derive(Debug, Clone)]
pub struct Recipient {
    pub fingerprint: String,
    pub encryption_subkey: SignedPublicSubKey,
}

/// Every key a backup is encrypted to: any one of their secret keys opens it.
#[derive(Debug, Clone)]
pub struct Recipients(pub Vec<Recipient>);

impl Recipients {
    /// The keys in `paths` (each file may hold several, as `gpg --export A B` writes them).
    pub fn load(flag: &'static str, paths: &[PathBuf]) -> Result<Self, KeyError> {
        let mut recipients = Vec::new();
        for path in paths {
            for key in public_keys(flag, path)? {
                recipients.push(Recipient::of(flag, path, &key)?);
            }
        }
        recipients.dedup_by(|a, b| a.fingerprint == b.fingerprint);
        Ok(Self(recipients))
    }

    /// The primary fingerprints, as the manifest records them.
    pub fn fingerprints(&self) -> Vec<String> {
        self.0.iter().map(|r| r.fingerprint.clone()).collect()
    }
}

impl Recipient {
    fn of(flag: &'static str, path: &Path, key: &SignedPublicKey) -> Result<Self, KeyError> {
        let fingerprint = fingerprint_of(&key.primary_key);
        let subkey = key
            .public_subkeys
            .iter()
            .rev()
            .find(|subkey| can_encrypt(subkey))
            .cloned()
            .ok_or_else(|| KeyError::NoEncryptionSubkey {
                flag,
                path: path.to_owned(),
                fingerprint: fingerprint.clone(),
            })?;
        Ok(Self {
            fingerprint,
            encryption_subkey: subkey,
        })
    }
}

/// A subkey whose newest binding signature allows encryption, not revoked or expired. The
/// newest usable one is chosen (`rev()` above): after a subkey rotation, the new one.
fn can_encrypt(subkey: &SignedPublicSubKey) -> bool {
    use pgp::packet::SignatureType;
    if subkey
        .signatures
        .iter()
        .any(|sig| sig.typ() == Some(SignatureType::SubkeyRevocation))
    {
        return false;
    }
    let Some(binding) = subkey.signatures.iter().max_by_key(|sig| sig.created()) else {
        return false;
    };
    let flags = binding.key_flags();
    let expired = match (binding.key_expiration_time(), subkey.key.created_at()) {
        (Some(valid_for), created) if valid_for.as_secs() > 0 => {
            let created = std::time::SystemTime::from(created);
            created + std::time::Duration::from(valid_for) < std::time::SystemTime::now()
        }
        _ => false,
    };
    subkey.key.algorithm().can_encrypt() && (flags.encrypt_storage() || flags.encrypt_comms()) && !expired
}

/// An OpenPGP secret key read from a file, with its passphrase (redacted in Debug output).
pub struct SecretKeyFile {
    pub fingerprint: String,
    pub key: SignedSecretKey,
    passphrase: Secret,
}

impl std::fmt::Debug for SecretKeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKeyFile")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl SecretKeyFile {
    /// The one secret key in `path` (armored or binary), its bindings checked; `flag` is what
    /// errors name.
    pub fn load(flag: &'static str, path: &Path, passphrase: Secret) -> Result<Self, KeyError> {
        let bytes = read(flag, path)?;
        let not_a_key = not_a_key(flag, path, "secret key");
        let (key, _) = SignedSecretKey::from_reader_single(&bytes[..]).map_err(not_a_key)?;
        key.verify_bindings().map_err(not_a_key)?;
        Ok(Self {
            fingerprint: fingerprint_of(&key.primary_key),
            key,
            passphrase,
        })
    }

    pub(crate) fn password(&self) -> Password {
        Password::from(self.passphrase.expose())
    }
}

/// The secret key restores and verifies decrypt with.
#[derive(Debug)]
pub struct DecryptionKey(pub SecretKeyFile);

impl std::ops::Deref for DecryptionKey {
    type Target = SecretKeyFile;

    fn deref(&self) -> &SecretKeyFile {
        &self.0
    }
}

impl DecryptionKey {
    /// The secret key in `path`, proven to work: a probe is encrypted to it and decrypted with
    /// `passphrase` (an empty one for an unprotected key).
    pub fn load(path: &Path, passphrase: Secret) -> Result<Self, KeyError> {
        let loaded = Self(SecretKeyFile::load("--backup-decrypt-key", path, passphrase)?);
        loaded.prove(path)?;
        Ok(loaded)
    }

    /// The key as a recipient, for a node told to decrypt but not whom to encrypt to.
    pub fn as_recipients(&self, path: &Path) -> Result<Recipients, KeyError> {
        let public = self.key.to_public_key();
        Ok(Recipients(vec![Recipient::of("--backup-decrypt-key", path, &public)?]))
    }

    /// Encrypts a probe to this key's own public part and decrypts it.
    fn prove(&self, path: &Path) -> Result<(), KeyError> {
        let locked = |reason: String| KeyError::Locked {
            path: path.to_owned(),
            fingerprint: self.fingerprint.clone(),
            reason,
        };
        let recipients = self.as_recipients(path)?;
        let probe = b"autonomy key probe";
        let mut sealed = Vec::new();
        super::stream::encrypt(&mut &probe[..], &mut sealed, &recipients).map_err(|e| locked(e.to_string()))?;
        let mut opened = Vec::new();
        let mut reader =
            super::stream::decrypt(std::io::BufReader::new(&sealed[..]), self).map_err(|e| locked(e.to_string()))?;
        std::io::Read::read_to_end(&mut reader, &mut opened).map_err(|e| locked(e.to_string()))?;
        if opened != probe {
            return Err(locked("the probe decrypted to other bytes".into()));
        }
        Ok(())
    }
}

/// A primary key's v4 fingerprint in upper-case hex, as gpg prints it.
pub fn fingerprint_of(key: &impl KeyDetails) -> String {
    format!("{:X}", key.fingerprint())
}

/// Every public key in `path` (at least one), each with its bindings checked.
pub fn public_keys(flag: &'static str, path: &Path) -> Result<Vec<SignedPublicKey>, KeyError> {
    let bytes = read(flag, path)?;
    let not_a_key = not_a_key(flag, path, "public key");
    let (keys, _) = SignedPublicKey::from_reader_many(&bytes[..]).map_err(not_a_key)?;
    let mut found = Vec::new();
    for key in keys {
        let key = key.map_err(not_a_key)?;
        key.verify_bindings().map_err(not_a_key)?;
        found.push(key);
    }
    if found.is_empty() {
        return Err(KeyError::NotAKey {
            flag,
            path: path.to_owned(),
            what: "public key",
            reason: "the file holds no key".into(),
        });
    }
    Ok(found)
}

/// The error of a file in `flag` that does not hold a `what`.
fn not_a_key<'a>(
    flag: &'static str,
    path: &'a Path,
    what: &'static str,
) -> impl Fn(pgp::errors::Error) -> KeyError + Copy + 'a {
    move |error| KeyError::NotAKey {
        flag,
        path: path.to_owned(),
        what,
        reason: error.to_string(),
    }
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Read {
        flag,
        path: path.to_owned(),
        source,
    })
}
