//! The VAL19 slice, restore fidelity (issue 7): the fidelity fixture is backed up, changed,
//! restored and proven; drills of the backup are proven; and the verifier is shown to catch,
//! by name, each change the mutation suite makes to a copy of a drill's restored database.

use std::path::Path;

use autonomy::evidence::{writer::Bundle, Report};
use serde::{Deserialize, Serialize};

use super::checks::evaluate;
use crate::{
    backend::{PgBackend, LAB_DATABASE},
    cli::{Cli, CliRun},
    harness::connect_and_describe,
    harness::{guarded, Slice, SliceLab},
    node::{Node, NodeSpec},
    sql,
    sql::Fingerprint,
    store::LabStore,
};

/// A restore drill of the fixture must finish well inside seed 000's restore bound.
pub const DRILL_RTO_MS_THRESHOLD: u64 = 60_000;

/// Phases every drill into a scratch database reports, in order (seed 001's RTO breakdown).
pub const DRILL_PHASES: [&str; 8] = [
    "archive_check",
    "create_database",
    "pre_data",
    "data",
    "post_data",
    "proof",
    "amcheck",
    "cleanup",
];

/// One change made to a copy of a drill's restored database, and the object the verifier
/// must name for it (None: it must report nothing).
pub struct Mutation {
    pub name: &'static str,
    pub sql: &'static str,
    pub names: Option<&'static str>,
}

/// The mutation suite: each must be caught, naming its object alone.
pub const MUTATIONS: [Mutation; 11] = [
    Mutation { name: "row_changed", sql: "UPDATE customers SET display_name = display_name || '.' WHERE id = 1", names: Some("table public.customers") },
    Mutation { name: "row_deleted", sql: "DELETE FROM reviews WHERE id = (SELECT min(id) FROM reviews)", names: Some("table public.reviews") },
    Mutation { name: "row_duplicated_without_pk", sql: "INSERT INTO event_log SELECT * FROM event_log LIMIT 1", names: Some("table public.event_log") },
    Mutation { name: "index_dropped", sql: "DROP INDEX customers_email_live_key", names: Some("index public.customers_email_live_key") },
    Mutation { name: "trigger_dropped", sql: "DROP TRIGGER orders_audit ON orders", names: Some("trigger public.orders.orders_audit") },
    Mutation { name: "trigger_disabled", sql: "ALTER TABLE orders DISABLE TRIGGER orders_touch_updated_at", names: Some("trigger public.orders.orders_touch_updated_at") },
    Mutation { name: "function_body_changed", sql: "CREATE OR REPLACE FUNCTION order_total(bigint) RETURNS numeric LANGUAGE sql STABLE AS $$ SELECT 0::numeric $$", names: Some("function public.order_total") },
    Mutation { name: "sequence_reset", sql: "SELECT setval('invoice_number_seq', 1)", names: Some("sequence public.invoice_number_seq") },
    Mutation { name: "constraint_dropped", sql: "ALTER TABLE products DROP CONSTRAINT products_price_positive", names: Some("constraint public.products.products_price_positive") },
    Mutation { name: "column_default_changed", sql: "ALTER TABLE orders ALTER COLUMN status SET DEFAULT 'paid'", names: Some("column public.orders.status") },
    Mutation { name: "large_object_altered", sql: "SELECT lo_put(719001, 0, '\\x58'::bytea)", names: Some("large object 719001") },
];

/// Physical reorganisations that change no content: the verifier must report nothing.
pub const REORDERS: [Mutation; 2] = [
    Mutation {
        name: "cluster",
        sql: "CLUSTER customers USING customers_pkey; CLUSTER orders USING orders_pkey",
        names: None,
    },
    Mutation {
        name: "vacuum_full",
        sql: "VACUUM FULL event_log",
        names: None,
    },
];

/// One drill of a changed database: what was changed and what `verify` answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MutationRun {
    pub name: String,
    pub names: Option<String>,
    pub run: CliRun,
}

/// What the loaded fixture holds, read from the catalog.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FixtureFacts {
    pub tables: i64,
    pub large_objects: i64,
    pub duplicated_rows_without_pk: i64,
}

/// Everything the phases saw; the checks are computed from this alone.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Observations {
    pub fixture: Option<FixtureFacts>,
    pub backup: Option<CliRun>,
    pub backup_id: Option<String>,
    pub manifest: Option<serde_json::Value>,
    pub restore: Option<CliRun>,
    pub drill: Option<CliRun>,
    pub leftover_after_drill: Option<Vec<String>>,
    pub kept: Option<CliRun>,
    pub mutations: Vec<MutationRun>,
    pub reorders: Vec<MutationRun>,
    pub damaged: Vec<MutationRun>,
    pub live_target: Option<CliRun>,
    pub live_before_drills: Option<Fingerprint>,
    pub live_after_drills: Option<Fingerprint>,
    pub leftover_at_end: Option<Vec<String>>,
    pub listed: Option<CliRun>,
    pub audit_verified: Option<usize>,
    pub aborted: Option<String>,
}

crate::observed_with_aborted_field!(Observations);

/// VAL19, restore fidelity.
pub struct Val19;

impl Slice for Val19 {
    crate::slice_identity!("val19", "VAL 19 — Restore Fidelity", []);

    fn run(lab: SliceLab<'_>, obs: &mut Observations, report: &mut Report) -> Option<String> {
        let mut lab = Lab {
            pg: &*lab.pg,
            store: lab.store,
            bundle: lab.bundle,
            scratch: lab.scratch,
            node_addr: None,
        };
        let aborted = guarded(|| lab.phases(obs, report));
        report.node = lab.node_addr.clone();
        aborted
    }

    fn summarize(obs: &Observations, report: &mut Report, _bundle: &Bundle) {
        if let Some(rto) = obs
            .drill
            .as_ref()
            .and_then(|run| run.field("rto_ms"))
            .and_then(|v| v.parse::<u64>().ok())
        {
            report.metrics.insert("drill_rto_ms".into(), rto.into());
        }
    }
}

struct Lab<'a> {
    pg: &'a dyn PgBackend,
    store: LabStore,
    bundle: &'a Bundle,
    scratch: &'a Path,
    node_addr: Option<String>,
}

/// The drills' scratch databases present on the server.
fn drill_databases(admin: &mut postgres::Client) -> Result<Vec<String>, String> {
    admin
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'autonomy\\_verify\\_%' ORDER BY 1",
            &[],
        )
        .map(|rows| rows.iter().map(|row| row.get(0)).collect())
        .map_err(|e| format!("list the drill databases: {e}"))
}

impl Lab<'_> {
    fn write(&self, name: &str, body: impl AsRef<[u8]>) -> Result<(), String> {
        crate::harness::write_evidence(self.bundle, name, body)
    }

    /// Runs `args` with `file` replaced by `damaged` (its `original` put back after), recorded in
    /// `evidence`: the run of the damage `(name, what the run should name)`.
    fn run_damaged(
        &self,
        cli: &Cli,
        args: &[&str],
        (file, original, damaged): (&Path, &[u8], &[u8]),
        (name, names): &(&str, String),
        evidence: &str,
    ) -> Result<MutationRun, String> {
        let shown = file.display();
        std::fs::write(file, damaged).map_err(|e| format!("damage {shown}: {e}"))?;
        let run = cli.run(args);
        std::fs::write(file, original).map_err(|e| format!("put {shown} back: {e}"))?;
        self.record(evidence, &run)?;
        Ok(MutationRun {
            name: (*name).into(),
            names: Some(names.clone()),
            run,
        })
    }

    fn record(&self, name: &str, run: &CliRun) -> Result<(), String> {
        self.write(name, run.transcript())
    }

    fn phases(&mut self, obs: &mut Observations, report: &mut Report) -> Result<(), String> {
        // 1. The fidelity fixture, and what it holds.
        let live_url = self.pg.url(LAB_DATABASE);
        let (mut live, _) = connect_and_describe(self.pg, report)?;
        self.write("val19-backup-store.txt", self.store.describe() + "\n")?;
        live.batch_execute(crate::lab::VAL19_SQL)
            .map_err(|e| format!("load fixtures/val19.sql: {e}"))?;
        let facts = live
            .query_one(
                "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                          WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')),
                        (SELECT count(*) FROM pg_largeobject_metadata),
                        (SELECT count(*) FROM (SELECT 1 FROM event_log e GROUP BY e.* HAVING count(*) > 1) d)",
                &[],
            )
            .map_err(|e| format!("read the fixture's facts: {e}"))?;
        obs.fixture = Some(FixtureFacts {
            tables: facts.get(0),
            large_objects: facts.get(1),
            duplicated_rows_without_pk: facts.get(2),
        });
        self.write("val19-fixture.json", serde_json::to_vec_pretty(&obs.fixture).unwrap())?;

        // 2. A backup, and its sealed manifest with the baseline.
        let node = Node::start_leader(self.store.node(NodeSpec {
            node_id: "val19-n1".into(),
            database_url: live_url.clone(),
            backup_dir: self.scratch.join("backups"),
            audit_dir: self.scratch.join("audit"),
            maintenance_mode: true,
            log_path: self.bundle.path("val19-ha-server.log"),
            extra_args: Vec::new(),
            listen: "127.0.0.1:0".into(),
            wrapper: Vec::new(),
            env: Vec::new(),
        }))?;
        self.node_addr = Some(format!("val19-n1@{}", node.url));
        let cli = Cli::for_server(&node.url);
        let backup = cli.run(&["ha", "backup", "create"]);
        self.record("val19-01-backup-create.txt", &backup)?;
        let backup_id = backup
            .field("backup_id")
            .ok_or_else(|| format!("backup create gave no id: {backup}"))?;
        obs.backup = Some(backup);
        obs.backup_id = Some(backup_id.clone());
        let manifest_path = self.store.manifest_path(&backup_id);
        let manifest_body = std::fs::read(&manifest_path).map_err(|e| format!("read the manifest: {e}"))?;
        self.write("val19-01-manifest.json", &manifest_body)?;
        obs.manifest = serde_json::from_slice(&manifest_body).ok();

        // 3. Backup -> change the live database -> restore: the restore proves itself.
        live.batch_execute(
            "UPDATE customers SET display_name = 'changed after the backup' WHERE id = 1;
             DELETE FROM reviews; DROP INDEX customers_email_live_key; SELECT setval('invoice_number_seq', 7);
             SELECT lo_unlink(719002)",
        )
        .map_err(|e| format!("change the live database after the backup: {e}"))?;
        let restore = cli.run(&["ha", "backup", "restore", &backup_id, "--confirm"]);
        self.record("val19-02-restore.txt", &restore)?;
        obs.restore = Some(restore);
        // The restore ended every other session on the database, this one too.
        let mut live = sql::connect(&live_url);

        // 4. A drill into a scratch database, which is then gone.
        let mut admin = sql::connect(&self.pg.url("postgres"));
        obs.live_before_drills = Some(sql::fingerprint(&mut live));
        let drill = cli.run(&["ha", "backup", "verify", &backup_id]);
        self.record("val19-03-verify.txt", &drill)?;
        obs.drill = Some(drill);
        obs.leftover_after_drill = Some(drill_databases(&mut admin)?);
        let listed = cli.run(&["--output", "json", "ha", "backup", "list"]);
        self.record("val19-04-backup-list.txt", &listed)?;
        obs.listed = Some(listed);

        // 5. A kept drill: the mutation suite changes copies of its restored database.
        let kept = cli.run(&["--output", "json", "ha", "backup", "verify", "--latest", "--keep"]);
        self.record("val19-05-verify-kept.txt", &kept)?;
        let kept_database = serde_json::from_str::<serde_json::Value>(&kept.stdout)
            .ok()
            .and_then(|report| report["database"].as_str().map(str::to_owned))
            .ok_or_else(|| format!("the kept drill named no database: {kept}"))?;
        obs.kept = Some(kept);
        for (set, mutations) in [("mutation", &MUTATIONS[..]), ("reorder", &REORDERS[..])] {
            for mutation in mutations {
                let copy = format!("val19_{}", mutation.name);
                admin
                    .batch_execute(&format!("CREATE DATABASE \"{copy}\" TEMPLATE \"{kept_database}\""))
                    .map_err(|e| format!("copy the kept drill database for {}: {e}", mutation.name))?;
                let copy_url = self.pg.url(&copy);
                sql::connect(&copy_url)
                    .batch_execute(mutation.sql)
                    .map_err(|e| format!("apply {}: {e}", mutation.name))?;
                let run = cli.run(&[
                    "ha",
                    "backup",
                    "verify",
                    &backup_id,
                    "--target-url",
                    &copy_url,
                    "--proof-only",
                ]);
                self.record(&format!("val19-{set}-{}.txt", mutation.name), &run)?;
                admin
                    .batch_execute(&format!("DROP DATABASE \"{copy}\" WITH (FORCE)"))
                    .map_err(|e| format!("drop {copy}: {e}"))?;
                let observed = MutationRun {
                    name: mutation.name.into(),
                    names: mutation.names.map(str::to_owned),
                    run,
                };
                if set == "mutation" {
                    obs.mutations.push(observed);
                } else {
                    obs.reorders.push(observed);
                }
            }
        }
        admin
            .batch_execute(&format!("DROP DATABASE \"{kept_database}\" WITH (FORCE)"))
            .map_err(|e| format!("drop the kept drill database: {e}"))?;

        // 6. A damaged backup is a difference too: one archive byte, then one manifest field.
        let archive = self.store.archive_path(&backup_id);
        let original = std::fs::read(&archive).map_err(|e| format!("read the archive: {e}"))?;
        let mut flipped = original.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0xff;
        let damage = ("archive_byte_flipped", format!("archive {backup_id}.dump"));
        let verify = ["ha", "backup", "verify", &backup_id];
        let run = self.run_damaged(
            &cli,
            &verify,
            (&archive, &original, &flipped),
            &damage,
            "val19-09-verify-archive-flipped.txt",
        );
        obs.damaged.push(run?);
        let mut edited: serde_json::Value =
            serde_json::from_slice(&manifest_body).map_err(|e| format!("parse the manifest: {e}"))?;
        edited["baseline"]["tables"]["public.customers"]["rows"] = serde_json::json!(0);
        let edited = serde_json::to_vec_pretty(&edited).unwrap();
        let damage = ("manifest_baseline_edited", format!("manifest {backup_id}.json"));
        let files = (manifest_path.as_path(), manifest_body.as_slice(), edited.as_slice());
        obs.damaged
            .push(self.run_damaged(&cli, &verify, files, &damage, "val19-09-verify-manifest-edited.txt")?);

        // 7. The live database is never a drill's target, and the drills left it alone.
        let live_target = cli.run(&[
            "ha",
            "backup",
            "verify",
            &backup_id,
            "--target-url",
            &live_url,
            "--proof-only",
        ]);
        self.record("val19-10-verify-live-target.txt", &live_target)?;
        obs.live_target = Some(live_target);
        obs.live_after_drills = Some(sql::fingerprint(&mut live));
        obs.leftover_at_end = Some(drill_databases(&mut admin)?);

        // 8. The audit records the drills.
        let audit = std::fs::read_to_string(self.scratch.join("audit").join("val19-n1.jsonl")).unwrap_or_default();
        obs.audit_verified = Some(audit.matches("\"ha.backup.verified\"").count());
        self.write("val19-audit.jsonl", &audit)?;
        drop(node);
        Ok(())
    }
}
