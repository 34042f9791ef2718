//! Runs a slice's phases once per run, whichever test process gets there first.
//!
//! Under nextest every test is its own process. The first to take the file lock runs the phases
//! and writes their outcome to `<lab>/<key>.json`; the rest wait on the lock and read it.
//! Within one `cargo test` process the outcome is also kept in memory.

use std::{
    collections::HashMap,
    fs::{self, OpenOptions},
    io::Write,
    sync::Mutex,
};

use fs4::fs_std::FileExt;
use serde::{de::DeserializeOwned, Serialize};

use super::run::lab_dir;

static IN_PROCESS: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);

/// The cache key: the slice's key and the backend and stores asked for, so one run id reused
/// across backends or stores (AUTONOMY_RUN_ID) never reads another's outcome.
fn cache_key(key: &str) -> String {
    let backend = std::env::var("AUTONOMY_LAB_BACKEND").unwrap_or_else(|_| "auto".into());
    format!(
        "{key}.{backend}.{}.{}",
        crate::store::lab_store_kind(),
        crate::lease_store::lab_lease_store_kind()
    )
}

/// How many times the phases of `key` have run in this run (a line per run in `<key>.runs`).
pub fn times_run(key: &str) -> usize {
    let path = lab_dir().join(format!("{}.runs", cache_key(key)));
    fs::read_to_string(path).map(|s| s.lines().count()).unwrap_or(0)
}

/// Returns the cached outcome of `key` for this run, running `phases` if no process has yet.
#[track_caller]
pub fn run_once<T: Serialize + DeserializeOwned>(key: &str, phases: impl FnOnce() -> T) -> T {
    run_once_here(key, phases).0
}

/// `run_once`, also saying whether this call ran the phases (rather than finding them run).
#[track_caller]
pub fn run_once_here<T: Serialize + DeserializeOwned>(key: &str, phases: impl FnOnce() -> T) -> (T, bool) {
    let key = &cache_key(key);
    if let Some(json) = remembered(key) {
        return (
            serde_json::from_str(&json).expect("the in-memory phase outcome deserialises"),
            false,
        );
    }
    // The file lock serialises threads and processes alike (each call opens the file anew, and
    // flock locks of separate opens exclude each other). The in-memory map is not held while
    // the phases run, so phases may themselves call run_once for other keys (VAL26 does).
    let dir = lab_dir();
    let lock_path = dir.join(format!("{key}.lock"));
    let cache_path = dir.join(format!("{key}.json"));
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .expect("the phase lock file can be opened");
    lock.lock_exclusive().expect("the phase lock can be taken");
    let mut ran_here = false;
    let json = match fs::read_to_string(&cache_path) {
        Ok(json) => json,
        Err(_) => {
            ran_here = true;
            let mut runs = OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(format!("{key}.runs")))
                .expect("the phase run log can be opened");
            writeln!(runs, "pid={}", std::process::id()).expect("the phase run log can be written");
            let outcome = phases();
            let json = serde_json::to_string_pretty(&outcome).expect("the phase outcome serialises");
            autonomy::evidence::writer::write_atomically(&cache_path, json.as_bytes())
                .expect("the phase outcome can be cached");
            json
        }
    };
    FileExt::unlock(&lock).expect("the phase lock can be released");
    IN_PROCESS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(key.to_owned(), json.clone());
    (
        serde_json::from_str(&json).expect("the cached phase outcome deserialises"),
        ran_here,
    )
}

fn remembered(key: &str) -> Option<String> {
    IN_PROCESS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashMap::new)
        .get(key)
        .cloned()
}

/// Why a slice's phases stopped early, if they did: the error they returned, or the message of
/// a panic inside them (recorded like any other abort, so the report and the phase cache are
/// still written and the other checks do not re-run the slice).
pub fn abort_reason(phases: std::thread::Result<Result<(), String>>) -> Option<String> {
    match phases {
        Ok(Ok(())) => None,
        Ok(Err(reason)) => Some(reason),
        Err(panic) => Some(format!(
            "a phase panicked: {}",
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    }
}
