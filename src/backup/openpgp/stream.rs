//! Streaming OpenPGP: an archive encrypted as it is read, and decrypted as it is read, in
//! bounded memory. The message is what `gpg --encrypt` writes for these recipients (SEIPD v1
//! with MDC, AES-256, no compression: a pg_dump archive is already compressed), so plain
//! `gpg --decrypt` opens it without autonomy (docs/OPERATIONS.md). tests/encryption.rs checks
//! both directions against the real gpg.

use std::io::{BufRead, Read, Write};

use pgp::{composed::Message, composed::MessageBuilder, crypto::sym::SymmetricKeyAlgorithm};

use super::keys::{DecryptionKey, Recipients};

/// The symmetric cipher every archive is encrypted with, as the manifest records it.
pub const CIPHER: &str = "AES256";

/// What the manifest's `storage.encryption` says of an encrypted archive.
pub const ENCRYPTION: &str = "openpgp";

/// Writes `plaintext` into `out` as one OpenPGP message to every recipient. Memory is one
/// partial-length chunk (512 KiB) plus the reader's and writer's buffers, whatever the size.
pub fn encrypt(
    plaintext: &mut dyn Read,
    out: &mut dyn Write,
    recipients: &Recipients,
) -> Result<(), pgp::errors::Error> {
    let mut rng = rand::thread_rng();
    let mut builder = MessageBuilder::from_reader("", plaintext).seipd_v1(&mut rng, SymmetricKeyAlgorithm::AES256);
    for recipient in &recipients.0 {
        builder.encrypt_to_key(&mut rng, &recipient.encryption_subkey)?;
    }
    builder.to_writer(&mut rng, out)
}

/// The plaintext of the message `sealed` holds, as a stream. Fails at once when `key` is not
/// one of its recipients (or its passphrase does not unlock it); a damaged message fails the
/// read that meets the damage, at the latest at its end (the MDC check).
pub fn decrypt<'a>(
    sealed: impl BufRead + std::fmt::Debug + Send + 'a,
    key: &DecryptionKey,
) -> Result<Message<'a>, pgp::errors::Error> {
    let message = Message::from_bytes(sealed)?;
    let mut opened = message.decrypt(&key.password(), &key.key)?;
    // gpg compresses what it encrypts unless told not to: an archive sealed by hand opens too.
    if opened.is_compressed() {
        opened = opened.decompress()?;
    }
    Ok(opened)
}
