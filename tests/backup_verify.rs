//! `autonomy ha backup verify` (issue 7): a restore drill of a backup of the fidelity fixture
//! into a scratch database is proven (exit 0) and leaves nothing behind; tampering with the
//! data in the drill's target is found and named (exit 1), as is an index amcheck finds
//! inconsistent; a drill that cannot run says why (exit 2) and changes nothing.

use autonomy_lab as common;

use common::{cli::Cli, lab::Lab, sql};

/// The scratch databases drills left on the lab server.
fn leftover_drill_databases(db: &mut postgres::Client) -> Vec<String> {
    db.query(
        "SELECT datname FROM pg_database WHERE datname LIKE 'autonomy\\_verify\\_%' ORDER BY 1",
        &[],
    )
    .expect("pg_database")
    .iter()
    .map(|row| row.get(0))
    .collect()
}

#[test]
fn a_drill_is_proven_then_names_tampered_data_and_cleans_up() {
    let lab = autonomy_lab::or_skip!(Lab::start_or_skip("backup-verify"));
    let mut db = lab.load(common::lab::VAL19_SQL);
    let node = lab.leader("verify-n1", false);
    let cli = Cli::for_server(&node.url);
    let created = cli.run_ok(&["ha", "backup", "create"]);
    let id = created.field("backup_id").expect("a backup id");

    let proven = cli.run(&["ha", "backup", "verify", &id]);
    eprintln!("{proven}");
    assert_eq!(proven.exit_code, Some(0), "{proven}");
    assert_eq!(proven.field("outcome").as_deref(), Some("proven"), "{proven}");
    assert_eq!(proven.field("kept").as_deref(), Some("false"), "{proven}");
    for phase in common::slices::val19::DRILL_PHASES {
        assert!(
            proven.stdout.contains(&format!("\nphase {phase} ms=")),
            "no phase {phase}: {proven}"
        );
    }
    assert_eq!(proven.field("manifest_sealed").as_deref(), Some("true"), "{proven}");
    let counted = |key: &str| proven.field(key).and_then(|n| n.parse::<u32>().ok()).unwrap_or(0);
    assert!(counted("tables_checked") >= 10, "{proven}");
    assert!(counted("indexes_checked") >= 10, "{proven}");
    assert!(!proven.stdout.contains(common::backend::LAB_PG_PASSWORD), "{proven}");
    assert_eq!(
        leftover_drill_databases(&mut db),
        Vec::<String>::new(),
        "the scratch database was not dropped"
    );

    let kept = cli.run(&["--output", "json", "ha", "backup", "verify", "--latest", "--keep"]);
    assert_eq!(kept.exit_code, Some(0), "{kept}");
    let report: serde_json::Value = serde_json::from_str(&kept.stdout).expect("a JSON report");
    assert_eq!(
        (report["backup_id"].as_str(), report["kept"].as_bool()),
        (Some(id.as_str()), Some(true))
    );
    let scratch = report["database"]
        .as_str()
        .expect("the kept database's name")
        .to_owned();
    assert_eq!(leftover_drill_databases(&mut db), vec![scratch.clone()]);

    // Tamper with the data in the drill's target: the proof names the table, exit 1.
    let scratch_url = lab.pg.url(&scratch);
    sql::connect(&scratch_url)
        .batch_execute("UPDATE customers SET display_name = display_name || '!' WHERE id = 1")
        .expect("tampered");
    let tampered = cli.run(&[
        "ha",
        "backup",
        "verify",
        &id,
        "--target-url",
        &scratch_url,
        "--proof-only",
    ]);
    assert_eq!(tampered.exit_code, Some(1), "{tampered}");
    assert_eq!(tampered.field("outcome").as_deref(), Some("differences"), "{tampered}");
    assert!(
        tampered
            .stdout
            .contains("\ndifference table public.customers: expected `rows="),
        "{tampered}"
    );
    assert_eq!(tampered.field("differences").as_deref(), Some("1"), "{tampered}");
    assert!(tampered.stderr.contains("1 difference(s)"), "{tampered}");
    assert!(
        !tampered.stdout.contains(common::backend::LAB_PG_PASSWORD),
        "{tampered}"
    );
    assert_eq!(
        leftover_drill_databases(&mut db),
        vec![scratch.clone()],
        "a --proof-only target is never dropped"
    );

    // An index that disagrees with its table is found by amcheck: an expression index over
    // an IMMUTABLE function whose body then changes, in a copy of the kept database.
    db.batch_execute(&format!("CREATE DATABASE verify_amcheck TEMPLATE \"{scratch}\""))
        .unwrap();
    let amcheck_url = lab.pg.url("verify_amcheck");
    sql::connect(&amcheck_url)
        .batch_execute(
            "CREATE FUNCTION shifty(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT t $$;
             CREATE INDEX customers_shifty ON customers (shifty(display_name));
             CREATE OR REPLACE FUNCTION shifty(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT t || 'x' $$;",
        )
        .expect("an index made inconsistent");
    let corrupt = cli.run(&[
        "ha",
        "backup",
        "verify",
        &id,
        "--target-url",
        &amcheck_url,
        "--proof-only",
    ]);
    assert_eq!(corrupt.exit_code, Some(1), "{corrupt}");
    assert!(
        corrupt.stdout.contains(
            "\ndifference index public.customers_shifty: expected `amcheck: consistent with its table`, found `amcheck: heap tuple"
        ),
        "{corrupt}"
    );
    db.batch_execute("DROP DATABASE verify_amcheck WITH (FORCE)").unwrap();

    // The live database (it holds autonomy_ha) and templates are never a drill's target.
    for (url, says) in [(lab.url(), "autonomy_ha"), (lab.pg.url("template1"), "template")] {
        let refused = cli.run(&["ha", "backup", "verify", &id, "--target-url", &url, "--proof-only"]);
        assert_eq!(refused.exit_code, Some(2), "{refused}");
        assert!(refused.stderr.contains(says), "expected `{says}`: {refused}");
    }

    // Another server for the scratch database (here the lab's, by its `postgres` database);
    // a scratch database an earlier drill abandoned there (its node died) is dropped first.
    db.batch_execute("CREATE DATABASE autonomy_verify_abandoned_0 TEMPLATE template0")
        .unwrap();
    db.batch_execute("COMMENT ON DATABASE autonomy_verify_abandoned_0 IS 'autonomy drill in progress'")
        .unwrap();
    let elsewhere = cli.run(&["ha", "backup", "verify", &id, "--target-url", &lab.pg.url("postgres")]);
    assert_eq!(elsewhere.exit_code, Some(0), "{elsewhere}");
    assert!(
        elsewhere
            .field("target")
            .is_some_and(|t| t.contains("/autonomy_verify_")),
        "{elsewhere}"
    );
    assert!(
        elsewhere
            .stdout
            .contains("dropped scratch databases earlier drills abandoned: autonomy_verify_abandoned_0"),
        "{elsewhere}"
    );
    assert_eq!(
        leftover_drill_databases(&mut db),
        vec![scratch.clone()],
        "the kept database must survive the sweep"
    );

    // Bad input: exit 2, nothing run.
    for (args, says) in [
        (vec!["ha", "backup", "verify"], "<BACKUP_ID>"),
        (vec!["ha", "backup", "verify", "bk-nope"], "no backup `bk-nope`"),
        (vec!["ha", "backup", "verify", "bad id!"], "backup id"),
        (vec!["ha", "backup", "verify", &id, "--proof-only"], "--target-url"),
        (
            vec!["ha", "backup", "verify", &id, "--target-url", "not a url=x y"],
            "--target-url",
        ),
        (
            vec!["ha", "backup", "verify", &id, "--target-url", "postgresql://u@a,b/db"],
            "several hosts",
        ),
    ] {
        let run = cli.run(&args);
        assert_eq!(run.exit_code, Some(2), "{run}");
        assert!(run.stderr.contains(says), "expected `{says}`: {run}");
    }

    // A drill that fails mid-way (the archive names a role the server no longer has) is
    // `not_run`, exit 2, with the reason, and its scratch database is gone all the same.
    db.batch_execute("CREATE ROLE verify_owner; CREATE TABLE owned_elsewhere (x int); ALTER TABLE owned_elsewhere OWNER TO verify_owner")
        .unwrap();
    cli.run_ok(&["ha", "backup", "create"]);
    db.batch_execute("DROP TABLE owned_elsewhere; DROP ROLE verify_owner")
        .unwrap();
    let failed = cli.run(&["ha", "backup", "verify", "--latest"]);
    assert_eq!(failed.exit_code, Some(2), "{failed}");
    assert_eq!(failed.field("outcome").as_deref(), Some("not_run"), "{failed}");
    assert!(failed.stdout.contains("\nphase cleanup ms="), "{failed}");
    assert!(
        failed.stderr.contains("could not run") && failed.stderr.contains("verify_owner"),
        "{failed}"
    );
    assert_eq!(
        leftover_drill_databases(&mut db),
        vec![scratch.clone()],
        "the failed drill left its database"
    );

    // The inventory and the audit record the drills.
    let listed = cli.run(&["--output", "json", "ha", "backup", "list"]);
    let records: Vec<serde_json::Value> = serde_json::from_str(&listed.stdout).expect("JSON list");
    let record = records.iter().find(|r| r["backup_id"] == id.as_str()).expect("listed");
    assert!(record["last_verified_at"].is_string(), "{record}");
    assert_eq!(record["last_verify_outcome"], "proven", "{record}");
    let audit = std::fs::read_to_string(lab.audit_dir().join("verify-n1.jsonl")).unwrap_or_default();
    assert!(audit.matches("ha.backup.verified").count() >= 4, "{audit}");
    assert!(
        !audit.contains("bk-nope"),
        "a drill of an unknown backup never started: {audit}"
    );
    assert!(
        !audit.contains(common::backend::LAB_PG_PASSWORD),
        "the audit holds a password"
    );
    drop(node);
    db.batch_execute(&format!("DROP DATABASE \"{scratch}\" WITH (FORCE)"))
        .unwrap();
}
