//! Schedules on real nodes: every slot runs exactly once across a SIGKILL failover and a quorum
//! loss (counted from the slot table, the inventory and the audit); slots missed while no
//! leader existed are caught up once or reported; retention follows each scheduled backup; a
//! scheduled drill proves the newest backup (directory and S3) and a busy slot is skipped.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use autonomy_lab as common;
use common::{cli::Cli, lab::Lab, node::Node};
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

impl Slot {
    fn says(&self, text: &str) -> bool {
        self.detail.as_deref().is_some_and(|d| d.contains(text))
    }
}

/// The recorded slots of `kind`, oldest first.
fn slots(db: &mut postgres::Client, kind: &str) -> Result<Vec<Slot>, postgres::Error> {
    let rows = db.query(
        "SELECT slot_at, state, attempt, node_id, epoch, backup_id, detail
           FROM autonomy_ha.schedule_slots WHERE kind = $1 ORDER BY slot_at",
        &[&kind],
    )?;
    Ok(rows
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
        .collect())
}

/// Reads the slot table every 200 ms on one session (opened again while the database is
/// away) until `enough` holds; panics naming `what` and the last slots seen.
#[track_caller]
fn wait_for_slots(url: &str, kind: &str, what: &str, limit: Duration, enough: impl Fn(&[Slot]) -> bool) -> Vec<Slot> {
    let deadline = Instant::now() + limit;
    let mut db: Option<postgres::Client> = None;
    let mut seen = Vec::new();
    loop {
        if db.as_ref().is_none_or(postgres::Client::is_closed) {
            db = postgres::Client::connect(url, postgres::NoTls).ok();
        }
        if let Some(found) = db.as_mut().and_then(|db| slots(db, kind).ok()) {
            if enough(&found) {
                return found;
            }
            seen = found;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not seen within {limit:?}; last slots seen:\n{seen:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn recorded(url: &str, kind: &str) -> Vec<Slot> {
    slots(&mut common::sql::connect(url), kind).expect("the slot table reads")
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
    let before_kill = wait_for_slots(
        &url,
        "backup",
        "a fourth slot running on n1",
        Duration::from_secs(60),
        |s| succeeded_by(s, "sch-n1") >= 3 && s.last().is_some_and(|l| l.state == "running"),
    );
    n1.signal(nix::sys::signal::Signal::SIGKILL);
    let killed = before_kill.last().expect("a running slot").slot_at;
    n2.wait_for_role("leader", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    wait_for_slots(&url, "backup", "three slots run by n2", Duration::from_secs(60), |s| {
        succeeded_by(s, "sch-n2") >= 3
    });

    // Quorum loss: the database is away for three slots' time, then back.
    let before_outage = recorded(&url, "backup").last().map(|s| s.epoch).unwrap_or_default();
    lab.pg.stop_abruptly().expect("PostgreSQL stops");
    let outage = Duration::from_secs(7);
    std::thread::sleep(outage); // the fault's length, not a wait for something to happen
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

    let slots = recorded(&url, "backup");
    assert_every_slot_recorded_once(&slots, &completed_backups(&url));
    assert_the_audit_agrees(&lab, &slots, &completed_backups(&url));
    // The run spanned both faults: three epochs claimed slots, and what the outage missed
    // says why.
    let epochs: BTreeSet<i64> = slots.iter().map(|s| s.epoch).collect();
    assert!(
        epochs.len() >= 3,
        "slots were claimed at epochs {epochs:?}:\n{slots:#?}"
    );
    for slot in slots.iter().filter(|s| s.state == "missed") {
        assert!(
            slot.says("newer slot") || slot.says("grace"),
            "a missed slot without its reason: {slot:?}"
        );
    }
    // The slot running at the kill was settled by the successor: run again, or credited with
    // the backup that had completed (or it had finished on n1 just before the signal).
    let interrupted = slots
        .iter()
        .find(|s| s.slot_at == killed)
        .expect("the killed slot's row");
    assert!(
        (interrupted.attempt == 2 && interrupted.node_id == "sch-n2")
            || interrupted.says("after its backup completed")
            || (interrupted.state == "succeeded" && interrupted.node_id == "sch-n1"),
        "the slot running at the kill was not settled: {interrupted:?}"
    );
}

/// From the first slot to the last, every two seconds has exactly one row, none but the last
/// is still running, and the completed backups are exactly those the slots made, each once.
#[track_caller]
fn assert_every_slot_recorded_once(slots: &[Slot], completed: &BTreeSet<String>) {
    for pair in slots.windows(2) {
        assert_eq!(
            pair[1].slot_at - pair[0].slot_at,
            time::Duration::seconds(2),
            "a slot between {:?} and {:?} has no record:\n{slots:#?}",
            pair[0].slot_at,
            pair[1].slot_at
        );
    }
    let (last, earlier) = slots.split_last().expect("slots were recorded");
    assert!(
        earlier.iter().all(|s| s.state != "running"),
        "a slot other than the last is still running:\n{slots:#?}"
    );
    assert!(slots.iter().all(|s| s.attempt <= 2), "{slots:#?}");
    // The node stopped mid-slot: the last slot's backup may have completed unrecorded.
    let unfinished = (last.state == "running").then_some(last.backup_id.as_ref()).flatten();
    let credited: Vec<&String> = slots
        .iter()
        .filter(|s| s.state == "succeeded")
        .filter_map(|s| s.backup_id.as_ref())
        .collect();
    let made: BTreeSet<String> = credited.iter().map(|id| (*id).clone()).collect();
    let completed_by_slots: BTreeSet<String> = completed.iter().filter(|id| Some(*id) != unfinished).cloned().collect();
    assert_eq!(
        made, completed_by_slots,
        "the completed backups are not exactly those of the succeeded slots:\n{slots:#?}"
    );
    assert_eq!(credited.len(), made.len(), "a backup is credited to two slots");
}

/// The audit tells the same story: one `ha.backup.created` per completed backup, and each
/// attempt of each slot started once.
#[track_caller]
fn assert_the_audit_agrees(lab: &Lab, slots: &[Slot], completed: &BTreeSet<String>) {
    let created: Vec<String> = audited(lab, "ha.backup.created")
        .iter()
        .filter_map(|e| e["details"]["backup_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        &created.iter().cloned().collect::<BTreeSet<_>>(),
        completed,
        "the audit's created backups differ from the inventory's"
    );
    assert_eq!(created.len(), completed.len(), "a backup was audited as created twice");
    let mut starts: BTreeMap<(String, i64), usize> = BTreeMap::new();
    for event in audited(lab, "ha.schedule.slot_started") {
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
    let started_slots: BTreeSet<&String> = starts.keys().map(|(slot, _)| slot).collect();
    let ran = slots.iter().filter(|s| s.state != "missed").count();
    assert_eq!(
        started_slots.len(),
        ran,
        "slots started (audit) and slots run (table) differ"
    );
}

/// A cron expression naming the seconds `offsets` after `t` (within the minute each falls in,
/// every minute: the test ends before any comes round again).
fn seconds_after(t: OffsetDateTime, offsets: &[i64]) -> String {
    let seconds: Vec<String> = offsets
        .iter()
        .map(|offset| (t + time::Duration::seconds(*offset)).second().to_string())
        .collect();
    format!("{} * * * * *", seconds.join(","))
}

/// Waits until the wall clock passes `at`.
fn wait_until_time(at: OffsetDateTime) {
    let left = at - OffsetDateTime::now_utc();
    if left.is_positive() {
        std::thread::sleep(left.unsigned_abs());
    }
}

#[test]
fn slots_missed_without_a_leader_run_once_or_are_reported_and_retention_follows_each_backup() {
    let lab = common::or_skip!(Lab::start_or_skip("schedule-catch-up"));
    let _db = lab.load(common::lab::VAL15_SQL);
    let url = lab.url();
    // Two manual backups first (on a node without schedules), so retention has something to
    // delete after each scheduled one.
    let manual = lab.leader("catch-n0", false);
    for _ in 0..2 {
        Cli::for_server(&manual.url).run_ok(&["ha", "backup", "create"]);
    }
    let _ = manual.stop();

    // Slots at t+15 (run while the node is up), then, with no leader, t+25 and t+27 (older than
    // the 15 s grace when it returns at t+49), t+45 (superseded) and t+47 (caught up). Each
    // comes round again a minute later, after the test.
    let t = OffsetDateTime::now_utc();
    let expression = seconds_after(t, &[15, 25, 27, 45, 47]);
    let flags = ["--backup-schedule", expression.as_str(), "--schedule-grace-s", "15"];
    let spec = scheduled_node(&lab, "catch-n1", &flags).retaining_today_and(2);
    let node = Node::start_leader(spec.clone()).unwrap_or_else(|e| panic!("{e}"));
    let first = wait_for_slots(&url, "backup", "the slot at t+15", Duration::from_secs(40), |s| {
        s.iter().any(|s| s.state == "succeeded")
    });
    let _ = node.stop();
    assert_eq!(first.len(), 1, "{first:#?}");
    assert_eq!(
        first[0].slot_at.second(),
        (t + time::Duration::seconds(15)).second(),
        "{first:#?}"
    );

    wait_until_time(t + time::Duration::seconds(49));
    let node = Node::start_leader(spec).unwrap_or_else(|e| panic!("{e}"));
    let slots = wait_for_slots(&url, "backup", "the catch-up", Duration::from_secs(20), |s| {
        s.len() == 5 && s.iter().all(|s| s.state != "running")
    });
    let states: Vec<&str> = slots.iter().map(|s| s.state.as_str()).collect();
    assert_eq!(
        states,
        ["succeeded", "missed", "missed", "missed", "succeeded"],
        "{slots:#?}"
    );
    assert!(
        slots[1].says("grace (15 s)") && slots[2].says("grace (15 s)"),
        "{slots:#?}"
    );
    assert!(slots[3].says("newer slot"), "{slots:#?}");

    // `ha schedule` names them, and the metric counts them.
    let shown = Cli::for_server(&node.url).run_ok(&["ha", "schedule"]);
    assert!(
        shown.stdout.contains(&format!("expression=\"{expression}\"")),
        "{shown}"
    );
    assert!(
        shown.stdout.lines().any(|l| l.starts_with("last kind=backup")),
        "{shown}"
    );
    assert_eq!(
        shown
            .stdout
            .lines()
            .filter(|l| l.starts_with("missed kind=backup"))
            .count(),
        3,
        "{shown}"
    );
    let (_, metrics) = common::prometheus::scrape(&node.url, Some(common::LAB_TOKEN));
    assert!(
        metrics.lines().any(|l| l == "autonomy_schedule_missed_slots_total 3"),
        "the missed slots are not counted:\n{metrics}"
    );

    // Retention ran after each scheduled backup (its outcome is recorded after it): of four
    // backups, the two newest are left, the others pruned and audited.
    let _ = node.stop();
    assert_eq!(
        completed_backups(&url).len(),
        2,
        "retention did not keep exactly --retain-min 2"
    );
    assert_eq!(audited(&lab, "ha.backup.pruned").len(), 2);
    for slot in slots.iter().filter(|s| s.state == "succeeded") {
        assert!(slot.says("retention deleted 1 backup(s)"), "{slot:?}");
    }
}

/// A manual backup, asked again while a scheduled drill keeps the node busy: its id, and when
/// the request that made it was sent and answered.
fn backup_when_free(cli: &Cli) -> (String, OffsetDateTime, OffsetDateTime) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let started = OffsetDateTime::now_utc();
        let run = cli.run(&["ha", "backup", "create"]);
        let ended = OffsetDateTime::now_utc();
        if run.success() {
            return (run.field("backup_id").expect("a backup id"), started, ended);
        }
        assert!(
            run.exit_code == Some(6) && Instant::now() < deadline,
            "the backup failed:\n{run}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
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
    let url = lab.url();
    let mut spec = scheduled_node(&lab, "drill-n1", &["--verify-schedule", EVERY_TWO_SECONDS]);
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
        |s| s.iter().any(|s| s.state == "skipped" && s.says("no backup to verify")),
    );
    let cli = Cli::for_server(&node.url);
    let proven_by_a_slot = |backup_id: &str| {
        wait_for_slots(
            &url,
            "verify",
            "a scheduled drill proving the backup",
            Duration::from_secs(120),
            |s| {
                s.iter()
                    .any(|s| s.state == "succeeded" && s.backup_id.as_deref() == Some(backup_id))
            },
        )
    };
    let small = backup_when_free(&cli).0;
    proven_by_a_slot(&small);

    // A backup that takes seconds: the slots that come meanwhile find the node busy.
    common::sql::load_big_table(&mut db, 96);
    let (big, started, ended) = backup_when_free(&cli);
    let slots = proven_by_a_slot(&big);
    let during_backup: Vec<&Slot> = slots
        .iter()
        .filter(|s| s.slot_at > started && s.slot_at + time::Duration::milliseconds(500) < ended)
        .collect();
    assert!(
        !during_backup.is_empty()
            && during_backup
                .iter()
                .all(|s| s.state == "skipped" && s.says("was running on the leader")),
        "the slots during the backup ({started} to {ended}) were not skipped as busy:\n{slots:#?}"
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
