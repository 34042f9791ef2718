//! The fault suite's fixture: a lab with a leading node, the faults it injects (immutable
//! files, a small tmpfs, a frozen node, a FIFO), and the readers of what the system recorded.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use autonomy::audit::{self, AuditEvent, AuditQuery};
use nix::sys::signal::Signal;

use crate::common::{cli::Cli, lab::Lab, node::Node, LAB_TOKEN};

/// Sets the immutable flag on a file or directory and clears it again however the test ends.
pub struct Immutable(pub PathBuf);

impl Immutable {
    #[track_caller]
    pub fn set(path: &Path) -> Self {
        chattr("+i", path);
        Self(path.to_owned())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        chattr("-i", &self.0);
    }
}

#[track_caller]
pub fn chattr(flag: &str, path: &Path) {
    let status = std::process::Command::new("chattr")
        .arg(flag)
        .arg(path)
        .status()
        .expect("chattr runs (e2fsprogs)");
    assert!(status.success(), "chattr {flag} {} failed", path.display());
}

/// A small tmpfs mounted for the test (root only), unmounted on drop.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn mount(path: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| e.to_string())?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        Ok(Self(path.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Resumes a stopped node however the test ends.
pub struct Frozen<'a>(&'a Node);

impl<'a> Frozen<'a> {
    pub fn freeze(node: &'a Node) -> Self {
        node.signal(Signal::SIGSTOP);
        Self(node)
    }
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        self.0.signal(Signal::SIGCONT);
    }
}

/// One lab, its database (on a session restores spare) and a leading node.
pub struct Setup {
    pub lab: Lab,
    pub db: postgres::Client,
    pub node: Node,
    pub cli: Cli,
}

/// What the lab database holds before the node starts.
pub enum Fixture {
    /// fixtures/val15.sql: a few small tables.
    Small,
    /// A table of about this many megabytes, slow enough to dump and restore to be cut short.
    Big(u32),
}

impl Setup {
    /// The lab, its fixture and node `label` leading (in maintenance mode when asked), or
    /// None when no backend can run (a SKIP, or a failure under AUTONOMY_LAB_REQUIRE=1).
    pub fn start(label: &str, fixture: Fixture, maintenance_mode: bool) -> Option<Self> {
        let lab = Lab::start_or_skip(label)?;
        let mut db = watcher(&lab.url());
        match fixture {
            Fixture::Small => db
                .batch_execute(include_str!("../../fixtures/val15.sql"))
                .expect("the fixture loads"),
            Fixture::Big(megabytes) => crate::common::sql::load_big_table(&mut db, megabytes),
        }
        let node = Node::start_leader(lab.node_spec(label, maintenance_mode)).unwrap_or_else(|e| panic!("{e}"));
        let cli = Cli::for_server(&node.url);
        Some(Self { lab, db, node, cli })
    }

    #[track_caller]
    pub fn backup(&self) -> String {
        let created = self.cli.run_ok(&["ha", "backup", "create"]);
        created.field("backup_id").expect("a backup id")
    }

    pub fn backups_dir(&self) -> PathBuf {
        self.lab.scratch.path().join("backups")
    }

    pub fn manifest_path(&self, backup_id: &str) -> PathBuf {
        self.backups_dir().join(format!("{backup_id}.json"))
    }

    /// Kills the node with SIGKILL and starts it again under the same id, leading.
    pub fn kill_and_restart(&mut self, round: &str) {
        self.node.signal(Signal::SIGKILL);
        assert!(self.node.wait_for_exit(Duration::from_secs(10)), "the node died");
        let mut spec = self.node.spec.clone();
        spec.log_path = self.lab.scratch.path().join(format!("{}-{round}.log", spec.node_id));
        self.node = Node::start_leader(spec).unwrap_or_else(|e| panic!("{e}"));
        self.cli = Cli::for_server(&self.node.url);
    }

    pub fn restore_in_background(&self, backup_id: &str) -> std::thread::JoinHandle<crate::common::cli::CliRun> {
        let (cli, id) = (self.cli.clone(), backup_id.to_owned());
        std::thread::spawn(move || cli.run(&["ha", "backup", "restore", &id, "--confirm"]))
    }

    /// Starts a backup and returns its id once its partial archive is being written.
    pub fn backup_caught_writing(&self) -> (String, std::thread::JoinHandle<crate::common::cli::CliRun>) {
        let cli = self.cli.clone();
        let running = std::thread::spawn(move || cli.run(&["ha", "backup", "create"]));
        let dir = self.backups_dir();
        wait_until("a partial archive being written", Duration::from_secs(60), || {
            partial_archives(&dir).iter().any(|name| {
                name.ends_with(".dump.partial") && std::fs::metadata(dir.join(name)).is_ok_and(|m| m.len() > 0)
            })
        });
        let partial = partial_archives(&dir)
            .into_iter()
            .find(|n| n.ends_with(".dump.partial"))
            .expect("a partial archive");
        (partial.trim_end_matches(".dump.partial").to_owned(), running)
    }

    pub fn note(&mut self) -> String {
        self.db
            .query_one("SELECT note FROM marker", &[])
            .expect("the marker reads")
            .get(0)
    }
}

pub fn events(dir: &Path, event_type: &str) -> Vec<AuditEvent> {
    let query = AuditQuery {
        event_type: Some(event_type.into()),
        since: None,
    };
    audit::query(dir, &query).expect("the audit store reads")
}

/// A session the restore spares (autonomy's own application_name prefix), for watching it.
pub fn watcher(url: &str) -> postgres::Client {
    let mut config: postgres::Config = url.parse().expect("the lab URL parses");
    config.application_name("autonomy-ha:test-watcher");
    config.connect(postgres::NoTls).expect("the watcher connects")
}

/// Polls until `query` (returning one bool) is true, or panics after `timeout` naming `what`.
#[track_caller]
pub fn wait_for_sql(client: &mut postgres::Client, query: &str, what: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if client
            .query_one(query, &[])
            .ok()
            .is_some_and(|row| row.get::<_, bool>(0))
        {
            return;
        }
        assert!(Instant::now() < deadline, "waited {timeout:?} for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[track_caller]
pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "waited {timeout:?} for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// (status, error) of a backup's inventory row.
pub fn inventory_row(db: &mut postgres::Client, backup_id: &str) -> (String, Option<String>) {
    let row = db
        .query_one(
            "SELECT status, error FROM autonomy_ha.backup_inventory WHERE backup_id = $1",
            &[&backup_id],
        )
        .expect("the backup has an inventory row");
    (row.get(0), row.get(1))
}

/// How the inventory says the backup's last restore ended.
pub fn last_restore_outcome(db: &mut postgres::Client, backup_id: &str) -> Option<String> {
    db.query_one(
        "SELECT last_restore_outcome FROM autonomy_ha.backup_inventory WHERE backup_id = $1",
        &[&backup_id],
    )
    .expect("the backup's last restore reads")
    .get(0)
}

pub fn partial_archives(dir: &Path) -> Vec<String> {
    crate::common::run::file_names(dir)
        .into_iter()
        .filter(|name| name.contains(".partial"))
        .collect()
}

pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("the path exists").permissions().mode() & 0o777
}

/// An HTTP call with full control of the request, returning (status, content type, body).
pub fn http(method: &str, url: &str, authorization: Option<&str>, body: Option<Vec<u8>>) -> (u16, String, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let response = match (method, body) {
        ("GET", _) => {
            let mut request = agent.get(url);
            if let Some(value) = authorization {
                request = request.header("Authorization", value);
            }
            request.call()
        }
        (_, body) => {
            let mut request = agent.post(url).header("Content-Type", "application/json");
            if let Some(value) = authorization {
                request = request.header("Authorization", value);
            }
            request.send(body.unwrap_or_default())
        }
    };
    let mut response = response.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (response.status().as_u16(), content_type, text)
}

/// Sends only the head of a POST announcing a `content_length` body, and reads the answer:
/// a server that refuses the body from its announced length answers without reading it.
pub fn post_head_only(base: &str, path: &str, content_length: usize) -> (u16, String, String) {
    use std::io::{Read, Write};
    let address = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("the node accepts a connection");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {content_length}\r\nConnection: close\r\n\r\n",
        bearer()
    )
    .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let content_type = head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

/// True when running as root; else a recorded SKIP of `test` (`needs` says why root is
/// needed), or a failure under AUTONOMY_LAB_REQUIRE=1.
#[track_caller]
pub fn is_root_or_skip(test: &str, needs: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    assert!(
        !crate::common::run::lab_required(),
        "AUTONOMY_LAB_REQUIRE=1 but {needs}"
    );
    eprintln!("SKIP {test}: not root ({needs})");
    false
}

pub fn bearer() -> String {
    format!("Bearer {LAB_TOKEN}")
}

pub fn rewrite_manifest(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("the manifest reads")).expect("JSON");
    edit(&mut document);
    std::fs::write(path, serde_json::to_vec_pretty(&document).unwrap()).expect("the manifest is rewritten");
}

pub fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
}
