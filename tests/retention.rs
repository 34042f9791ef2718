//! Retention on a real node: the plan keeps the only proven backup although it is the oldest
//! and no rule keeps it, a dry run changes nothing, a backup being drilled is kept while the
//! drill runs, and once a newer backup is proven the old one goes: archive, manifest and
//! inventory row, audited. A follower refuses to prune.

use std::time::Duration;

use autonomy_lab as common;
use common::{cli::Cli, lab::Lab, node::Node, run::wait_until, sql};

/// The plan line of `id` in a prune's output.
fn line_of<'a>(run: &'a common::cli::CliRun, id: &str) -> &'a str {
    run.stdout
        .lines()
        .find(|line| line.starts_with(&format!("backup_id={id} ")))
        .unwrap_or_else(|| panic!("no line for {id}:\n{run}"))
}

#[test]
fn retention_keeps_the_only_proven_backup_and_what_a_drill_uses_and_a_dry_run_changes_nothing() {
    let lab = common::or_skip!(Lab::start_or_skip("retention"));
    let mut db = lab.load(common::lab::VAL15_SQL);
    sql::load_big_table(&mut db, 48);
    let spec = lab.node_spec("ret-n1", false).retaining_today_and(1);
    let node = Node::start_leader(spec).unwrap_or_else(|e| panic!("{e}"));
    let cli = Cli::for_server(&node.url);
    let ids: Vec<String> = (0..3)
        .map(|_| cli.run_ok(&["ha", "backup", "create"]).field("backup_id").unwrap())
        .collect();
    let (oldest, middle, newest) = (&ids[0], &ids[1], &ids[2]);
    let drilled = cli.run_ok(&["ha", "backup", "verify", oldest]);
    assert_eq!(drilled.field("outcome").as_deref(), Some("proven"), "{drilled}");

    // The plan: the newest by the rules, the oldest only because it is the one proven.
    let files = || common::run::file_names(&lab.scratch.path().join("backups"));
    let before = (files(), cli.run_ok(&["ha", "backup", "list"]).stdout);
    let plan = cli.run_ok(&["ha", "backup", "prune", "--dry-run"]);
    assert!(line_of(&plan, newest).contains("keep daily"), "{plan}");
    assert!(line_of(&plan, middle).ends_with(" delete"), "{plan}");
    assert!(
        line_of(&plan, oldest).contains("keep newest proven backup: no rule keeps it"),
        "{plan}"
    );
    assert_eq!(
        (files(), cli.run_ok(&["ha", "backup", "list"]).stdout),
        before,
        "the dry run changed something"
    );

    // A drill of the middle backup protects it while it runs.
    let drilling = {
        let (cli, middle) = (cli.clone(), middle.clone());
        std::thread::spawn(move || cli.run(&["ha", "backup", "verify", &middle]))
    };
    let seen = wait_until(Duration::from_secs(20), || {
        let plan = cli.run_ok(&["ha", "backup", "prune", "--dry-run"]);
        line_of(&plan, middle).contains("in use by a drill").then_some(())
    });
    assert!(seen.is_some(), "the drill of {middle} never showed in the plan");
    let pruned = cli.run_ok(&["ha", "backup", "prune"]);
    assert!(
        line_of(&pruned, middle).contains("keep in use by a drill"),
        "a backup being drilled was not kept:\n{pruned}"
    );
    let drill = drilling.join().unwrap();
    assert_eq!(drill.field("outcome").as_deref(), Some("proven"), "{drill}");

    // The drill proved the middle backup: it is now the newest proven one, and the oldest, no
    // longer needed for a proven restore, is deleted: archive, manifest, row, audited.
    let pruned = cli.run_ok(&["ha", "backup", "prune"]);
    assert!(
        line_of(&pruned, middle).contains("keep newest proven backup"),
        "{pruned}"
    );
    assert!(line_of(&pruned, oldest).ends_with(" deleted"), "{pruned}");
    let left = files();
    assert!(
        !left.iter().any(|name| name.starts_with(oldest.as_str())),
        "the pruned backup left {left:?}"
    );
    for kept in [middle, newest] {
        assert!(
            left.contains(&format!("{kept}.dump")) && left.contains(&format!("{kept}.json")),
            "{left:?}"
        );
    }
    let listed = cli.run_ok(&["ha", "backup", "list"]);
    assert!(!listed.stdout.contains(oldest.as_str()), "{listed}");
    let audited = cli.run_ok(&["audit", "query", "--event-type", "ha.backup.pruned"]);
    assert!(audited.stdout.contains(oldest.as_str()), "{audited}");

    // Only the leader prunes.
    let follower = Node::start(lab.node_spec("ret-n2", false)).unwrap_or_else(|e| panic!("{e}"));
    let refused = Cli::for_server(&follower.url).run(&["ha", "backup", "prune"]);
    assert_eq!(refused.exit_code, Some(6), "{refused}");
}
