//! The lab's etcd cluster: real etcd members (Debian's etcd-server) on free loopback ports, each
//! with its data in a scratch directory. Members stop and start again to take quorum away and
//! give it back; dropping the cluster stops every member.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;

/// One member: its ports stay its own across restarts, as its data directory does.
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

pub struct EtcdCluster {
    members: Vec<Member>,
    root: PathBuf,
    /// `--initial-cluster-token`: unique per cluster, so no member ever joins another lab's.
    token: String,
}

/// Why no cluster could start (etcd missing: `scripts/install-prereqs.sh` installs it).
#[derive(Debug)]
pub struct EtcdUnavailable(pub String);

impl EtcdCluster {
    /// A cluster of `size` members, started and healthy, or None after printing SKIP when etcd
    /// is not installed — a failure instead under AUTONOMY_LAB_REQUIRE=1.
    #[track_caller]
    pub fn start_or_skip(root: &Path, label: &str, size: usize) -> Option<Self> {
        match Self::start(root, size) {
            Ok(cluster) => Some(cluster),
            Err(EtcdUnavailable(reason)) => {
                crate::run::skip_unless_required(label, "no etcd cluster", &reason);
                None
            }
        }
    }

    /// Starts `size` members under `root` (created) and waits until every one is healthy. A
    /// free port can be taken by another process between its choice and etcd's bind: a
    /// member that exits at start has the whole cluster started again on new ports (three
    /// tries), in a directory of its own.
    pub fn start(root: &Path, size: usize) -> Result<Self, EtcdUnavailable> {
        Command::new(etcd_binary())
            .arg("--version")
            .output()
            .map_err(|e| EtcdUnavailable(format!("etcd cannot run ({e}); scripts/install-prereqs.sh installs it")))?;
        let mut failures = Vec::new();
        for attempt in 1..=3 {
            let root = root.join(format!("try-{attempt}"));
            std::fs::create_dir_all(&root).map_err(|e| EtcdUnavailable(format!("create {}: {e}", root.display())))?;
            let members = (1..=size)
                .map(|i| Member {
                    name: format!("m{i}"),
                    client_port: crate::backend::free_port(),
                    peer_port: crate::backend::free_port(),
                    child: None,
                })
                .collect();
            let mut cluster = Self {
                members,
                root,
                token: format!("autonomy-lab-{}-{}-{attempt}", std::process::id(), crate::run::run_id()),
            };
            // Together: a member of a new cluster waits for its peers before it answers.
            for index in 0..size {
                cluster.spawn(index).map_err(EtcdUnavailable)?;
            }
            match cluster.wait_healthy(Duration::from_secs(30)) {
                Ok(()) => return Ok(cluster),
                Err(reason) => failures.push(format!("try {attempt}: {reason}")),
            }
            if !cluster.a_member_exited() {
                break;
            }
        }
        Err(EtcdUnavailable(failures.join("\n")))
    }

    /// True if a member's process has ended (it could not bind its ports, or crashed).
    fn a_member_exited(&mut self) -> bool {
        self.members
            .iter_mut()
            .filter_map(|m| m.child.as_mut())
            .any(|child| child.try_wait().is_ok_and(|status| status.is_some()))
    }

    /// Every member's client URL (`http://127.0.0.1:<port>`), the first member's first.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// Every member's client port, the first member's first.
    pub fn client_ports(&self) -> Vec<u16> {
        self.members.iter().map(|m| m.client_port).collect()
    }

    /// Stops member `index` at once (SIGKILL), as a crash would.
    pub fn stop_member(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].child.take() {
            crate::process::stop_child(&mut child, Signal::SIGKILL, Duration::from_secs(5));
        }
    }

    /// Starts stopped member `index` again, on its ports with its data.
    pub fn start_member(&mut self, index: usize) -> Result<(), String> {
        self.spawn(index)
    }

    /// `etcdctl` against every member (a two-second bound on each command), its output.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        Command::new("etcdctl")
            .arg(format!("--endpoints={}", self.endpoints().join(",")))
            .args(["--command-timeout=2s", "--dial-timeout=2s"])
            .args(args)
            .env("ETCDCTL_API", "3")
            .stdin(Stdio::null())
            .output()
            .expect("etcdctl runs")
    }

    /// Waits until every running member reports itself healthy; gives up at once when a
    /// member's process has ended.
    pub fn wait_healthy(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            let health = self.etcdctl(&["endpoint", "health"]);
            if health.status.success() {
                return Ok(());
            }
            if Instant::now() > deadline || self.a_member_exited() {
                return Err(format!(
                    "the etcd cluster was not healthy within {limit:?}: {}{}\nlogs:\n{}",
                    String::from_utf8_lossy(&health.stdout),
                    String::from_utf8_lossy(&health.stderr),
                    self.log_tails()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn spawn(&mut self, index: usize) -> Result<(), String> {
        let initial_cluster: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect();
        let member = &self.members[index];
        let (client, peer) = (
            format!("http://127.0.0.1:{}", member.client_port),
            format!("http://127.0.0.1:{}", member.peer_port),
        );
        let log_path = self.root.join(format!("{}.log", member.name));
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("open {}: {e}", log_path.display()))?;
        let mut command = Command::new(etcd_binary());
        command
            .arg(format!("--name={}", member.name))
            .arg(format!("--data-dir={}", self.root.join(&member.name).display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={}", initial_cluster.join(",")))
            .arg(format!("--initial-cluster-token={}", self.token))
            .arg("--initial-cluster-state=new")
            .arg("--logger=zap")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        // A member must not outlive the test that started it, even on a hard kill.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from));
        }
        let child = command
            .spawn()
            .map_err(|e| format!("start etcd {}: {e}", member.name))?;
        self.members[index].child = Some(child);
        Ok(())
    }

    fn log_tails(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                format!(
                    "--- {} ---\n{}",
                    m.name,
                    crate::backend::tail(&self.root.join(format!("{}.log", m.name)))
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for index in 0..self.members.len() {
            if let Some(mut child) = self.members[index].child.take() {
                crate::process::stop_child(&mut child, Signal::SIGTERM, Duration::from_secs(5));
            }
        }
    }
}

fn etcd_binary() -> String {
    std::env::var("AUTONOMY_ETCD").unwrap_or_else(|_| "etcd".into())
}
