//! One validated configuration for `autonomy ha serve`, built from flags and environment.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use thiserror::Error;

use crate::ident;

/// Everything a node needs to run; constructed only through [`ServeConfig::validate`].
#[derive(Clone)]
pub struct ServeConfig {
    pub node_id: String,
    pub listen: SocketAddr,
    /// libpq-style URL of the application database; holds a password, so never printed.
    pub database_url: String,
    pub backup_dir: PathBuf,
    pub audit_dir: PathBuf,
    pub maintenance_mode: bool,
    /// Bearer token every API route but /healthz requires; never printed.
    pub api_token: String,
    pub lease_ttl: Duration,
    /// Directory holding pg_dump, pg_restore and psql; `None` searches PATH.
    pub pg_bin_dir: Option<PathBuf>,
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeConfig")
            .field("node_id", &self.node_id)
            .field("listen", &self.listen)
            .field("database_url", &"<redacted>")
            .field("backup_dir", &self.backup_dir)
            .field("audit_dir", &self.audit_dir)
            .field("maintenance_mode", &self.maintenance_mode)
            .field("api_token", &"<redacted>")
            .field("lease_ttl", &self.lease_ttl)
            .field("pg_bin_dir", &self.pg_bin_dir)
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
    #[error(
        "--listen {0} is not a loopback address; pass --allow-remote if the node must be reachable from other hosts"
    )]
    RemoteListen(SocketAddr),
    #[error("--database-url is not a valid PostgreSQL URL: {0}")]
    DatabaseUrl(String),
    #[error("--lease-ttl-ms {0} is out of range; use 1000..=600000")]
    LeaseTtl(u64),
}

/// The raw inputs, as clap parsed them.
pub struct ServeInputs {
    pub node_id: String,
    pub listen: SocketAddr,
    pub allow_remote: bool,
    pub database_url: String,
    pub backup_dir: PathBuf,
    pub audit_dir: PathBuf,
    pub maintenance_mode: bool,
    pub api_token: Option<String>,
    pub lease_ttl_ms: u64,
    pub pg_bin_dir: Option<PathBuf>,
}

impl ServeConfig {
    pub fn validate(inputs: ServeInputs) -> Result<Self, ConfigError> {
        ident::validate("node id", &inputs.node_id)?;
        let api_token = inputs
            .api_token
            .filter(|t| !t.is_empty())
            .ok_or(ConfigError::MissingToken)?;
        if api_token.len() < 16 {
            return Err(ConfigError::ShortToken(api_token.len()));
        }
        if !inputs.listen.ip().is_loopback() && !inputs.allow_remote {
            return Err(ConfigError::RemoteListen(inputs.listen));
        }
        inputs
            .database_url
            .parse::<tokio_postgres::Config>()
            .map_err(|e| ConfigError::DatabaseUrl(e.to_string()))?;
        if !(1000..=600_000).contains(&inputs.lease_ttl_ms) {
            return Err(ConfigError::LeaseTtl(inputs.lease_ttl_ms));
        }
        Ok(Self {
            node_id: inputs.node_id,
            listen: inputs.listen,
            database_url: inputs.database_url,
            backup_dir: inputs.backup_dir,
            audit_dir: inputs.audit_dir,
            maintenance_mode: inputs.maintenance_mode,
            api_token,
            lease_ttl: Duration::from_millis(inputs.lease_ttl_ms),
            pg_bin_dir: inputs.pg_bin_dir,
        })
    }
}
