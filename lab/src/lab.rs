//! A lab for a single test: a PostgreSQL backend (or a recorded SKIP) and a scratch directory.

use super::{
    backend::{self, PgBackend, LAB_DATABASE},
    node::{Node, NodeSpec},
};

/// The VAL15 fixture (`fixtures/val15.sql`): two tables of known rows.
pub const VAL15_SQL: &str = include_str!("../../fixtures/val15.sql");
/// The fidelity fixture (`fixtures/val19.sql`): every kind of object a restore must bring back.
pub const VAL19_SQL: &str = include_str!("../../fixtures/val19.sql");

pub struct Lab {
    pub pg: Box<dyn PgBackend>,
    pub scratch: tempfile::TempDir,
}

/// The value a test needs, or the end of the test when there is none: whatever returned None
/// printed the SKIP (or, under AUTONOMY_LAB_REQUIRE=1, failed the test instead).
/// `let lab = autonomy_lab::or_skip!(Lab::start_or_skip("inventory"));`
#[macro_export]
macro_rules! or_skip {
    ($found:expr) => {
        match $found {
            Some(found) => found,
            None => return,
        }
    };
}

impl Lab {
    /// Starts the backend AUTONOMY_LAB_BACKEND asks for. When none can run, prints SKIP and
    /// returns None — or fails the test under AUTONOMY_LAB_REQUIRE=1.
    #[track_caller]
    pub fn start_or_skip(label: &str) -> Option<Self> {
        match backend::start(label) {
            Ok(pg) => Some(Self {
                pg,
                scratch: tempfile::tempdir().expect("a scratch dir"),
            }),
            Err(backend::Unavailable(reason)) => {
                crate::run::skip_unless_required(label, "no backend", &reason);
                None
            }
        }
    }

    /// URL of the lab's application database.
    pub fn url(&self) -> String {
        self.pg.url(LAB_DATABASE)
    }

    /// A connection to the lab database, with `fixture` loaded.
    #[track_caller]
    pub fn load(&self, fixture: &str) -> postgres::Client {
        let mut db = super::sql::connect(&self.url());
        db.batch_execute(fixture)
            .unwrap_or_else(|e| panic!("the fixture loads: {e}"));
        db
    }

    /// Starts `node_id` on the lab database (in maintenance mode or not) and waits until it
    /// leads.
    #[track_caller]
    pub fn leader(&self, node_id: &str, maintenance_mode: bool) -> Node {
        Node::start_leader(self.node_spec(node_id, maintenance_mode)).unwrap_or_else(|e| panic!("{node_id}: {e}"))
    }

    /// A node on the lab database sharing the lab's backup and audit directories.
    pub fn node_spec(&self, node_id: &str, maintenance_mode: bool) -> NodeSpec {
        NodeSpec {
            node_id: node_id.into(),
            database_url: self.url(),
            backup_dir: self.scratch.path().join("backups"),
            audit_dir: self.audit_dir(),
            maintenance_mode,
            log_path: self.scratch.path().join(format!("{node_id}.log")),
            extra_args: Vec::new(),
            listen: "127.0.0.1:0".into(),
            wrapper: Vec::new(),
            env: Vec::new(),
        }
    }

    pub fn audit_dir(&self) -> std::path::PathBuf {
        self.scratch.path().join("audit")
    }

    pub fn archive_path(&self, backup_id: &str) -> std::path::PathBuf {
        self.scratch.path().join("backups").join(format!("{backup_id}.dump"))
    }
}
