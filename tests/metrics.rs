//! `/metrics` on a real node, and the shipped alert rules. promtool (Debian's `prometheus`
//! package) is the oracle twice: it validates the scraped exposition, and it checks and unit
//! tests `deploy/prometheus/alerts.yml` with the `*test*.yml` files beside it, whose cases
//! fire and stay silent.

use std::{io::Write, path::Path, process::Command, time::Duration};

use autonomy_lab as common;
use common::{cli::Cli, lab::Lab, node::Node, prometheus::scrape, LAB_TOKEN};

/// promtool, or None after printing SKIP (a failure under AUTONOMY_LAB_REQUIRE=1).
fn promtool(label: &str) -> Option<&'static str> {
    common::run::tool_or_skip("promtool", label).then_some("promtool")
}

fn run(program: &str, args: &[&str], stdin: &[u8]) -> (bool, String) {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_alert_rules_check_and_their_unit_tests_pass() {
    let promtool = common::or_skip!(promtool("alert-rules"));
    let (ok, text) = run(promtool, &["check", "rules", "alerts.yml"], b"");
    assert!(ok && text.contains("SUCCESS: 10 rules found"), "{text}");
    let tests: Vec<String> = common::run::file_names(&Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus"))
        .into_iter()
        .filter(|name| name.contains("test") && name.ends_with(".yml"))
        .collect();
    assert!(tests.len() >= 2, "{tests:?}");
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    let (ok, text) = run(promtool, &args, b"");
    assert!(ok, "{text}");
}

#[test]
fn a_node_exposes_openmetrics_that_promtool_accepts_and_counts_what_happened() {
    let lab = common::or_skip!(Lab::start_or_skip("metrics"));
    let promtool = common::or_skip!(promtool("metrics"));
    let _db = lab.load(common::lab::VAL15_SQL);
    let leader = lab.leader("met-n1", false);
    let (status, _) = scrape(&leader.url, None);
    assert_eq!(status, 401, "/metrics answered without the token");

    let id = Cli::for_server(&leader.url)
        .run_ok(&["ha", "backup", "create"])
        .field("backup_id")
        .unwrap();
    Cli::for_server(&leader.url).run_ok(&["ha", "backup", "verify", &id]);
    let (status, text) = scrape(&leader.url, Some(LAB_TOKEN));
    assert_eq!(status, 200, "{text}");
    for line in [
        "autonomy_backups_total{outcome=\"success\"} 1",
        "autonomy_drills_total{outcome=\"proven\"} 1",
        "autonomy_leader 1",
        "autonomy_database_reachable 1",
        "autonomy_leader_acquisitions_total 1",
    ] {
        assert!(text.contains(line), "`{line}` is not in:\n{text}");
    }
    let stamp = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    for name in [
        "autonomy_backup_last_success_timestamp_seconds",
        "autonomy_last_proven_restore_timestamp_seconds",
    ] {
        assert!(
            (now - stamp(name)).abs() < 600.0,
            "{name} is not about now: {}",
            stamp(name)
        );
    }
    assert!(stamp("autonomy_backup_size_bytes") > 1024.0, "{text}");
    // promtool lints the Prometheus text format, where a counter's family is named with its
    // `_total`; OpenMetrics names the family without it. That is the one complaint allowed, and
    // only for a family whose HELP is there under its OpenMetrics name: any parse error or other
    // lint fails.
    let (ok, verdict) = run(promtool, &["check", "metrics"], text.as_bytes());
    let other: Vec<&str> = verdict
        .lines()
        .filter(|line| !line.trim().is_empty())
        .filter(|line| {
            let family = line.strip_suffix("_total no help text");
            !family.is_some_and(|family| text.contains(&format!("# HELP {family} ")))
        })
        .collect();
    assert!(
        ok || other.is_empty(),
        "promtool refuses the exposition: {other:?}\n{text}"
    );

    // A restarted node still knows when the last backup succeeded (BackupTooOld must not fire).
    drop(leader);
    let follower_first = lab.leader("met-n2", false);
    let (_, text) = scrape(&follower_first.url, Some(LAB_TOKEN));
    let seeded = text
        .lines()
        .find_map(|l| l.strip_prefix("autonomy_backup_last_success_timestamp_seconds "))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        (now - seeded).abs() < 600.0,
        "a restarted node forgot the last backup: {seeded}\n{text}"
    );
    let follower = Node::start(lab.node_spec("met-n3", false)).unwrap_or_else(|e| panic!("{e}"));
    let (_, text) = scrape(&follower.url, Some(LAB_TOKEN));
    assert!(text.contains("autonomy_leader 0"), "{text}");
}

#[test]
fn a_real_prometheus_fires_the_alert_for_stopped_backups_and_for_a_failed_drill() {
    let lab = common::or_skip!(Lab::start_or_skip("prometheus-alerts"));
    let _db = lab.load(common::lab::VAL15_SQL);
    let node = lab.leader("prom-n1", false);
    let cli = Cli::for_server(&node.url);
    cli.run_ok(&["ha", "backup", "create"]);
    let bad = cli.run_ok(&["ha", "backup", "create"]).field("backup_id").unwrap();
    // The shipped rules, with "too old" shortened from a day to 15 s for the test.
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/alerts.yml")).unwrap();
    assert!(shipped.contains("> 24 * 3600"), "the BackupTooOld threshold moved");
    let rules = shipped.replace("> 24 * 3600", "> 15");
    let target = node.url.trim_start_matches("http://").to_owned();
    let prometheus = common::or_skip!(common::prometheus::Prometheus::start_or_skip(
        &lab.scratch.path().join("prometheus"),
        &[&target],
        LAB_TOKEN,
        &rules,
        "prometheus-alerts"
    ));
    let fired = |alert: &str, within: Duration| {
        common::run::wait_until(within, || {
            prometheus.firing().iter().any(|name| name == alert).then_some(())
        })
        .map(|((), waited)| waited)
    };

    prometheus
        .wait_scraped(3, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    // A drill that finds differences: BackupVerificationFailed fires (no `for:`: at once).
    assert!(
        fired("BackupVerificationFailed", Duration::from_secs(3)).is_none(),
        "fired before any drill failed"
    );
    let archive = lab.archive_path(&bad);
    let mut bytes = std::fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&archive, bytes).unwrap();
    let drilled = cli.run(&["ha", "backup", "verify", &bad]);
    assert_eq!(drilled.field("outcome").as_deref(), Some("differences"), "{drilled}");
    let waited = fired("BackupVerificationFailed", Duration::from_secs(30));
    assert!(
        waited.is_some(),
        "BackupVerificationFailed never fired; firing: {:?}; drills: {}",
        prometheus.firing(),
        prometheus.query("autonomy_drills_total")
    );

    // A fresh backup clears BackupTooOld; with none after it, it fires again once the
    // (shortened) 15 s have passed, and not before.
    cli.run_ok(&["ha", "backup", "create"]);
    let cleared = common::run::wait_until(Duration::from_secs(20), || {
        (!prometheus.firing().iter().any(|name| name == "BackupTooOld")).then_some(())
    });
    assert!(cleared.is_some(), "BackupTooOld stayed firing after a backup");
    let waited = fired("BackupTooOld", Duration::from_secs(60));
    let waited = waited.unwrap_or_else(|| panic!("BackupTooOld never fired; firing: {:?}", prometheus.firing()));
    assert!(
        waited > Duration::from_secs(5),
        "BackupTooOld fired {waited:?} after it cleared: before its window"
    );
    assert!(
        !prometheus.firing().iter().any(|name| name == "NoLeader"),
        "NoLeader fired with a leader"
    );
}
