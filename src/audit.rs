//! The append-only audit store: one JSON-lines file per node, fsynced per event, and queries.

use std::{
    fs::{self, File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    sync::Mutex,
};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use time::OffsetDateTime;

/// One audit event, exactly as stored (one JSON object per line).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEvent {
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
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
    #[error("the audit file {path} has a malformed line {line}: {source}")]
    Malformed {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
}

/// A node's writer. Appends are serialised so lines never interleave.
pub struct AuditLog {
    node_id: String,
    path: PathBuf,
    file: Mutex<File>,
}

impl AuditLog {
    pub fn open(dir: &Path, node_id: &str) -> Result<Self, AuditError> {
        let path = dir.join(format!("{node_id}.jsonl"));
        let write_err = |source| AuditError::Write {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(dir).map_err(write_err)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(write_err)?;
        Ok(Self {
            node_id: node_id.to_owned(),
            path,
            file: Mutex::new(file),
        })
    }

    /// Appends one event and fsyncs it before returning: a reported event is on disk.
    pub fn record(&self, event_type: &str, details: serde_json::Value) -> Result<AuditEvent, AuditError> {
        let event = AuditEvent {
            id: new_event_id(),
            time: OffsetDateTime::now_utc(),
            event_type: event_type.to_owned(),
            node_id: self.node_id.clone(),
            details,
        };
        let mut line = serde_json::to_vec(&event).expect("an audit event always serialises");
        line.push(b'\n');
        let file = self.file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let write_err = |source| AuditError::Write {
            path: self.path.clone(),
            source,
        };
        (&*file).write_all(&line).map_err(write_err)?;
        file.sync_data().map_err(write_err)?;
        Ok(event)
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

/// Reads every node's file under `dir`, oldest event first. A missing directory has no events.
pub fn query(dir: &Path, query: &AuditQuery) -> Result<Vec<AuditEvent>, AuditError> {
    let read_err = |source| AuditError::Read {
        path: dir.to_owned(),
        source,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
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
        for (index, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|source| AuditError::Read {
                path: path.clone(),
                source,
            })?;
            if line.trim().is_empty() {
                continue;
            }
            // A crash mid-append can leave one torn line; it must not hide every other event.
            let event: AuditEvent = match serde_json::from_str(&line) {
                Ok(event) => event,
                Err(source) => {
                    let error = AuditError::Malformed {
                        path: path.clone(),
                        line: index + 1,
                        source,
                    };
                    tracing::warn!(%error, "skipping a malformed audit line");
                    continue;
                }
            };
            let type_matches = query.event_type.as_ref().is_none_or(|t| *t == event.event_type);
            let time_matches = query.since.is_none_or(|since| event.time >= since);
            if type_matches && time_matches {
                events.push(event);
            }
        }
    }
    events.sort_by_key(|event| event.time);
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_queried_across_nodes_by_type_and_time() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let a = AuditLog::open(dir.path(), "node-a").expect("open a");
        let b = AuditLog::open(dir.path(), "node-b").expect("open b");
        a.record("ha.backup.created", serde_json::json!({"backup_id": "x"}))
            .expect("write");
        let mid = OffsetDateTime::now_utc();
        b.record("ha.backup.created", serde_json::json!({"backup_id": "y"}))
            .expect("write");
        b.record("ha.backup.restored", serde_json::json!({})).expect("write");

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
    fn a_missing_directory_has_no_events() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let none = query(&dir.path().join("absent"), &AuditQuery::default()).expect("query");
        assert!(none.is_empty());
    }
}
