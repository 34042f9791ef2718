//! The keys autonomy keeps under its etcd prefix and what their values hold; pure, so the
//! layout and the check of a prefix's contents are tested without etcd.
//!
//!     <prefix>owner            {"format": "autonomy-lease/1", "database_token": …}
//!     <prefix>leader           {"holder_id", "holder_address", "epoch", "instance"}, on the holder's lease
//!     <prefix>epoch            the last epoch granted, as decimal text
//!     <prefix>members/<node>   {"node_id", "address", "role", "version"}, on the member's lease

use serde::{Deserialize, Serialize};

/// What the owner key's `format` says: the prefix is autonomy's, in this layout.
pub const FORMAT: &str = "autonomy-lease/1";

/// The keys under one prefix (which ends in `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub fn owner(&self) -> String {
        format!("{}owner", self.prefix)
    }

    pub fn leader(&self) -> String {
        format!("{}leader", self.prefix)
    }

    pub fn epoch(&self) -> String {
        format!("{}epoch", self.prefix)
    }

    pub fn members(&self) -> String {
        format!("{}members/", self.prefix)
    }

    pub fn member(&self, node_id: &str) -> String {
        format!("{}members/{node_id}", self.prefix)
    }

    /// True if `key` is one autonomy writes under this prefix.
    pub fn is_ours(&self, key: &[u8]) -> bool {
        let Some(rest) = key.strip_prefix(self.prefix.as_bytes()) else {
            return false;
        };
        match rest {
            b"owner" | b"leader" | b"epoch" => true,
            _ => rest
                .strip_prefix(b"members/")
                .and_then(|id| std::str::from_utf8(id).ok())
                .is_some_and(|id| crate::ident::validate("node id", id).is_ok()),
        }
    }
}

/// The owner key: which database's nodes use this prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub format: String,
    pub database_token: String,
}

/// The leader key's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leader {
    pub holder_id: String,
    pub holder_address: String,
    pub epoch: i64,
    /// Random per process: a key naming this very process (left by a session it lost) is its
    /// own to revoke at once; one naming another process of the same node id is not.
    pub instance: String,
}

/// A member key's value, as Patroni's `/members` keys: who runs, where, in which role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub node_id: String,
    pub address: String,
    /// `leader` or `follower`.
    pub role: String,
    pub version: String,
}

/// Why a prefix cannot be used by this database's nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrefixProblem {
    /// Keys that autonomy does not write (the first few), and no owner key: something else
    /// uses the prefix.
    Foreign(Vec<String>),
    /// The owner key holds something autonomy did not write.
    UnknownOwner(String),
    /// Another database's nodes use this prefix.
    OtherDatabase { token: String },
}

/// What the start of a node found under its prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrefixState {
    /// Nothing there yet: claim it (create the owner key if still absent).
    Empty,
    /// Already this database's.
    Ours,
}

/// Judges a prefix from its keys and the owner key's value, if any.
pub fn judge_prefix(
    keys: &Keys,
    present: &[Vec<u8>],
    owner: Option<&[u8]>,
    database_token: &str,
) -> Result<PrefixState, PrefixProblem> {
    let foreign: Vec<String> = present
        .iter()
        .filter(|key| !keys.is_ours(key))
        .take(3)
        .map(|key| String::from_utf8_lossy(key).into_owned())
        .collect();
    if !foreign.is_empty() {
        return Err(PrefixProblem::Foreign(foreign));
    }
    let Some(owner) = owner else {
        if present.is_empty() {
            return Ok(PrefixState::Empty);
        }
        let listed = present
            .iter()
            .take(3)
            .map(|key| String::from_utf8_lossy(key).into_owned())
            .collect();
        return Err(PrefixProblem::Foreign(listed));
    };
    match serde_json::from_slice::<Owner>(owner) {
        Ok(found) if found.format == FORMAT && found.database_token == database_token => Ok(PrefixState::Ours),
        Ok(found) if found.format == FORMAT => Err(PrefixProblem::OtherDatabase {
            token: found.database_token,
        }),
        _ => Err(PrefixProblem::UnknownOwner(
            String::from_utf8_lossy(owner).chars().take(120).collect(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::new("/autonomy/app/")
    }

    fn owner(token: &str) -> Vec<u8> {
        serde_json::to_vec(&Owner {
            format: FORMAT.into(),
            database_token: token.into(),
        })
        .unwrap()
    }

    #[test]
    fn only_the_layouts_keys_are_ours() {
        let keys = keys();
        for ours in ["owner", "leader", "epoch", "members/n1", "members/node-2.a"] {
            assert!(keys.is_ours(format!("/autonomy/app/{ours}").as_bytes()), "{ours}");
        }
        for foreign in [
            "/autonomy/app/config",
            "/autonomy/app/members/",
            "/autonomy/app/members/../x",
            "/autonomy/app/leader/x",
            "/autonomy/other/leader",
        ] {
            assert!(!keys.is_ours(foreign.as_bytes()), "{foreign}");
        }
    }

    #[test]
    fn an_empty_prefix_is_claimed_and_ours_is_used() {
        let keys = keys();
        assert_eq!(judge_prefix(&keys, &[], None, "t1"), Ok(PrefixState::Empty));
        let present = vec![b"/autonomy/app/owner".to_vec(), b"/autonomy/app/epoch".to_vec()];
        assert_eq!(
            judge_prefix(&keys, &present, Some(&owner("t1")), "t1"),
            Ok(PrefixState::Ours)
        );
    }

    #[test]
    fn a_prefix_written_by_something_else_is_refused() {
        let keys = keys();
        let present = vec![b"/autonomy/app/config".to_vec()];
        assert_eq!(
            judge_prefix(&keys, &present, None, "t1"),
            Err(PrefixProblem::Foreign(vec!["/autonomy/app/config".into()]))
        );
        // Our key names without the owner key: not written by a node (it claims first).
        let present = vec![b"/autonomy/app/leader".to_vec()];
        assert!(matches!(
            judge_prefix(&keys, &present, None, "t1"),
            Err(PrefixProblem::Foreign(_))
        ));
        let present = vec![b"/autonomy/app/owner".to_vec()];
        assert!(matches!(
            judge_prefix(&keys, &present, Some(b"patroni"), "t1"),
            Err(PrefixProblem::UnknownOwner(_))
        ));
    }

    #[test]
    fn another_databases_prefix_is_refused() {
        let keys = keys();
        let present = vec![b"/autonomy/app/owner".to_vec()];
        assert_eq!(
            judge_prefix(&keys, &present, Some(&owner("t2")), "t1"),
            Err(PrefixProblem::OtherDatabase { token: "t2".into() })
        );
    }
}
