//! Faults and bad input: every failure tells the truth.
//!
//! Each test reproduces what an independent fault and bad-input probe did to the system (an
//! audit store that cannot be written, a node killed mid-restore, a downgraded manifest, a FIFO
//! in place of an archive, a full or immutable repository, a frozen node, a damaged audit line,
//! stored input that could not be read back, …) and asserts what an operator must see: the
//! operation refused or reported with its cause and its documented exit code, nothing changed
//! that was said not to change, and the truth recoverable after a restart.

mod common;

use std::{
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use autonomy::audit::{self, AuditEvent, AuditQuery};
use common::{cli::Cli, lab::Lab, node::Node, run::lab_required, sql, LAB_TOKEN};
use nix::sys::signal::Signal;

// ---------------------------------------------------------------------------------------------
// Fixture helpers
// ---------------------------------------------------------------------------------------------

/// Sets the immutable flag on a file or directory and clears it again however the test ends.
struct Immutable(PathBuf);

impl Immutable {
    #[track_caller]
    fn set(path: &Path) -> Self {
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
fn chattr(flag: &str, path: &Path) {
    let status = std::process::Command::new("chattr")
        .arg(flag)
        .arg(path)
        .status()
        .expect("chattr runs (e2fsprogs)");
    assert!(status.success(), "chattr {flag} {} failed", path.display());
}

/// A small tmpfs mounted for the test (root only), unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Result<Self, String> {
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
struct Frozen<'a>(&'a Node);

impl<'a> Frozen<'a> {
    fn freeze(node: &'a Node) -> Self {
        node.signal(Signal::SIGSTOP);
        Self(node)
    }
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        self.0.signal(Signal::SIGCONT);
    }
}

fn events(dir: &Path, event_type: &str) -> Vec<AuditEvent> {
    let query = AuditQuery {
        event_type: Some(event_type.into()),
        since: None,
    };
    audit::query(dir, &query).expect("the audit store reads")
}

/// A session the restore spares (autonomy's own application_name prefix), for watching it.
fn watcher(url: &str) -> postgres::Client {
    let mut config: postgres::Config = url.parse().expect("the lab URL parses");
    config.application_name("autonomy-ha:test-watcher");
    config.connect(postgres::NoTls).expect("the watcher connects")
}

/// Polls until `query` (returning one bool) is true, or panics after `timeout` naming `what`.
#[track_caller]
fn wait_for_sql(client: &mut postgres::Client, query: &str, what: &str, timeout: Duration) {
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
fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "waited {timeout:?} for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn inventory_row(db: &mut postgres::Client, backup_id: &str) -> (String, Option<String>, Option<String>) {
    let row = db
        .query_one(
            "SELECT status, error, last_restore_outcome FROM autonomy_ha.backup_inventory WHERE backup_id = $1",
            &[&backup_id],
        )
        .expect("the backup has an inventory row");
    (row.get(0), row.get(1), row.get(2))
}

fn partial_archives(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|name| name.contains(".partial"))
                .collect()
        })
        .unwrap_or_default()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("the path exists").permissions().mode() & 0o777
}

/// An HTTP call with full control of the request, returning (status, content type, body).
fn http(method: &str, url: &str, authorization: Option<&str>, body: Option<Vec<u8>>) -> (u16, String, String) {
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

fn bearer() -> String {
    format!("Bearer {LAB_TOKEN}")
}

fn rewrite_manifest(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("the manifest reads")).expect("JSON");
    edit(&mut document);
    std::fs::write(path, serde_json::to_vec_pretty(&document).unwrap()).expect("the manifest is rewritten");
}

fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
}

/// Fills `big` with about `megabytes` of hard-to-compress text, so dumps and restores take
/// long enough to be interrupted, and archives are too big for a small filesystem.
fn load_big_table(db: &mut postgres::Client, megabytes: u32) {
    let rows = megabytes * 1024 * 1024 / 100;
    db.batch_execute(&format!(
        "CREATE TABLE big (id int PRIMARY KEY, payload text NOT NULL);
         INSERT INTO big SELECT g, md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text)
           FROM generate_series(1, {rows}) g;"
    ))
    .expect("the big table loads");
}

// ---------------------------------------------------------------------------------------------
// Defect 2 (audit write failures were silent), and the status saying so
// ---------------------------------------------------------------------------------------------

#[test]
fn an_audit_store_that_cannot_be_written_refuses_backups_and_restores() {
    let Some(lab) = Lab::start_or_skip("faults-audit") else {
        return;
    };
    let mut db = sql::connect(&lab.url());
    db.batch_execute(include_str!("../fixtures/val15.sql"))
        .expect("the fixture loads");
    let node = Node::start_leader(lab.node_spec("faults-audit", true)).unwrap_or_else(|e| panic!("{e}"));
    let cli = Cli::for_server(&node.url);
    let created = cli.run(&["ha", "backup", "create"]);
    assert!(created.success(), "{created}");
    let id = created.field("backup_id").expect("a backup id");
    db.batch_execute("UPDATE val15_small SET payload = 'after the backup' WHERE id = 1")
        .expect("a change a refused restore must keep");
    let before = sql::fingerprint(&mut db);
    let backups_before = std::fs::read_dir(lab.scratch.path().join("backups")).unwrap().count();

    {
        let _frozen = Immutable::set(&lab.audit_dir().join("faults-audit.jsonl"));
        let refused = cli.run(&["ha", "backup", "create"]);
        assert_eq!(refused.exit_code, Some(11), "{refused}");
        assert!(
            refused.stderr.contains("nothing was started") && refused.stderr.contains("audit"),
            "{refused}"
        );
        let refused = cli.run(&["ha", "backup", "restore", &id, "--confirm"]);
        assert_eq!(refused.exit_code, Some(11), "{refused}");
        assert!(refused.stderr.contains("the database was not touched"), "{refused}");
        assert_eq!(
            before.diff(&sql::fingerprint(&mut db)),
            Vec::<String>::new(),
            "a refused restore changed the database"
        );
        assert_eq!(
            std::fs::read_dir(lab.scratch.path().join("backups")).unwrap().count(),
            backups_before,
            "a refused backup wrote to the repository"
        );
        let status = cli.run(&["ha", "status"]);
        assert!(status.stdout.contains("\naudit writable=false"), "{status}");
        let json = cli.run(&["--output", "json", "ha", "status"]);
        let report: serde_json::Value = serde_json::from_str(&json.stdout).expect("status JSON");
        assert_eq!(report["audit"]["writable"], false, "{json}");
        assert!(
            report["audit"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("faults-audit.jsonl")),
            "{json}"
        );
    }

    // Writable again: the next backup goes through and the status clears.
    let created = cli.run(&["ha", "backup", "create"]);
    assert!(created.success(), "{created}");
    let status = cli.run(&["ha", "status"]);
    assert!(!status.stdout.contains("audit writable=false"), "{status}");
}

// ---------------------------------------------------------------------------------------------
// Defects 1 and 7: a node killed mid-backup or mid-restore, PostgreSQL stopped mid-backup
// ---------------------------------------------------------------------------------------------

#[test]
fn interrupted_backups_and_restores_are_recognised_after_a_restart() {
    let Some(mut lab) = Lab::start_or_skip("faults-killed") else {
        return;
    };
    let url = lab.url();
    // Spared by the restores (which end every other client session).
    let mut db = watcher(&url);
    load_big_table(&mut db, 120);
    db.batch_execute("CREATE TABLE marker (note text); INSERT INTO marker VALUES ('backed up')")
        .expect("the marker table");
    let backups = lab.scratch.path().join("backups");
    let audit_dir = lab.audit_dir();
    let spec = |round: &str| {
        let mut spec = lab.node_spec("faults-killed", true);
        spec.log_path = lab.scratch.path().join(format!("faults-killed-{round}.log"));
        spec
    };
    let mut node = Node::start_leader(spec("1")).unwrap_or_else(|e| panic!("{e}"));
    let created = Cli::for_server(&node.url).run(&["ha", "backup", "create"]);
    assert!(created.success(), "{created}");
    let id = created.field("backup_id").expect("a backup id");

    // SIGKILL mid-backup: the row stays `running` until the node starts again, which marks it
    // failed (interrupted), audits it, and removes the partial archive.
    let cli = Cli::for_server(&node.url);
    let running = std::thread::spawn(move || cli.run(&["ha", "backup", "create"]));
    wait_until("a partial archive being written", Duration::from_secs(60), || {
        partial_archives(&backups)
            .iter()
            .any(|name| std::fs::metadata(backups.join(name)).is_ok_and(|m| m.len() > 0))
    });
    node.signal(Signal::SIGKILL);
    assert!(node.wait_for_exit(Duration::from_secs(10)), "the node died");
    let _ = running.join();
    let partial = partial_archives(&backups)
        .into_iter()
        .find(|n| n.ends_with(".dump.partial"))
        .expect("a partial archive");
    let killed_id = partial.trim_end_matches(".dump.partial").to_owned();
    assert_eq!(inventory_row(&mut db, &killed_id).0, "running");
    drop(node);
    let node = Node::start_leader(spec("2")).unwrap_or_else(|e| panic!("{e}"));
    let (status, error, _) = inventory_row(&mut db, &killed_id);
    assert_eq!(
        status,
        "failed",
        "the killed backup is still {status}; log:\n{}",
        node.log()
    );
    assert!(error.as_deref().is_some_and(|e| e.contains("interrupted")), "{error:?}");
    assert_eq!(
        partial_archives(&backups),
        Vec::<String>::new(),
        "stale partial files remain"
    );
    assert!(
        events(&audit_dir, "ha.backup.interrupted")
            .iter()
            .any(|e| e.details["backup_id"] == killed_id.as_str()),
        "no ha.backup.interrupted event for {killed_id}"
    );
    let listed = Cli::for_server(&node.url).run(&["ha", "backup", "list"]);
    assert!(
        listed.stdout.contains(&format!("backup_id={killed_id} status=failed")),
        "{listed}"
    );

    // SIGKILL before the restore's COMMIT: nothing changed, and the restarted node records the
    // restore as interrupted and not committed.
    db.batch_execute("UPDATE marker SET note = 'after the backup'")
        .expect("a change");
    let cli = Cli::for_server(&node.url);
    let restore_id = id.clone();
    let restoring = std::thread::spawn(move || cli.run(&["ha", "backup", "restore", &restore_id, "--confirm"]));
    wait_for_sql(
        &mut db,
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'psql' AND datname = current_database())",
        "the restore's psql session",
        Duration::from_secs(60),
    );
    let mut node = node;
    node.signal(Signal::SIGKILL);
    assert!(node.wait_for_exit(Duration::from_secs(10)), "the node died");
    let _ = restoring.join();
    wait_for_sql(
        &mut db,
        "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'psql')",
        "the orphaned psql to end",
        Duration::from_secs(60),
    );
    let note: String = sql::connect(&url)
        .query_one("SELECT note FROM marker", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        note, "after the backup",
        "a restore killed before its COMMIT changed the database"
    );
    let started = events(&audit_dir, "ha.backup.restore_started");
    assert_eq!(started.len(), 1, "the restore's start is in the audit: {started:?}");
    let first_restore = started[0].details["restore_id"]
        .as_str()
        .expect("a restore id")
        .to_owned();
    drop(node);
    let node = Node::start_leader(spec("3")).unwrap_or_else(|e| panic!("{e}"));
    let interrupted = events(&audit_dir, "ha.backup.restore_interrupted");
    assert!(
        interrupted
            .iter()
            .any(|e| e.details["restore_id"] == first_restore.as_str() && e.details["committed"] == false),
        "no uncommitted ha.backup.restore_interrupted for {first_restore}: {interrupted:?}"
    );

    // SIGKILL after the COMMIT, while the proof reads: the database holds the backup, the
    // audit holds the restore's start, the inventory says it committed unproven, and the
    // restarted node records it as interrupted after its commit.
    let cli = Cli::for_server(&node.url);
    let restore_id = id.clone();
    let restoring = std::thread::spawn(move || cli.run(&["ha", "backup", "restore", &restore_id, "--confirm"]));
    wait_for_sql(
        &mut db,
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                         WHERE application_name IN ('autonomy-ha:faults-killed:proof', 'autonomy-ha:faults-killed:baseline-reader')
                           AND state = 'active')",
        "the restore's proof reading",
        Duration::from_secs(120),
    );
    let mut node = node;
    node.signal(Signal::SIGKILL);
    assert!(node.wait_for_exit(Duration::from_secs(10)), "the node died");
    let _ = restoring.join();
    let note: String = sql::connect(&url)
        .query_one("SELECT note FROM marker", &[])
        .unwrap()
        .get(0);
    assert_eq!(note, "backed up", "the restore had committed");
    let started = events(&audit_dir, "ha.backup.restore_started");
    assert_eq!(started.len(), 2, "{started:?}");
    let second_restore = started[1].details["restore_id"]
        .as_str()
        .expect("a restore id")
        .to_owned();
    assert!(
        events(&audit_dir, "ha.backup.restored")
            .iter()
            .all(|e| e.details["restore_id"] != second_restore.as_str()),
        "the killed restore cannot have recorded its outcome"
    );
    assert_eq!(inventory_row(&mut db, &id).2.as_deref(), Some("committed_unproven"));
    drop(node);
    let node = Node::start_leader(spec("4")).unwrap_or_else(|e| panic!("{e}"));
    let interrupted = events(&audit_dir, "ha.backup.restore_interrupted");
    assert!(
        interrupted
            .iter()
            .any(|e| e.details["restore_id"] == second_restore.as_str() && e.details["committed"] == true),
        "no committed ha.backup.restore_interrupted for {second_restore}: {interrupted:?}"
    );
    let listed = Cli::for_server(&node.url).run(&["ha", "backup", "list"]);
    assert!(
        listed.stdout.contains("last_restore=interrupted_after_commit"),
        "{listed}"
    );

    // PostgreSQL stopped mid-backup: the backup fails; once the database is back, the leader's
    // next listing shows the row failed, not `running` forever.
    let cli = Cli::for_server(&node.url);
    let running = std::thread::spawn(move || cli.run(&["ha", "backup", "create"]));
    let backups = lab.scratch.path().join("backups");
    wait_until("a partial archive being written", Duration::from_secs(60), || {
        partial_archives(&backups)
            .iter()
            .any(|name| std::fs::metadata(backups.join(name)).is_ok_and(|m| m.len() > 0))
    });
    let partial = partial_archives(&backups)
        .into_iter()
        .find(|n| n.ends_with(".dump.partial"))
        .expect("a partial archive");
    let stopped_id = partial.trim_end_matches(".dump.partial").to_owned();
    drop(db);
    lab.pg.stop_abruptly().expect("PostgreSQL stops");
    let failed = running.join().expect("the backup call returns");
    assert!(!failed.success(), "{failed}");
    lab.pg.start_again().expect("PostgreSQL starts again");
    node.wait_for_role("leader", Duration::from_secs(60))
        .expect("the node leads again");
    let cli = Cli::for_server(&node.url);
    wait_until(
        "the listing to show the stopped backup failed",
        Duration::from_secs(30),
        || {
            cli.run(&["ha", "backup", "list"])
                .stdout
                .contains(&format!("backup_id={stopped_id} status=failed"))
        },
    );
    let mut db = watcher(&url);
    assert_eq!(inventory_row(&mut db, &stopped_id).0, "failed");
    assert!(
        !partial_archives(&backups).iter().any(|n| n.starts_with(&stopped_id)),
        "its partial archive remains"
    );
}

// ---------------------------------------------------------------------------------------------
// Defects 3, 4 and 5; the drill's seal report; listings of backups whose files are gone
// ---------------------------------------------------------------------------------------------

#[test]
fn restores_refuse_downgrades_and_fifos_and_report_differences() {
    let Some(lab) = Lab::start_or_skip("faults-repository") else {
        return;
    };
    // Spared by the restores (which end every other client session).
    let mut db = watcher(&lab.url());
    db.batch_execute(include_str!("../fixtures/val15.sql"))
        .expect("the fixture loads");
    let node = Node::start_leader(lab.node_spec("faults-repository", true)).unwrap_or_else(|e| panic!("{e}"));
    let cli = Cli::for_server(&node.url);
    let backup = || {
        let created = cli.run(&["ha", "backup", "create"]);
        assert!(created.success(), "{created}");
        created.field("backup_id").expect("a backup id")
    };
    let dir = lab.scratch.path().join("backups");
    let manifest_of = |id: &str| dir.join(format!("{id}.json"));
    let older = backup();
    db.batch_execute("UPDATE val15_small SET payload = 'between the backups' WHERE id = 1")
        .expect("a change");
    let newer = backup();
    db.batch_execute("UPDATE val15_small SET payload = 'live' WHERE id = 1")
        .expect("a change");
    let live = sql::fingerprint(&mut db);
    let unchanged = |db: &mut postgres::Client, case: &str| {
        assert_eq!(
            live.diff(&sql::fingerprint(db)),
            Vec::<String>::new(),
            "{case} changed the database"
        );
    };

    // Defect 4: the newer backup's manifest downgraded to version 2 without its seal, with the
    // older backup's checksum and size, and the older archive in its place.
    let older_manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(manifest_of(&older)).unwrap()).unwrap();
    rewrite_manifest(&manifest_of(&newer), |m| {
        m["manifest_version"] = serde_json::json!(2);
        m.as_object_mut().unwrap().remove("manifest_sha256");
        m["sha256"] = older_manifest["sha256"].clone();
        m["size_bytes"] = older_manifest["size_bytes"].clone();
    });
    std::fs::copy(lab.archive_path(&older), lab.archive_path(&newer)).expect("the archive is swapped");
    let refused = cli.run(&["ha", "backup", "restore", &newer, "--confirm"]);
    assert_eq!(refused.exit_code, Some(7), "{refused}");
    assert!(refused.stderr.contains("inventory recorded"), "{refused}");
    unchanged(&mut db, "a downgraded manifest");
    let refused = cli.run(&[
        "ha",
        "backup",
        "restore",
        &newer,
        "--confirm",
        "--allow-unsealed-manifest",
    ]);
    assert_eq!(refused.exit_code, Some(7), "{refused}");
    assert!(refused.stderr.contains("inventory recorded"), "{refused}");
    unchanged(&mut db, "a downgraded manifest with --allow-unsealed-manifest");

    // A genuinely old (version 2) manifest, indexed before versions were recorded: refused
    // unless the operator allows it explicitly; then restored and proven.
    let old_format = backup();
    rewrite_manifest(&manifest_of(&old_format), |m| {
        m["manifest_version"] = serde_json::json!(2);
        m.as_object_mut().unwrap().remove("manifest_sha256");
    });
    db.execute(
        "UPDATE autonomy_ha.backup_inventory SET manifest_version = NULL WHERE backup_id = $1",
        &[&old_format],
    )
    .expect("the row looks indexed before this release");
    let refused = cli.run(&["ha", "backup", "restore", &old_format, "--confirm"]);
    assert_eq!(refused.exit_code, Some(7), "{refused}");
    assert!(refused.stderr.contains("--allow-unsealed-manifest"), "{refused}");
    unchanged(&mut db, "an unsealed manifest without the flag");
    let allowed = cli.run(&[
        "ha",
        "backup",
        "restore",
        &old_format,
        "--confirm",
        "--allow-unsealed-manifest",
    ]);
    assert!(allowed.success(), "{allowed}");
    assert_eq!(allowed.field("status").as_deref(), Some("restored"), "{allowed}");

    // Defect 3: a restore whose proof finds differences committed, and says so: exit 10,
    // status restored_with_differences, in the audit and the inventory.
    let edited = backup();
    let mut manifest: autonomy::backup::Manifest =
        serde_json::from_slice(&std::fs::read(manifest_of(&edited)).unwrap()).unwrap();
    let table = manifest
        .baseline
        .as_mut()
        .unwrap()
        .tables
        .get_mut("public.val15_small")
        .expect("a table");
    table.rows += 1;
    std::fs::write(manifest_of(&edited), autonomy::backup::manifest::seal(&manifest)).unwrap();
    let differed = cli.run(&["ha", "backup", "restore", &edited, "--confirm"]);
    assert_eq!(differed.exit_code, Some(10), "{differed}");
    assert_eq!(
        differed.field("status").as_deref(),
        Some("restored_with_differences"),
        "{differed}"
    );
    assert!(
        differed.stdout.contains("difference table public.val15_small"),
        "{differed}"
    );
    let restored = events(&lab.audit_dir(), "ha.backup.restored");
    assert_eq!(restored.last().unwrap().details["status"], "restored_with_differences");
    assert_eq!(inventory_row(&mut db, &edited).2.as_deref(), Some("differences"));
    let live = sql::fingerprint(&mut db);

    // Defect 5: a FIFO in place of the archive, then of the manifest: refused at once, and the
    // node is not left busy.
    let fifo_archive = backup();
    mkfifo(&lab.archive_path(&fifo_archive));
    let refused = cli.run_within(
        &["ha", "backup", "restore", &fifo_archive, "--confirm"],
        Duration::from_secs(60),
    );
    assert_eq!(refused.exit_code, Some(7), "{refused}");
    assert!(refused.stderr.contains("is a FIFO"), "{refused}");
    assert_eq!(live.diff(&sql::fingerprint(&mut db)), Vec::<String>::new());
    let drill = cli.run_within(&["ha", "backup", "verify", &fifo_archive], Duration::from_secs(60));
    assert_eq!(drill.exit_code, Some(1), "{drill}");
    assert!(
        drill
            .stdout
            .contains(&format!("difference archive {fifo_archive}.dump"))
            && drill.stdout.contains("a FIFO"),
        "{drill}"
    );
    let fifo_manifest = backup();
    mkfifo(&manifest_of(&fifo_manifest));
    let refused = cli.run_within(
        &["ha", "backup", "restore", &fifo_manifest, "--confirm"],
        Duration::from_secs(60),
    );
    assert_eq!(refused.exit_code, Some(7), "{refused}");
    assert!(refused.stderr.contains("is a FIFO"), "{refused}");
    let listed = cli.run_within(&["ha", "backup", "list"], Duration::from_secs(60));
    assert!(listed.success(), "{listed}");
    assert!(
        listed
            .stdout
            .contains(&format!("backup_id={fifo_archive} status=completed"))
            && listed.stdout.contains("files=not_a_regular_file"),
        "{listed}"
    );
    backup(); // not busy

    // A drill of a sealed manifest whose archive fails its check still says it was sealed.
    let flipped = backup();
    let archive = lab.archive_path(&flipped);
    let mut bytes = std::fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&archive, bytes).unwrap();
    let drill = cli.run(&["ha", "backup", "verify", &flipped]);
    assert_eq!(drill.exit_code, Some(1), "{drill}");
    assert_eq!(drill.field("manifest_sealed").as_deref(), Some("true"), "{drill}");

    // Backups whose archive or manifest is gone are listed as such.
    let no_archive = backup();
    let no_manifest = backup();
    std::fs::remove_file(lab.archive_path(&no_archive)).unwrap();
    std::fs::remove_file(manifest_of(&no_manifest)).unwrap();
    let listed = cli.run(&["ha", "backup", "list"]);
    let line = |id: &str| {
        listed
            .stdout
            .lines()
            .find(|l| l.contains(id))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(line(&no_archive).contains("files=archive_missing"), "{listed}");
    assert!(line(&no_manifest).contains("files=manifest_missing"), "{listed}");
    assert!(line(&older).contains("files=present"), "{listed}");
}

// ---------------------------------------------------------------------------------------------
// Defect 6: repository write errors name their cause; a failed manifest write leaves nothing
// ---------------------------------------------------------------------------------------------

#[test]
fn repository_write_errors_name_their_cause() {
    if !nix::unistd::Uid::effective().is_root() {
        assert!(
            !lab_required(),
            "AUTONOMY_LAB_REQUIRE=1 but a full repository needs root to mount a tmpfs"
        );
        eprintln!("SKIP repository_write_errors_name_their_cause: not root (a tmpfs cannot be mounted)");
        return;
    }
    let Some(lab) = Lab::start_or_skip("faults-full") else {
        return;
    };
    let mut db = sql::connect(&lab.url());
    load_big_table(&mut db, 16);
    let small = Tmpfs::mount(&lab.scratch.path().join("small"), "2m").expect("a 2 MB tmpfs mounts");
    let mut spec = lab.node_spec("faults-full", false);
    spec.backup_dir = small.0.join("backups");
    let node = Node::start_leader(spec).unwrap_or_else(|e| panic!("{e}"));
    let cli = Cli::for_server(&node.url);

    let full = cli.run(&["ha", "backup", "create"]);
    assert_eq!(full.exit_code, Some(8), "{full}");
    assert!(full.stderr.contains("No space left on device"), "{full}");
    assert!(!full.stderr.contains("SIGPIPE"), "{full}");
    let (status, _, body) = http(
        "POST",
        &format!("{}/v1/ha/backups", node.url),
        Some(&bearer()),
        Some(b"{}".to_vec()),
    );
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("\"code\":\"repository_io\"") && body.contains("No space left on device"),
        "{body}"
    );
    assert_eq!(
        partial_archives(&small.0.join("backups")),
        Vec::<String>::new(),
        "a partial archive is left"
    );
    let listed = cli.run(&["ha", "backup", "list"]);
    assert!(
        !listed.stdout.contains("status=running") && !listed.stdout.contains("status=completed"),
        "{listed}"
    );
    drop(node);

    // An immutable repository directory: EPERM, named.
    db.batch_execute("DROP TABLE big").expect("the big table goes");
    let mut spec = lab.node_spec("faults-full-2", false);
    spec.backup_dir = lab.scratch.path().join("immutable");
    let node = Node::start_leader(spec.clone()).unwrap_or_else(|e| panic!("{e}"));
    let cli = Cli::for_server(&node.url);
    {
        let _immutable = Immutable::set(&spec.backup_dir);
        let refused = cli.run(&["ha", "backup", "create"]);
        assert_eq!(refused.exit_code, Some(8), "{refused}");
        assert!(
            refused.stderr.contains("Operation not permitted") && refused.stderr.contains("repository I/O"),
            "{refused}"
        );
    }
    let created = cli.run(&["ha", "backup", "create"]);
    assert!(created.success(), "{created}");
}

// ---------------------------------------------------------------------------------------------
// Defects 8, 9 and 10, and the API's minor findings
// ---------------------------------------------------------------------------------------------

#[test]
fn the_api_stores_only_what_it_can_read_and_every_answer_is_bounded() {
    let Some(lab) = Lab::start_or_skip("faults-api") else {
        return;
    };
    let mut db = sql::connect(&lab.url());
    db.batch_execute(include_str!("../fixtures/val15.sql"))
        .expect("the fixture loads");
    let node = Node::start_leader(lab.node_spec("faults-api", false)).unwrap_or_else(|e| panic!("{e}"));
    let cli = Cli::for_server(&node.url);

    // Defect 8: a spec nested beyond what can be read back is refused, and listing still works.
    let mut spec = serde_json::json!({});
    for _ in 0..125 {
        spec = serde_json::json!({ "a": spec });
    }
    let body = serde_json::to_vec(&serde_json::json!({ "name": "deep", "spec": spec })).unwrap();
    let (status, _, answer) = http(
        "POST",
        &format!("{}/v1/rollouts", node.url),
        Some(&bearer()),
        Some(body),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer.contains("\"code\":\"invalid_spec\"") && answer.contains("levels deep"),
        "{answer}"
    );
    let listed = cli.run(&["rollout", "list"]);
    assert!(listed.success(), "{listed}");

    // Every error is {code, message} JSON: a body over the limit, a path that is not UTF-8, a
    // repeated query parameter, a wrong method, an unknown route.
    for (method, path, body, status) in [
        ("POST", "/v1/rollouts", Some(vec![b' '; 3 << 20]), 413),
        ("GET", "/v1/ha/backups/%FF", None, 400),
        ("GET", "/v1/audit/events?event_type=a&event_type=b", None, 400),
        ("GET", "/v1/ha/backups/bk-1/restore", None, 405),
        ("GET", "/v1/no-such-route", None, 404),
    ] {
        let (got, content_type, answer) = http(method, &format!("{}{path}", node.url), Some(&bearer()), body);
        assert_eq!(got, status, "{method} {path}: {answer}");
        assert!(
            content_type.starts_with("application/json"),
            "{method} {path}: {content_type} {answer}"
        );
        let error: serde_json::Value =
            serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{method} {path}: {e}: {answer}"));
        assert!(
            error["code"].is_string() && error["message"].is_string(),
            "{method} {path}: {answer}"
        );
    }

    // The auth scheme is case-insensitive (RFC 9110); the token is not.
    let (status, _, answer) = http(
        "GET",
        &format!("{}/v1/ha/status", node.url),
        Some(&format!("bearer {LAB_TOKEN}")),
        None,
    );
    assert_eq!(status, 200, "{answer}");
    let (status, _, _) = http(
        "GET",
        &format!("{}/v1/ha/status", node.url),
        Some(&format!("bearer {}", LAB_TOKEN.to_uppercase())),
        None,
    );
    assert_eq!(status, 401);

    // Files holding the database's data are private.
    let created = cli.run(&["ha", "backup", "create"]);
    assert!(created.success(), "{created}");
    let id = created.field("backup_id").expect("a backup id");
    let backups = lab.scratch.path().join("backups");
    assert_eq!(mode(&backups), 0o700, "the backup directory");
    assert_eq!(mode(&lab.archive_path(&id)), 0o600, "the archive");
    assert_eq!(mode(&backups.join(format!("{id}.json"))), 0o600, "the manifest");
    assert_eq!(mode(&lab.audit_dir()), 0o700, "the audit directory");
    assert_eq!(mode(&lab.audit_dir().join("faults-api.jsonl")), 0o600, "the audit file");

    // Defect 10: one damaged line (a UTF-8 sequence cut short) hides nothing else.
    let audit_file = lab.audit_dir().join("faults-api.jsonl");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&audit_file)
        .unwrap()
        .write_all(b"{\"id\": \"ev-\xe2\x82\n")
        .unwrap();
    let created = cli.run(&["ha", "backup", "create"]);
    assert!(created.success(), "{created}");
    let (status, _, answer) = http("GET", &format!("{}/v1/audit/events", node.url), Some(&bearer()), None);
    assert_eq!(status, 200, "{answer}");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&answer).unwrap();
    assert!(
        listed.iter().filter(|e| e["type"] == "ha.backup.created").count() >= 2,
        "{answer}"
    );
    let audit_dir = lab.audit_dir();
    let queried = cli.run(&[
        "audit",
        "query",
        "--event-type",
        "ha.backup.created",
        "--audit-dir",
        audit_dir.to_str().unwrap(),
    ]);
    assert!(queried.success(), "{queried}");
    assert!(
        queried.stderr.contains("faults-api.jsonl") && queried.stderr.contains("line"),
        "{queried}"
    );
    assert_eq!(queried.stdout.lines().count(), 2, "{queried}");

    // A second process with the same --node-id says so, in its status and the audit.
    let mut twin = lab.node_spec("faults-api", false);
    twin.log_path = lab.scratch.path().join("faults-api-twin.log");
    let twin = Node::start(twin).unwrap_or_else(|e| panic!("{e}"));
    let twin_cli = Cli::for_server(&twin.url);
    wait_until("the twin's warning", Duration::from_secs(20), || {
        twin_cli
            .run(&["ha", "status"])
            .stdout
            .contains("\nwarning another process holds the leader lease under this node's id")
    });
    assert!(!events(&lab.audit_dir(), "ha.node.duplicate_id").is_empty());
    drop(twin);

    // Defect 9: a frozen node never holds the CLI: every call has a deadline, exit 3.
    {
        let _frozen = Frozen::freeze(&node);
        let status = cli.run_within(&["ha", "status"], Duration::from_secs(60));
        assert_eq!(status.exit_code, Some(3), "{status}");
        assert!(
            status.stderr.contains("within 5 s") && status.stderr.contains("GET /v1/ha/status"),
            "{status}"
        );
        assert!(status.elapsed_ms < 30_000, "{status}");
        let listed = cli.run_within(&["--timeout", "2", "rollout", "list"], Duration::from_secs(60));
        assert_eq!(listed.exit_code, Some(3), "{listed}");
        assert!(
            listed.stderr.contains("within 2 s") && listed.stderr.contains("GET /v1/rollouts"),
            "{listed}"
        );
    }
    let status = cli.run(&["ha", "status"]);
    assert!(status.success(), "{status}");
}

// ---------------------------------------------------------------------------------------------
// Offline bad input: refused with exit 2 (or 3) before anything is touched
// ---------------------------------------------------------------------------------------------

/// A well-formed URL no server answers: a start that got past validation would fail on it.
const UNREACHABLE_DB: &str = "postgresql://127.0.0.1:1/x";

#[rstest::rstest]
#[case::negative_number(&[UNREACHABLE_DB, "--lease-ttl-ms", "-5"], None, "invalid value '-5' for '--lease-ttl-ms")]
#[case::empty_database_url(&[""], None, "--database-url is not a valid PostgreSQL URL: it is empty")]
#[case::token_of_spaces(&[UNREACHABLE_DB], Some("                "), "the API token has a space at character 1")]
#[case::token_with_control_character(&[UNREACHABLE_DB], Some("abcdefgh\u{1}ijklmnop"), "a control character at character 9")]
fn serve_refuses_bad_values_with_exit_2(#[case] extra: &[&str], #[case] token: Option<&str>, #[case] says: &str) {
    let scratch = tempfile::tempdir().expect("a scratch dir");
    let backups = scratch.path().join("backups");
    let mut args = vec![
        "ha",
        "serve",
        "--node-id",
        "x",
        "--backup-dir",
        backups.to_str().unwrap(),
        "--database-url",
    ];
    args.extend_from_slice(extra);
    let cli = Cli::for_server("http://127.0.0.1:1").with_token(Some(token.unwrap_or(LAB_TOKEN)));
    let run = cli.run_within(&args, Duration::from_secs(60));
    assert_eq!(run.exit_code, Some(2), "{run}");
    assert!(run.stderr.contains(says), "expected `{says}`:\n{run}");
    assert!(!backups.exists(), "a refused start created its backup directory");
}

#[test]
fn paths_that_do_not_exist_are_errors_not_new_or_empty_stores() {
    let scratch = tempfile::tempdir().expect("a scratch dir");
    let typo = scratch.path().join("no-such-parent").join("backups");
    let cli = Cli::for_server("http://127.0.0.1:1");
    let run = cli.run_within(
        &[
            "ha",
            "serve",
            "--node-id",
            "x",
            "--database-url",
            "postgresql://127.0.0.1:1/x",
            "--backup-dir",
            typo.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.exit_code, Some(2), "{run}");
    assert!(
        run.stderr.contains("parent directory") && run.stderr.contains("--backup-dir"),
        "{run}"
    );
    assert!(
        !scratch.path().join("no-such-parent").exists(),
        "the mistyped tree was created"
    );

    let missing = scratch.path().join("audit-typo");
    let run = cli.run_within(
        &["audit", "query", "--audit-dir", missing.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert_eq!(run.exit_code, Some(2), "{run}");
    assert!(run.stderr.contains("no audit store"), "{run}");
}

#[test]
fn a_server_url_with_userinfo_is_never_echoed() {
    let run = Cli::for_server("http://admin:s3cret@127.0.0.1:1").run_within(&["ha", "status"], Duration::from_secs(60));
    assert_eq!(run.exit_code, Some(3), "{run}");
    assert!(run.stderr.contains("http://***@127.0.0.1:1"), "{run}");
    assert!(
        !run.stderr.contains("s3cret") && !run.stdout.contains("s3cret"),
        "{run}"
    );
}
