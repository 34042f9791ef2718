//! Runs the real `autonomy` CLI and keeps everything needed to explain a failure.

use std::{
    fmt,
    io::Read,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use super::LAB_TOKEN;

/// One finished CLI invocation.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CliRun {
    pub args: Vec<String>,
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed_ms: u64,
}

impl CliRun {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// The `key=value` field of the first stdout line that has it.
    pub fn field(&self, key: &str) -> Option<String> {
        let prefix = format!("{key}=");
        self.stdout
            .split_whitespace()
            .find_map(|word| word.strip_prefix(&prefix).map(str::to_owned))
    }

    /// What goes into an evidence file: the command, exit code, time, stdout, stderr.
    pub fn transcript(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for CliRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "$ autonomy {}", self.args.join(" "))?;
        writeln!(
            f,
            "exit_code={} elapsed_ms={}",
            self.exit_code.map_or("signal".into(), |c| c.to_string()),
            self.elapsed_ms
        )?;
        writeln!(f, "--- stdout ---\n{}", self.stdout.trim_end())?;
        write!(f, "--- stderr ---\n{}", self.stderr.trim_end())
    }
}

/// Builds CLI calls against one node.
#[derive(Clone)]
pub struct Cli {
    pub server: String,
    pub token: Option<String>,
    pub env: Vec<(String, String)>,
}

impl Cli {
    pub fn for_server(server: &str) -> Self {
        Self {
            server: server.to_owned(),
            token: Some(LAB_TOKEN.to_owned()),
            env: Vec::new(),
        }
    }

    pub fn with_token(mut self, token: Option<&str>) -> Self {
        self.token = token.map(str::to_owned);
        self
    }

    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Runs `autonomy <args>`, killed after a generous 600 s; the elapsed time is wall-clock.
    pub fn run(&self, args: &[&str]) -> CliRun {
        self.run_within(args, Duration::from_secs(600))
    }

    /// Runs `autonomy <args>`, which must succeed (the failure shows the whole run).
    #[track_caller]
    pub fn run_ok(&self, args: &[&str]) -> CliRun {
        let run = self.run(args);
        assert!(run.success(), "{run}");
        run
    }

    /// Runs `autonomy <args>`; a call still running after `deadline` is killed, and reported
    /// with no exit code and the deadline on its stderr.
    pub fn run_within(&self, args: &[&str], deadline: Duration) -> CliRun {
        let mut command = Command::new(super::run::autonomy_binary());
        command
            .args(args)
            .env_remove("AUTONOMY_API_TOKEN")
            .env("AUTONOMY_SERVER_URL", &self.server)
            .env("NO_COLOR", "1");
        if let Some(token) = &self.token {
            command.env("AUTONOMY_API_TOKEN", token);
        }
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let started = Instant::now();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the autonomy binary can be started");
        let stdout = drain(child.stdout.take().expect("piped"));
        let stderr = drain(child.stderr.take().expect("piped"));
        let status = loop {
            if let Some(status) = child.try_wait().expect("the child can be waited for") {
                break Some(status);
            }
            if started.elapsed() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let elapsed = started.elapsed();
        let mut stderr = stderr.join().unwrap_or_default();
        if status.is_none() {
            stderr.push_str(&format!("\n[killed by the test: no exit within {deadline:?}]"));
        }
        CliRun {
            args: args.iter().map(|s| s.to_string()).collect(),
            exit_code: status.and_then(|s| s.code()),
            stdout: stdout.join().unwrap_or_default(),
            stderr,
            elapsed_ms: elapsed.as_millis() as u64,
        }
    }
}

/// Reads a child's pipe to its end on a thread, so neither pipe can fill and block the child.
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}
