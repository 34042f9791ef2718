//! The lab the validation slices run in, and the slices themselves (docs/ARCHITECTURE.md, "The
//! lab crate"): compiled once, used by every test binary and bench.
//!
//! - `run`: the run id and where evidence and phase caches go.
//! - `background`: a loop on its own thread, stopped and joined on request (or on drop).
//! - `backend`: PostgreSQL backends (docker via testcontainers, local processes) behind one trait.
//! - `node`: `autonomy ha serve` processes, logged into the evidence bundle, reaped on drop.
//! - `cluster`: the nodes of one slice run, watched; single writes, stored rows, audit events.
//! - `cli`: runs the real `autonomy` CLI and keeps everything needed to explain a failure.
//! - `lab`: one test's backend (or a recorded SKIP) and scratch directory.
//! - `gpg`: a throwaway GnuPG home: the operator's keys, and the oracle that opens archives.
//! - `netns`: a lab host in a network namespace of its own, and a real partition of it.
//! - `prometheus`: a real Prometheus server scraping lab nodes and evaluating alert rules.
//! - `process`: stopping child processes.
//! - `relay`: a TCP forwarder the lab can cut silently, and heal.
//! - `phase`: runs a slice's phases once per run, across test processes.
//! - `standby`: a streaming standby of the lab's primary that can be stopped, started and cut off.
//! - `sql`: synchronous SQL helpers and the content-and-catalog fingerprint.
//! - `verdict`: turns measured verdicts into report checks (PASS, FAIL, SKIP, not reached).
//! - `watch`: polls every node's status in the background; finds overlapping leaders.
//! - `writes`: a client writing rollouts continuously through failovers.
//! - `harness`: what every slice shares: the `Slice` trait, one `run_slice`, one `Sabotage`,
//!   the check tests and the mutation tests against committed observation fixtures.
//! - `slices`: VAL13–VAL17 and VAL19, each its phases, observations and checks.

pub mod backend;
pub mod background;
pub mod cli;
pub mod cluster;
pub mod etcd;
pub mod gpg;
pub mod harness;
pub mod lab;
pub mod lease_store;
pub mod netns;
pub mod node;
pub mod phase;
pub mod process;
pub mod prometheus;
pub mod relay;
pub mod run;
pub mod s3;
pub mod slices;
pub mod sql;
pub mod standby;
pub mod store;
pub mod verdict;
pub mod watch;
pub mod writes;

/// Token the lab's nodes and CLI calls share; a test value, never a real secret.
pub const LAB_TOKEN: &str = "lab-token-0123456789abcdef";
