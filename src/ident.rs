//! The identifiers that become file names and SQL literals, backup ids and node ids: validated
//! once, where they enter, and carried as their own types from there.

use serde::{Deserialize, Serialize};
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

/// Declares an identifier type: a string that passed [`validate`], shown and serialised as
/// the plain string, and refused when it is deserialised or parsed from one that does not pass.
macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The id, if `value` is one (the error names the rule it broke).
            pub fn parse(value: &str) -> Result<Self, InvalidIdent> {
                validate($kind, value)?;
                Ok(Self(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidIdent;

            fn try_from(value: String) -> Result<Self, InvalidIdent> {
                validate($kind, &value)?;
                Ok(Self(value))
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidIdent;

            fn from_str(value: &str) -> Result<Self, InvalidIdent> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

identifier!(
    /// Names one backup: its archive `<id>.dump` and manifest `<id>.json` in the repository.
    BackupId,
    "backup id"
);

identifier!(
    /// Names one node: its audit file `<id>.jsonl`, its lease, its sessions' application_name.
    NodeId,
    "node id"
);

#[cfg(test)]
mod tests {
    use super::{validate, BackupId, NodeId};

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

    #[test]
    fn ids_are_parsed_once_and_serialised_as_the_plain_string() {
        let id = BackupId::parse("bk-20261121T223000Z-a1b2c3").expect("a generated id");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"bk-20261121T223000Z-a1b2c3\"");
        assert_eq!(id.to_string(), "bk-20261121T223000Z-a1b2c3");
        let back: BackupId = serde_json::from_str("\"bk-20261121T223000Z-a1b2c3\"").unwrap();
        assert_eq!(back, id);
        let refused = serde_json::from_str::<NodeId>("\"../n1\"").unwrap_err();
        assert!(refused.to_string().contains("invalid node id `../n1`"), "{refused}");
        assert_eq!(
            "a b".parse::<NodeId>().unwrap_err().reason,
            "it contains a character outside A-Z a-z 0-9 . _ -"
        );
    }
}
