//! A restore that fails part-way leaves the database exactly as it was (all or nothing).
//!
//! The archive names an owner role that is dropped after the backup, so replaying it fails at
//! `ALTER ... OWNER TO` — after the restore has already dropped every user schema inside its
//! transaction. The fingerprint afterwards must equal the one before the attempt.

mod common;

use autonomy::exit::Exit;
use common::{cli::Cli, lab::Lab, node::Node, sql};

#[test]
fn a_failed_restore_changes_nothing() {
    let Some(lab) = Lab::start_or_skip("restore-atomic") else {
        return;
    };
    let url = lab.url();
    let mut db = sql::connect(&url);
    db.batch_execute(include_str!("../fixtures/val15.sql"))
        .expect("the fixture loads");
    db.batch_execute("CREATE ROLE val15_owner; CREATE TABLE owned_elsewhere (id int); ALTER TABLE owned_elsewhere OWNER TO val15_owner;")
        .expect("an owned table");
    let spec = |node_id: &str, maintenance_mode: bool| lab.node_spec(node_id, maintenance_mode);

    let node = Node::start_leader(spec("atomic-normal", false)).unwrap_or_else(|e| panic!("{e}"));
    let created = Cli::for_server(&node.url).run(&["ha", "backup", "create"]);
    assert!(created.success(), "{created}");
    let id = created.field("backup_id").expect("a backup id");
    drop(node);

    db.batch_execute(
        "DROP TABLE owned_elsewhere; DROP ROLE val15_owner;
         UPDATE val15_small SET payload = 'after the backup'; CREATE TABLE newer (x int);",
    )
    .expect("post-backup changes");
    let before = sql::fingerprint(&mut db);

    let maint = Node::start_leader(spec("atomic-maint", true)).unwrap_or_else(|e| panic!("{e}"));
    let restored = Cli::for_server(&maint.url).run(&["ha", "backup", "restore", &id, "--confirm"]);
    assert_eq!(
        restored.exit_code,
        Some(i32::from(Exit::OperationFailed.code())),
        "the restore must fail:\n{restored}"
    );
    assert!(
        restored.stderr.contains("val15_owner"),
        "the error should name the missing role:\n{restored}"
    );

    let mut db = sql::connect(&url);
    let after = sql::fingerprint(&mut db);
    assert_eq!(
        before.diff(&after),
        Vec::<String>::new(),
        "a failed restore changed the database"
    );
    assert_eq!(before.digest, after.digest);
}
