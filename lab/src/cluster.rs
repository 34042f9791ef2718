//! Nodes of one slice run on one lab database, watched: start, address, status, single writes,
//! the rows and audit events kept at the end. VAL13, VAL14, VAL16 and VAL17 drive it.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use autonomy::{
    client::{ClientError, NodeClient},
    evidence::writer::Bundle,
};
use serde::{Deserialize, Serialize};

use super::{
    backend::{PgBackend, LAB_DATABASE},
    netns::NetnsHost,
    node::{Node, NodeSpec},
    watch::{self, Clock, StatusSample, StatusWatch},
    LAB_TOKEN,
};

/// A rollout as stored, read with SQL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRow {
    pub id: i64,
    pub name: String,
    pub epoch: i64,
    pub leader_id: String,
    /// The spec as text, so a changed payload shows.
    pub spec: String,
    /// When it was inserted, by the database clock (microseconds since 1970).
    pub created_us: i64,
}

crate::fenced_row!(StoredRow);

/// An audit event reduced to what the checks read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditSeen {
    pub node: String,
    pub event_type: String,
    pub details: serde_json::Value,
}

/// What a protected write (`POST /v1/rollouts`) was answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// 201 on success; 0 when no HTTP answer came.
    pub status: u16,
    /// `created`, the API's error code, or the transport error.
    pub code: String,
}

impl Answer {
    pub fn of<T>(answer: &Result<T, ClientError>) -> Self {
        let (status, code) = match answer {
            Ok(_) => (201, "created".to_owned()),
            Err(ClientError::Api { status, code, .. }) => (*status, code.clone()),
            Err(error) => (0, error.to_string()),
        };
        Self { status, code }
    }

    pub fn created(&self) -> bool {
        self.status == 201
    }
}

/// One protected write sent on purpose and what came back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SingleWrite {
    pub node: String,
    pub name: String,
    pub at_us: u64,
    #[serde(flatten)]
    pub answer: Answer,
    /// The epoch a 201 reported.
    pub epoch: Option<i64>,
    /// Whether the name was found in the database afterwards (None: not looked up yet).
    pub stored: Option<bool>,
}

/// Every node agreeing on one leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Agreement {
    pub leader: String,
    pub epoch: i64,
    /// After this long, from when the wait began.
    pub waited_ms: u64,
    /// Each node's status at that moment.
    pub views: Vec<StatusSample>,
}

/// The running nodes of one slice run; dropping it stops every node.
pub struct Cluster<'a> {
    pub bundle: &'a Bundle,
    /// `val17`, … : prefixes the node logs.
    pub slice: &'static str,
    pub database_url: String,
    pub scratch: PathBuf,
    pub clock: Clock,
    /// More `ha serve` flags for every node (timings, sabotage).
    pub extra_args: Vec<String>,
    pub nodes: BTreeMap<String, Node>,
    starts: BTreeMap<String, usize>,
    /// Where `stop` writes the status samples in the bundle: `<slice>-status-samples.jsonl`.
    pub samples_file: String,
    /// Node id → current API URL, shared with the status watch and writers.
    pub urls: Arc<Mutex<BTreeMap<String, String>>>,
    watch: Option<StatusWatch>,
}

impl<'a> Cluster<'a> {
    /// Starts polling statuses every `poll`; nodes are added with `start`.
    pub fn new(
        bundle: &'a Bundle,
        slice: &'static str,
        database_url: String,
        scratch: PathBuf,
        poll: Duration,
    ) -> Self {
        let clock = Clock::start();
        Self {
            bundle,
            slice,
            database_url,
            scratch,
            clock,
            extra_args: Vec::new(),
            nodes: BTreeMap::new(),
            starts: BTreeMap::new(),
            samples_file: format!("{slice}-status-samples.jsonl"),
            urls: Arc::default(),
            watch: Some(StatusWatch::start(clock, poll)),
        }
    }

    pub fn write(&self, name: &str, body: impl AsRef<[u8]>) -> Result<(), String> {
        crate::harness::write_evidence(self.bundle, name, body)
    }

    /// The spec of `node_id`'s next start, logging to `<slice>-<node>-<n>.log` in the bundle.
    pub fn spec(&mut self, node_id: &str) -> NodeSpec {
        let start = self.starts.entry(node_id.to_owned()).or_default();
        *start += 1;
        let start = *start;
        NodeSpec {
            node_id: node_id.to_owned(),
            database_url: self.database_url.clone(),
            backup_dir: self.scratch.join("backups"),
            audit_dir: self.audit_dir(),
            maintenance_mode: false,
            log_path: self.bundle.path(&format!("{node_id}-{start}.log")),
            extra_args: self.extra_args.clone(),
            listen: "127.0.0.1:0".into(),
            wrapper: Vec::new(),
            env: Vec::new(),
        }
    }

    pub fn audit_dir(&self) -> PathBuf {
        self.scratch.join("audit")
    }

    /// Starts every node in `node_ids` at the same moment and waits until all listen.
    pub fn start_all(&mut self, node_ids: &[&str]) -> Result<(), String> {
        let mut spawned = Vec::new();
        for node_id in node_ids {
            let spec = self.spec(node_id);
            spawned.push((*node_id, Node::spawn(spec)?));
        }
        for (node_id, mut node) in spawned {
            node.wait_until_listening()?;
            self.register(node_id, node);
        }
        Ok(())
    }

    /// Starts (or restarts) one node and waits until it listens.
    pub fn start(&mut self, node_id: &str) -> Result<(), String> {
        self.start_all(&[node_id])
    }

    /// Starts `node_id` inside `host`'s network namespace, listening on the namespace's address
    /// and reaching the database only through the host's relay on `relay_port` (which the
    /// partition cuts).
    pub fn start_in_namespace(
        &mut self,
        node_id: &str,
        pg: &dyn PgBackend,
        host: &NetnsHost,
        relay_port: u16,
    ) -> Result<(), String> {
        let mut spec = self.spec(node_id);
        spec.database_url = pg.url(LAB_DATABASE).replace(
            &format!("127.0.0.1:{}", pg.port()),
            &format!("{}:{relay_port}", host.host_ip),
        );
        spec.listen = format!("{}:0", host.ns_ip);
        spec.extra_args.push("--allow-remote".into());
        spec.wrapper = host.exec_prefix();
        self.start_spec(spec)
    }

    /// Starts one node from `spec` (adjusted by the caller) and waits until it listens.
    pub fn start_spec(&mut self, spec: NodeSpec) -> Result<(), String> {
        let node_id = spec.node_id.clone();
        let node = Node::start(spec)?;
        self.register(&node_id, node);
        Ok(())
    }

    /// Stops or resumes polling one node's status (a frozen node would hold every round of the
    /// watch for its one-second timeout, thinning the samples of the others).
    pub fn set_watched(&self, node_id: &str, watched: bool) {
        if let Some(watch) = &self.watch {
            if watched {
                watch.watch(node_id, &self.url(node_id));
            } else {
                watch.unwatch(node_id);
            }
        }
    }

    /// Stops a node with SIGTERM for good: no longer watched or written to.
    pub fn stop_node(&mut self, node_id: &str) {
        if let Some(watch) = &self.watch {
            watch.unwatch(node_id);
        }
        self.urls.lock().unwrap().remove(node_id);
        if let Some(node) = self.nodes.remove(node_id) {
            drop(node.stop());
        }
    }

    /// Adds a started node to the watch and the address book.
    pub fn register(&mut self, node_id: &str, node: Node) {
        if let Some(watch) = &self.watch {
            watch.watch(node_id, &node.url);
        }
        self.urls.lock().unwrap().insert(node_id.to_owned(), node.url.clone());
        self.nodes.insert(node_id.to_owned(), node);
    }

    pub fn url(&self, node_id: &str) -> String {
        self.urls.lock().unwrap()[node_id].clone()
    }

    pub fn client(&self, node_id: &str) -> NodeClient {
        NodeClient::with_timeout(&self.url(node_id), Some(LAB_TOKEN.into()), Some(Duration::from_secs(5)))
    }

    pub fn status(&self, node_id: &str) -> StatusSample {
        watch::sample(self.clock, u64::MAX, node_id, &self.url(node_id))
    }

    /// Every node as `id@url`, comma-separated: the report's `node`.
    pub fn addresses(&self) -> String {
        self.urls
            .lock()
            .unwrap()
            .iter()
            .map(|(id, url)| format!("{id}@{url}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn node_ids(&self) -> Vec<String> {
        self.urls.lock().unwrap().keys().cloned().collect()
    }

    /// Polls every node every 20 ms until `done` holds for their statuses (at most `timeout`);
    /// returns the statuses that satisfied it, or all last seen as the error.
    pub fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&[StatusSample]) -> bool,
    ) -> Result<(Duration, Vec<StatusSample>), Vec<StatusSample>> {
        let started = Instant::now();
        loop {
            let views: Vec<StatusSample> = self.node_ids().iter().map(|n| self.status(n)).collect();
            if done(&views) {
                return Ok((started.elapsed(), views));
            }
            if started.elapsed() > timeout {
                return Err(views);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until exactly one node leads and every other follows it at the same epoch.
    pub fn wait_for_agreement(&self, timeout: Duration) -> Result<Agreement, String> {
        self.wait_for_agreement_where(timeout, |_| true)
    }

    /// Waits until the nodes agree on one leader and `also` holds for their statuses.
    pub fn wait_for_agreement_where(
        &self,
        timeout: Duration,
        also: impl Fn(&[StatusSample]) -> bool,
    ) -> Result<Agreement, String> {
        match self.wait_for(timeout, |views| agreed(views) && also(views)) {
            Ok((waited, views)) => {
                let leader = views.iter().find(|v| v.is_leader()).expect("agreed has a leader");
                Ok(Agreement {
                    leader: leader.node_id.clone(),
                    epoch: leader.epoch.unwrap_or(-1),
                    waited_ms: waited.as_millis() as u64,
                    views,
                })
            }
            Err(views) => Err(format!(
                "the nodes did not agree on one leader within {timeout:?}: {views:#?}"
            )),
        }
    }

    /// Sends one protected write to `node_id`.
    pub fn write_rollout(&self, node_id: &str, name: &str) -> SingleWrite {
        single_write(self.clock, &self.url(node_id), node_id, name, Duration::from_secs(5))
    }

    /// Stops every node and returns every status sample taken.
    pub fn stop(&mut self) -> Vec<StatusSample> {
        let samples = self.watch.take().map(StatusWatch::finish).unwrap_or_default();
        for (_, node) in std::mem::take(&mut self.nodes) {
            drop(node.stop());
        }
        let lines: Vec<String> = samples
            .iter()
            .map(|s| serde_json::to_string(s).unwrap_or_default())
            .collect();
        let _ = self.write(&self.samples_file, lines.join("\n") + "\n");
        samples
    }

    /// The audit events of every node whose type starts with one of `prefixes`, oldest first,
    /// also written to `<slice>-audit-events.json`.
    pub fn audit_events(&self, prefixes: &[&str]) -> Vec<AuditSeen> {
        let events = autonomy::audit::query(&self.audit_dir(), &autonomy::audit::AuditQuery::default())
            .map(|events| {
                events
                    .into_iter()
                    .filter(|e| prefixes.iter().any(|p| e.event_type.starts_with(p)))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let _ = self.write(
            &format!("{}-audit-events.json", self.slice),
            serde_json::to_string_pretty(&events).unwrap_or_default(),
        );
        events
            .into_iter()
            .map(|e| AuditSeen {
                node: e.node_id,
                event_type: e.event_type,
                details: e.details,
            })
            .collect()
    }
}

/// One protected write to the node at `url`, with a client timeout of `timeout`.
pub fn single_write(clock: Clock, url: &str, node_id: &str, name: &str, timeout: Duration) -> SingleWrite {
    let at_us = clock.now_us();
    let answer = NodeClient::with_timeout(url, Some(LAB_TOKEN.into()), Some(timeout)).post::<_, serde_json::Value>(
        "/v1/rollouts",
        &serde_json::json!({ "name": name, "spec": { "written_to": node_id } }),
    );
    SingleWrite {
        node: node_id.to_owned(),
        name: name.to_owned(),
        at_us,
        answer: Answer::of(&answer),
        epoch: answer.ok().and_then(|row| row["epoch"].as_i64()),
        stored: None,
    }
}

/// Exactly one node leads and every other answers as its follower at the same epoch.
pub fn agreed(views: &[StatusSample]) -> bool {
    let leaders: Vec<&StatusSample> = views.iter().filter(|v| v.is_leader()).collect();
    let [leader] = leaders.as_slice() else {
        return false;
    };
    views.iter().all(|v| {
        v.holder_id.as_deref() == Some(leader.node_id.as_str())
            && v.epoch == leader.epoch
            && (v.is_leader() || v.role.as_deref() == Some("follower"))
    })
}

/// Every node reaches the database again and exactly one accepts protected writes: a cluster
/// recovered from losing its database.
pub fn recovered(views: &[StatusSample]) -> bool {
    views.iter().all(|v| v.db_reachable == Some(true))
        && views
            .iter()
            .filter(|v| v.can_accept_protected_writes == Some(true))
            .count()
            == 1
}

/// Every rollout with SQL, in id order.
pub fn stored_rows(db: &mut postgres::Client) -> Result<Vec<StoredRow>, String> {
    let rows = db
        .query(
            "SELECT id, name, epoch, leader_id, spec::text,
                    (extract(epoch FROM created_at) * 1000000)::bigint
               FROM autonomy_app.rollouts ORDER BY id",
            &[],
        )
        .map_err(|e| format!("read the rollouts: {e}"))?;
    Ok(rows
        .iter()
        .map(|r| StoredRow {
            id: r.get(0),
            name: r.get(1),
            epoch: r.get(2),
            leader_id: r.get(3),
            spec: r.get(4),
            created_us: r.get(5),
        })
        .collect())
}

/// (epoch, holder) of every acquisition, from autonomy_ha.lease_history.
pub fn lease_history(db: &mut postgres::Client) -> Result<Vec<(i64, String)>, String> {
    let rows = db
        .query(
            "SELECT epoch, holder_id FROM autonomy_ha.lease_history ORDER BY epoch",
            &[],
        )
        .map_err(|e| format!("read the lease history: {e}"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The lease history, an acquisition a line, then `rows` below it: the end state for the bundle.
pub fn history_and_rows(history: &[(i64, String)], rows: String) -> String {
    let history: Vec<String> = history.iter().map(|(e, h)| format!("epoch={e} holder={h}")).collect();
    format!("{}\n\n{rows}", history.join("\n"))
}

/// Every write of a load, one JSON line each, for the bundle.
pub fn writes_jsonl(writes: &[crate::writes::WriteLog]) -> String {
    let lines: Vec<String> = writes
        .iter()
        .map(|w| serde_json::to_string(w).unwrap_or_default())
        .collect();
    lines.join("\n") + "\n"
}

/// The rows as a table for the bundle.
pub fn rows_table(title: &str, rows: &[StoredRow]) -> String {
    let mut out = format!(
        "# rollouts {title}: {} rows\nid|name|epoch|leader_id|spec\n",
        rows.len()
    );
    for r in rows {
        out.push_str(&format!("{}|{}|{}|{}|{}\n", r.id, r.name, r.epoch, r.leader_id, r.spec));
    }
    out
}

/// Marks each write stored or not, by name, in `rows`.
pub fn look_up(writes: &mut [SingleWrite], rows: &[StoredRow]) {
    for write in writes {
        write.stored = Some(rows.iter().any(|r| r.name == write.name));
    }
}

/// The database-clock gap, in microseconds, between the last row written at `old_epoch` and
/// the first at `new_epoch`: never negative when the old leader stopped writing before the
/// new one began. None without rows at both epochs.
pub fn write_gap_us(rows: &[StoredRow], old_epoch: i64, new_epoch: i64) -> Option<i64> {
    let last_old = rows
        .iter()
        .filter(|r| r.epoch == old_epoch)
        .map(|r| r.created_us)
        .max()?;
    let first_new = rows
        .iter()
        .filter(|r| r.epoch == new_epoch)
        .map(|r| r.created_us)
        .min()?;
    Some(first_new - last_old)
}
