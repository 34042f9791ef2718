//! CLI behaviour that needs no database: usage errors, the confirm gate, an absent server.
//! Each case checks the documented exit code and that the message says what to do.

use assert_cmd::Command;
use predicates::prelude::*;
use rstest::rstest;

/// A loopback port nothing listens on (bound, then released).
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().expect("an address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// `ha serve` with every required flag; cases append the flag under test.
const SERVE: &[&str] = &[
    "ha",
    "serve",
    "--node-id",
    "n",
    "--database-url",
    "postgres://x@127.0.0.1/x",
    "--backup-dir",
    "b",
    "--api-token",
    "0123456789abcdef0123",
];

fn autonomy() -> Command {
    let mut command = Command::cargo_bin("autonomy").expect("the autonomy binary is built");
    command
        .env_remove("AUTONOMY_API_TOKEN")
        .env("AUTONOMY_SERVER_URL", closed_port_url());
    command
}

#[rstest]
#[case::restore_without_confirm(&["ha", "backup", "restore", "bk-1"], 2, "--confirm")]
#[case::restore_traversal_id(&["ha", "backup", "restore", "../x", "--confirm"], 2, "invalid backup id `../x`")]
#[case::server_not_running(&["ha", "status"], 3, "cannot reach the autonomy node")]
#[case::backup_with_server_down(&["ha", "backup", "create"], 3, "is `autonomy ha serve` running")]
#[case::unknown_command(&["ha", "nonsense"], 2, "unrecognized subcommand")]
#[case::bad_output_format(&["--output", "yaml", "ha", "status"], 2, "invalid value 'yaml'")]
#[case::serve_without_token(&["ha", "serve", "--node-id", "n", "--database-url", "postgres://x@127.0.0.1/x", "--backup-dir", "b"], 2, "no API token")]
#[case::renew_too_slow_for_the_ttl(&[SERVE, &["--lease-ttl-ms", "5000", "--renew-interval-ms", "3000"]].concat(), 2, "--renew-interval-ms 3000 does not fit --lease-ttl-ms 5000")]
#[case::poll_too_fast(&[SERVE, &["--poll-interval-ms", "1"]].concat(), 2, "--poll-interval-ms 1 is out of range")]
#[case::advertise_not_http(&[SERVE, &["--advertise-url", "10.0.0.5:7432"]].concat(), 2, "--advertise-url `10.0.0.5:7432` is not an http")]
#[case::all_interfaces_without_advertise(&[SERVE, &["--listen", "0.0.0.0:7432", "--allow-remote"]].concat(), 2, "set --advertise-url")]
#[case::several_servers_for_a_backup(&["--server", "http://127.0.0.1:1", "--server", "http://127.0.0.1:2", "ha", "backup", "create"], 2, "only `ha status` accepts several")]
#[case::rollout_spec_not_json(&["rollout", "create", "--name", "web", "--spec", "{nope"], 2, "--spec is not JSON")]
#[case::rollout_spec_not_an_object(&["rollout", "create", "--name", "web", "--spec", "[1]"], 2, "must be a JSON object, not an array")]
#[case::rollout_bad_name(&["rollout", "create", "--name", "../web"], 2, "invalid rollout name `../web`")]
#[case::rollout_with_server_down(&["rollout", "list"], 3, "cannot reach the autonomy node")]
#[case::lag_bands_inverted(&[SERVE, &["--lag-healthy-ms", "100", "--lag-degraded-ms", "10"]].concat(), 2, "--lag-healthy-ms 100 and --lag-degraded-ms 10 do not make two bands")]
#[case::lag_healthy_zero(&[SERVE, &["--lag-healthy-ms", "0"]].concat(), 2, "use 1 <= healthy < degraded")]
#[case::replication_poll_too_fast(&[SERVE, &["--replication-poll-interval-ms", "5"]].concat(), 2, "--replication-poll-interval-ms 5 is out of range")]
#[case::encrypt_to_not_a_key(&[SERVE, &["--backup-encrypt-to", "Cargo.toml"]].concat(), 2, "--backup-encrypt-to Cargo.toml: not an OpenPGP public key")]
#[case::encrypt_to_missing_file(&[SERVE, &["--backup-encrypt-to", "/nonexistent/k.asc"]].concat(), 2, "--backup-encrypt-to /nonexistent/k.asc: cannot read it")]
#[case::decrypt_key_not_a_key(&[SERVE, &["--backup-decrypt-key", "Cargo.toml"]].concat(), 2, "--backup-decrypt-key Cargo.toml: not an OpenPGP secret key")]
#[case::passphrase_file_without_key(&[SERVE, &["--backup-key-passphrase-file", "Cargo.toml"]].concat(), 2, "--backup-key-passphrase-file is set but --backup-decrypt-key is not")]
#[case::verify_key_without_signing_key(&[SERVE, &["--manifest-verify-key", "Cargo.toml"]].concat(), 2, "--manifest-verify-key is set but --manifest-signing-key is not")]
#[case::signing_key_not_a_key(&[SERVE, &["--manifest-signing-key", "Cargo.toml"]].concat(), 2, "--manifest-signing-key Cargo.toml: not an OpenPGP secret key")]
#[case::retain_min_zero(&[SERVE, &["--retain-min", "0"]].concat(), 2, "--retain-min 0 is out of range; use 1..=1000")]
#[case::retain_daily_huge(&[SERVE, &["--retain-daily", "5000"]].concat(), 2, "--retain-daily 5000 is out of range")]
#[case::backup_schedule_not_cron(&[SERVE, &["--backup-schedule", "0 25 * * *"]].concat(), 2, "--backup-schedule: `0 25 * * *` is not a cron expression")]
#[case::verify_schedule_not_cron(&[SERVE, &["--verify-schedule", "nightly"]].concat(), 2, "--verify-schedule: `nightly` is not a cron expression")]
#[case::schedule_never_fires(&[SERVE, &["--backup-schedule", "0 0 30 2 *"]].concat(), 2, "names no time that ever comes")]
#[case::schedule_unknown_zone(&[SERVE, &["--backup-schedule", "0 2 * * *", "--schedule-timezone", "Europe/Atlantis"]].concat(), 2, "--schedule-timezone: `Europe/Atlantis` is not a time zone")]
#[case::schedule_grace_zero(&[SERVE, &["--backup-schedule", "0 2 * * *", "--schedule-grace-s", "0"]].concat(), 2, "--schedule-grace-s 0 is out of range; use 1..=604800")]
#[case::schedule_grace_negative(&[SERVE, &["--backup-schedule", "0 2 * * *", "--schedule-grace-s", "-1"]].concat(), 2, "--schedule-grace-s -1 is out of range")]
#[case::schedule_zone_without_schedule(&[SERVE, &["--schedule-timezone", "UTC"]].concat(), 2, "--schedule-timezone is set but no schedule is")]
#[case::lag_thresholds_missing_file(&["ha", "lag-thresholds", "--from", "/nonexistent/val14-report.json"], 2, "cannot read --from /nonexistent/val14-report.json")]
#[case::lag_thresholds_not_a_report(&["ha", "lag-thresholds", "--from", "Cargo.toml"], 2, "is not a validation report")]
fn refuses_with_documented_exit_code(#[case] args: &[&str], #[case] code: i32, #[case] says: &str) {
    let args = args.to_vec();
    autonomy()
        .args(args)
        .assert()
        .code(code)
        .stderr(predicate::str::contains(says));
}

#[test]
fn restore_without_confirm_sends_nothing() {
    // The server URL points at a closed port: had anything been sent, the exit would be 3.
    autonomy()
        .args(["ha", "backup", "restore", "bk-1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("nothing was sent"));
}

/// The help of `autonomy <command> --help`, which must succeed.
fn help_of(command: &[&str]) -> String {
    let out = autonomy()
        .args(command)
        .arg("--help")
        .output()
        .expect("the binary runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).expect("the help is UTF-8")
}

#[test]
fn help_lists_the_commands() {
    let help = help_of(&["ha", "backup"]);
    assert!(help.contains("create") && help.contains("restore"), "{help}");
}

#[test]
fn cluster_status_prints_every_server_and_exits_3_when_one_is_down() {
    let (a, b) = (closed_port_url(), closed_port_url());
    autonomy()
        .args(["--server", &a, "--server", &b, "ha", "status"])
        .assert()
        .code(3)
        .stdout(
            predicate::str::contains(format!("server={a} error="))
                .and(predicate::str::contains(format!("server={b} error=")))
                .and(predicate::str::contains("cluster leaders=- agree=false")),
        )
        .stderr(predicate::str::contains("no status from"));
}

#[test]
fn the_fencing_sabotage_flag_is_not_advertised() {
    let help = help_of(&["ha", "serve"]);
    assert!(
        help.contains("--poll-interval-ms") && !help.contains("unsafe"),
        "{help}"
    );
}

/// A report of another slice, or a VAL14 report that measured nothing (a SKIP), is refused
/// with exit 2 and a message saying what to pass instead.
#[rstest]
#[case::another_slice("val15", "PASS", "not val14; pass a val14-report.json")]
#[case::skipped_val14("val14", "SKIP", "has no `idle_p95_ms` metric (outcome SKIP: no backend)")]
fn lag_thresholds_refuses_a_report_without_lag_metrics(#[case] slice: &str, #[case] outcome: &str, #[case] says: &str) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let report = dir.path().join("report.json");
    let body = serde_json::json!({
        "schema_version": 1, "slice": slice, "title": "t", "generated_at": "2026-11-29T10:00:00Z",
        "run_id": "r", "backend": "none", "server_version": null, "node": null, "checks": [],
        "metrics": {}, "pass": 0, "fail": 0, "skip": 0, "total": 0, "outcome": outcome,
        "skip_reason": (outcome == "SKIP").then_some("no backend"), "files": []
    });
    std::fs::write(&report, body.to_string()).expect("write the report");
    autonomy()
        .args(["ha", "lag-thresholds", "--from"])
        .arg(&report)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(says));
}

/// `lab report` on a path that is not an evidence run directory: exit 2, what to pass, and
/// nothing written (no `val26/` appears in the directory).
#[rstest]
#[case::absent("does-not-exist", "does not exist or is not a directory")]
#[case::empty("", "no VAL13–VAL17 report under")]
fn lab_report_refuses_a_directory_without_evidence(#[case] child: &str, #[case] says: &str) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let target = dir.path().join(child);
    autonomy()
        .args(["lab", "report"])
        .arg(&target)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(says).and(predicate::str::contains("evidence/latest")));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing may be written"
    );
}

/// The sample bundle with one slice missing: the report is written, NOT READY exits 9, and
/// the missing slice is named on stdout and stderr.
#[test]
fn lab_report_on_a_bundle_with_a_missing_slice_exits_9() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/val26/complete");
    for slice in ["val13", "val15", "val16", "val17"] {
        std::fs::create_dir_all(dir.path().join(slice)).unwrap();
        let name = format!("{slice}/{slice}-report.json");
        std::fs::copy(fixture.join(&name), dir.path().join(&name)).unwrap();
    }
    autonomy()
        .args(["lab", "report"])
        .arg(dir.path())
        .assert()
        .code(9)
        .stdout(predicate::str::contains(
            "VAL14 HA Replication Lag Baseline    MISSING (no report file)",
        ))
        .stderr(predicate::str::contains("verdict NOT READY: VAL26-02 did not pass"));
    for file in ["val26-report.txt", "val26-report.json", "val26-report.html"] {
        assert!(dir.path().join("val26").join(file).is_file(), "{file} was not written");
    }
    autonomy()
        .args(["lab", "verify-evidence"])
        .arg(dir.path())
        .assert()
        .code(0)
        .stdout(predicate::str::contains("verified: all 6 files")); // 4 slice reports, the .txt and .html
}

#[test]
fn verify_evidence_without_a_val26_report_exits_2_and_says_what_to_run() {
    let dir = tempfile::tempdir().expect("a temp dir");
    autonomy()
        .args(["lab", "verify-evidence"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no VAL26 report at").and(predicate::str::contains("autonomy lab report")));
}

/// Regenerating over evidence that changed since the report is refused (exit 7, nothing
/// written) unless `--force`: `lab report` cannot launder an edited bundle.
#[test]
fn lab_report_will_not_replace_a_report_whose_evidence_changed() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/val26/complete");
    for slice in ["val13", "val14", "val15", "val16", "val17"] {
        std::fs::create_dir_all(dir.path().join(slice)).unwrap();
        let name = format!("{slice}/{slice}-report.json");
        std::fs::copy(fixture.join(&name), dir.path().join(&name)).unwrap();
    }
    let report = || {
        let mut command = autonomy();
        command.args(["lab", "report"]).arg(dir.path());
        command
    };
    report()
        .assert()
        .code(0)
        .stdout(predicate::str::contains("Verdict: HA DESIGN PARTNER READY"));
    report().assert().code(0);
    let json = dir.path().join("val26/val26-report.json");
    let recorded = std::fs::read(&json).unwrap();
    std::fs::write(dir.path().join("val17/notes.txt"), "added later").unwrap();
    report()
        .assert()
        .code(7)
        .stderr(predicate::str::contains("added: val17/notes.txt").and(predicate::str::contains("--force")));
    assert_eq!(std::fs::read(&json).unwrap(), recorded, "the refused run wrote nothing");
    autonomy()
        .args(["lab", "verify-evidence"])
        .arg(dir.path())
        .assert()
        .code(7)
        .stdout(predicate::str::contains("added: val17/notes.txt"));
    report().arg("--force").assert().code(0);
    autonomy()
        .args(["lab", "verify-evidence"])
        .arg(dir.path())
        .assert()
        .code(0);
}
