//! Command lines for PostgreSQL's own tools (pg_dump, pg_restore, psql), built without a shell.
//!
//! The connection comes from the node's database URL; its password travels in the child's
//! PGPASSWORD environment variable, never on a command line where `ps` would show it.

use std::{path::PathBuf, process::Command};

use tokio_postgres::config::Host;

/// How to reach the application database with libpq tools.
#[derive(Clone)]
pub struct PgTools {
    bin_dir: Option<PathBuf>,
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    password: Option<Vec<u8>>,
    pub database: String,
}

impl PgTools {
    /// Builds from a URL that [`crate::config::ServeConfig`] already validated.
    pub fn new(database_url: &str, bin_dir: Option<PathBuf>) -> Result<Self, tokio_postgres::Error> {
        let config: tokio_postgres::Config = database_url.parse()?;
        let unconnected = Self {
            bin_dir,
            host: None,
            port: None,
            user: None,
            password: None,
            database: String::new(),
        };
        Ok(unconnected.for_config(&config))
    }

    /// The same tools pointed at another database or server: `config` as parsed from a URL.
    pub fn for_config(&self, config: &tokio_postgres::Config) -> Self {
        let host = config.get_hosts().first().map(|host| match host {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        });
        let user = config.get_user().map(str::to_owned);
        Self {
            bin_dir: self.bin_dir.clone(),
            host,
            port: config.get_ports().first().copied(),
            database: config
                .get_dbname()
                .map(str::to_owned)
                .or_else(|| user.clone())
                .unwrap_or_else(|| "postgres".to_owned()),
            user,
            password: config.get_password().map(<[u8]>::to_vec),
        }
    }

    /// `dbname='…'` naming this database as a libpq connection string, for tools whose
    /// `--dbname` must be given; the rest of the connection comes from the environment.
    pub fn dbname_conninfo(&self) -> String {
        format!("dbname='{}'", self.database.replace('\\', "\\\\").replace('\'', "\\'"))
    }

    /// A command for `tool` with the connection in its environment (libpq reads PG* variables).
    pub fn command(&self, tool: &str) -> Command {
        let program = match &self.bin_dir {
            Some(dir) => dir.join(tool),
            None => PathBuf::from(tool),
        };
        let mut command = Command::new(program);
        for var in [
            "PGHOST",
            "PGHOSTADDR",
            "PGPORT",
            "PGPASSFILE",
            "PGSERVICEFILE",
            "PGSSLMODE",
            "PGUSER",
            "PGPASSWORD",
            "PGDATABASE",
            "PGSERVICE",
            "PGOPTIONS",
            // The node's own secrets: a PostgreSQL tool has no use for them.
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            crate::config::PASSPHRASE_VAR,
            crate::config::SIGNING_PASSPHRASE_VAR,
            "AUTONOMY_API_TOKEN",
        ] {
            command.env_remove(var);
        }
        if let Some(host) = &self.host {
            command.env("PGHOST", host);
        }
        if let Some(port) = self.port {
            command.env("PGPORT", port.to_string());
        }
        if let Some(user) = &self.user {
            command.env("PGUSER", user);
        }
        if let Some(password) = &self.password {
            command.env("PGPASSWORD", String::from_utf8_lossy(password).as_ref());
        }
        command.env("PGDATABASE", &self.database);
        command.env("PGCONNECT_TIMEOUT", "10");
        command
    }
}

/// Runs a pg_restore-style `command` to its end without input and returns its stdout; a
/// failure is reported as `tool` with the tail of its stderr.
pub fn run_to_end(mut command: Command, tool: &'static str) -> Result<Vec<u8>, crate::backup::BackupError> {
    let output = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(crate::backup::BackupError::spawn(tool))?;
    if !output.status.success() {
        return Err(crate::backup::BackupError::Tool {
            tool,
            status: output.status.to_string(),
            stderr: stderr_tail(&output.stderr, 2000),
        });
    }
    Ok(output.stdout)
}

/// The last `limit` bytes of a tool's stderr, for error messages (tools never print passwords).
pub fn stderr_tail(stderr: &[u8], limit: usize) -> String {
    let start = stderr.len().saturating_sub(limit);
    String::from_utf8_lossy(&stderr[start..]).trim().to_owned()
}

/// Reads `stream` to its end on a thread of its own, so a chatty tool never blocks on a full
/// pipe; the handle returns what was read.
pub fn drain(mut stream: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buffer = Vec::new();
        let _ = stream.read_to_end(&mut buffer);
        buffer
    })
}
