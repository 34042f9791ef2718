//! Which backup store a node uses, validated: the local directory (the embedded default) or an
//! S3 bucket. S3 credentials come from the standard environment only, never from a flag (a
//! flag shows in the process list).

use clap::{Args, ValueEnum};

use super::ConfigError;
use crate::backup::s3::S3Settings;

/// The flags of the backup store.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Where backups live: `local` (the --backup-dir directory) or `s3` (the --s3-* bucket,
    /// shared by every node; --backup-dir then holds only staged copies for pg_restore).
    #[arg(long, env = "AUTONOMY_BACKUP_STORE", value_enum, default_value_t = StoreKind::Local)]
    pub backup_store: StoreKind,
    /// The S3 endpoint, e.g. https://s3.eu-west-1.amazonaws.com; plain http:// only to a
    /// loopback address. Credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
    #[arg(long, env = "AUTONOMY_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// The bucket's region.
    #[arg(long, env = "AUTONOMY_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    #[arg(long, env = "AUTONOMY_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// Prepended to every object's key (e.g. `cluster-a/`), so clusters can share a bucket.
    #[arg(long, env = "AUTONOMY_S3_PREFIX", default_value = "")]
    pub s3_prefix: String,
    /// Path-style requests (endpoint/bucket/key), as most S3-compatible servers want; AWS
    /// itself takes virtual-hosted requests (bucket.endpoint/key), the default.
    #[arg(long, env = "AUTONOMY_S3_PATH_STYLE")]
    pub s3_path_style: bool,
    /// How long one S3 request may take, its whole answer included; a slower one is retried
    /// (at most 4 times within 20 s), then the operation fails. 1000..=3600000.
    #[arg(long, env = "AUTONOMY_S3_TIMEOUT_MS", default_value_t = 30_000)]
    pub s3_timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    Local,
    S3,
}

/// The backup store a node was configured with.
#[derive(Debug, Clone)]
pub enum StoreChoice {
    Local,
    S3(S3Settings),
}

impl StoreArgs {
    /// The store these flags (and, for S3, the environment's credentials) describe.
    pub fn validate(self, env: impl Fn(&str) -> Option<String>) -> Result<StoreChoice, ConfigError> {
        if self.backup_store == StoreKind::Local {
            // A setting that would be ignored is refused: backups must not quietly stay local.
            let stray = [
                ("--s3-endpoint", self.s3_endpoint.is_some()),
                ("--s3-bucket", self.s3_bucket.is_some()),
                ("--s3-prefix", !self.s3_prefix.is_empty()),
                ("--s3-path-style", self.s3_path_style),
                ("--s3-timeout-ms", self.s3_timeout_ms != 30_000),
            ];
            if let Some((flag, _)) = stray.iter().find(|(_, set)| *set) {
                return Err(ConfigError::S3WithoutStore(flag));
            }
            return Ok(StoreChoice::Local);
        }
        let endpoint = self.s3_endpoint.ok_or(ConfigError::S3Missing("--s3-endpoint"))?;
        check_endpoint(&endpoint)?;
        let bucket = self.s3_bucket.ok_or(ConfigError::S3Missing("--s3-bucket"))?;
        check_bucket(&bucket)?;
        let prefix = normalised_prefix(&self.s3_prefix)?;
        if !(1_000..=3_600_000).contains(&self.s3_timeout_ms) {
            return Err(ConfigError::S3Timeout(self.s3_timeout_ms));
        }
        let credential = |name: &'static str| {
            env(name)
                .filter(|value| !value.is_empty())
                .ok_or(ConfigError::S3Credentials(name))
        };
        Ok(StoreChoice::S3(S3Settings {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            region: self.s3_region,
            bucket,
            prefix,
            path_style: self.s3_path_style,
            access_key_id: credential("AWS_ACCESS_KEY_ID")?,
            secret_access_key: credential("AWS_SECRET_ACCESS_KEY")?.into(),
            request_timeout: std::time::Duration::from_millis(self.s3_timeout_ms),
        }))
    }
}

/// Asks the S3 store for its listing once, so a wrong endpoint, bucket or credentials stop
/// the node at start (exit 2) rather than at its first backup. The local store has nothing
/// to ask: its directory is checked with the others.
pub fn check_reachable(choice: &StoreChoice, staging_dir: &std::path::Path) -> Result<(), ConfigError> {
    use crate::backup::store::BackupStore;
    let StoreChoice::S3(settings) = choice else {
        return Ok(());
    };
    let unreachable = |reason: String| ConfigError::S3Unreachable {
        location: format!("s3://{}/{}", settings.bucket, settings.prefix),
        endpoint: settings.endpoint.clone(),
        reason,
    };
    let store = crate::backup::s3::S3Store::open(settings, staging_dir).map_err(|e| unreachable(e.to_string()))?;
    store.manifest_ids().map(|_| ()).map_err(|e| unreachable(e.to_string()))
}

/// https://, or http:// to a loopback host only: credentials and backups must not cross a
/// network in the clear.
fn check_endpoint(endpoint: &str) -> Result<(), ConfigError> {
    let refused = || ConfigError::S3Endpoint(endpoint.to_owned());
    let (scheme, rest) = endpoint.split_once("://").ok_or_else(refused)?;
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
    };
    if host.is_empty() {
        return Err(refused());
    }
    match scheme {
        "https" => Ok(()),
        "http" if host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()) => Ok(()),
        "http" => Err(ConfigError::S3PlainHttp(endpoint.to_owned())),
        _ => Err(refused()),
    }
}

/// S3's bucket naming rules: 3 to 63 lowercase letters, digits, `.` and `-`, starting and
/// ending with a letter or digit.
fn check_bucket(bucket: &str) -> Result<(), ConfigError> {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && edge(bucket.chars().next())
        && edge(bucket.chars().last());
    if ok {
        Ok(())
    } else {
        Err(ConfigError::S3Bucket(bucket.to_owned()))
    }
}

/// The prefix as keys use it: empty, or segments ending in `/`; no empty, `.` or `..` segment.
fn normalised_prefix(prefix: &str) -> Result<String, ConfigError> {
    if prefix.is_empty() {
        return Ok(String::new());
    }
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    let sound = !trimmed.starts_with('/')
        && trimmed
            .split('/')
            .all(|segment| !segment.is_empty() && segment != "." && segment != ".." && !segment.contains('\\'));
    if sound {
        Ok(format!("{trimmed}/"))
    } else {
        Err(ConfigError::S3Prefix(prefix.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(endpoint: &str, bucket: &str, prefix: &str) -> StoreArgs {
        StoreArgs {
            backup_store: StoreKind::S3,
            s3_endpoint: Some(endpoint.into()),
            s3_region: "us-east-1".into(),
            s3_bucket: Some(bucket.into()),
            s3_prefix: prefix.into(),
            s3_path_style: true,
            s3_timeout_ms: 30_000,
        }
    }

    fn credentials(name: &str) -> Option<String> {
        Some(format!("value-of-{name}"))
    }

    #[test]
    fn a_sound_s3_store_keeps_its_settings_and_reads_the_credentials_from_the_environment() {
        let StoreChoice::S3(settings) = s3("https://s3.example.com/", "backups-1", "cluster-a")
            .validate(credentials)
            .unwrap()
        else {
            panic!("not s3")
        };
        assert_eq!(
            (
                settings.endpoint.as_str(),
                settings.prefix.as_str(),
                settings.access_key_id.as_str()
            ),
            ("https://s3.example.com", "cluster-a/", "value-of-AWS_ACCESS_KEY_ID")
        );
        assert!(
            !format!("{settings:?}").contains("value-of-AWS_SECRET_ACCESS_KEY"),
            "the secret is printed"
        );
    }

    #[test]
    fn each_bad_s3_setting_is_refused_by_name() {
        let refused = |args: StoreArgs| args.validate(credentials).unwrap_err().to_string();
        assert!(refused(s3("http://10.0.0.5:9000", "backups", "")).contains("plain http://"));
        assert!(s3("http://127.0.0.1:9000", "backups", "").validate(credentials).is_ok());
        assert!(s3("http://[::1]:9000", "backups", "").validate(credentials).is_ok());
        assert!(refused(s3("ftp://s3.example.com", "backups", "")).contains("--s3-endpoint"));
        assert!(refused(s3("https://s3.example.com", "Backups", "")).contains("--s3-bucket `Backups`"));
        assert!(refused(s3("https://s3.example.com", "ab", "")).contains("--s3-bucket"));
        assert!(refused(s3("https://s3.example.com", "backups", "/abs")).contains("--s3-prefix"));
        assert!(refused(s3("https://s3.example.com", "backups", "a/../b")).contains("--s3-prefix"));
        let mut hasty = s3("https://s3.example.com", "backups", "");
        hasty.s3_timeout_ms = 999;
        assert!(refused(hasty).contains("--s3-timeout-ms 999 is out of range"));
        let no_secret = s3("https://s3.example.com", "backups", "")
            .validate(|name| (name == "AWS_ACCESS_KEY_ID").then(|| "AKIA".to_owned()));
        assert!(no_secret.unwrap_err().to_string().contains("AWS_SECRET_ACCESS_KEY"));
    }

    #[test]
    fn an_s3_setting_without_the_s3_store_is_refused_rather_than_ignored() {
        let mut args = s3("https://s3.example.com", "backups", "");
        args.backup_store = StoreKind::Local;
        assert!(args
            .validate(credentials)
            .unwrap_err()
            .to_string()
            .contains("--s3-endpoint"));
    }
}
