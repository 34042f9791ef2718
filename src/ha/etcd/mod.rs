//! The lease on etcd: leadership arbitrated by a real consensus store outside the database,
//! for clusters where the database itself may fail over. The leader key lives on an etcd lease
//! the holder keeps alive; the fencing token reaches the database through `ha::fence`.
//!
//! Why etcd-client: it is the maintained async client of etcd's v3 gRPC API (tonic), with
//! transactions, leases, watches, auth and TLS; its alternatives are unmaintained or blocking
//! (docs/ARCHITECTURE.md, "The lease on etcd").

mod connect;
mod keys;
mod member;
mod session;

pub use connect::{check_cluster, connect, connect_one, endpoint_health, EndpointHealth, EtcdError};
pub use keys::Keys;
pub use session::{EtcdLeaseSession, EtcdLeaseStore};

use crate::secret::Secret;

/// How to reach the etcd cluster and where under it the lease lives (validated in config).
#[derive(Clone)]
pub struct EtcdSettings {
    /// Client URLs of the cluster's members, `http://` or `https://`.
    pub endpoints: Vec<String>,
    /// Ends in `/`; every key autonomy writes is under it.
    pub prefix: String,
    /// etcd's user and password, when its auth is on.
    pub user: Option<(String, Secret)>,
    /// TLS for `https://` endpoints.
    pub tls: Option<EtcdTls>,
}

/// The PEM files of etcd's TLS, read at start.
#[derive(Clone)]
pub struct EtcdTls {
    /// The CA that signed the members' certificates (default: the system's roots are not used;
    /// etcd clusters have their own CA).
    pub ca_pem: Option<Vec<u8>>,
    /// A client certificate and its key, when the members require one.
    pub identity: Option<(Vec<u8>, Secret)>,
}

impl std::fmt::Debug for EtcdSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdSettings")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("user", &self.user.as_ref().map(|(name, _)| name))
            .field("password", &self.user.as_ref().map(|_| "<redacted>"))
            .field(
                "tls",
                &self
                    .tls
                    .as_ref()
                    .map(|tls| (tls.ca_pem.is_some(), tls.identity.is_some())),
            )
            .finish()
    }
}
