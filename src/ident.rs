//! Validation of the identifiers that become file names: backup ids and node ids.

use thiserror::Error;

/// An identifier that is unsafe or malformed; the message says which rule it broke.
#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "invalid {kind} `{value}`: {reason}; use 1-128 characters from A-Z a-z 0-9 . _ - starting with a letter or digit"
)]
pub struct InvalidIdent {
    pub kind: &'static str,
    pub value: String,
    pub reason: &'static str,
}

/// Checks that `value` is safe to use as a single file-name component.
///
/// Ids reach the file system (`<backup-dir>/<id>.dump`), so anything that could name another
/// directory (`/`, `..`, a leading dot) is refused before any path is built.
pub fn validate(kind: &'static str, value: &str) -> Result<(), InvalidIdent> {
    let fail = |reason| {
        Err(InvalidIdent {
            kind,
            value: value.chars().take(200).collect(),
            reason,
        })
    };
    if value.is_empty() {
        return fail("it is empty");
    }
    if value.len() > 128 {
        return fail("it is longer than 128 characters");
    }
    if value.contains('/') || value.contains('\\') {
        return fail("it contains a path separator");
    }
    if value.contains("..") {
        return fail("it contains `..`");
    }
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return fail("it does not start with a letter or digit");
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return fail("it contains a character outside A-Z a-z 0-9 . _ -");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn accepts_generated_backup_ids() {
        assert_eq!(validate("backup id", "bk-20261121T223000Z-a1b2c3"), Ok(()));
    }

    #[test]
    fn refuses_traversal_and_separators() {
        for bad in ["../x", "..", "a/b", "a\\b", ".hidden", "", "a b", "x..y"] {
            let err = validate("backup id", bad).expect_err(bad);
            assert!(err.to_string().contains("invalid backup id"), "{err}");
        }
    }

    #[test]
    fn refuses_overlong_ids() {
        assert!(validate("node id", &"a".repeat(129)).is_err());
    }
}
