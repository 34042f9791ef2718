//! Which lease store arbitrates leadership, validated: the row in the database (the embedded
//! default) or etcd. etcd's password comes from the environment or a file, never a flag, and is
//! never logged.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::ConfigError;
use crate::{
    ha::etcd::{EtcdSettings, EtcdTls},
    secret::Secret,
};

/// The variable etcd's password is read from.
pub const ETCD_PASSWORD_VAR: &str = "AUTONOMY_ETCD_PASSWORD";

/// The flags of the lease store.
#[derive(Debug, Clone, Args)]
pub struct LeaseStoreArgs {
    /// Where the leader lease lives: `row` (a row in the application database, the default
    /// for nodes sharing one database) or `etcd` (an etcd cluster, --etcd-endpoints).
    #[arg(long, env = "AUTONOMY_LEASE_STORE", value_enum, default_value_t = LeaseStoreKind::Row)]
    pub lease_store: LeaseStoreKind,
    /// The etcd members' client URLs, comma-separated (http://host:2379, or https:// with the
    /// --etcd-ca-file that signed them); all of one cluster.
    #[arg(long, env = "AUTONOMY_ETCD_ENDPOINTS", value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// The key prefix this database's nodes keep their keys under; one prefix per database.
    #[arg(long, env = "AUTONOMY_ETCD_PREFIX", default_value = "/autonomy/")]
    pub etcd_prefix: String,
    /// etcd's user, when its auth is on; the password from AUTONOMY_ETCD_PASSWORD or
    /// --etcd-password-file.
    #[arg(long, env = "AUTONOMY_ETCD_USER")]
    pub etcd_user: Option<String>,
    /// A file holding etcd's password (one line).
    #[arg(long, env = "AUTONOMY_ETCD_PASSWORD_FILE")]
    pub etcd_password_file: Option<PathBuf>,
    /// The PEM file of the CA that signed the etcd members' certificates (https:// endpoints).
    #[arg(long, env = "AUTONOMY_ETCD_CA_FILE")]
    pub etcd_ca_file: Option<PathBuf>,
    /// A client certificate (PEM) for members that require one; with --etcd-key-file.
    #[arg(long, env = "AUTONOMY_ETCD_CERT_FILE")]
    pub etcd_cert_file: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, env = "AUTONOMY_ETCD_KEY_FILE")]
    pub etcd_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LeaseStoreKind {
    Row,
    Etcd,
}

/// The lease store a node was configured with.
#[derive(Debug, Clone)]
pub enum LeaseStoreChoice {
    Row,
    Etcd(EtcdSettings),
}

impl LeaseStoreChoice {
    /// `row` or `etcd`, as the status and the evidence name it.
    pub fn kind(&self) -> &'static str {
        match self {
            LeaseStoreChoice::Row => "row",
            LeaseStoreChoice::Etcd(_) => "etcd",
        }
    }
}

impl LeaseStoreArgs {
    /// The store these flags describe; `ttl_ms` is the lease's TTL (etcd counts in seconds).
    pub fn validate(self, ttl_ms: u64, env: impl Fn(&str) -> Option<String>) -> Result<LeaseStoreChoice, ConfigError> {
        let password_var = env(ETCD_PASSWORD_VAR).filter(|value| !value.is_empty());
        if self.lease_store == LeaseStoreKind::Row {
            // A setting that would be ignored is refused: the lease must not quietly stay a row.
            let stray = [
                ("--etcd-endpoints", !self.etcd_endpoints.is_empty()),
                ("--etcd-prefix", self.etcd_prefix != "/autonomy/"),
                ("--etcd-user", self.etcd_user.is_some()),
                ("--etcd-password-file", self.etcd_password_file.is_some()),
                (ETCD_PASSWORD_VAR, password_var.is_some()),
                ("--etcd-ca-file", self.etcd_ca_file.is_some()),
                ("--etcd-cert-file", self.etcd_cert_file.is_some()),
                ("--etcd-key-file", self.etcd_key_file.is_some()),
            ];
            if let Some((flag, _)) = stray.iter().find(|(_, set)| *set) {
                return Err(ConfigError::EtcdWithoutStore(flag));
            }
            return Ok(LeaseStoreChoice::Row);
        }
        if self.etcd_endpoints.is_empty() {
            return Err(ConfigError::EtcdEndpointsMissing);
        }
        if ttl_ms % 1000 != 0 {
            return Err(ConfigError::EtcdTtlSeconds(ttl_ms));
        }
        let prefix = normalised_prefix(&self.etcd_prefix)?;
        let password = match (password_var, &self.etcd_password_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::PassphraseTwice {
                    var: ETCD_PASSWORD_VAR,
                    file_flag: "--etcd-password-file",
                })
            }
            (Some(value), None) => Some(Secret::new(value)),
            (None, Some(path)) => Some(Secret::new(read_line(path, "--etcd-password-file")?)),
            (None, None) => None,
        };
        let user = match (self.etcd_user, password) {
            (Some(user), Some(password)) => Some((user, password)),
            (Some(_), None) => return Err(ConfigError::EtcdPasswordMissing),
            (None, Some(_)) => return Err(ConfigError::EtcdUserMissing),
            (None, None) => None,
        };
        let mut endpoints = Vec::new();
        for endpoint in &self.etcd_endpoints {
            endpoints.push(check_endpoint(endpoint.trim(), user.is_some())?);
        }
        let tls = tls(&self.etcd_ca_file, &self.etcd_cert_file, &self.etcd_key_file)?;
        let any_https = endpoints.iter().any(|e| e.starts_with("https://"));
        if tls.is_some() && !any_https {
            return Err(ConfigError::EtcdTlsWithoutHttps);
        }
        Ok(LeaseStoreChoice::Etcd(EtcdSettings {
            endpoints,
            prefix,
            user,
            tls,
        }))
    }
}

/// `http://host:port` or `https://host:port`, without a path. Plain http carries a password
/// only to a loopback member: it would cross the network in the clear.
fn check_endpoint(endpoint: &str, with_password: bool) -> Result<String, ConfigError> {
    let refused = |why: &'static str| ConfigError::EtcdEndpoint {
        endpoint: endpoint.to_owned(),
        why,
    };
    let (scheme, rest) = endpoint
        .split_once("://")
        .ok_or(refused("it has no http:// or https://"))?;
    if scheme != "http" && scheme != "https" {
        return Err(refused("its scheme is neither http nor https"));
    }
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') || authority.contains('@') {
        return Err(refused("it is not scheme://host:port"));
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
    };
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if scheme == "http" && with_password && !loopback {
        return Err(refused(
            "it is plain http:// to a host that is not loopback, and the etcd password would cross the network unencrypted; use https://",
        ));
    }
    Ok(format!("{scheme}://{authority}"))
}

/// Starts with `/`, ends with `/` (added), visible ASCII without `//`.
fn normalised_prefix(prefix: &str) -> Result<String, ConfigError> {
    let valid = prefix.starts_with('/')
        && prefix.len() <= 200
        && prefix.chars().all(|c| c.is_ascii_graphic())
        && !prefix.contains("//");
    if !valid {
        return Err(ConfigError::EtcdPrefix(prefix.to_owned()));
    }
    Ok(if prefix.ends_with('/') {
        prefix.to_owned()
    } else {
        format!("{prefix}/")
    })
}

fn tls(ca: &Option<PathBuf>, cert: &Option<PathBuf>, key: &Option<PathBuf>) -> Result<Option<EtcdTls>, ConfigError> {
    let read = |flag: &'static str, path: &PathBuf| {
        std::fs::read(path).map_err(|source| ConfigError::EtcdFile {
            flag,
            path: path.clone(),
            source,
        })
    };
    let identity = match (cert, key) {
        (Some(cert), Some(key)) => Some((
            read("--etcd-cert-file", cert)?,
            Secret::new(String::from_utf8_lossy(&read("--etcd-key-file", key)?).into_owned()),
        )),
        (None, None) => None,
        (Some(_), None) => return Err(ConfigError::EtcdHalfIdentity("--etcd-cert-file", "--etcd-key-file")),
        (None, Some(_)) => return Err(ConfigError::EtcdHalfIdentity("--etcd-key-file", "--etcd-cert-file")),
    };
    let ca_pem = ca.as_ref().map(|path| read("--etcd-ca-file", path)).transpose()?;
    Ok((ca_pem.is_some() || identity.is_some()).then_some(EtcdTls { ca_pem, identity }))
}

fn read_line(path: &PathBuf, flag: &'static str) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::EtcdFile {
        flag,
        path: path.clone(),
        source,
    })?;
    Ok(text.lines().next().unwrap_or("").to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn etcd(endpoints: &[&str]) -> LeaseStoreArgs {
        LeaseStoreArgs {
            lease_store: LeaseStoreKind::Etcd,
            etcd_endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
            etcd_prefix: "/autonomy/".into(),
            etcd_user: None,
            etcd_password_file: None,
            etcd_ca_file: None,
            etcd_cert_file: None,
            etcd_key_file: None,
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn etcd_endpoints_and_prefix_are_normalised() {
        let LeaseStoreChoice::Etcd(settings) = etcd(&["http://127.0.0.1:2379/", "https://etcd-2:2379"])
            .validate(5_000, no_env)
            .unwrap()
        else {
            panic!("etcd was asked for")
        };
        assert_eq!(settings.endpoints, ["http://127.0.0.1:2379", "https://etcd-2:2379"]);
        assert_eq!(settings.prefix, "/autonomy/");
        let mut args = etcd(&["http://127.0.0.1:2379"]);
        args.etcd_prefix = "/autonomy/app".into();
        let LeaseStoreChoice::Etcd(settings) = args.validate(5_000, no_env).unwrap() else {
            panic!("etcd was asked for")
        };
        assert_eq!(settings.prefix, "/autonomy/app/");
    }

    #[test]
    fn bad_etcd_settings_name_the_flag() {
        let refused = |args: LeaseStoreArgs, ttl: u64| args.validate(ttl, no_env).unwrap_err().to_string();
        assert!(refused(etcd(&[]), 5_000).contains("--etcd-endpoints"));
        assert!(refused(etcd(&["127.0.0.1:2379"]), 5_000).contains("127.0.0.1:2379"));
        assert!(refused(etcd(&["ftp://h:1"]), 5_000).contains("ftp://h:1"));
        assert!(refused(etcd(&["http://h:1"]), 4_500).contains("--lease-ttl-ms 4500"));
        let mut args = etcd(&["http://h:1"]);
        args.etcd_prefix = "autonomy".into();
        assert!(refused(args, 5_000).contains("--etcd-prefix"));
        let mut args = etcd(&["http://h:1"]);
        args.etcd_user = Some("root".into());
        assert!(refused(args, 5_000).contains(ETCD_PASSWORD_VAR));
    }

    #[test]
    fn a_password_never_crosses_plain_http_to_another_host() {
        let env = |name: &str| (name == ETCD_PASSWORD_VAR).then(|| "s3cret-s3cret".to_owned());
        let mut args = etcd(&["http://10.0.0.5:2379"]);
        args.etcd_user = Some("root".into());
        let error = args.clone().validate(5_000, env).unwrap_err().to_string();
        assert!(error.contains("https://"), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
        args.etcd_endpoints = vec!["http://127.0.0.1:2379".into()];
        let LeaseStoreChoice::Etcd(settings) = args.validate(5_000, env).unwrap() else {
            panic!("etcd was asked for")
        };
        assert!(!format!("{settings:?}").contains("s3cret"));
    }

    #[test]
    fn etcd_flags_without_the_etcd_store_are_refused() {
        let mut args = etcd(&["http://127.0.0.1:2379"]);
        args.lease_store = LeaseStoreKind::Row;
        let error = args.validate(5_000, no_env).unwrap_err().to_string();
        assert!(
            error.contains("--etcd-endpoints") && error.contains("--lease-store etcd"),
            "{error}"
        );
    }
}
