//! Schedules on real nodes: every slot of a short-interval backup schedule runs exactly once
//! across a SIGKILL failover and a quorum loss (counted from the slot table, the inventory and
//! the audit); a slot missed while no leader existed runs once when one appears and older ones
//! are reported; retention runs after each scheduled backup; a scheduled drill proves the newest
//! backup (in the directory and on S3), and a slot that finds the node busy is recorded as skipped.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use autonomy_lab as common;
use common::{cli::Cli, lab::Lab, node::Node, run::wait_until};
use time::OffsetDateTime;

/// Every two seconds, seconds first: short enough to see many slots in a test.
const EVERY_TWO_SECONDS: &str = "*/2 * * * * *";

/// One row of `autonomy_ha.schedule_slots`.
#[derive(Debug, Clone)]
struct Slot {
    slot_at: OffsetDateTime,
    state: String,
    attempt: i32,
    node_id: String,
    epoch: i64,
    backup_id: Option<String>,
    detail: Option<String>,
}

/// The recorded slots of `kind`, oldest first.
fn slots(url: &str, kind: &str) -> Vec<Slot> {
    let mut db = common::sql::connect(url);
    db.query(
        "SELECT slot_at, state, attempt, node_id, epoch, backup_id, detail
           FROM autonomy_ha.schedule_slots WHERE kind = $1 ORDER BY slot_at",
        &[&kind],
    )
    .expect("the slot table reads")
    .iter()
    .map(|row| Slot {
        slot_at: row.get(0),
        state: row.get(1),
        attempt: row.get(2),
        node_id: row.get(3),
        epoch: row.get(4),
        backup_id: row.get(5),
        detail: row.get(6),
    })
    .collect()
}

/// Waits until `enough` holds of the recorded slots of `kind`; panics naming `what` and the slots.
#[track_caller]
fn wait_for_slots(url: &str, kind: &str, what: &str, limit: Duration, enough: impl Fn(&[Slot]) -> bool) -> Vec<Slot> {
    let found = wait_until(limit, || {
        // The database may be restarting: a refused connection is "not yet".
        let found = std::panic::catch_unwind(|| slots(url, kind)).ok()?;
        enough(&found).then_some(found)
    });
    match found {
        Some((found, _)) => found,
        None => panic!(
            "{what}: not seen within {limit:?}; slots now:\n{:#?}",
            std::panic::catch_unwind(|| slots(url, kind)).unwrap_or_default()
        ),
    }
}

fn succeeded_by(slots: &[Slot], node: &str) -> usize {
    slots
        .iter()
        .filter(|s| s.state == "succeeded" && s.node_id == node)
        .count()
}

/// The completed backups in the inventory.
fn completed_backups(url: &str) -> BTreeSet<String> {
    let mut db = common::sql::connect(url);
    db.query(
        "SELECT backup_id FROM autonomy_ha.backup_inventory WHERE status = 'completed'",
        &[],
    )
    .expect("the inventory reads")
    .iter()
    .map(|row| row.get(0))
    .collect()
}

/// Every audit event of `event_type` in the lab's audit directory (all nodes' files).
fn audited(lab: &Lab, event_type: &str) -> Vec<serde_json::Value> {
    let dir = lab.audit_dir();
    let run = Cli::for_server("http://127.0.0.1:1").run_ok(&[
        "--output",
        "json",
        "audit",
        "query",
        "--event-type",
        event_type,
        "--audit-dir",
        dir.to_str().expect("a UTF-8 path"),
    ]);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("the audit is JSON ({e}):\n{run}"))
}

/// A node of the lab with the schedule flags `schedule`.
fn scheduled_node(lab: &Lab, node_id: &str, schedule: &[&str]) -> common::node::NodeSpec {
    let mut spec = lab.node_spec(node_id, false);
    spec.extra_args.extend(schedule.iter().map(|arg| (*arg).to_owned()));
    spec
}

#[test]
fn every_slot_runs_exactly_once_across_a_sigkill_failover_and_a_quorum_loss() {
    let mut lab = common::or_skip!(Lab::start_or_skip("schedule-once"));
    let _db = lab.load(common::lab::VAL15_SQL);
    let url = lab.url();
    // Retention keeps everything here, so the inventory still holds every scheduled backup.
    let flags = [
        "--backup-schedule",
        EVERY_TWO_SECONDS,
        "--schedule-grace-s",
        "60",
        "--retain-min",
        "1000",
    ];
    let n1 = Node::start_leader(scheduled_node(&lab, "sch-n1", &flags)).unwrap_or_else(|e| panic!("{e}"));
    let n2 = Node::start(scheduled_node(&lab, "sch-n2", &flags)).unwrap_or_else(|e| panic!("{e}"));
    // SIGKILL in the middle of a slot's backup: the successor takes the slot over (or credits
    // it, if the backup completed first) and goes on with the next slots.
    let killed = wait_for_slots(
        &url,
        "backup",
        "a fourth slot running on the first leader",
        Duration::from_secs(60),
        |s| succeeded_by(s, "sch-n1") >= 3 && s.last().is_some_and(|l| l.state == "running"),
    );
    n1.signal(nix::sys::signal::Signal::SIGKILL);
    let killed = killed.last().expect("a running slot").slot_at;
    n2.wait_for_role("leader", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    wait_for_slots(
        &url,
        "backup",
        "three slots run by the successor",
        Duration::from_secs(60),
        |s| succeeded_by(s, "sch-n2") >= 3,
    );

    // Quorum loss: the database goes away for a few slots, then comes back.
    let before_outage = slots(&url, "backup").last().map(|s| s.epoch).unwrap_or_default();
    lab.pg.stop_abruptly().expect("PostgreSQL stops");
    std::thread::sleep(Duration::from_secs(7));
    lab.pg.start_again().expect("PostgreSQL starts again");
    n2.wait_for_role("leader", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    wait_for_slots(
        &url,
        "backup",
        "two slots run after the outage",
        Duration::from_secs(60),
        |s| {
            s.iter()
                .filter(|s| s.state == "succeeded" && s.epoch > before_outage)
                .count()
                >= 2
        },
    );
    let _ = n2.stop();
    drop(n1);

    let recorded = slots(&url, "backup");
    // No slot silently skipped: from the first to the last, every two seconds has its row.
    for pair in recorded.windows(2) {
        assert_eq!(
            pair[1].slot_at - pair[0].slot_at,
            time::Duration::seconds(2),
            "a slot between {:?} and {:?} has no record:\n{recorded:#?}",
            pair[0].slot_at,
            pair[1].slot_at
        );
    }
    // Each slot ran at most once: its backup, if it made one, is the only one it made.
    let credited: Vec<&String> = recorded
        .iter()
        .filter(|s| s.state == "succeeded")
        .filter_map(|s| s.backup_id.as_ref())
        .collect();
    let completed = completed_backups(&url);
    assert_eq!(
        credited.iter().map(|id| (*id).clone()).collect::<BTreeSet<_>>(),
        completed,
        "the completed backups are not exactly those of the succeeded slots:\n{recorded:#?}"
    );
    assert_eq!(credited.len(), completed.len(), "a backup is credited to two slots");
    // The audit agrees: one ha.backup.created per completed backup, and no slot started twice
    // in the same attempt or more often than it was claimed.
    let created: Vec<String> = audited(&lab, "ha.backup.created")
        .iter()
        .filter_map(|e| e["details"]["backup_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        created.iter().cloned().collect::<BTreeSet<_>>(),
        completed,
        "the audit's created backups differ from the inventory's"
    );
    assert_eq!(created.len(), completed.len(), "a backup was audited as created twice");
    let mut starts: BTreeMap<(String, i64), usize> = BTreeMap::new();
    for event in audited(&lab, "ha.schedule.slot_started") {
        let details = &event["details"];
        let key = (
            details["slot"].as_str().unwrap_or_default().to_owned(),
            details["attempt"].as_i64().unwrap_or_default(),
        );
        *starts.entry(key).or_default() += 1;
    }
    assert!(
        starts.values().all(|count| *count == 1),
        "an attempt of a slot was started twice: {starts:?}"
    );
    let ran = recorded.iter().filter(|s| s.state != "missed").count();
    let started_slots: BTreeSet<&String> = starts.keys().map(|(slot, _)| slot).collect();
    assert_eq!(
        started_slots.len(),
        ran,
        "slots started (audit) and slots run (table) differ"
    );
    // The run spanned both faults: three epochs claimed slots, and the outage left its slots
    // missed with a reason, or a successor ran the newest of them.
    let epochs: BTreeSet<i64> = recorded.iter().map(|s| s.epoch).collect();
    assert!(
        epochs.len() >= 3,
        "slots were claimed at epochs {epochs:?}:\n{recorded:#?}"
    );
    for slot in recorded.iter().filter(|s| s.state == "missed") {
        assert!(
            slot.detail
                .as_deref()
                .is_some_and(|d| d.contains("newer slot") || d.contains("grace")),
            "a missed slot without its reason: {slot:?}"
        );
    }
    assert!(
        recorded[..recorded.len() - 1].iter().all(|s| s.state != "running"),
        "a slot other than the last is still running:\n{recorded:#?}"
    );
    assert!(recorded.iter().all(|s| s.attempt <= 2), "{recorded:#?}");
    // The slot the kill interrupted was settled by the successor: run again, or credited with
    // the backup that had completed.
    let interrupted = recorded
        .iter()
        .find(|s| s.slot_at == killed)
        .expect("the killed slot's row");
    assert!(
        (interrupted.attempt == 2 && interrupted.node_id == "sch-n2")
            || interrupted
                .detail
                .as_deref()
                .is_some_and(|d| d.contains("after its backup completed")),
        "the slot running at the kill was not settled: {interrupted:?}"
    );
}

#[test]
fn a_missed_slot_runs_once_when_a_leader_appears_older_ones_are_reported_and_retention_follows_each_backup() {
    let lab = common::or_skip!(Lab::start_or_skip("schedule-catch-up"));
    let _db = lab.load(common::lab::VAL15_SQL);
    let url = lab.url();
    let flags = [
        "--backup-schedule",
        EVERY_TWO_SECONDS,
        "--schedule-grace-s",
        "3",
        "--retain-daily",
        "1",
        "--retain-weekly",
        "0",
        "--retain-monthly",
        "0",
        "--retain-min",
        "2",
    ];
    let spec = scheduled_node(&lab, "catch-n1", &flags);
    let node = Node::start_leader(spec.clone()).unwrap_or_else(|e| panic!("{e}"));
    let before = wait_for_slots(&url, "backup", "three slots run", Duration::from_secs(60), |s| {
        s.iter().filter(|s| s.state == "succeeded").count() >= 3
    });
    let _ = node.stop();
    let last_recorded = slots(&url, "backup").last().map(|s| s.slot_at).expect("a slot");

    // Nine seconds without a leader: four slots or more pass unrun.
    std::thread::sleep(Duration::from_secs(9));
    let restarted_at = OffsetDateTime::now_utc();
    let node = Node::start_leader(spec).unwrap_or_else(|e| panic!("{e}"));
    let after = wait_for_slots(&url, "backup", "the catch-up", Duration::from_secs(30), |s| {
        s.iter()
            .any(|s| s.slot_at > last_recorded && s.slot_at <= restarted_at && s.state != "missed")
    });
    let gap: Vec<&Slot> = after
        .iter()
        .filter(|s| s.slot_at > last_recorded && s.slot_at <= restarted_at)
        .collect();
    assert!(gap.len() >= 4, "the outage held {} slots:\n{after:#?}", gap.len());
    let run: Vec<&&Slot> = gap.iter().filter(|s| s.state != "missed").collect();
    assert_eq!(run.len(), 1, "not exactly one missed slot ran:\n{gap:#?}");
    assert_eq!(
        run[0].slot_at,
        gap.last().unwrap().slot_at,
        "the slot caught up is not the newest"
    );
    let past_grace = gap
        .iter()
        .filter(|s| s.state == "missed" && s.detail.as_deref().is_some_and(|d| d.contains("grace (3 s)")))
        .count();
    assert!(
        past_grace >= 2,
        "the slots older than the grace are not reported as such:\n{gap:#?}"
    );

    // `ha schedule` names them, and the metric counts them.
    let cli = Cli::for_server(&node.url);
    let shown = cli.run_ok(&["ha", "schedule"]);
    assert!(
        shown.stdout.contains(&format!("expression=\"{EVERY_TWO_SECONDS}\"")),
        "{shown}"
    );
    assert!(
        shown.stdout.lines().any(|l| l.starts_with("last kind=backup")),
        "{shown}"
    );
    assert!(
        shown
            .stdout
            .lines()
            .filter(|l| l.starts_with("missed kind=backup"))
            .count()
            >= gap.len() - 1,
        "{shown}"
    );
    let (_, metrics) = common::prometheus::scrape(&node.url, Some(common::LAB_TOKEN));
    let missed_metric = metrics
        .lines()
        .find_map(|l| l.strip_prefix("autonomy_schedule_missed_slots_total "))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no missed-slot counter in:\n{metrics}"));
    assert!(
        missed_metric >= (gap.len() - 1) as f64,
        "{missed_metric} < {}",
        gap.len() - 1
    );

    // Retention ran after each scheduled backup: two are left, the others pruned and audited.
    wait_for_slots(
        &url,
        "backup",
        "a slot after the catch-up",
        Duration::from_secs(30),
        |s| s.iter().any(|s| s.slot_at > restarted_at && s.state == "succeeded"),
    );
    let _ = node.stop();
    assert_eq!(
        completed_backups(&url).len(),
        2,
        "retention did not keep exactly --retain-min 2"
    );
    let pruned = audited(&lab, "ha.backup.pruned").len();
    let ran_total = slots(&url, "backup").iter().filter(|s| s.state == "succeeded").count();
    assert!(
        pruned >= ran_total - 2 && ran_total > before.len(),
        "{pruned} pruned of {ran_total} scheduled backups"
    );
    assert!(
        slots(&url, "backup")
            .iter()
            .filter(|s| s.state == "succeeded")
            .all(|s| s.detail.as_deref().is_some_and(|d| d.starts_with("retention deleted"))),
        "a scheduled backup's slot does not say what retention did"
    );
}

#[derive(Debug, Clone, Copy)]
enum Store {
    Local,
    S3,
}

#[rstest::rstest]
fn a_scheduled_drill_proves_the_newest_backup_and_a_slot_finding_the_node_busy_is_skipped(
    #[values(Store::Local, Store::S3)] store: Store,
) {
    let label = format!("schedule-drill-{store:?}").to_lowercase();
    let lab = common::or_skip!(Lab::start_or_skip(&label));
    let server = match store {
        Store::S3 => Some(common::or_skip!(common::s3::S3Server::start_or_skip(
            &lab.scratch.path().join("s3"),
            &label
        ))),
        Store::Local => None,
    };
    let mut db = lab.load(common::lab::VAL15_SQL);
    common::sql::load_big_table(&mut db, 32);
    let url = lab.url();
    let mut spec = scheduled_node(&lab, "drill-n1", &["--verify-schedule", "* * * * * *"]);
    if let Some(server) = &server {
        spec = spec.with_s3(server, "sched/");
    }
    let node = Node::start_leader(spec).unwrap_or_else(|e| panic!("{e}"));
    // Nothing to verify yet: skipped, saying so.
    wait_for_slots(
        &url,
        "verify",
        "a slot skipped for want of a backup",
        Duration::from_secs(30),
        |s| {
            s.iter()
                .any(|s| s.state == "skipped" && s.detail.as_deref().is_some_and(|d| d.contains("no backup to verify")))
        },
    );
    // A backup takes seconds here: the slots that come meanwhile find the node busy.
    let cli = Cli::for_server(&node.url);
    let backup_id = cli
        .run_ok(&["ha", "backup", "create"])
        .field("backup_id")
        .expect("a backup id");
    let found = wait_for_slots(
        &url,
        "verify",
        "a scheduled drill proving the backup",
        Duration::from_secs(90),
        |s| {
            s.iter()
                .any(|s| s.state == "succeeded" && s.backup_id.as_deref() == Some(backup_id.as_str()))
        },
    );
    assert!(
        found.iter().any(|s| s.state == "skipped"
            && s.detail
                .as_deref()
                .is_some_and(|d| d.contains("was running on the leader"))),
        "no slot was skipped as busy:\n{found:#?}"
    );
    let listed = cli.run_ok(&["--output", "json", "ha", "backup", "list"]);
    assert!(
        listed.stdout.contains("\"last_verify_outcome\": \"proven\""),
        "the scheduled drill's outcome is not in the inventory:\n{listed}"
    );
    let finished = audited(&lab, "ha.schedule.slot_finished");
    assert!(
        finished
            .iter()
            .any(|e| e["details"]["kind"] == "verify" && e["details"]["outcome"] == "succeeded"),
        "no verify slot audited as succeeded"
    );
}
