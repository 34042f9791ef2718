//! A streaming standby of the lab's primary: a base backup with a replication slot, streaming
//! through a relay the test can cut silently; the standby can also be stopped and started.
//! Same shape for both backends: a local process, or a container of the lab image.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use testcontainers::{
    core::{IntoContainerPort, Mount, WaitFor},
    runners::SyncRunner,
    Container, GenericImage, ImageExt,
};

use super::{
    backend::{self, Account, LAB_DATABASE, LAB_PG_PASSWORD},
    relay::Relay,
};

/// What every standby has, whatever runs it: its name, its port, and the relay it streams
/// through.
pub struct Link {
    /// The application_name it streams under; also its slot's name.
    name: String,
    port: u16,
    relay: Relay,
}

impl Link {
    /// The standby as the setup evidence names it: where it runs (`place`), its port and its relay.
    fn describe(&self, place: &str) -> String {
        format!(
            "standby {} ({place}, 127.0.0.1:{}) streaming through a relay at {}",
            self.name, self.port, self.relay.addr
        )
    }
}

/// A running standby.
pub trait StandbyPg {
    fn link(&self) -> &Link;
    /// Fast shutdown: its walsender on the primary ends at once.
    fn stop(&mut self) -> Result<(), String>;
    /// Starts it again on the same port and data; returns once it accepts connections.
    fn start(&mut self) -> Result<(), String>;
    fn describe(&self) -> String;

    fn name(&self) -> &str {
        &self.link().name
    }
    fn port(&self) -> u16 {
        self.link().port
    }
    /// Cuts the link to the primary silently (bytes dropped both ways, no FIN, no RST).
    fn cut(&self) {
        self.link().relay.cut();
    }
    /// Restores the link; the standby reconnects by itself.
    fn heal(&self) {
        self.link().relay.heal();
    }

    fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres:{LAB_PG_PASSWORD}@127.0.0.1:{}/{database}",
            self.port()
        )
    }
}

/// Prepares the primary for a standby named `name`: a physical slot of that name (so the
/// primary keeps the WAL it needs, and the node reports it when it is gone), and a short
/// wal_sender_timeout, so a standby cut off silently is dropped within seconds, not a minute.
pub fn prepare_primary(primary_url: &str, name: &str) -> Result<(), String> {
    let mut db =
        postgres::Client::connect(primary_url, postgres::NoTls).map_err(|e| format!("connect to the primary: {e}"))?;
    db.execute(
        "SELECT pg_create_physical_replication_slot($1)
          WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
        &[&name],
    )
    .map_err(|e| format!("create the replication slot {name}: {e}"))?;
    // Two statements: ALTER SYSTEM refuses to run inside the implicit transaction of a batch.
    db.batch_execute("ALTER SYSTEM SET wal_sender_timeout = '2s'")
        .and_then(|()| db.batch_execute("SELECT pg_reload_conf()"))
        .map_err(|e| format!("set wal_sender_timeout: {e}"))
}

/// Copies the primary into `data_dir` with the host's pg_basebackup (as `account`), then makes
/// it a standby of `primary` (host and port as the standby will reach it) on slot `name`.
fn base_backup(
    bin: &Path,
    account: Account,
    primary_port: u16,
    data_dir: &Path,
    name: &str,
    primary: SocketAddr,
) -> Result<(), String> {
    let mut copy = Command::new(bin.join("pg_basebackup"));
    copy.arg("-D")
        .arg(data_dir)
        .args(["-h", "127.0.0.1", "-p", &primary_port.to_string(), "-U", "postgres"])
        .args(["-X", "stream", "-S", name, "--no-sync", "-c", "fast"])
        .env("PGPASSWORD", LAB_PG_PASSWORD)
        .stdin(Stdio::null());
    backend::as_account(&mut copy, account);
    let out = copy.output().map_err(|e| format!("pg_basebackup cannot run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pg_basebackup failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    // Later lines of postgresql.auto.conf win. Short receiver timeouts so that after a cut the
    // standby notices and reconnects within a second of the heal.
    let settings = format!(
        "\nprimary_conninfo = 'host={} port={} user=postgres password={LAB_PG_PASSWORD} application_name={name}'\n\
         primary_slot_name = '{name}'\n\
         wal_receiver_timeout = '2s'\n\
         wal_retrieve_retry_interval = '200ms'\n\
         hot_standby = on\n",
        primary.ip(),
        primary.port()
    );
    let auto_conf = data_dir.join("postgresql.auto.conf");
    let mut conf = std::fs::read_to_string(&auto_conf).unwrap_or_default();
    conf.push_str(&settings);
    std::fs::write(&auto_conf, conf).map_err(|e| format!("write {}: {e}", auto_conf.display()))?;
    std::fs::write(data_dir.join("standby.signal"), "").map_err(|e| format!("write standby.signal: {e}"))?;
    if let Some((uid, gid)) = account {
        for file in [auto_conf, data_dir.join("standby.signal")] {
            nix::unistd::chown(&file, Some(uid), Some(gid)).map_err(|e| format!("chown {}: {e}", file.display()))?;
        }
    }
    Ok(())
}

fn scratch_dir(name: &str) -> Result<tempfile::TempDir, String> {
    tempfile::Builder::new()
        .prefix(&format!("autonomy-lab-standby-{name}-"))
        .tempdir()
        .map_err(|e| format!("cannot create a temp dir: {e}"))
}

/// A standby server process from the host's binaries.
pub struct ProcessStandby {
    link: Link,
    child: Child,
    data_dir: PathBuf,
    bin: PathBuf,
    account: Account,
    dir: tempfile::TempDir,
}

impl ProcessStandby {
    pub fn start(bin: &Path, account: Account, primary_port: u16, name: &str) -> Result<Self, String> {
        let dir = scratch_dir(name)?;
        let log = dir.path().join("postgres.log");
        std::fs::File::create(&log).map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = account {
            for path in [dir.path(), log.as_path()] {
                nix::unistd::chown(path, Some(uid), Some(gid)).map_err(|e| format!("chown {}: {e}", path.display()))?;
            }
        }
        let relay = Relay::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), primary_port)?;
        let data_dir = dir.path().join("data");
        base_backup(bin, account, primary_port, &data_dir, name, relay.addr)?;
        let port = backend::free_port();
        let child = backend::spawn_server(bin, account, &data_dir, port, dir.path())?;
        let standby = Self {
            link: Link {
                name: name.to_owned(),
                port,
                relay,
            },
            child,
            data_dir,
            bin: bin.to_owned(),
            account,
            dir,
        };
        backend::wait_until_accepting(&standby.url(LAB_DATABASE), Duration::from_secs(30)).map_err(|e| {
            format!(
                "the standby never accepted connections: {e}; log: {}",
                standby.log_tail()
            )
        })?;
        Ok(standby)
    }

    fn log_tail(&self) -> String {
        backend::tail(&self.dir.path().join("postgres.log"))
    }
}

impl StandbyPg for ProcessStandby {
    fn link(&self) -> &Link {
        &self.link
    }
    fn stop(&mut self) -> Result<(), String> {
        super::process::stop_server(&mut self.child, nix::sys::signal::Signal::SIGINT);
        Ok(())
    }
    fn start(&mut self) -> Result<(), String> {
        self.child = backend::spawn_server(&self.bin, self.account, &self.data_dir, self.port(), self.dir.path())?;
        backend::wait_until_accepting(&self.url(LAB_DATABASE), Duration::from_secs(30)).map_err(|e| {
            format!(
                "the restarted standby never accepted connections: {e}; log: {}",
                self.log_tail()
            )
        })
    }
    fn describe(&self) -> String {
        self.link
            .describe(&format!("process, data dir {}", self.data_dir.display()))
    }
}

impl Drop for ProcessStandby {
    fn drop(&mut self) {
        super::process::stop_server(&mut self.child, nix::sys::signal::Signal::SIGINT);
    }
}

/// A standby container of the lab image, its data directory a base backup taken on the host
/// and bind-mounted; it reaches the primary through a relay on the docker bridge's gateway.
pub struct DockerStandby {
    link: Link,
    container: Container<GenericImage>,
    _dir: tempfile::TempDir,
}

impl DockerStandby {
    pub fn start(image: &str, primary_container: &str, primary_port: u16, name: &str) -> Result<Self, String> {
        let bin = backend::host_bin_dir().ok_or("the host has no PostgreSQL binaries for pg_basebackup")?;
        let gateway = container_gateway(primary_container)?;
        let relay = Relay::start(SocketAddr::new(gateway, 0), primary_port)?;
        let dir = scratch_dir(name)?;
        let data_dir = dir.path().join("data");
        // As ourselves: the image's entrypoint hands the directory to its postgres user.
        base_backup(&bin, None, primary_port, &data_dir, name, relay.addr)?;
        let (image_name, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
        let port = backend::free_port();
        let container = GenericImage::new(image_name, tag)
            .with_exposed_port(5432.tcp())
            .with_wait_for(WaitFor::message_on_stderr("ready to accept read-only connections"))
            .with_mapped_port(port, 5432.tcp())
            .with_mount(Mount::bind_mount(
                data_dir.display().to_string(),
                "/var/lib/postgresql/data",
            ))
            .with_env_var("POSTGRES_PASSWORD", LAB_PG_PASSWORD)
            .with_label("org.autonomy.run-id", super::run::run_id())
            .with_label("org.autonomy.lab", format!("standby-{name}"))
            .with_startup_timeout(Duration::from_secs(120))
            .start()
            .map_err(|e| format!("the standby container did not start: {e}"))?;
        let standby = Self {
            link: Link {
                name: name.to_owned(),
                port,
                relay,
            },
            container,
            _dir: dir,
        };
        backend::wait_until_accepting(&standby.url(LAB_DATABASE), Duration::from_secs(30))
            .map_err(|e| format!("the standby container never accepted connections: {e}"))?;
        Ok(standby)
    }
}

/// The docker bridge gateway the container sees: an address of this host it can reach.
fn container_gateway(container: &str) -> Result<IpAddr, String> {
    let out = Command::new("docker")
        .args(["inspect", "-f", "{{.NetworkSettings.Gateway}}", container])
        .output()
        .map_err(|e| format!("docker inspect cannot run: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    text.parse()
        .map_err(|e| format!("container {container} has no bridge gateway (`{text}`): {e}"))
}

impl StandbyPg for DockerStandby {
    fn link(&self) -> &Link {
        &self.link
    }
    fn stop(&mut self) -> Result<(), String> {
        self.container
            .stop()
            .map_err(|e| format!("stop standby container {}: {e}", self.container.id()))
    }
    fn start(&mut self) -> Result<(), String> {
        self.container
            .start()
            .map_err(|e| format!("start standby container {}: {e}", self.container.id()))?;
        backend::wait_until_accepting(&self.url(LAB_DATABASE), Duration::from_secs(60))
            .map_err(|e| format!("the restarted standby container never accepted connections: {e}"))
    }
    fn describe(&self) -> String {
        self.link.describe(&format!("container {}", self.container.id()))
    }
}
