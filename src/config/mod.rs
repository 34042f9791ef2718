//! One validated configuration for `autonomy ha serve`, built from flags and environment.

mod flags;
mod keys;
mod lease_store;
mod retention;
mod schedule;
mod store;

pub use flags::ServeArgs;
pub use keys::{KeyArgs, PASSPHRASE_VAR, SIGNING_PASSPHRASE_VAR};
pub use lease_store::{LeaseStoreArgs, LeaseStoreChoice, LeaseStoreKind, ETCD_PASSWORD_VAR};
pub use retention::RetentionArgs;
pub use schedule::ScheduleArgs;
pub use store::{check_reachable, StoreArgs, StoreChoice, StoreKind};

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use thiserror::Error;

use crate::{
    ha::{election::LeaseTiming, replication::LagThresholds},
    ident::{self, NodeId},
};

/// The row lease's default TTL: a dead leader is replaced at once (its session ends), so the
/// TTL bounds only a paused or cut-off one.
pub const DEFAULT_ROW_TTL_MS: u64 = 5_000;
/// etcd's default TTL, which bounds a SIGKILL failover (etcd cannot see a dead process): with
/// etcd's half-second expiry check a takeover comes within 3.5 s, inside the 5 s failover
/// bound, while a leader renewing every second rides out an etcd leader election of over a
/// second (docs/ARCHITECTURE.md, "The lease on etcd").
pub const DEFAULT_ETCD_TTL_MS: u64 = 3_000;

/// Everything a node needs to run; constructed only through [`ServeConfig::validate`].
#[derive(Clone)]
pub struct ServeConfig {
    pub node_id: NodeId,
    pub listen: SocketAddr,
    /// libpq-style URL of the application database; holds a password, so never printed.
    pub database_url: String,
    /// The local repository, or with the S3 store the directory of staged copies.
    pub backup_dir: PathBuf,
    /// Where backups live (S3 credentials inside; never printed).
    pub backup_store: StoreChoice,
    /// Whom backups are encrypted to and what restores decrypt with (secrets never printed).
    pub backup_keys: std::sync::Arc<crate::backup::openpgp::BackupKeys>,
    pub audit_dir: PathBuf,
    pub maintenance_mode: bool,
    /// Bearer token every API route but /healthz requires; never printed.
    pub api_token: String,
    /// The lease's TTL and how often the leader renews it and the others try to take it.
    pub lease: LeaseTiming,
    /// Where the lease lives (etcd's password inside; never printed).
    pub lease_store: LeaseStoreChoice,
    /// The URL other nodes hand to clients as the leader hint; `None` derives it from the
    /// bound listen address.
    pub advertise_url: Option<String>,
    /// Directory holding pg_dump, pg_restore and psql; `None` searches PATH.
    pub pg_bin_dir: Option<PathBuf>,
    /// Protected writes skip the leader and lease checks. Exists only so the test suite can
    /// show that its checks catch unfenced writes; never set it in production.
    pub skip_fencing: bool,
    pub replication: ReplicationSettings,
    /// What `ha backup prune` keeps.
    pub retention: crate::backup::retention::RetentionPolicy,
    /// The backups and drills the leader runs by itself.
    pub schedules: crate::backup::schedule::Schedules,
}

/// How the node watches its standbys.
#[derive(Debug, Clone, Copy)]
pub struct ReplicationSettings {
    /// The bands a standby's write lag is judged against.
    pub lag_thresholds: LagThresholds,
    /// How often pg_stat_replication is sampled.
    pub poll_interval: Duration,
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeConfig")
            .field("node_id", &self.node_id)
            .field("listen", &self.listen)
            .field("database_url", &"<redacted>")
            // (directory, store, keys): each prints its own secrets redacted.
            .field("backups", &(&self.backup_dir, &self.backup_store, &self.backup_keys))
            .field("audit_dir", &self.audit_dir)
            .field("maintenance_mode", &self.maintenance_mode)
            .field("api_token", &"<redacted>")
            .field("lease", &self.lease)
            .field("lease_store", &self.lease_store)
            .field("advertise_url", &self.advertise_url)
            .field("pg_bin_dir", &self.pg_bin_dir)
            .field("skip_fencing", &self.skip_fencing)
            .field("replication", &self.replication)
            .field("retention", &self.retention)
            .field("schedules", &self.schedules)
            .finish()
    }
}

/// A configuration value that cannot work; the message names the flag, the value and the fix.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error(transparent)]
    NodeId(#[from] ident::InvalidIdent),
    #[error("no API token: set --api-token or AUTONOMY_API_TOKEN (at least 16 characters); the node refuses to serve without one")]
    MissingToken,
    #[error("the API token is {0} characters long; use at least 16 (for example `openssl rand -hex 24`)")]
    ShortToken(usize),
    #[error("the API token has {0} at character {1}; use visible ASCII only, without spaces (for example `openssl rand -hex 24`)")]
    TokenCharacters(&'static str, usize),
    #[error("{flag} {path}: its parent directory {parent} does not exist; create it first (the node creates only the last component, so a mistyped path is not made into a new tree)")]
    MissingParent {
        flag: &'static str,
        path: PathBuf,
        parent: PathBuf,
    },
    #[error("{flag} {path} exists and is not a directory")]
    NotADirectory { flag: &'static str, path: PathBuf },
    #[error(
        "--listen {0} is not a loopback address; pass --allow-remote if the node must be reachable from other hosts"
    )]
    RemoteListen(SocketAddr),
    #[error("--database-url is not a valid PostgreSQL URL: {0}")]
    DatabaseUrl(String),
    #[error("--lease-ttl-ms {0} is out of range; use 1000..=600000")]
    LeaseTtl(u64),
    #[error("--renew-interval-ms {renew} does not fit --lease-ttl-ms {ttl}: a leader needs at least two renew attempts before its local deadline (4/5 of the TTL); use 10..={max} (default: a third of the TTL, a sixth on etcd)")]
    RenewInterval { renew: u64, ttl: u64, max: u64 },
    #[error("--poll-interval-ms {poll} is out of range for --lease-ttl-ms {ttl}; use 10..={ttl} (default 50)")]
    PollInterval { poll: u64, ttl: u64 },
    #[error("--advertise-url `{0}` is not an http:// or https:// URL; use the URL clients reach this node's API at, e.g. http://10.0.0.5:7432")]
    AdvertiseUrl(String),
    #[error("--listen {0} accepts on every interface, so no address can be derived to tell clients where the leader is; set --advertise-url")]
    AdvertiseNeeded(SocketAddr),
    #[error("--lag-healthy-ms {healthy} and --lag-degraded-ms {degraded} do not make two bands: use 1 <= healthy < degraded <= 3600000 (defaults 10 and 100; `autonomy ha lag-thresholds --from <val14-report.json>` derives them from measurements)")]
    LagThresholds { healthy: u64, degraded: u64 },
    #[error("--replication-poll-interval-ms {0} is out of range; use 10..=60000 (default 1000)")]
    ReplicationPollInterval(u64),
    #[error("--backup-store s3 needs {0} (or its AUTONOMY_ variable)")]
    S3Missing(&'static str),
    #[error(
        "{0} is set but --backup-store is local, so backups would not go to S3; pass --backup-store s3, or drop {0}"
    )]
    S3WithoutStore(&'static str),
    #[error("--s3-endpoint `{0}` is not an https:// URL (or http:// to a loopback address); use e.g. https://s3.eu-west-1.amazonaws.com")]
    S3Endpoint(String),
    #[error("--s3-endpoint {0} is plain http:// to a host that is not loopback: the credentials and the backups would cross the network unencrypted; use https://")]
    S3PlainHttp(String),
    #[error("--s3-bucket `{0}` is not an S3 bucket name; use 3 to 63 lowercase letters, digits, `.` and `-`, starting and ending with a letter or digit")]
    S3Bucket(String),
    #[error("--s3-prefix `{0}` is not a key prefix; use segments separated by `/` (e.g. cluster-a/), without a leading `/`, `.` or `..`")]
    S3Prefix(String),
    #[error("{flag} {value} is out of range; use {range}")]
    Retention {
        flag: &'static str,
        value: u32,
        range: &'static str,
    },
    #[error("--s3-timeout-ms {0} is out of range; use 1000..=3600000 (default 30000)")]
    S3Timeout(u64),
    #[error("--backup-store s3 needs {0} in the environment (the credentials are never taken from a flag, which would show in the process list)")]
    S3Credentials(&'static str),
    #[error("the S3 store {location} at {endpoint} cannot be used: {reason}; check --s3-endpoint, --s3-bucket and the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)")]
    S3Unreachable {
        location: String,
        endpoint: String,
        reason: String,
    },
    #[error(transparent)]
    Key(#[from] crate::backup::openpgp::KeyError),
    #[error("{given} is set but {key_flag} is not: a passphrase unlocks nothing without its key; pass {key_flag}, or unset {given}")]
    PassphraseWithoutKey {
        given: &'static str,
        key_flag: &'static str,
    },
    #[error("a key's passphrase is given twice ({var} and {file_flag}); keep one")]
    PassphraseTwice { var: &'static str, file_flag: &'static str },
    #[error("--manifest-verify-key is set but --manifest-signing-key is not: this node would publish unsigned manifests that signed-manifest checks refuse; give every node the shared --manifest-signing-key")]
    VerifyWithoutSigning,
    #[error("{flag}: {reason}")]
    Schedule {
        flag: &'static str,
        reason: crate::backup::schedule::CalendarError,
    },
    #[error("--schedule-grace-s {0} is out of range; use 1..=604800 seconds (default 3600)")]
    ScheduleGrace(i64),
    #[error("{0} is set but no schedule is (no --backup-schedule or --verify-schedule); pass a schedule, or drop {0}")]
    ScheduleWithoutSchedule(&'static str),
    #[error("--verify-schedule is set and backups are encrypted (--backup-encrypt-to), but this node has no --backup-decrypt-key: every scheduled drill would fail; give the node the secret key, or drop --verify-schedule")]
    VerifyScheduleWithoutKey,
    #[error(
        "{0} is set but --lease-store is row, so the lease would not be on etcd; pass --lease-store etcd, or drop {0}"
    )]
    EtcdWithoutStore(&'static str),
    #[error("--lease-store etcd needs --etcd-endpoints (or AUTONOMY_ETCD_ENDPOINTS): the client URLs of the etcd members, e.g. http://10.0.0.5:2379,http://10.0.0.6:2379,http://10.0.0.7:2379")]
    EtcdEndpointsMissing,
    #[error("--lease-ttl-ms {0} is not whole seconds, and etcd counts a lease's TTL in seconds; use a multiple of 1000 with --lease-store etcd (default 5000)")]
    EtcdTtlSeconds(u64),
    #[error("--etcd-endpoints `{endpoint}`: {why}")]
    EtcdEndpoint { endpoint: String, why: &'static str },
    #[error("--etcd-prefix `{0}` is not a key prefix; use visible ASCII starting with `/`, without `//`, e.g. /autonomy/app/")]
    EtcdPrefix(String),
    #[error("--etcd-user is set but no password is: set AUTONOMY_ETCD_PASSWORD or --etcd-password-file")]
    EtcdPasswordMissing,
    #[error("an etcd password is set (AUTONOMY_ETCD_PASSWORD or --etcd-password-file) but --etcd-user is not; pass --etcd-user")]
    EtcdUserMissing,
    #[error("{0} is set but {1} is not: a client certificate needs its key and the key its certificate")]
    EtcdHalfIdentity(&'static str, &'static str),
    #[error("--etcd-ca-file, --etcd-cert-file or --etcd-key-file is set but no endpoint is https://; list the members as https:// URLs, or drop the TLS files")]
    EtcdTlsWithoutHttps,
    #[error("{flag} {}: cannot read it: {source}", path.display())]
    EtcdFile {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Etcd(#[from] crate::ha::etcd::EtcdError),
    #[error("--backup-key-passphrase-file {}: cannot read it: {source}", path.display())]
    PassphraseFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ServeConfig {
    pub fn validate(inputs: ServeArgs) -> Result<Self, ConfigError> {
        let node_id = NodeId::parse(&inputs.node_id)?;
        let api_token = inputs
            .api_token
            .filter(|t| !t.is_empty())
            .ok_or(ConfigError::MissingToken)?;
        if let Some((at, c)) = api_token.chars().enumerate().find(|(_, c)| !c.is_ascii_graphic()) {
            let kind = if c.is_whitespace() {
                "a space"
            } else if c.is_control() {
                "a control character"
            } else {
                "a non-ASCII character"
            };
            return Err(ConfigError::TokenCharacters(kind, at + 1));
        }
        if api_token.len() < 16 {
            return Err(ConfigError::ShortToken(api_token.len()));
        }
        if !inputs.listen.ip().is_loopback() && !inputs.allow_remote {
            return Err(ConfigError::RemoteListen(inputs.listen));
        }
        if inputs.database_url.trim().is_empty() {
            return Err(ConfigError::DatabaseUrl(
                "it is empty; use e.g. postgresql://user@host:5432/app".into(),
            ));
        }
        inputs
            .database_url
            .parse::<tokio_postgres::Config>()
            .map_err(|e| ConfigError::DatabaseUrl(e.to_string()))?;
        let ttl = inputs.lease_ttl_ms.unwrap_or(match inputs.lease.lease_store {
            LeaseStoreKind::Row => DEFAULT_ROW_TTL_MS,
            LeaseStoreKind::Etcd => DEFAULT_ETCD_TTL_MS,
        });
        if !(1000..=600_000).contains(&ttl) {
            return Err(ConfigError::LeaseTtl(ttl));
        }
        // On etcd a sixth: the renew interval is also how long a store request may go
        // unanswered, and at etcd's default TTL that notices a lost quorum within half a second.
        let renew = inputs.renew_interval_ms.unwrap_or(match inputs.lease.lease_store {
            LeaseStoreKind::Row => ttl / 3,
            LeaseStoreKind::Etcd => ttl / 6,
        });
        let max_renew = ttl * 4 / 5 / 2;
        if !(10..=max_renew).contains(&renew) {
            return Err(ConfigError::RenewInterval {
                renew,
                ttl,
                max: max_renew,
            });
        }
        let poll = inputs.poll_interval_ms;
        if !(10..=ttl).contains(&poll) {
            return Err(ConfigError::PollInterval { poll, ttl });
        }
        if let Some(url) = &inputs.advertise_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::AdvertiseUrl(url.clone()));
            }
        } else if inputs.listen.ip().is_unspecified() {
            return Err(ConfigError::AdvertiseNeeded(inputs.listen));
        }
        let (healthy, degraded) = (inputs.lag_healthy_ms, inputs.lag_degraded_ms);
        if !(1 <= healthy && healthy < degraded && degraded <= 3_600_000) {
            return Err(ConfigError::LagThresholds { healthy, degraded });
        }
        let lease_store = inputs.lease.validate(ttl, |name| std::env::var(name).ok())?;
        let retention = inputs.retention.validate()?;
        let backup_store = inputs.store.validate(|name| std::env::var(name).ok())?;
        let backup_keys = inputs.keys.validate(|name| std::env::var(name).ok())?;
        let can_decrypt = backup_keys.recipients.is_none() || backup_keys.decryption.is_some();
        let schedules = inputs.schedule.validate(can_decrypt)?;
        let replication_poll = inputs.replication_poll_interval_ms;
        if !(10..=60_000).contains(&replication_poll) {
            return Err(ConfigError::ReplicationPollInterval(replication_poll));
        }
        Ok(Self {
            node_id,
            listen: inputs.listen,
            database_url: inputs.database_url,
            backup_dir: inputs.backup_dir,
            backup_store,
            backup_keys,
            audit_dir: inputs.audit_dir,
            maintenance_mode: inputs.maintenance_mode,
            api_token,
            lease: LeaseTiming::new(
                Duration::from_millis(ttl),
                Duration::from_millis(renew),
                Duration::from_millis(poll),
            ),
            lease_store,
            advertise_url: inputs.advertise_url.map(|url| url.trim_end_matches('/').to_owned()),
            pg_bin_dir: inputs.pg_bin_dir,
            skip_fencing: inputs.unsafe_skip_fencing,
            replication: ReplicationSettings {
                lag_thresholds: LagThresholds {
                    healthy_ms: healthy,
                    degraded_ms: degraded,
                },
                poll_interval: Duration::from_millis(replication_poll),
            },
            retention,
            schedules,
        })
    }
}

/// The node's directories: each must exist, or be creatable as one new last component.
pub fn check_directories(config: &ServeConfig) -> Result<(), ConfigError> {
    for (flag, path) in [("--backup-dir", &config.backup_dir), ("--audit-dir", &config.audit_dir)] {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => continue,
            Ok(_) => {
                return Err(ConfigError::NotADirectory {
                    flag,
                    path: path.clone(),
                })
            }
            Err(_) => {}
        }
        let parent = match path.parent() {
            Some(parent) if parent.as_os_str().is_empty() => std::path::Path::new("."),
            Some(parent) => parent,
            None => continue,
        };
        if !parent.is_dir() {
            return Err(ConfigError::MissingParent {
                flag,
                path: path.clone(),
                parent: parent.to_owned(),
            });
        }
    }
    Ok(())
}
