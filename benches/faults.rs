//! Fault benchmark (not a test): quorum-loss detection and recovery over many database
//! outages, and for every kind of fault (SIGKILL, SIGSTOP, partition, outage) the gap between
//! the old leader's last committed write and the new leader's first, under four concurrent
//! writers. References measured in the same run: a plain client learning the database is gone
//! (a fresh connection refused), and PostgreSQL's own restart (start command to the first
//! accepted connection).
//!
//! Then, in the same run, on the same database and under the same writers, the nodes move to a
//! lease on a real three-member etcd cluster: ETCD_OUTAGES quorum losses (two members killed,
//! held 500 ms, one started again), and FAULTS SIGKILLs and SIGSTOPs there, against the row
//! lease's figures above (ETCD_OUTAGES=0 skips it).
//!
//! `cargo bench --bench faults` (OUTAGES, FAULTS, ETCD_OUTAGES and AUTONOMY_LAB_BACKEND tune
//! it; the partition needs root); prints markdown tables for docs/PERFORMANCE.md.

use autonomy_lab as common;

use std::time::{Duration, Instant};

use autonomy::evidence::writer::Bundle;
use common::{
    backend::{self, PgBackend, LAB_DATABASE},
    cluster::{stored_rows, write_gap_us, Cluster},
    netns::NetnsHost,
    writes::Writer,
};
use nix::sys::signal::Signal;

const NODES: [&str; 2] = ["faults-n1", "faults-n2"];
const PARTITIONED: &str = "faults-n3";
/// Statuses are polled this often while something is timed.
const POLL: Duration = Duration::from_millis(2);
const WRITERS: usize = 4;

fn main() {
    let outages: usize = env_number("OUTAGES", 10);
    let faults: usize = env_number("FAULTS", 5);
    let mut pg = backend::start("bench-faults").unwrap_or_else(|e| panic!("no PostgreSQL backend: {}", e.0));
    let scratch = tempfile::tempdir().unwrap();
    let bundle = Bundle::create(scratch.path(), "bench", "faults").unwrap();
    let mut cluster = Cluster::new(
        &bundle,
        "faults",
        pg.url(LAB_DATABASE),
        scratch.path().to_owned(),
        Duration::from_millis(250),
    );
    cluster.start_all(&NODES).unwrap();
    cluster.wait_for_agreement(Duration::from_secs(30)).unwrap();
    let writers: Vec<Writer> = (0..WRITERS)
        .map(|n| {
            Writer::start(
                cluster.clock,
                &format!("w{n}"),
                cluster.urls.clone(),
                Duration::from_millis(2),
            )
        })
        .collect();

    let mut gaps: Vec<(&str, i64, i64)> = Vec::new(); // (fault, old epoch, new epoch)
    let mut detection = Vec::new();
    let mut reference_detection = Vec::new();
    let mut recovery_from_start = Vec::new();
    let mut restart = Vec::new();
    for _ in 0..outages {
        let before = cluster.wait_for_agreement(Duration::from_secs(30)).unwrap();
        let mut db = common::sql::connect(&pg.url(LAB_DATABASE));
        wait_for_rows(&mut db, before.epoch);
        drop(db); // the outage would cut it anyway
        let (detected, refused, restarted, recovered) = outage(&cluster, pg.as_mut());
        detection.push(detected);
        reference_detection.push(refused);
        restart.push(restarted);
        recovery_from_start.push(recovered);
        let after = cluster.wait_for_agreement(Duration::from_secs(30)).unwrap();
        wait_for_rows(&mut common::sql::connect(&pg.url(LAB_DATABASE)), after.epoch);
        gaps.push(("outage", before.epoch, after.epoch));
    }
    let mut db = common::sql::connect(&pg.url(LAB_DATABASE));
    for signal in [Signal::SIGKILL, Signal::SIGSTOP] {
        for _ in 0..faults {
            let (old, new) = kill_or_pause(&mut cluster, &mut db, signal);
            gaps.push((
                if signal == Signal::SIGKILL {
                    "SIGKILL"
                } else {
                    "SIGSTOP"
                },
                old,
                new,
            ));
        }
    }
    let mut partitions = Vec::new();
    match common::netns::unavailable() {
        Some(reason) => eprintln!("partition skipped: {reason}"),
        None => {
            let mut host = NetnsHost::create("bench").unwrap();
            let relay_port = host.relay_to(pg.port()).unwrap();
            for _ in 0..faults {
                let (old, new, takeover) = partition(&mut cluster, pg.as_ref(), &host, relay_port);
                gaps.push(("partition", old, new));
                partitions.push(takeover);
            }
            cluster.stop_node(PARTITIONED);
            drop(host);
        }
    }
    // The same writers and database, the lease now on etcd.
    let etcd_outages = env_number("ETCD_OUTAGES", outages);
    let mut etcd_detection = Vec::new();
    let mut etcd_accepting = Vec::new();
    let mut etcd_recovery = Vec::new();
    let mut etcd = None;
    if etcd_outages > 0 {
        for node in cluster.node_ids() {
            cluster.stop_node(&node);
        }
        let mut members = common::etcd::EtcdCluster::start(&scratch.path().join("etcd"), 3)
            .unwrap_or_else(|e| panic!("no etcd cluster: {}", e.0));
        cluster.extra_args = vec![
            "--lease-store".into(),
            "etcd".into(),
            "--etcd-endpoints".into(),
            members.endpoints().join(","),
            "--etcd-prefix".into(),
            "/autonomy-bench/".into(),
        ];
        cluster.start_all(&NODES).unwrap();
        for _ in 0..etcd_outages {
            let before = cluster.wait_for_agreement(Duration::from_secs(30)).unwrap();
            wait_for_rows(&mut db, before.epoch);
            let (detected, accepting, recovered) = etcd_quorum_loss(&cluster, &mut members);
            etcd_detection.push(detected);
            etcd_accepting.push(accepting);
            etcd_recovery.push(recovered);
            let after = cluster.wait_for_agreement(Duration::from_secs(30)).unwrap();
            wait_for_rows(&mut db, after.epoch);
            gaps.push(("etcd quorum loss", before.epoch, after.epoch));
        }
        for signal in [Signal::SIGKILL, Signal::SIGSTOP] {
            for _ in 0..faults {
                let (old, new) = kill_or_pause(&mut cluster, &mut db, signal);
                gaps.push((
                    if signal == Signal::SIGKILL {
                        "etcd SIGKILL"
                    } else {
                        "etcd SIGSTOP"
                    },
                    old,
                    new,
                ));
            }
        }
        etcd = Some(members);
    }
    let writes: Vec<_> = writers.into_iter().flat_map(Writer::finish).collect();
    let rows = stored_rows(&mut db).unwrap();
    let lost = writes
        .iter()
        .filter(|w| {
            w.acknowledged
                .as_ref()
                .is_some_and(|a| !rows.iter().any(|r| r.name == w.name && r.id == a.id))
        })
        .count();
    let acknowledged = writes.iter().filter(|w| w.acknowledged.is_some()).count();

    println!(
        "backend={} ttl=5000ms renew=1666ms poll=50ms status_poll={}ms outages={outages} faults={faults} writers={WRITERS}\n",
        pg.kind(),
        POLL.as_millis()
    );
    println!("| quorum loss | runs | p50 ms | p90 ms | max ms | reference | reference p50 ms | p50 / reference p50 |");
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "{}",
        row(
            "loss detection (both nodes blocked)",
            &detection,
            "fresh connection refused",
            &reference_detection
        )
    );
    println!(
        "{}",
        row(
            "recovery (start command to one leader writable)",
            &recovery_from_start,
            "PostgreSQL restart (start command to first connection)",
            &restart
        )
    );
    let recovery_after_accept: Vec<u64> = recovery_from_start
        .iter()
        .zip(&restart)
        .map(|(r, s)| r.saturating_sub(*s))
        .collect();
    println!(
        "{}",
        row(
            "recovery after the database accepts",
            &recovery_after_accept,
            "PostgreSQL restart",
            &restart
        )
    );
    if !partitions.is_empty() {
        println!(
            "\npartition takeover (cut to successor leading), ms: {:?}",
            partitions.iter().map(|us| us / 1000).collect::<Vec<_>>()
        );
    }
    if !etcd_detection.is_empty() {
        println!("\nlease on etcd (ttl=3000ms renew=500ms poll=50ms, three members), against the row lease above:\n");
        println!(
            "| quorum loss | runs | p50 ms | p90 ms | max ms | reference | reference p50 ms | p50 / reference p50 |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        println!(
            "{}",
            row(
                "etcd quorum loss detection (two members killed to both nodes blocked)",
                &etcd_detection,
                "row lease: loss detection",
                &detection
            )
        );
        println!(
            "{}",
            row(
                "recovery after etcd accepts a write",
                &etcd_recovery,
                "row lease: recovery after the database accepts",
                &recovery_after_accept
            )
        );
        println!(
            "{}",
            row(
                "etcd's own recovery (member start to a write accepted)",
                &etcd_accepting,
                "PostgreSQL restart",
                &restart
            )
        );
    }
    println!("\n| fault | runs | min gap ms | p50 gap ms | max gap ms | negative gaps |");
    println!("|---|---|---|---|---|---|");
    let mut negative_total = 0;
    for fault in [
        "SIGKILL",
        "SIGSTOP",
        "partition",
        "outage",
        "etcd SIGKILL",
        "etcd SIGSTOP",
        "etcd quorum loss",
    ] {
        let mut us: Vec<i64> = gaps
            .iter()
            .filter(|(f, _, _)| *f == fault)
            .filter_map(|(_, old, new)| write_gap_us(&rows, *old, *new))
            .collect();
        let faults_of_kind = gaps.iter().filter(|(f, _, _)| *f == fault).count();
        assert_eq!(us.len(), faults_of_kind, "{fault}: a fault without rows on both sides");
        if us.is_empty() {
            continue;
        }
        us.sort_unstable();
        let negative = us.iter().filter(|g| **g < 0).count();
        negative_total += negative;
        let at =
            |p: f64| us[(((p / 100.0) * us.len() as f64).ceil().max(1.0) as usize).min(us.len()) - 1] as f64 / 1000.0;
        println!(
            "| {fault} | {} | {:.1} | {:.1} | {:.1} | {negative} |",
            us.len(),
            at(0.0),
            at(50.0),
            at(100.0)
        );
    }
    println!("\nwrites acknowledged={acknowledged} acknowledged lost={lost}");
    assert_eq!(lost, 0, "acknowledged writes were lost");
    assert_eq!(negative_total, 0, "an old leader wrote after its successor began");
    drop(cluster);
    drop(etcd);
}

/// Kills two of etcd's three members; returns (detection, etcd's recovery, recovery) in µs:
/// both nodes blocked; a member's start to etcd taking a write; from then to one leader
/// writable with both nodes reachable.
fn etcd_quorum_loss(cluster: &Cluster, etcd: &mut common::etcd::EtcdCluster) -> (u64, u64, u64) {
    let stopped = Instant::now();
    etcd.stop_member(1);
    etcd.stop_member(2);
    let everyone = cluster.node_ids();
    poll_until(cluster, &everyone, all_blocked);
    let detection = stopped.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let starting = Instant::now();
    etcd.start_member(1).unwrap();
    while !etcd.etcdctl(&["put", "/autonomy-bench-probe", "x"]).status.success() {
        assert!(
            starting.elapsed() < Duration::from_secs(30),
            "etcd took no write within 30 s"
        );
        std::thread::sleep(POLL);
    }
    let accepting = starting.elapsed();
    let accepted = Instant::now();
    poll_until(cluster, &everyone, common::cluster::recovered);
    let recovery = accepted.elapsed();
    etcd.start_member(2).unwrap();
    (
        detection.as_micros() as u64,
        accepting.as_micros() as u64,
        recovery.as_micros() as u64,
    )
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn row(name: &str, us: &[u64], reference: &str, reference_us: &[u64]) -> String {
    let (p50, p90, max) = (percentile(us, 50.0), percentile(us, 90.0), percentile(us, 100.0));
    let reference_p50 = percentile(reference_us, 50.0);
    format!(
        "| {name} | {} | {p50:.1} | {p90:.1} | {max:.1} | {reference} | {reference_p50:.1} | {:.2} |",
        us.len(),
        p50 / reference_p50.max(0.001)
    )
}

fn percentile(us: &[u64], p: f64) -> f64 {
    let mut sorted = us.to_vec();
    sorted.sort_unstable();
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1] as f64 / 1000.0
}

/// Stops the database abruptly; returns (detection, reference, restart, recovery) in µs:
/// both nodes blocked; a fresh connection refused; start command to first connection; start
/// command to one leader writable with both nodes reachable.
fn outage(cluster: &Cluster, pg: &mut dyn PgBackend) -> (u64, u64, u64, u64) {
    let url = pg.url(LAB_DATABASE);
    let stopped = Instant::now();
    pg.stop_abruptly().unwrap();
    let stop_returned = stopped.elapsed();
    // The reference: how soon a plain client's fresh connection is refused.
    let reference = {
        let probe = Instant::now();
        while postgres::Client::connect(&url, postgres::NoTls).is_ok() {
            std::thread::sleep(POLL);
        }
        stop_returned + probe.elapsed()
    };
    let everyone = cluster.node_ids();
    poll_until(cluster, &everyone, all_blocked);
    let detection = stopped.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let starting = Instant::now();
    pg.start_again().unwrap();
    let restart = starting.elapsed();
    poll_until(cluster, &everyone, common::cluster::recovered);
    let recovery = starting.elapsed();
    (
        detection.as_micros() as u64,
        reference.as_micros() as u64,
        restart.as_micros() as u64,
        recovery.as_micros() as u64,
    )
}

/// Every node reports its lease store lost and refuses protected writes.
fn all_blocked(views: &[common::watch::StatusSample]) -> bool {
    views
        .iter()
        .all(|v| v.db_reachable == Some(false) && v.can_accept_protected_writes == Some(false))
}

/// Polls the statuses of `nodes` every POLL until `done` holds; panics after 30 s.
fn poll_until(
    cluster: &Cluster,
    nodes: &[String],
    done: impl Fn(&[common::watch::StatusSample]) -> bool,
) -> Vec<common::watch::StatusSample> {
    let started = Instant::now();
    loop {
        let views: Vec<_> = nodes.iter().map(|n| cluster.status(n)).collect();
        if done(&views) {
            return views;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not reached within 30 s: {views:#?}"
        );
        std::thread::sleep(POLL);
    }
}

/// SIGKILL (then restart) or SIGSTOP (then SIGCONT) the leader; returns (old, new) epochs.
fn kill_or_pause(cluster: &mut Cluster, db: &mut postgres::Client, signal: Signal) -> (i64, i64) {
    let before = cluster.wait_for_agreement(Duration::from_secs(30)).unwrap();
    wait_for_rows(db, before.epoch);
    let leader = before.leader.clone();
    // Only the others are polled: a frozen node would hold each poll for a second.
    let others: Vec<String> = cluster.node_ids().into_iter().filter(|n| *n != leader).collect();
    cluster.nodes[&leader].signal(signal);
    poll_until(cluster, &others, |views| {
        views
            .iter()
            .any(|v| v.is_leader() && v.epoch.is_some_and(|e| e > before.epoch))
    });
    if signal == Signal::SIGSTOP {
        cluster.nodes[&leader].signal(Signal::SIGCONT);
    } else {
        let mut node = cluster.nodes.remove(&leader).unwrap();
        node.wait_for_exit(Duration::from_secs(10));
        let spec = cluster.spec(&leader);
        cluster.start_spec(spec).unwrap();
    }
    let after = cluster.wait_for_agreement(Duration::from_secs(30)).unwrap();
    wait_for_rows(db, after.epoch);
    (before.epoch, after.epoch)
}

/// The partitioned node leads from its namespace; cut; the other node takes over; heal; the
/// partitioned node rejoins. Returns (old, new epoch, takeover µs).
fn partition(cluster: &mut Cluster, pg: &dyn PgBackend, host: &NetnsHost, relay_port: u16) -> (i64, i64, u64) {
    // Make the namespace node the leader: it starts (or stays) while the other steps aside.
    if !cluster.nodes.contains_key(PARTITIONED) {
        cluster.start_in_namespace(PARTITIONED, pg, host, relay_port).unwrap();
    }
    loop {
        let agreed = cluster.wait_for_agreement(Duration::from_secs(30)).unwrap();
        if agreed.leader == PARTITIONED {
            break;
        }
        // SIGTERM releases the lease: the namespace node (or the other one) takes it.
        let leader = agreed.leader.clone();
        drop(cluster.nodes.remove(&leader).unwrap().stop());
        let spec = cluster.spec(&leader);
        cluster.start_spec(spec).unwrap();
    }
    let before = cluster.wait_for_agreement(Duration::from_secs(30)).unwrap();
    let mut db = common::sql::connect(&pg.url(LAB_DATABASE));
    wait_for_rows(&mut db, before.epoch);
    let cut = Instant::now();
    host.cut(relay_port).unwrap();
    let others: Vec<String> = cluster.node_ids().into_iter().filter(|n| n != PARTITIONED).collect();
    let views = poll_until(cluster, &others, |views| {
        views
            .iter()
            .any(|v| v.is_leader() && v.epoch.is_some_and(|e| e > before.epoch))
    });
    let takeover = cut.elapsed().as_micros() as u64;
    // Not an agreement of all nodes: the cut-off one cannot agree until the heal.
    let new_epoch = views
        .iter()
        .find(|v| v.is_leader())
        .and_then(|v| v.epoch)
        .expect("a successor");
    // The writers may all be waiting out their timeouts against the cut-off node: let one
    // reach the successor, so the gap has a row on each side.
    wait_for_rows(&mut db, new_epoch);
    host.heal(relay_port).unwrap();
    cluster.wait_for_agreement(Duration::from_secs(30)).unwrap();
    (before.epoch, new_epoch, takeover)
}

/// Waits (at most 30 s) until a row was written at `epoch`.
fn wait_for_rows(db: &mut postgres::Client, epoch: i64) {
    let started = Instant::now();
    loop {
        // The table appears with the first write.
        let rows: i64 = db
            .query_one("SELECT count(*) FROM autonomy_app.rollouts WHERE epoch = $1", &[&epoch])
            .map_or(0, |row| row.get(0));
        if rows > 0 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no write at epoch {epoch} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
