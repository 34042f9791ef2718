//! Three nodes with writers sending to every node, and the leader SIGKILLed, SIGTERMed or
//! SIGSTOPped at random a dozen times, on each lease store: no acknowledged write is lost, no
//! row carries an epoch its writer did not hold (in commit order epochs never fall), and the
//! status of every node, polled throughout, never shows two leaders.
//!
//! The faults are drawn from a seed printed at the start; AUTONOMY_SOAK_SEED replays a run.

use std::time::{Duration, Instant};

use autonomy::evidence::writer::Bundle;
use autonomy_lab as common;
use common::{
    cluster::{lease_history, stored_rows, Cluster},
    etcd::EtcdCluster,
    lab::Lab,
    sql,
    verdict::misattributed_rows,
    watch::dual_leaders,
    writes::Writer,
};
use nix::sys::signal::Signal;
use rand::{Rng, SeedableRng};

const NODES: [&str; 3] = ["soak-1", "soak-2", "soak-3"];
const FAULTS: usize = 12;

#[test]
fn random_leader_faults_on_the_row_lease_lose_no_acknowledged_write_and_never_show_two_leaders() {
    let lab = common::or_skip!(Lab::start_or_skip("soak-row"));
    soak(&lab, None);
}

#[test]
fn random_leader_faults_on_etcd_lose_no_acknowledged_write_and_never_show_two_leaders() {
    let lab = common::or_skip!(Lab::start_or_skip("soak-etcd"));
    let etcd = common::or_skip!(EtcdCluster::start_or_skip(
        &lab.scratch.path().join("etcd"),
        "soak-etcd",
        3
    ));
    soak(&lab, Some(&etcd));
}

fn soak(lab: &Lab, etcd: Option<&EtcdCluster>) {
    let seed: u64 = std::env::var("AUTONOMY_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("soak seed={seed} (AUTONOMY_SOAK_SEED={seed} replays these faults)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let bundle = Bundle::create(lab.scratch.path(), "soak", "soak").expect("a bundle for the node logs");
    let mut cluster = Cluster::new(
        &bundle,
        "soak",
        lab.url(),
        lab.scratch.path().to_owned(),
        Duration::from_millis(50),
    );
    if let Some(etcd) = etcd {
        cluster.extra_args = vec![
            "--lease-store".into(),
            "etcd".into(),
            "--etcd-endpoints".into(),
            etcd.endpoints().join(","),
            "--etcd-prefix".into(),
            "/autonomy-soak/".into(),
        ];
    }
    cluster.start_all(&NODES).unwrap_or_else(|e| panic!("{e}"));
    cluster
        .wait_for_agreement(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    let writers: Vec<Writer> = NODES
        .iter()
        .map(|node| {
            Writer::start(
                cluster.clock,
                &format!("w-{node}"),
                cluster.urls.clone(),
                Duration::from_millis(5),
            )
        })
        .collect();

    let mut faults = Vec::new();
    for _ in 0..FAULTS {
        let before = cluster
            .wait_for_agreement(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}\nfaults so far: {faults:?}"));
        // Writes at this epoch before the fault, so every term has rows on both sides.
        writers[0].wait_for_acknowledged(3, Duration::from_secs(10));
        let signal = [Signal::SIGKILL, Signal::SIGTERM, Signal::SIGSTOP][rng.gen_range(0..3)];
        let leader = before.leader.clone();
        faults.push((signal, leader.clone(), before.epoch));
        if signal == Signal::SIGSTOP {
            // A frozen node would hold each status poll for a second.
            cluster.set_watched(&leader, false);
        }
        cluster.nodes[&leader].signal(signal);
        let others: Vec<&str> = NODES.iter().copied().filter(|n| *n != leader).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !others.iter().any(|n| {
            let seen = cluster.status(n);
            seen.is_leader() && seen.epoch.is_some_and(|e| e > before.epoch)
        }) {
            assert!(
                Instant::now() < deadline,
                "no takeover after {signal} of {leader}: {faults:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        match signal {
            Signal::SIGSTOP => {
                std::thread::sleep(Duration::from_millis(rng.gen_range(0..1000)));
                cluster.nodes[&leader].signal(Signal::SIGCONT);
                cluster.set_watched(&leader, true);
            }
            _ => {
                let mut node = cluster.nodes.remove(&leader).expect("the leader's node");
                assert!(
                    node.wait_for_exit(Duration::from_secs(10)),
                    "{leader} exits on {signal}"
                );
                cluster.start(&leader).unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }
    cluster
        .wait_for_agreement(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\nfaults: {faults:?}"));
    writers[0].wait_for_acknowledged(3, Duration::from_secs(10));
    let writes: Vec<_> = writers.into_iter().flat_map(Writer::finish).collect();
    let samples = cluster.stop();

    let mut db = sql::connect(&lab.url());
    let rows = stored_rows(&mut db).unwrap_or_else(|e| panic!("{e}"));
    let history = lease_history(&mut db).unwrap_or_else(|e| panic!("{e}"));
    let acknowledged: Vec<_> = writes
        .iter()
        .filter_map(|w| Some((w, w.acknowledged.as_ref()?)))
        .collect();
    let lost: Vec<&str> = acknowledged
        .iter()
        .filter(|(w, a)| {
            !rows
                .iter()
                .any(|r| r.name == w.name && r.id == a.id && r.epoch == a.epoch)
        })
        .map(|(w, _)| w.name.as_str())
        .collect();
    let context = format!("seed={seed} faults={faults:?}");
    assert!(
        acknowledged.len() > FAULTS,
        "writes were acknowledged throughout: {} ({context})",
        acknowledged.len()
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?} ({context})");
    let misattributed = misattributed_rows(&rows, &history);
    assert!(
        misattributed.is_empty(),
        "rows under an epoch their writer did not hold: {:?} ({context})",
        misattributed
            .iter()
            .map(|(r, why)| format!("{} {}: {why}", r.id, r.name))
            .collect::<Vec<_>>()
    );
    let overlaps = dual_leaders(&samples);
    assert!(
        overlaps.is_empty(),
        "two leaders at once: {:?} ({context})",
        overlaps.first()
    );
    assert!(
        samples.len() > 100,
        "statuses were polled throughout: {}",
        samples.len()
    );
    let epochs: Vec<i64> = faults.iter().map(|(_, _, epoch)| *epoch).collect();
    assert!(
        epochs.windows(2).all(|w| w[1] > w[0]),
        "every fault found a newer term: {context}"
    );
}
