//! The lab's S3 server: a real S3 (s3s-fs, SigV4 authentication) over a scratch directory,
//! on a free loopback port, with throwaway credentials. Dropping it stops the server.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;

/// The bucket every lab server holds.
pub const LAB_BUCKET: &str = "autonomy-backups";

/// A running s3s-fs and what a client needs to reach it.
pub struct S3Server {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    /// The directory it stores objects in: `<root>/<bucket>/<key>`.
    pub root: PathBuf,
}

/// Why no S3 server could start (s3s-fs missing: `scripts/install-prereqs.sh` installs it).
#[derive(Debug)]
pub struct S3Unavailable(pub String);

impl S3Server {
    /// The server a test needs: started, or None after printing SKIP when s3s-fs is missing —
    /// a failure instead under AUTONOMY_LAB_REQUIRE=1.
    #[track_caller]
    pub fn start_or_skip(root: &Path, label: &str) -> Option<Self> {
        match Self::start(root) {
            Ok(server) => Some(server),
            Err(S3Unavailable(reason)) => {
                crate::run::skip_unless_required(label, "no S3 server", &reason);
                None
            }
        }
    }

    /// The settings of autonomy's S3 store for this server's bucket, under `prefix`.
    pub fn settings(&self, prefix: &str) -> autonomy::backup::s3::S3Settings {
        autonomy::backup::s3::S3Settings {
            endpoint: self.endpoint.clone(),
            region: "us-east-1".into(),
            bucket: self.bucket.clone(),
            prefix: prefix.into(),
            path_style: true,
            access_key_id: self.access_key.clone(),
            secret_access_key: self.secret_key.clone().into(),
            request_timeout: std::time::Duration::from_secs(30),
        }
    }

    /// Starts s3s-fs with `root` (created) as its store and `LAB_BUCKET` in it.
    pub fn start(root: &Path) -> Result<Self, S3Unavailable> {
        std::fs::create_dir_all(root.join(LAB_BUCKET))
            .map_err(|e| S3Unavailable(format!("create {}: {e}", root.display())))?;
        let (access_key, secret_key) = (format!("lab{}", random_hex(8)), random_hex(20));
        let (child, endpoint) = spawn(root, 0, &access_key, &secret_key)?;
        Ok(Self {
            child,
            endpoint,
            bucket: LAB_BUCKET.into(),
            access_key,
            secret_key,
            root: root.to_owned(),
        })
    }

    /// Starts the killed server again: the same port, credentials and stored objects.
    pub fn restart(&mut self) -> Result<(), S3Unavailable> {
        let port: u16 = self
            .endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the endpoint has a port");
        let (child, endpoint) = spawn(&self.root, port, &self.access_key, &self.secret_key)?;
        self.child = child;
        assert_eq!(endpoint, self.endpoint, "the server came back elsewhere");
        Ok(())
    }

    /// Where an object of the bucket is stored on disk (for tests that damage one).
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.root.join(&self.bucket).join(key)
    }

    /// The multipart uploads begun and neither completed nor aborted (s3s-fs keeps each one's
    /// parts as `.upload*` files in its root until then).
    pub fn uploads_in_progress(&self) -> Vec<String> {
        crate::run::file_names(&self.root)
            .into_iter()
            .filter(|name| name.starts_with(".upload"))
            .collect()
    }

    /// Stops the server at once (SIGKILL), as an outage would.
    pub fn kill(&mut self) {
        crate::process::stop_child(&mut self.child, Signal::SIGKILL, Duration::from_secs(5));
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        crate::process::stop_child(&mut self.child, Signal::SIGTERM, Duration::from_secs(5));
    }
}

/// Starts s3s-fs on `port` (0: a free one) and returns it with the endpoint it reports.
fn spawn(root: &Path, port: u16, access_key: &str, secret_key: &str) -> Result<(Child, String), S3Unavailable> {
    // s3s-fs takes its credentials only as flags. These are throwaway values of a loopback
    // server the test owns; autonomy itself never takes a secret on its command line.
    let mut child = Command::new(std::env::var("AUTONOMY_S3S_FS").unwrap_or_else(|_| "s3s-fs".into()))
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", access_key, "--secret-key", secret_key])
        .arg(root)
        .env("RUST_LOG", "s3s_fs=info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            S3Unavailable(format!(
                "s3s-fs did not start ({e}); scripts/install-prereqs.sh installs it"
            ))
        })?;
    let stdout = child.stdout.take().expect("stdout is piped");
    match listening_at(stdout, Duration::from_secs(10)) {
        Ok(endpoint) => Ok((child, endpoint)),
        Err(error) => {
            crate::process::stop_child(&mut child, Signal::SIGKILL, Duration::from_secs(5));
            Err(S3Unavailable(error))
        }
    }
}

/// Reads the server's log until it says where it listens; the rest of its output is drained
/// on a thread of its own so the pipe never fills.
fn listening_at(stdout: std::process::ChildStdout, within: Duration) -> Result<String, String> {
    let (found, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reported = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if !reported {
                if let Some(at) = line.split("server is running at ").nth(1) {
                    // The URL, without any colour codes the log puts after it.
                    let url: String = at
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || ":/.".contains(*c))
                        .collect();
                    let _ = found.send(url);
                    reported = true;
                }
            }
        }
    });
    let deadline = Instant::now() + within;
    seen.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .map_err(|_| format!("s3s-fs did not say where it listens within {} s", within.as_secs()))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))
        .expect("/dev/urandom reads");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
