//! Failover benchmark (not a test): many SIGKILL and SIGTERM failovers of a two-node cluster,
//! with a client writing throughout, against a reference measured in the same run: the
//! takeover of a SIGSTOPped leader, which only the lease expiry can end — what an election
//! without the dead-session fast path pays for every failover.
//!
//! Then, in the same run and on the same database, the same failovers with the lease on a real
//! three-member etcd cluster (ETCD_RUNS of each; ETCD_RUNS=0 skips them), against the same
//! reference: a SIGKILL there waits for the etcd lease's TTL (etcd cannot see a dead process),
//! a SIGTERM revokes it and wakes the follower's watch.
//!
//! `cargo bench --bench failover` (RUNS, REFERENCE_RUNS, ETCD_RUNS and AUTONOMY_LAB_BACKEND
//! tune it); prints a markdown table for docs/PERFORMANCE.md.

use autonomy_lab as common;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{
    backend::{self, PgBackend, LAB_DATABASE},
    node::{Node, NodeSpec},
    watch::{self, Clock},
    writes::{WriteLog, Writer},
    LAB_TOKEN,
};
use nix::sys::signal::Signal;

const NODES: [&str; 2] = ["bench-n1", "bench-n2"];
/// The successor's status is polled this often while a failover is timed.
const POLL: Duration = Duration::from_millis(2);

struct Cluster {
    pg: Box<dyn PgBackend>,
    scratch: tempfile::TempDir,
    nodes: BTreeMap<String, Node>,
    urls: Arc<Mutex<BTreeMap<String, String>>>,
    starts: usize,
    clock: Clock,
    /// More `ha serve` flags (the etcd lease's).
    extra_args: Vec<String>,
    /// Prefixes the phase names and the rollouts' names (`etcd-`).
    label: &'static str,
}

impl Cluster {
    fn start(&mut self, node_id: &str) {
        self.starts += 1;
        let spec = NodeSpec {
            node_id: node_id.into(),
            database_url: self.pg.url(LAB_DATABASE),
            backup_dir: self.scratch.path().join("backups"),
            audit_dir: self.scratch.path().join("audit"),
            maintenance_mode: false,
            log_path: self.scratch.path().join(format!("{node_id}-{}.log", self.starts)),
            extra_args: self.extra_args.clone(),
            listen: "127.0.0.1:0".into(),
            wrapper: Vec::new(),
            env: Vec::new(),
        };
        let node = Node::start(spec).expect("the node starts");
        self.urls.lock().unwrap().insert(node_id.into(), node.url.clone());
        self.nodes.insert(node_id.into(), node);
    }

    fn status(&self, node_id: &str) -> watch::StatusSample {
        let url = self.urls.lock().unwrap()[node_id].clone();
        watch::sample(self.clock, 0, node_id, &url)
    }

    fn leader(&self) -> &'static str {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            for node in NODES {
                if self.status(node).role.as_deref() == Some("leader") {
                    return node;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no leader after 30 s");
    }

    /// Signals the leader and times until the other node reports itself leader and holder.
    fn fail_over(&mut self, signal: Signal) -> (u64, &'static str) {
        let leader = self.leader();
        let successor = if leader == NODES[0] { NODES[1] } else { NODES[0] };
        self.nodes[leader]
            .wait_for_role("leader", Duration::from_secs(10))
            .unwrap();
        self.nodes[successor]
            .wait_for_role("follower", Duration::from_secs(10))
            .unwrap();
        let sent = Instant::now();
        self.nodes[leader].signal(signal);
        loop {
            let seen = self.status(successor);
            if seen.role.as_deref() == Some("leader") && seen.holder_id.as_deref() == Some(successor) {
                return (sent.elapsed().as_micros() as u64, leader);
            }
            assert!(sent.elapsed() < Duration::from_secs(30), "no takeover after {signal}");
            std::thread::sleep(POLL);
        }
    }

    /// Brings a stopped or dead node back as a follower.
    fn revive(&mut self, node_id: &str, signal: Signal) {
        if signal == Signal::SIGSTOP {
            self.nodes[node_id].signal(Signal::SIGCONT);
            self.nodes[node_id]
                .wait_for_role("follower", Duration::from_secs(30))
                .unwrap();
            return;
        }
        assert!(self
            .nodes
            .get_mut(node_id)
            .unwrap()
            .wait_for_exit(Duration::from_secs(10)));
        self.start(node_id);
        self.nodes[node_id]
            .wait_for_role("follower", Duration::from_secs(30))
            .unwrap();
    }

    /// Times `runs` failovers by `signal` while a client writes through them.
    fn measure(&mut self, signal: Signal, runs: usize) -> Phase {
        let started = Instant::now();
        let writer = Writer::start(
            self.clock,
            &format!("bench-{}{signal}", self.label),
            self.urls.clone(),
            Duration::from_millis(5),
        );
        let failover_us = (0..runs)
            .map(|_| {
                let (us, old) = self.fail_over(signal);
                self.revive(old, signal);
                us
            })
            .collect();
        let writes = writer.finish();
        eprintln!(
            "{signal}: {} writes in {:.1} s",
            writes.len(),
            started.elapsed().as_secs_f64()
        );
        if let Ok(path) = std::env::var("BENCH_WRITES_LOG") {
            let lines: Vec<String> = writes.iter().map(|w| serde_json::to_string(w).unwrap()).collect();
            std::fs::write(format!("{path}.{}{signal}.jsonl", self.label), lines.join("\n")).unwrap();
        }
        Phase {
            name: format!("{}{signal}", self.label.replace('-', " ")),
            failover_us,
            writes,
        }
    }
}

/// One kind of failover: its timings and the writes sent meanwhile.
struct Phase {
    name: String,
    failover_us: Vec<u64>,
    writes: Vec<WriteLog>,
}

impl Phase {
    fn p50_ms(&self) -> f64 {
        let mut us = self.failover_us.clone();
        us.sort_unstable();
        percentile(&us, 50.0)
    }

    /// A markdown row; `stored` maps every stored rollout name to its id.
    fn row(&self, reference_p50: f64, stored: &BTreeMap<String, i64>) -> String {
        let mut us = self.failover_us.clone();
        us.sort_unstable();
        let acknowledged: Vec<_> = self
            .writes
            .iter()
            .filter_map(|w| w.acknowledged.as_ref().map(|a| (w, a)))
            .collect();
        let lost = acknowledged
            .iter()
            .filter(|(w, a)| stored.get(&w.name) != Some(&a.id))
            .count();
        let unsettled = self
            .writes
            .iter()
            .filter(|w| w.acknowledged.is_none() && !w.stored_unacknowledged)
            .count();
        let mut latency: Vec<u64> = self.writes.iter().map(|w| w.finished_us - w.started_us).collect();
        latency.sort_unstable();
        format!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.4} | {} | {lost} | {unsettled} | {:.1} |",
            self.name,
            us.len(),
            percentile(&us, 50.0),
            percentile(&us, 99.0),
            percentile(&us, 100.0),
            percentile(&us, 50.0) / reference_p50,
            acknowledged.len(),
            if latency.is_empty() {
                0.0
            } else {
                percentile(&latency, 100.0)
            },
        )
    }

    fn lost(&self, stored: &BTreeMap<String, i64>) -> usize {
        self.writes
            .iter()
            .filter(|w| {
                w.acknowledged
                    .as_ref()
                    .is_some_and(|a| stored.get(&w.name) != Some(&a.id))
            })
            .count()
    }
}

fn percentile(sorted_us: &[u64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil().max(1.0) as usize;
    sorted_us[rank.min(sorted_us.len()) - 1] as f64 / 1000.0
}

fn main() {
    // `cargo bench` passes --bench; any other argument is a filter this harness ignores.
    let runs: usize = std::env::var("RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let reference_runs: usize = std::env::var("REFERENCE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let pg = backend::start("bench-failover").unwrap_or_else(|e| panic!("no PostgreSQL backend: {}", e.0));
    let clock = Clock::start();
    let mut cluster = Cluster {
        pg,
        scratch: tempfile::tempdir().unwrap(),
        nodes: BTreeMap::new(),
        urls: Arc::default(),
        starts: 0,
        clock,
        extra_args: Vec::new(),
        label: "",
    };
    for node in NODES {
        cluster.start(node);
    }
    cluster.leader();
    let sigkill = cluster.measure(Signal::SIGKILL, runs);
    let sigterm = cluster.measure(Signal::SIGTERM, runs);
    let mut reference = cluster.measure(Signal::SIGSTOP, reference_runs);
    reference.name = "SIGSTOP (reference: lease expiry)".into();
    let mut phases = vec![sigkill, sigterm, reference];

    // The same failovers with the lease on etcd, on the same database (its epochs go on above
    // the row lease's).
    let etcd_runs: usize = std::env::var("ETCD_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mut etcd = None;
    if etcd_runs > 0 {
        for (_, node) in std::mem::take(&mut cluster.nodes) {
            node.stop();
        }
        let members = common::etcd::EtcdCluster::start(&cluster.scratch.path().join("etcd"), 3)
            .unwrap_or_else(|e| panic!("no etcd cluster: {}", e.0));
        cluster.extra_args = vec![
            "--lease-store".into(),
            "etcd".into(),
            "--etcd-endpoints".into(),
            members.endpoints().join(","),
            "--etcd-prefix".into(),
            "/autonomy-bench/".into(),
        ];
        cluster.label = "etcd-";
        for node in NODES {
            cluster.start(node);
        }
        cluster.leader();
        phases.push(cluster.measure(Signal::SIGKILL, etcd_runs));
        phases.push(cluster.measure(Signal::SIGTERM, etcd_runs));
        etcd = Some(members);
    }

    let leader = cluster.leader();
    let client = autonomy::client::NodeClient::new(&cluster.urls.lock().unwrap()[leader], Some(LAB_TOKEN.into()));
    let stored: Vec<serde_json::Value> = client.get("/v1/rollouts").expect("list the rollouts");
    let stored: BTreeMap<String, i64> = stored
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or_default().to_owned(),
                r["id"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    let reference_p50 = phases[2].p50_ms();
    println!(
        "backend={} row: ttl=5000ms poll=50ms; etcd: ttl=3000ms renew=500ms, three members{}; status_poll={}ms runs={runs} reference_runs={reference_runs} etcd_runs={etcd_runs}\n",
        cluster.pg.kind(),
        if etcd.is_some() { "" } else { " (skipped)" },
        POLL.as_millis()
    );
    println!("| failover | runs | p50 ms | p99 ms | max ms | p50 / reference p50 | writes acknowledged | acknowledged lost | unsettled | slowest write ms |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for phase in &phases {
        println!("{}", phase.row(reference_p50, &stored));
    }
    let lost: usize = phases.iter().map(|p| p.lost(&stored)).sum();
    assert_eq!(lost, 0, "acknowledged writes were lost");
    drop(cluster);
    drop(etcd);
}
