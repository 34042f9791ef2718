//! PostgreSQL for the lab: a container (testcontainers, locally built image) or a local process.
//!
//! AUTONOMY_LAB_BACKEND=docker|process|auto (default auto: docker when the daemon answers and
//! the image exists, else process, else a SKIP). AUTONOMY_LAB_PG_IMAGE names the image
//! (default `autonomy-pg:15`, built by scripts/build-pg-image.sh; `postgres:16` works the same
//! where a registry is reachable).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::standby::{prepare_primary, DockerStandby, ProcessStandby, StandbyPg};
use testcontainers::{
    core::{IntoContainerPort, WaitFor},
    runners::SyncRunner,
    Container, GenericImage, ImageExt,
};

/// The superuser password of every lab server; a test value, never a real secret.
pub const LAB_PG_PASSWORD: &str = "lab-pg-password";
/// The application database the lab creates.
pub const LAB_DATABASE: &str = "autonomy";

/// A running PostgreSQL server with a superuser `postgres` and the database `autonomy`.
pub trait PgBackend {
    /// `docker` or `process`.
    fn kind(&self) -> &'static str;
    fn port(&self) -> u16;
    /// Where it runs (container id and image, or data directory), for the setup evidence.
    fn describe(&self) -> String;

    fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres:{LAB_PG_PASSWORD}@127.0.0.1:{}/{database}",
            self.port()
        )
    }

    /// Takes the server down abruptly, as a crash would: every session is cut, nothing is
    /// checkpointed (container killed; postmaster stopped with SIGQUIT, `-m immediate`).
    fn stop_abruptly(&mut self) -> Result<(), String>;

    /// Starts the stopped server again, on the same port with the same data, and returns once
    /// it accepts connections.
    fn start_again(&mut self) -> Result<(), String>;

    /// Starts a streaming standby of this server named `name` (also its slot's name).
    fn start_standby(&self, name: &str) -> Result<Box<dyn StandbyPg>, String> {
        prepare_primary(&self.url(LAB_DATABASE), name)?;
        self.spawn_standby(name)
    }

    /// Starts the standby's own server, once the primary is ready to stream to it.
    fn spawn_standby(&self, name: &str) -> Result<Box<dyn StandbyPg>, String>;

    /// The URL as it may appear in evidence: the password masked.
    fn redacted_url(&self, database: &str) -> String {
        format!("postgres://postgres:***@127.0.0.1:{}/{database}", self.port())
    }
}

/// The OS account a server runs as: `postgres` when the tests run as root, else ourselves.
pub type Account = Option<(nix::unistd::Uid, nix::unistd::Gid)>;

/// Why no backend could run; recorded in the report as the SKIP reason.
#[derive(Debug, Clone)]
pub struct Unavailable(pub String);

/// Starts the backend AUTONOMY_LAB_BACKEND asks for. `label` names its resources.
pub fn start(label: &str) -> Result<Box<dyn PgBackend>, Unavailable> {
    let choice = std::env::var("AUTONOMY_LAB_BACKEND").unwrap_or_else(|_| "auto".into());
    match choice.as_str() {
        "docker" => DockerPg::start(label).map(|b| Box::new(b) as Box<dyn PgBackend>),
        "process" => ProcessPg::start(label).map(|b| Box::new(b) as Box<dyn PgBackend>),
        "auto" => match DockerPg::start(label) {
            Ok(docker) => Ok(Box::new(docker)),
            Err(Unavailable(docker_reason)) => ProcessPg::start(label)
                .map(|b| Box::new(b) as Box<dyn PgBackend>)
                .map_err(|Unavailable(process_reason)| {
                    Unavailable(format!("docker: {docker_reason}; process: {process_reason}"))
                }),
        },
        // A typo is a configuration error, never a silent SKIP.
        other => panic!("AUTONOMY_LAB_BACKEND=`{other}` is not one of auto, docker, process"),
    }
}

/// Run by the image's entrypoint at first start, after it wrote its own pg_hba.conf lines.
const REPLICATION_HBA: &str =
    "printf 'host replication all all %s\\n' \"${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}\" >> \"$PGDATA/pg_hba.conf\"\n";

fn image_name() -> String {
    std::env::var("AUTONOMY_LAB_PG_IMAGE").unwrap_or_else(|_| "autonomy-pg:15".into())
}

/// Polls until a connection to `url` works or `timeout` passes.
pub fn wait_until_accepting(url: &str, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        match postgres::Client::connect(url, postgres::NoTls) {
            Ok(_) => return Ok(()),
            Err(error) if Instant::now() > deadline => return Err(error.to_string()),
            // Often: VAL17 measures its recovery from the first connection this lets through.
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// A container of the lab image; removed when dropped (testcontainers does it on Drop).
pub struct DockerPg {
    container: Container<GenericImage>,
    port: u16,
    image: String,
}

impl DockerPg {
    fn start(label: &str) -> Result<Self, Unavailable> {
        let image = image_name();
        let daemon = Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .output();
        match daemon {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                return Err(Unavailable(format!(
                    "the docker daemon does not answer: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )))
            }
            Err(e) => return Err(Unavailable(format!("the docker CLI cannot run: {e}"))),
        }
        let present = Command::new("docker")
            .args(["image", "inspect", &image])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !present.is_ok_and(|s| s.success()) {
            return Err(Unavailable(format!(
                "image `{image}` is not present; build it with scripts/build-pg-image.sh"
            )));
        }
        let (name, tag) = image.rsplit_once(':').unwrap_or((image.as_str(), "latest"));
        // A host port of our choosing, not docker's: a restarted container keeps it, so the
        // nodes reconnect to the same address after an outage.
        let container = GenericImage::new(name, tag)
            .with_exposed_port(5432.tcp())
            .with_wait_for(WaitFor::message_on_stderr(
                "database system is ready to accept connections",
            ))
            .with_mapped_port(free_port(), 5432.tcp())
            .with_env_var("POSTGRES_PASSWORD", LAB_PG_PASSWORD)
            .with_env_var("POSTGRES_DB", LAB_DATABASE)
            // The image's pg_hba.conf admits every database but no replication: a standby's
            // base backup and stream need a line of their own (same password method).
            .with_copy_to(
                "/docker-entrypoint-initdb.d/50-replication.sh",
                REPLICATION_HBA.as_bytes().to_vec(),
            )
            .with_label("org.autonomy.run-id", super::run::run_id())
            .with_label("org.autonomy.lab", label)
            .with_startup_timeout(Duration::from_secs(120))
            .start()
            .map_err(|e| Unavailable(format!("container from `{image}` did not start: {e}")))?;
        let port = container
            .get_host_port_ipv4(5432.tcp())
            .map_err(|e| Unavailable(format!("no host port for 5432: {e}")))?;
        let backend = Self { container, port, image };
        wait_until_accepting(&backend.url(LAB_DATABASE), Duration::from_secs(30))
            .map_err(|e| Unavailable(format!("container never accepted connections: {e}")))?;
        Ok(backend)
    }
}

impl PgBackend for DockerPg {
    fn kind(&self) -> &'static str {
        "docker"
    }
    fn spawn_standby(&self, name: &str) -> Result<Box<dyn StandbyPg>, String> {
        Ok(Box::new(DockerStandby::start(
            &self.image,
            self.container.id(),
            self.port,
            name,
        )?))
    }
    fn stop_abruptly(&mut self) -> Result<(), String> {
        self.container
            .stop_with_timeout(Some(0))
            .map_err(|e| format!("stop container {}: {e}", self.container.id()))
    }
    fn start_again(&mut self) -> Result<(), String> {
        self.container
            .start()
            .map_err(|e| format!("start container {} again: {e}", self.container.id()))?;
        wait_until_accepting(&self.url(LAB_DATABASE), Duration::from_secs(60))
            .map_err(|e| format!("the restarted container never accepted connections: {e}"))
    }
    fn port(&self) -> u16 {
        self.port
    }
    fn describe(&self) -> String {
        format!(
            "container {} of image {} (port 5432 -> 127.0.0.1:{})",
            self.container.id(),
            self.image,
            self.port
        )
    }
}

/// A postgres server started from the host's binaries in a temp dir, as a non-root user when
/// the tests run as root (initdb refuses root). Stopped and deleted when dropped.
pub struct ProcessPg {
    child: Child,
    port: u16,
    data_dir: PathBuf,
    bin: PathBuf,
    account: Account,
    _dir: tempfile::TempDir,
}

/// The host's PostgreSQL server binaries: AUTONOMY_LAB_PG_BIN_DIR, else the newest
/// /usr/lib/postgresql/<major>/bin, else PATH.
pub fn host_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("AUTONOMY_LAB_PG_BIN_DIR") {
        return Some(PathBuf::from(dir));
    }
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").exists())
        .collect();
    majors.sort();
    majors.pop().map(|(_, bin)| bin)
}

/// The account to run the server as: `postgres` when we are root, else ourselves.
fn server_account() -> Result<Option<(nix::unistd::Uid, nix::unistd::Gid)>, Unavailable> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name("postgres")
        .map_err(|e| Unavailable(format!("cannot look up the postgres OS user: {e}")))?
        .ok_or_else(|| Unavailable("running as root and there is no `postgres` OS user to run the server as".into()))?;
    Ok(Some((user.uid, user.gid)))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port can be found")
}

pub fn as_account(command: &mut Command, account: Account) {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = account {
        command.uid(uid.as_raw()).gid(gid.as_raw());
    }
    // The server must not outlive the test thread that started it, even on a hard kill.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
}

impl ProcessPg {
    fn start(label: &str) -> Result<Self, Unavailable> {
        let bin = host_bin_dir().ok_or_else(|| {
            Unavailable(
                "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb); set AUTONOMY_LAB_PG_BIN_DIR".into(),
            )
        })?;
        let account = server_account()?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("autonomy-lab-{label}-"))
            .tempdir()
            .map_err(|e| Unavailable(format!("cannot create a temp dir: {e}")))?;
        let data_dir = dir.path().join("data");
        let password_file = dir.path().join("pw");
        std::fs::write(&password_file, LAB_PG_PASSWORD).map_err(|e| Unavailable(e.to_string()))?;
        if let Some((uid, gid)) = account {
            for path in [dir.path(), password_file.as_path()] {
                nix::unistd::chown(path, Some(uid), Some(gid))
                    .map_err(|e| Unavailable(format!("chown {}: {e}", path.display())))?;
            }
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data_dir)
            .args([
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                "--no-sync",
                "--encoding=UTF8",
                "--locale=C",
            ])
            .arg(format!("--pwfile={}", password_file.display()))
            .stdin(Stdio::null());
        as_account(&mut initdb, account);
        let out = initdb
            .output()
            .map_err(|e| Unavailable(format!("initdb cannot run: {e}")))?;
        if !out.status.success() {
            return Err(Unavailable(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let port = free_port();
        let log_path = dir.path().join("postgres.log");
        std::fs::File::create(&log_path).map_err(|e| Unavailable(e.to_string()))?;
        if let Some((uid, gid)) = account {
            nix::unistd::chown(&log_path, Some(uid), Some(gid)).map_err(|e| Unavailable(e.to_string()))?;
        }
        let child = spawn_server(&bin, account, &data_dir, port, dir.path()).map_err(Unavailable)?;
        let backend = Self {
            child,
            port,
            data_dir,
            bin,
            account,
            _dir: dir,
        };
        let admin = format!("postgres://postgres:{LAB_PG_PASSWORD}@127.0.0.1:{port}/postgres");
        wait_until_accepting(&admin, Duration::from_secs(30)).map_err(|e| {
            Unavailable(format!(
                "postgres never accepted connections: {e}; log: {}",
                backend.log_tail()
            ))
        })?;
        let mut client = postgres::Client::connect(&admin, postgres::NoTls).map_err(|e| Unavailable(e.to_string()))?;
        client
            .batch_execute(&format!("CREATE DATABASE {LAB_DATABASE}"))
            .map_err(|e| Unavailable(format!("cannot create the lab database: {e}")))?;
        Ok(backend)
    }

    fn log_tail(&self) -> String {
        // (The server appends to postgres.log across restarts.)
        tail(&self._dir.path().join("postgres.log"))
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

/// The last 20 lines of a server log.
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Starts the postmaster on `port`, logging (appending) to `dir`/postgres.log.
pub fn spawn_server(bin: &Path, account: Account, data_dir: &Path, port: u16, dir: &Path) -> Result<Child, String> {
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("postgres.log"))
        .map_err(|e| format!("open postgres.log: {e}"))?;
    let mut server = Command::new(bin.join("postgres"));
    server
        .arg("-D")
        .arg(data_dir)
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", dir.display()))
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    as_account(&mut server, account);
    server.spawn().map_err(|e| format!("postgres cannot start: {e}"))
}

impl PgBackend for ProcessPg {
    fn kind(&self) -> &'static str {
        "process"
    }
    fn spawn_standby(&self, name: &str) -> Result<Box<dyn StandbyPg>, String> {
        Ok(Box::new(ProcessStandby::start(
            &self.bin,
            self.account,
            self.port,
            name,
        )?))
    }
    fn stop_abruptly(&mut self) -> Result<(), String> {
        // SIGQUIT is the postmaster's immediate shutdown: children killed, no checkpoint.
        super::process::stop_server(&mut self.child, nix::sys::signal::Signal::SIGQUIT);
        Ok(())
    }
    fn start_again(&mut self) -> Result<(), String> {
        self.child = spawn_server(&self.bin, self.account, &self.data_dir, self.port, self._dir.path())?;
        let admin = format!("postgres://postgres:{LAB_PG_PASSWORD}@127.0.0.1:{}/postgres", self.port);
        wait_until_accepting(&admin, Duration::from_secs(60)).map_err(|e| {
            format!(
                "the restarted server never accepted connections: {e}; log: {}",
                self.log_tail()
            )
        })
    }
    fn port(&self) -> u16 {
        self.port
    }
    fn describe(&self) -> String {
        format!(
            "postgres process pid {} with data dir {} on 127.0.0.1:{}",
            self.child.id(),
            self.data_dir.display(),
            self.port
        )
    }
}

impl Drop for ProcessPg {
    fn drop(&mut self) {
        // Fast shutdown (SIGINT); the temp dir is removed after the server is gone.
        super::process::stop_server(&mut self.child, nix::sys::signal::Signal::SIGINT);
    }
}
