//! The OpenPGP keys a node encrypts backups to and decrypts them with, loaded and proven at
//! start. A passphrase comes from the environment or a file, never from a flag (a flag shows
//! in the process list), and is never logged.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use clap::Args;

use super::ConfigError;
use crate::{
    backup::openpgp::{BackupKeys, DecryptionKey, ManifestSigner, Recipients},
    secret::Secret,
};

/// The variable a decryption key's passphrase is read from.
pub const PASSPHRASE_VAR: &str = "AUTONOMY_BACKUP_KEY_PASSPHRASE";

/// The variable the manifest signing key's passphrase is read from.
pub const SIGNING_PASSPHRASE_VAR: &str = "AUTONOMY_MANIFEST_KEY_PASSPHRASE";

/// The flags of backup encryption.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// Encrypt every backup to the OpenPGP public keys in this file (`gpg --export --armor
    /// KEY`); repeat it, or put several keys in one file, for several recipients. Any one of
    /// their secret keys opens an archive, with autonomy or with plain `gpg --decrypt`.
    #[arg(long, env = "AUTONOMY_BACKUP_ENCRYPT_TO", value_delimiter = ',')]
    pub backup_encrypt_to: Vec<PathBuf>,
    /// The OpenPGP secret key (`gpg --export-secret-keys --armor KEY`) restores and drills of
    /// encrypted backups decrypt with; its passphrase from AUTONOMY_BACKUP_KEY_PASSPHRASE or
    /// --backup-key-passphrase-file. Without --backup-encrypt-to, backups are encrypted to it.
    #[arg(long, env = "AUTONOMY_BACKUP_DECRYPT_KEY")]
    pub backup_decrypt_key: Option<PathBuf>,
    /// A file holding the decryption key's passphrase (one line).
    #[arg(long, env = "AUTONOMY_BACKUP_KEY_PASSPHRASE_FILE")]
    pub backup_key_passphrase_file: Option<PathBuf>,
    /// The OpenPGP secret key every node signs the manifests it publishes with (the same key
    /// on every node); its passphrase from AUTONOMY_MANIFEST_KEY_PASSPHRASE or
    /// --manifest-key-passphrase-file. With it, restores and drills refuse a manifest that is
    /// unsigned or whose signature does not verify.
    #[arg(long, env = "AUTONOMY_MANIFEST_SIGNING_KEY")]
    pub manifest_signing_key: Option<PathBuf>,
    /// A file holding the signing key's passphrase (one line).
    #[arg(long, env = "AUTONOMY_MANIFEST_KEY_PASSPHRASE_FILE")]
    pub manifest_key_passphrase_file: Option<PathBuf>,
    /// More public keys whose manifest signatures are accepted besides the signing key's own
    /// (the previous key, during a rotation); repeat it, or put several in one file.
    #[arg(long, env = "AUTONOMY_MANIFEST_VERIFY_KEY", value_delimiter = ',')]
    pub manifest_verify_key: Vec<PathBuf>,
}

impl KeyArgs {
    /// The keys these flags name, each proven usable; `env` reads the passphrase variable.
    pub fn validate(self, env: impl Fn(&str) -> Option<String>) -> Result<Arc<BackupKeys>, ConfigError> {
        let decrypt = with_passphrase(
            &DECRYPTION,
            &self.backup_decrypt_key,
            &self.backup_key_passphrase_file,
            &env,
        )?;
        let decryption = decrypt
            .map(|(path, secret)| DecryptionKey::load(path, secret))
            .transpose()?;
        let sign = with_passphrase(
            &SIGNING,
            &self.manifest_signing_key,
            &self.manifest_key_passphrase_file,
            &env,
        )?;
        if sign.is_none() && !self.manifest_verify_key.is_empty() {
            return Err(ConfigError::VerifyWithoutSigning);
        }
        let signer = sign
            .map(|(path, secret)| ManifestSigner::load(path, secret))
            .transpose()?;
        let verifier = match &signer {
            Some(signer) => Some(signer.verifier().with_keys(&self.manifest_verify_key)?),
            None => None,
        };
        let recipients = match (&decryption, &self.backup_decrypt_key) {
            _ if !self.backup_encrypt_to.is_empty() => {
                Some(Recipients::load("--backup-encrypt-to", &self.backup_encrypt_to)?)
            }
            (Some(key), Some(path)) => Some(key.as_recipients(path)?),
            _ => None,
        };
        Ok(Arc::new(BackupKeys {
            recipients,
            decryption,
            signer,
            verifier,
        }))
    }
}

/// A secret key's flag, its passphrase file's flag and its passphrase variable.
struct KeyFlags {
    key: &'static str,
    file: &'static str,
    var: &'static str,
}

const DECRYPTION: KeyFlags = KeyFlags {
    key: "--backup-decrypt-key",
    file: "--backup-key-passphrase-file",
    var: PASSPHRASE_VAR,
};

const SIGNING: KeyFlags = KeyFlags {
    key: "--manifest-signing-key",
    file: "--manifest-key-passphrase-file",
    var: SIGNING_PASSPHRASE_VAR,
};

/// The key file and its passphrase (from the file flag or the variable, at most one; empty
/// for an unprotected key), or None without a key; a passphrase without its key is refused.
fn with_passphrase<'a>(
    flags: &KeyFlags,
    key: &'a Option<PathBuf>,
    file: &Option<PathBuf>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<(&'a Path, Secret)>, ConfigError> {
    let without_key = |given| ConfigError::PassphraseWithoutKey {
        given,
        key_flag: flags.key,
    };
    match (key.as_deref(), file, env(flags.var)) {
        (None, Some(_), _) => Err(without_key(flags.file)),
        (None, None, Some(_)) => Err(without_key(flags.var)),
        (None, None, None) => Ok(None),
        (Some(_), Some(_), Some(_)) => Err(ConfigError::PassphraseTwice {
            var: flags.var,
            file_flag: flags.file,
        }),
        (Some(key), Some(file), None) => Ok(Some((key, read_passphrase(file)?))),
        (Some(key), None, passphrase) => Ok(Some((key, Secret::new(passphrase.unwrap_or_default())))),
    }
}

/// The passphrase in `path`, without its line ending.
fn read_passphrase(path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::PassphraseFile {
        path: path.to_owned(),
        source,
    })?;
    Ok(Secret::new(text.trim_end_matches(['\n', '\r'])))
}
