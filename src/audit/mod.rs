//! The append-only audit store: one JSON-lines file per node, fsynced per event, and queries;
//! `ship` copies each node's events into the database, `shared` reads every node's from there.

pub mod shared;
pub mod ship;

use std::{
    fs::{self, File, OpenOptions},
    io::{BufRead, BufReader, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::Mutex,
};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use time::OffsetDateTime;

use crate::ident::NodeId;

/// Declares the event types once, each with its stored name: serde, `as_str`, `parse` and
/// `Display` all follow from the one list.
macro_rules! event_types {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$doc:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        $vis enum $name {
            $($(#[$doc])* #[serde(rename = $text)] $variant,)*
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            /// The value `text` stands for; None for any other string.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

event_types! {
    /// What an audit event records, stored as its dotted name (`ha.backup.created`).
    pub enum EventType {
        /// This node took the lease at a new epoch.
        LeaderAcquired = "ha.leader.acquired",
        /// This node stopped leading (its term ended without a release).
        LeaderSteppedDown = "ha.leader.stepped_down",
        /// This node gave the lease up (clean shutdown).
        LeaderReleased = "ha.leader.released",
        /// The lease row was rewritten under this node while it led.
        SplitBrainDetected = "ha.split_brain.detected",
        QuorumLost = "ha.quorum.lost",
        QuorumRestored = "ha.quorum.restored",
        /// Another process leads under this node's id.
        DuplicateNodeId = "ha.node.duplicate_id",
        /// The node runs with `--unsafe-skip-fencing`.
        FencingDisabled = "ha.fencing.disabled",
        BackupStarted = "ha.backup.started",
        BackupCreated = "ha.backup.created",
        BackupFailed = "ha.backup.failed",
        /// The backup completed but its inventory row was fenced off.
        BackupFenced = "ha.backup.fenced",
        /// A backup left `running` by a node that died, cleared.
        BackupInterrupted = "ha.backup.interrupted",
        BackupVerified = "ha.backup.verified",
        RestoreStarted = "ha.backup.restore_started",
        Restored = "ha.backup.restored",
        RestoreRejected = "ha.backup.restore_rejected",
        RestoreFailed = "ha.backup.restore_failed",
        /// A started restore that a restarted node found without an outcome.
        RestoreInterrupted = "ha.backup.restore_interrupted",
        /// Retention deletes a backup (written before anything of it is deleted).
        BackupPruned = "ha.backup.pruned",
        /// The leader claimed a schedule slot (or, after a lost leader, claimed it again).
        ScheduleSlotStarted = "ha.schedule.slot_started",
        /// A claimed slot's outcome: succeeded, failed, skipped or interrupted.
        ScheduleSlotFinished = "ha.schedule.slot_finished",
        /// Slots that will not run (no leader in time, or superseded by a newer slot).
        ScheduleSlotsMissed = "ha.schedule.slots_missed",
    }
}

/// One audit event, exactly as stored (one JSON object per line).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEvent {
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// As stored: every line reads back, also one naming a type this version does not write
    /// ([`EventType::parse`] tells which it is).
    #[serde(rename = "type")]
    pub event_type: String,
    pub node_id: String,
    pub details: serde_json::Value,
}

#[derive(Debug, Error)]
pub enum AuditError {
    #[error("cannot write the audit log {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the audit directory {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the audit file {path} has a malformed line {line}: {reason}")]
    Malformed { path: PathBuf, line: usize, reason: String },
    #[error("there is no audit store at {0}: the directory does not exist; pass the --audit-dir the nodes write to (their `--audit-dir`)")]
    NoStore(PathBuf),
}

/// Whether this node's audit store took its last write, for the status report: a node whose
/// audit cannot be written refuses destructive operations, and says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHealth {
    /// False from a failed write until a write succeeds again.
    pub writable: bool,
    /// The last write failure (None once a later write succeeded).
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub failed_at: Option<OffsetDateTime>,
}

impl Default for AuditHealth {
    /// Writable: nothing has failed.
    fn default() -> Self {
        Self {
            writable: true,
            last_error: None,
            failed_at: None,
        }
    }
}

/// A node's writer. Appends are serialised so lines never interleave.
pub struct AuditLog {
    node_id: NodeId,
    dir: PathBuf,
    path: PathBuf,
    /// The file, and whether its last line may be unterminated (a write that failed part-way,
    /// or a crash mid-append before this process): the next event then starts on a new line,
    /// so a torn fragment is one damaged line of its own and never swallows a good event.
    file: Mutex<(File, bool)>,
    /// The last write's failure, until a write succeeds.
    failure: Mutex<Option<(OffsetDateTime, String)>>,
    /// Woken after every fsynced event: the shipper has something to copy.
    appended: std::sync::Arc<tokio::sync::Notify>,
    /// Told every event that reached the disk (the metrics), once set.
    observer: std::sync::OnceLock<EventObserver>,
}

/// What is told of each event written (the metrics count them).
type EventObserver = Box<dyn Fn(&AuditEvent) + Send + Sync>;

impl AuditLog {
    /// Opens (creating, 0700 and 0600: events name the database's backups and restores)
    /// `<dir>/<node_id>.jsonl`. The directory's parent must exist: a mistyped path is an error,
    /// not a new tree.
    pub fn open(dir: &Path, node_id: &NodeId) -> Result<Self, AuditError> {
        let path = dir.join(format!("{node_id}.jsonl"));
        let write_err = |source| AuditError::Write {
            path: path.clone(),
            source,
        };
        // Another node starting at the same moment may create it first.
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Err(e) if !(e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir()) => return Err(write_err(e)),
            _ => {}
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o600)
            .open(&path)
            .map_err(write_err)?;
        let torn = ends_unterminated(&file).map_err(write_err)?;
        Ok(Self {
            node_id: node_id.clone(),
            dir: dir.to_owned(),
            path,
            file: Mutex::new((file, torn)),
            failure: Mutex::new(None),
            appended: std::sync::Arc::default(),
            observer: std::sync::OnceLock::new(),
        })
    }

    /// The store's directory (every node's file).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// This node's own file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Has every event that reaches the disk told to `observer` (set once).
    pub fn on_record(&self, observer: impl Fn(&AuditEvent) + Send + Sync + 'static) {
        let _ = self.observer.set(Box::new(observer));
    }

    /// Notified after every event that reached the disk.
    pub fn appended(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.appended.clone()
    }

    /// Whether the last write succeeded, and if not, why.
    pub fn health(&self) -> AuditHealth {
        let failure = self.failure.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match &*failure {
            None => AuditHealth::default(),
            Some((at, error)) => AuditHealth {
                writable: false,
                last_error: Some(error.clone()),
                failed_at: Some(*at),
            },
        }
    }

    /// Appends one event and fsyncs it before returning: a reported event is on disk.
    pub fn record(&self, event_type: EventType, details: serde_json::Value) -> Result<AuditEvent, AuditError> {
        let event = AuditEvent {
            id: new_event_id(),
            time: OffsetDateTime::now_utc(),
            event_type: event_type.as_str().to_owned(),
            node_id: self.node_id.to_string(),
            details,
        };
        let mut line = serde_json::to_vec(&event).expect("an audit event always serialises");
        line.push(b'\n');
        let mut guard = self.file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (file, torn) = &mut *guard;
        if *torn {
            line.insert(0, b'\n');
        }
        let written = file.write_all(&line).and_then(|()| file.sync_data());
        // Part of the line may have reached the file before the error.
        *torn = written.is_err();
        let mut failure = self.failure.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match written {
            Ok(()) => {
                *failure = None;
                drop(failure);
                drop(guard);
                self.appended.notify_one();
                if let Some(observer) = self.observer.get() {
                    observer(&event);
                }
                Ok(event)
            }
            Err(source) => {
                let error = AuditError::Write {
                    path: self.path.clone(),
                    source,
                };
                *failure = Some((event.time, error.to_string()));
                Err(error)
            }
        }
    }
}

/// Whether a non-empty file's last byte is not a newline.
fn ends_unterminated(file: &File) -> std::io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, len - 1)?;
    Ok(last[0] != b'\n')
}

impl AuditEvent {
    /// Whether this event is of `event_type`.
    pub fn is(&self, event_type: EventType) -> bool {
        self.event_type == event_type.as_str()
    }
}

fn new_event_id() -> String {
    format!("ev-{}", hex::encode(rand::random::<[u8; 12]>()))
}

/// What to select from the store.
#[derive(Debug, Default, Clone)]
pub struct AuditQuery {
    pub event_type: Option<String>,
    pub since: Option<OffsetDateTime>,
}

/// Reads every node's file under `dir`, oldest event first. A missing directory is an error
/// (a mistyped path must not read as "nothing happened"); a damaged line is skipped with a
/// warning naming its file and line, so one torn or corrupted line never hides the rest.
pub fn query(dir: &Path, query: &AuditQuery) -> Result<Vec<AuditEvent>, AuditError> {
    let read_err = |source| AuditError::Read {
        path: dir.to_owned(),
        source,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Err(AuditError::NoStore(dir.to_owned())),
        Err(error) => return Err(read_err(error)),
    };
    let mut events = Vec::new();
    for entry in entries {
        let path = entry.map_err(read_err)?.path();
        if path.extension().is_none_or(|ext| ext != "jsonl") {
            continue;
        }
        let file = File::open(&path).map_err(|source| AuditError::Read {
            path: path.clone(),
            source,
        })?;
        for (index, line) in BufReader::new(file).split(b'\n').enumerate() {
            let line = line.map_err(|source| AuditError::Read {
                path: path.clone(),
                source,
            })?;
            if line.trim_ascii().is_empty() {
                continue;
            }
            let event = match parse_line(&line) {
                Ok(event) => event,
                Err(reason) => {
                    let error = AuditError::Malformed {
                        path: path.clone(),
                        line: index + 1,
                        reason,
                    };
                    tracing::warn!(%error, "skipping a damaged audit line");
                    continue;
                }
            };
            if selects(query, &event) {
                events.push(event);
            }
        }
    }
    events.sort_by_key(|event| event.time);
    Ok(events)
}

/// One stored line as an event. A crash mid-append can leave one torn line (cut inside a
/// UTF-8 sequence, even): the caller skips it, so it never hides the other events.
pub fn parse_line(line: &[u8]) -> Result<AuditEvent, String> {
    std::str::from_utf8(line)
        .map_err(|e| format!("not UTF-8 ({e})"))
        .and_then(|text| serde_json::from_str::<AuditEvent>(text).map_err(|e| e.to_string()))
}

/// `query` applied to one event.
pub fn selects(query: &AuditQuery, event: &AuditEvent) -> bool {
    query.event_type.as_ref().is_none_or(|t| *t == event.event_type)
        && query.since.is_none_or(|since| event.time >= since)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str) -> NodeId {
        NodeId::parse(id).expect("a valid node id")
    }

    #[test]
    fn records_are_queried_across_nodes_by_type_and_time() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let a = AuditLog::open(dir.path(), &node("node-a")).expect("open a");
        let b = AuditLog::open(dir.path(), &node("node-b")).expect("open b");
        a.record(EventType::BackupCreated, serde_json::json!({"backup_id": "x"}))
            .expect("write");
        let mid = OffsetDateTime::now_utc();
        b.record(EventType::BackupCreated, serde_json::json!({"backup_id": "y"}))
            .expect("write");
        b.record(EventType::Restored, serde_json::json!({})).expect("write");

        let created = AuditQuery {
            event_type: Some("ha.backup.created".into()),
            since: None,
        };
        let found = query(dir.path(), &created).expect("query");
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].node_id, "node-a");

        let later = AuditQuery {
            event_type: None,
            since: Some(mid),
        };
        assert_eq!(query(dir.path(), &later).expect("query").len(), 2);
    }

    #[test]
    fn event_types_are_stored_by_their_dotted_names() {
        assert_eq!(EventType::BackupCreated.as_str(), "ha.backup.created");
        assert_eq!(
            serde_json::to_string(&EventType::SplitBrainDetected).unwrap(),
            "\"ha.split_brain.detected\""
        );
        assert_eq!(
            EventType::parse("ha.node.duplicate_id"),
            Some(EventType::DuplicateNodeId)
        );
        assert_eq!(EventType::parse("ha.unknown"), None);
    }

    #[test]
    fn a_missing_directory_is_an_error_not_an_empty_store() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let error = query(&dir.path().join("absent"), &AuditQuery::default()).unwrap_err();
        assert!(matches!(error, AuditError::NoStore(_)), "{error}");
    }

    #[test]
    fn a_damaged_line_is_skipped_and_the_rest_still_read() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let log = AuditLog::open(dir.path(), &node("node-a")).expect("open");
        log.record(EventType::BackupCreated, serde_json::json!({}))
            .expect("write");
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join("node-a.jsonl"))
            .unwrap();
        file.write_all(b"{\"id\": \"ev-\xe2\x82\n{not json\n").unwrap();
        log.record(EventType::Restored, serde_json::json!({})).expect("write");
        let events = query(dir.path(), &AuditQuery::default()).expect("damage is skipped");
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn a_torn_last_line_never_swallows_the_next_event() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("node-a.jsonl");
        // A crash mid-append left half a line without its newline.
        fs::write(&path, b"{\"id\": \"ev-1\", \"ti").unwrap();
        let log = AuditLog::open(dir.path(), &node("node-a")).expect("open");
        log.record(EventType::BackupCreated, serde_json::json!({}))
            .expect("write");
        let events = query(dir.path(), &AuditQuery::default()).expect("query");
        assert_eq!(events.len(), 1, "the event after the torn line was lost");
    }

    #[test]
    fn new_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = dir.path().join("audit");
        AuditLog::open(&store, &node("node-a")).expect("open");
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&store), 0o700);
        assert_eq!(mode(&store.join("node-a.jsonl")), 0o600);
    }

    #[test]
    fn a_store_whose_parent_is_missing_is_not_created() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let typo = dir.path().join("no-such-parent").join("audit");
        assert!(AuditLog::open(&typo, &node("node-a")).is_err());
        assert!(!dir.path().join("no-such-parent").exists());
    }
}
