//! A restore that fails part-way leaves the database exactly as it was (all or nothing).
//!
//! The archive names an owner role that is dropped after the backup, so replaying it fails at
//! `ALTER ... OWNER TO` — after the restore has already dropped every user schema inside its
//! transaction. The fingerprint afterwards must equal the one before the attempt.

use autonomy_lab as common;

use autonomy::exit::Exit;
use common::{
    cli::{Cli, CliRun},
    lab::Lab,
    node::Node,
    sql,
};

#[test]
fn a_failed_restore_changes_nothing() {
    let lab = autonomy_lab::or_skip!(Lab::start_or_skip("restore-atomic"));
    let url = lab.url();
    let mut db = lab.load(common::lab::VAL15_SQL);
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
    assert_restore_failed(&restored, "val15_owner", "name the missing role");

    let mut db = sql::connect(&url);
    let after = sql::fingerprint(&mut db);
    assert_eq!(
        before.diff(&after),
        Vec::<String>::new(),
        "a failed restore changed the database"
    );
    assert_eq!(before.digest, after.digest);
}

/// A node that loses the lease while its restore runs must not commit it: the restore checks
/// the lease again, under a share lock, just before its COMMIT, and rolls everything back.
/// Here the restore is held at its first DROP by a lock, the lease moves meanwhile (as in a
/// takeover while this node was paused), and then the lock is let go.
#[test]
fn a_restore_whose_node_lost_the_lease_meanwhile_changes_nothing() {
    let lab = autonomy_lab::or_skip!(Lab::start_or_skip("restore-fenced"));
    let url = lab.url();
    // Sessions named like autonomy's own are spared by the restore's session termination.
    let spared = |purpose: &str| {
        let mut config: postgres::Config = url.parse().expect("the lab URL parses");
        config.application_name(&format!("autonomy-ha:test:{purpose}"));
        config.connect(postgres::NoTls).expect("connect to the lab database")
    };
    let mut db = spared("setup");
    db.batch_execute(common::lab::VAL15_SQL).expect("the fixture loads");
    let node = lab.leader("fenced-normal", false);
    let created = Cli::for_server(&node.url).run(&["ha", "backup", "create"]);
    assert!(created.success(), "{created}");
    let id = created.field("backup_id").expect("a backup id");
    drop(node);
    db.batch_execute("UPDATE val15_small SET payload = 'after the backup'")
        .expect("a post-backup change");
    let before = sql::fingerprint(&mut db);

    let maint = lab.leader("fenced-maint", true);
    let mut holder = spared("holder");
    let mut hold = holder.transaction().expect("begin");
    hold.batch_execute("LOCK TABLE val15_small IN ACCESS SHARE MODE")
        .expect("lock");
    let cli = Cli::for_server(&maint.url);
    let restore = std::thread::spawn(move || cli.run(&["ha", "backup", "restore", &id, "--confirm"]));

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while db
        .query_one("SELECT count(*) FROM pg_locks WHERE NOT granted", &[])
        .expect("read pg_locks")
        .get::<_, i64>(0)
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the restore never waited on the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    db.batch_execute(
        "UPDATE autonomy_ha.leader_lease
            SET holder_id = 'another-node', holder_pid = NULL, epoch = epoch + 1,
                expires_at = now() + interval '1 minute'",
    )
    .expect("move the lease");
    hold.commit().expect("let the restore go on");

    let restored = restore.join().expect("the restore thread");
    assert_restore_failed(&restored, "lost the leader lease", "say the lease was lost");
    let after = sql::fingerprint(&mut db);
    assert_eq!(
        before.diff(&after),
        Vec::<String>::new(),
        "a fenced restore changed the database"
    );
}

/// The restore failed as an operation (exit 8), its error saying `says` (it should `why`).
#[track_caller]
fn assert_restore_failed(restored: &CliRun, says: &str, why: &str) {
    assert_eq!(
        restored.exit_code,
        Some(i32::from(Exit::OperationFailed.code())),
        "the restore must fail:\n{restored}"
    );
    assert!(restored.stderr.contains(says), "the error should {why}:\n{restored}");
}
