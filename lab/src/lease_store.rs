//! The lease store the lab's nodes use, as AUTONOMY_LAB_LEASE_STORE says: `row` (the default,
//! a row in the lab database) or `etcd` (a real three-member etcd cluster on loopback, started
//! for the slice run and removed with it).

use std::path::Path;

use crate::etcd::EtcdCluster;

/// The lease TTL of the lab's nodes on etcd: autonomy's default for etcd.
pub const ETCD_TTL_MS: u64 = 3_000;

pub enum LabLeaseStore {
    Row,
    Etcd { cluster: EtcdCluster },
}

/// `row` or `etcd`, from AUTONOMY_LAB_LEASE_STORE (unset: `row`); any other value is a mistake
/// in the test command, refused rather than run as something else.
pub fn lab_lease_store_kind() -> &'static str {
    match std::env::var("AUTONOMY_LAB_LEASE_STORE").as_deref() {
        Err(_) | Ok("") | Ok("row") => "row",
        Ok("etcd") => "etcd",
        Ok(other) => panic!("AUTONOMY_LAB_LEASE_STORE={other}: use row or etcd"),
    }
}

/// The etcd prefix of `slice`'s nodes.
pub fn prefix(slice: &str) -> String {
    format!("/autonomy-lab/{slice}/")
}

impl LabLeaseStore {
    /// The store AUTONOMY_LAB_LEASE_STORE names; etcd's members keep their data in `scratch`.
    pub fn from_env(scratch: &Path) -> Result<Self, String> {
        match lab_lease_store_kind() {
            "etcd" => EtcdCluster::start(&scratch.join("etcd"), 3)
                .map(|cluster| Self::Etcd { cluster })
                .map_err(|e| format!("AUTONOMY_LAB_LEASE_STORE=etcd but no etcd cluster could run: {}", e.0)),
            _ => Ok(Self::Row),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Row => "row",
            Self::Etcd { .. } => "etcd",
        }
    }

    /// The `ha serve` flags that put a node of `slice` on this store (none for the row).
    pub fn node_args(&self, slice: &str) -> Vec<String> {
        match self {
            Self::Row => Vec::new(),
            Self::Etcd { cluster } => vec![
                "--lease-store".into(),
                "etcd".into(),
                "--etcd-endpoints".into(),
                cluster.endpoints().join(","),
                "--etcd-prefix".into(),
                prefix(slice),
            ],
        }
    }

    /// The etcd cluster, if the lease lives there.
    pub fn etcd(&self) -> Option<&EtcdCluster> {
        match self {
            Self::Row => None,
            Self::Etcd { cluster } => Some(cluster),
        }
    }

    /// The etcd cluster, to stop and start its members.
    pub fn etcd_mut(&mut self) -> Option<&mut EtcdCluster> {
        match self {
            Self::Row => None,
            Self::Etcd { cluster } => Some(cluster),
        }
    }

    /// One line for the setup evidence: which lease store the slice ran on.
    pub fn describe(&self) -> String {
        match self {
            Self::Row => "lease store: row (autonomy_ha.leader_lease in the lab database)".into(),
            Self::Etcd { cluster } => format!(
                "lease store: etcd, three members at {} (fence row autonomy_ha.write_fence)",
                cluster.endpoints().join(",")
            ),
        }
    }
}
