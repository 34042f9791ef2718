//! `autonomy ha serve` as a child process: started on a free port, logged to a file, reaped on drop.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::LAB_TOKEN;

/// How to start a node.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub node_id: String,
    pub database_url: String,
    pub backup_dir: PathBuf,
    pub audit_dir: PathBuf,
    pub maintenance_mode: bool,
    /// Where the node's stderr (its log) goes; usually a file in the evidence bundle.
    pub log_path: PathBuf,
    /// More `ha serve` flags (timings, test sabotage).
    pub extra_args: Vec<String>,
    /// `--listen`: `127.0.0.1:0` but for a node on a host of its own.
    pub listen: String,
    /// A command the node runs under (`ip netns exec <ns>`), or empty.
    pub wrapper: Vec<String>,
    /// More environment variables (secrets such as S3 credentials, never flags).
    pub env: Vec<(String, String)>,
}

impl NodeSpec {
    /// The same node with retention keeping only today's newest backup and the `minimum`
    /// newest whatever their dates.
    pub fn retaining_today_and(mut self, minimum: u32) -> Self {
        let policy = ["--retain-daily", "1", "--retain-weekly", "0", "--retain-monthly", "0"];
        self.extra_args.extend(policy.map(str::to_owned));
        self.extra_args.extend(["--retain-min".to_owned(), minimum.to_string()]);
        self
    }

    /// The same node with its backups in `server`'s bucket under `prefix`.
    pub fn with_s3(mut self, server: &crate::s3::S3Server, prefix: &str) -> Self {
        self.extra_args.extend(
            [
                "--backup-store",
                "s3",
                "--s3-endpoint",
                &server.endpoint,
                "--s3-bucket",
                &server.bucket,
                "--s3-prefix",
                prefix,
                "--s3-path-style",
            ]
            .map(str::to_owned),
        );
        self.env.push(("AWS_ACCESS_KEY_ID".into(), server.access_key.clone()));
        self.env
            .push(("AWS_SECRET_ACCESS_KEY".into(), server.secret_key.clone()));
        self
    }
}

/// A running node; SIGTERM then SIGKILL on drop.
pub struct Node {
    child: Child,
    pub spec: NodeSpec,
    pub url: String,
}

impl Node {
    /// Starts the node and waits until it is listening and leads (it is alone on its database).
    pub fn start_leader(spec: NodeSpec) -> Result<Self, String> {
        let node = Self::start(spec)?;
        node.wait_for_role("leader", Duration::from_secs(30))?;
        Ok(node)
    }

    /// Starts the node and waits until it listens.
    pub fn start(spec: NodeSpec) -> Result<Self, String> {
        let mut node = Self::spawn(spec)?;
        node.wait_until_listening()?;
        Ok(node)
    }

    /// Starts the process without waiting (to start several nodes at the same moment).
    pub fn spawn(spec: NodeSpec) -> Result<Self, String> {
        use std::os::unix::process::CommandExt;
        let log = File::create(&spec.log_path).map_err(|e| format!("create {}: {e}", spec.log_path.display()))?;
        let binary = super::run::autonomy_binary();
        let mut command = match spec.wrapper.split_first() {
            Some((program, args)) => {
                let mut wrapped = Command::new(program);
                wrapped.args(args).arg(binary);
                wrapped
            }
            None => Command::new(binary),
        };
        command
            .args(["ha", "serve", "--node-id", &spec.node_id, "--listen", &spec.listen])
            .arg("--backup-dir")
            .arg(&spec.backup_dir)
            .arg("--audit-dir")
            .arg(&spec.audit_dir)
            .env("AUTONOMY_DATABASE_URL", &spec.database_url)
            .env("AUTONOMY_API_TOKEN", LAB_TOKEN)
            .env("AUTONOMY_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        if spec.maintenance_mode {
            command.arg("--maintenance-mode");
        }
        command.args(&spec.extra_args);
        command.envs(spec.env.iter().map(|(name, value)| (name, value)));
        // The node must not outlive the test thread that started it, even on a hard kill.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let child = command.spawn().map_err(|e| format!("start autonomy ha serve: {e}"))?;
        Ok(Self {
            child,
            spec,
            url: String::new(),
        })
    }

    /// Waits for the node's `listening` log line and records its URL.
    pub fn wait_until_listening(&mut self) -> Result<(), String> {
        let addr = self.wait_for_listen_addr(Duration::from_secs(30))?;
        self.url = format!("http://{addr}");
        Ok(())
    }

    /// Reads the `listening addr=...` line the node logs once bound.
    fn wait_for_listen_addr(&mut self, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = std::fs::read_to_string(&self.spec.log_path).unwrap_or_default();
            if let Some(addr) = log
                .lines()
                .find_map(|l| l.contains("listening").then(|| l.split("addr=").nth(1)).flatten())
            {
                return Ok(addr.trim().to_owned());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "node {} exited ({status}) before listening; log:\n{log}",
                    self.spec.node_id
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "node {} not listening after {timeout:?}; log:\n{log}",
                    self.spec.node_id
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls `/v1/ha/status` until the node reports `role`.
    pub fn wait_for_role(&self, role: &str, timeout: Duration) -> Result<(), String> {
        let client = autonomy::client::NodeClient::new(&self.url, Some(LAB_TOKEN.to_owned()));
        let deadline = Instant::now() + timeout;
        loop {
            let status: Result<serde_json::Value, _> = client.get("/v1/ha/status");
            if let Ok(status) = &status {
                if status["role"] == role {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "node {} not {role} after {timeout:?}: last status {status:?}; log:\n{}",
                    self.spec.node_id,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.spec.log_path).unwrap_or_default()
    }

    pub fn log_path(&self) -> &Path {
        &self.spec.log_path
    }

    /// Sends `signal` and returns at once (the failover clock starts here).
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal);
    }

    /// Waits for the process to exit (after a signal), up to `timeout`; false if it did not.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Stops the node with SIGTERM (clean shutdown releases the lease) and waits.
    pub fn stop(mut self) -> String {
        self.terminate();
        self.log()
    }

    fn terminate(&mut self) {
        super::process::stop_child(
            &mut self.child,
            nix::sys::signal::Signal::SIGTERM,
            Duration::from_secs(10),
        );
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.terminate();
    }
}
