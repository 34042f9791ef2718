//! The VAL15 slice: its seven phases against a real lab, the observations they record, and the
//! ten checks evaluated from those observations (seed 000).

use std::path::{Path, PathBuf};

use autonomy::evidence::{report::val15_outcome, writer::Bundle, Check, Outcome, Report};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::checks::{evaluate, opt, tf};
use crate::{
    backend::{PgBackend, LAB_DATABASE},
    cli::{Cli, CliRun},
    harness::connect_and_describe,
    harness::{guarded, Sabotage, Slice, SliceLab},
    node::{Node, NodeSpec},
    sql,
    sql::Fingerprint,
    store::LabStore,
};

pub const BACKUP_MS_THRESHOLD: u64 = 30_000;
pub const RESTORE_MS_THRESHOLD: u64 = 60_000;

/// Everything the phases saw; the checks are computed from this alone.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Observations {
    pub backup_a: Option<CliRun>,
    pub backup_a_id: Option<String>,
    pub archive_a_size: Option<u64>,
    pub archive_a_sha256: Option<String>,
    pub toc: Option<(bool, String)>,
    pub list_first: Option<CliRun>,
    pub fingerprint_before: Option<Fingerprint>,
    pub fingerprint_mutated: Option<Fingerprint>,
    pub no_confirm: Option<CliRun>,
    pub fingerprint_after_no_confirm: Option<Fingerprint>,
    pub restore: Option<CliRun>,
    /// small_count, medium_count, small_payload_ok, medium_payload_ok
    pub spot_check: Option<(i64, i64, bool, bool)>,
    pub fingerprint_after: Option<Fingerprint>,
    pub backup_b: Option<CliRun>,
    pub backup_b_id: Option<String>,
    pub list_multi: Option<CliRun>,
    pub audit_created: Option<usize>,
    pub audit_restored: Option<usize>,
    /// How many backups the first node created, counted in its log.
    #[serde(default)]
    pub backups_in_first_node_log: usize,
    /// Set when a phase could not go on; checks not reached fail with this reason.
    pub aborted: Option<String>,
}

crate::observed_with_aborted_field!(Observations);

/// VAL15, backup/restore validation.
pub struct Val15;

impl Slice for Val15 {
    crate::slice_identity!(
        "val15",
        "VAL 15 — Backup/Restore Validation",
        [WrongRestore, AlterArchive, BypassConfirm]
    );

    fn run(lab: SliceLab<'_>, obs: &mut Observations, report: &mut Report) -> Option<String> {
        let mut lab = Lab {
            pg: &*lab.pg,
            store: lab.store,
            bundle: lab.bundle,
            scratch: lab.scratch,
            sabotage: lab.sabotage,
            node_addr: None,
        };
        let aborted = guarded(|| lab.phases(obs, report));
        report.node = lab.node_addr.clone();
        obs.backups_in_first_node_log = std::fs::read_to_string(lab.bundle.path("val15-ha-server.log"))
            .unwrap_or_default()
            .matches("backup created")
            .count();
        aborted
    }

    fn summarize(obs: &Observations, report: &mut Report, bundle: &Bundle) {
        for (name, run) in [("backup_ms", &obs.backup_a), ("restore_ms", &obs.restore)] {
            if let Some(run) = run.as_ref().filter(|r| r.success()) {
                report.metrics.insert(name.into(), run.elapsed_ms.into());
            }
        }
        // The seed's assertion-result files, written from the evaluated checks.
        for (id, file) in [
            ("VAL15-03", "val15-03-metadata-check.txt"),
            ("VAL15-08", "val15-08-inventory-check.txt"),
        ] {
            if let Some(check) = report.check(id) {
                let value = check.value.as_deref().unwrap_or("-");
                let _ = bundle.write(
                    file,
                    format!("{id} {}={} value={value}\n{}\n", check.name, check.status, check.detail),
                );
            }
        }
    }

    /// The core checks decide PASS and FAIL; the rest can only make it PARTIAL.
    fn outcome(checks: &[Check]) -> Outcome {
        val15_outcome(checks)
    }
}

struct Lab<'a> {
    pg: &'a dyn PgBackend,
    store: LabStore,
    bundle: &'a Bundle,
    scratch: &'a Path,
    sabotage: Sabotage,
    node_addr: Option<String>,
}

impl Lab<'_> {
    fn write(&self, name: &str, body: impl AsRef<[u8]>) -> Result<(), String> {
        crate::harness::write_evidence(self.bundle, name, body)
    }

    fn node(&mut self, node_id: &str, maintenance_mode: bool, log: &str) -> Result<Node, String> {
        let node = Node::start_leader(self.store.node(NodeSpec {
            node_id: node_id.to_owned(),
            database_url: self.pg.url(LAB_DATABASE),
            backup_dir: self.scratch.join("backups"),
            audit_dir: self.scratch.join("audit"),
            maintenance_mode,
            log_path: self.bundle.path(log),
            extra_args: Vec::new(),
            listen: "127.0.0.1:0".into(),
            wrapper: Vec::new(),
            env: Vec::new(),
        }))?;
        self.node_addr.get_or_insert_with(|| format!("{node_id}@{}", node.url));
        Ok(node)
    }

    /// Copies an archive into the bundle's `backups/`, as the seed's evidence table lists.
    fn keep_archive(&self, archive: &Path, name: &str) -> Result<(), String> {
        let target = self.bundle.path("backups").join(name);
        std::fs::create_dir_all(self.bundle.path("backups")).map_err(|e| format!("create backups/: {e}"))?;
        std::fs::copy(archive, &target)
            .map(|_| ())
            .map_err(|e| format!("copy {} to {}: {e}", archive.display(), target.display()))
    }

    fn archive_path(&self, backup_id: &str) -> PathBuf {
        self.store.archive_path(backup_id)
    }

    fn phases(&mut self, obs: &mut Observations, report: &mut Report) -> Result<(), String> {
        // Phase 1: setup.
        let url = self.pg.url(LAB_DATABASE);
        let (mut db, setup) = connect_and_describe(self.pg, report)?;
        let load = sql::exec_transcript(&mut db, crate::lab::VAL15_SQL)?;
        let counts = sql::exec_transcript(
            &mut db,
            "SELECT (SELECT count(*) FROM val15_small) AS small, (SELECT count(*) FROM val15_medium) AS medium",
        )?;
        self.write(
            "val15-pg-setup.txt",
            format!("{setup}\n{}\n{load}", self.store.describe()),
        )?;
        self.write("val15-05-db-before.txt", counts)?;
        obs.fingerprint_before = Some(sql::fingerprint(&mut db));

        // Phase 2: backup with a node in normal mode.
        let first = self.node("cp-val15-node", false, "val15-ha-server.log")?;
        let cli = Cli::for_server(&first.url);
        let created = cli.run(&["ha", "backup", "create"]);
        self.write("val15-01-backup-create.txt", created.transcript())?;
        self.write(
            "val15-05-backup-timing.txt",
            format!("backup_ms={}\n", created.elapsed_ms),
        )?;
        let backup_a = created.field("backup_id");
        obs.backup_a = Some(created.clone());
        let backup_a = backup_a.ok_or_else(|| format!("backup create printed no backup_id:\n{created}"))?;
        obs.backup_a_id = Some(backup_a.clone());
        let archive = self.archive_path(&backup_a);
        let meta = std::fs::metadata(&archive).map_err(|e| format!("stat {}: {e}", archive.display()))?;
        obs.archive_a_size = Some(meta.len());
        self.write(
            "val15-01-backup-file-stat.txt",
            format!(
                "path={}\nsize_bytes={}\nis_file={}\n",
                archive.display(),
                meta.len(),
                meta.is_file()
            ),
        )?;
        if self.sabotage == Sabotage::AlterArchive {
            flip_a_byte(&archive)?;
        }

        // Phase 3: validate the archive independently of the CLI.
        let toc = std::process::Command::new("pg_restore")
            .arg("--list")
            .arg(&archive)
            .output()
            .map_err(|e| format!("run pg_restore --list: {e}"))?;
        let toc_text = format!(
            "{}{}",
            String::from_utf8_lossy(&toc.stdout),
            String::from_utf8_lossy(&toc.stderr)
        );
        self.write(
            "val15-02-backup-toc.txt",
            format!(
                "$ pg_restore --list {}\nexit={}\n{toc_text}",
                archive.display(),
                toc.status
            ),
        )?;
        obs.toc = Some((toc.status.success(), toc_text));
        let listed = cli.run(&["ha", "backup", "list", "--output", "json"]);
        self.write("val15-03-backup-list.txt", listed.transcript())?;
        obs.list_first = Some(listed);
        let sha = sha256_file(&archive)?;
        obs.archive_a_sha256 = Some(sha.clone());
        self.write(
            "val15-04-checksum-verify.txt",
            format!(
                "cli_checksum={}\nfile_checksum={sha}\n",
                obs.backup_a
                    .as_ref()
                    .and_then(|r| r.field("checksum"))
                    .unwrap_or_default()
            ),
        )?;
        self.keep_archive(&archive, "backup-val15-a.dump")?;
        drop(first);

        // Phase 4: mutate, restart in maintenance mode, check the gate, restore.
        let mutations = sql::exec_transcript(&mut db, include_str!("../../../../fixtures/val15-mutations.sql"))?;
        self.write("val15-06-post-backup-mutation.txt", mutations)?;
        obs.fingerprint_mutated = Some(sql::fingerprint(&mut db));
        let maint = self.node("cp-val15-maint", true, "val15-ha-server-maint.log")?;
        let cli = Cli::for_server(&maint.url);
        let gate_args: &[&str] = match self.sabotage {
            Sabotage::BypassConfirm => &["ha", "backup", "restore", &backup_a, "--confirm"],
            _ => &["ha", "backup", "restore", &backup_a],
        };
        let no_confirm = cli.run(gate_args);
        self.write("val15-09-restore-no-confirm.txt", no_confirm.transcript())?;
        obs.no_confirm = Some(no_confirm);
        db = sql::connect(&url); // a restore let through by the gate ends this session
        obs.fingerprint_after_no_confirm = Some(sql::fingerprint(&mut db));
        if obs.fingerprint_after_no_confirm != obs.fingerprint_mutated {
            // The gate let a restore through; put the mutations back so 06 tests the real restore.
            sql::exec_transcript(&mut db, include_str!("../../../../fixtures/val15-mutations.sql"))?;
        }
        let restore_id = match self.sabotage {
            Sabotage::WrongRestore => {
                let wrong = cli.run(&["ha", "backup", "create"]);
                wrong
                    .field("backup_id")
                    .ok_or_else(|| format!("sabotage backup failed:\n{wrong}"))?
            }
            _ => backup_a.clone(),
        };
        let restored = cli.run(&["ha", "backup", "restore", &restore_id, "--confirm"]);
        self.write("val15-06-restore.txt", restored.transcript())?;
        self.write(
            "val15-07-restore-timing.txt",
            format!("restore_ms={}\n", restored.elapsed_ms),
        )?;
        obs.restore = Some(restored);
        db = sql::connect(&url); // the restore ends other sessions, this one included
        let after = sql::exec_transcript(
            &mut db,
            "SELECT (SELECT count(*) FROM val15_small) AS small, (SELECT count(*) FROM val15_medium) AS medium",
        )
        .unwrap_or_else(|e| e);
        self.write("val15-06-db-after-restore.txt", after)?;
        let spot = db
            .query_one(
                "SELECT (SELECT COUNT(*) FROM val15_small)::bigint, (SELECT COUNT(*) FROM val15_medium)::bigint,
                        coalesce((SELECT LEFT(payload, 1) FROM val15_small WHERE id = 1) = 's', false),
                        coalesce((SELECT LEFT(payload, 1) FROM val15_medium WHERE id = 1) = 'm', false)",
                &[],
            )
            .map_err(|e| format!("spot check query: {e}"))?;
        let spot = (spot.get(0), spot.get(1), spot.get(2), spot.get(3));
        self.write(
            "val15-06-data-check.txt",
            format!("{}|{}|{}|{}\n", spot.0, spot.1, tf(spot.2), tf(spot.3)),
        )?;
        obs.spot_check = Some(spot);
        let fingerprint_after = sql::fingerprint(&mut db);
        let diff = obs
            .fingerprint_before
            .as_ref()
            .map(|b| b.diff(&fingerprint_after))
            .unwrap_or_default();
        self.write(
            "val15-06-integrity-result.txt",
            format!(
                "restore_correct={} small={} medium={}\nfingerprint_before={}\nfingerprint_after={}\ndifferences:\n{}\n",
                spot == (100, 1000, true, true) && diff.is_empty(),
                spot.0,
                spot.1,
                obs.fingerprint_before.as_ref().map_or("-", |f| f.digest.as_str()),
                fingerprint_after.digest,
                if diff.is_empty() { "none".to_owned() } else { diff.join("\n") }
            ),
        )?;
        obs.fingerprint_after = Some(fingerprint_after);
        drop(maint);

        // Phase 5: a second backup with a node back in normal mode.
        let post = self.node("cp-val15-post", false, "val15-ha-server-post.log")?;
        let cli = Cli::for_server(&post.url);
        let second = cli.run(&["ha", "backup", "create"]);
        self.write("val15-08-backup-create-2.txt", second.transcript())?;
        obs.backup_b_id = second.field("backup_id");
        if let Some(id) = &obs.backup_b_id {
            self.keep_archive(&self.archive_path(id), "backup-val15-b.dump")?;
        }
        obs.backup_b = Some(second);
        let listed = cli.run(&["ha", "backup", "list", "--output", "json"]);
        self.write("val15-08-backup-list-multi.txt", listed.transcript())?;
        obs.list_multi = Some(listed);
        drop(post);

        // Phase 7: the audit store (phase 6, the error path, ran in phase 4 against a node that
        // would otherwise restore, so only the --confirm gate can have refused).
        let audit_dir = self.scratch.join("audit");
        let audit_dir = audit_dir.to_str().ok_or("audit dir is not UTF-8")?;
        for (event, file, slot) in [
            (
                "ha.backup.created",
                "val15-10-audit-backup-created.json",
                &mut obs.audit_created,
            ),
            (
                "ha.backup.restored",
                "val15-10-audit-backup-restored.json",
                &mut obs.audit_restored,
            ),
        ] {
            let run = cli.run(&[
                "audit",
                "query",
                "--event-type",
                event,
                "--output",
                "json",
                "--audit-dir",
                audit_dir,
            ]);
            self.write(file, &run.stdout)?;
            *slot = serde_json::from_str::<Vec<serde_json::Value>>(&run.stdout)
                .ok()
                .map(|events| events.len());
        }
        self.write(
            "val15-10-audit-check.txt",
            format!(
                "created_events={}\nrestored_events={}\n",
                opt(&obs.audit_created),
                opt(&obs.audit_restored)
            ),
        )?;
        Ok(())
    }
}

fn sha256_file(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

fn flip_a_byte(path: &Path) -> Result<(), String> {
    let mut bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(path, bytes).map_err(|e| e.to_string())
}
