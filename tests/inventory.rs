//! The manifests are the catalog of record: a lost inventory table is rebuilt from them.

use autonomy_lab as common;

use common::{cli::Cli, lab::Lab, sql};

#[test]
fn a_dropped_inventory_is_rebuilt_from_the_manifests() {
    let lab = autonomy_lab::or_skip!(Lab::start_or_skip("inventory"));
    let node = lab.leader("inventory-node", false);
    let cli = Cli::for_server(&node.url);
    let created = cli.run_ok(&["ha", "backup", "create"]);
    let id = created.field("backup_id").expect("a backup id");
    let checksum = created.field("checksum").expect("a checksum");

    sql::connect(&lab.url())
        .batch_execute("DROP TABLE autonomy_ha.backup_inventory")
        .expect("the inventory table can be dropped");

    let listed = cli.run(&["ha", "backup", "list", "--output", "json"]);
    assert!(listed.success(), "{listed}\nlog:\n{}", node.log());
    let records: Vec<serde_json::Value> = serde_json::from_str(&listed.stdout).expect("a JSON list");
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["backup_id"], id.as_str());
    assert_eq!(records[0]["status"], "completed");
    assert_eq!(records[0]["checksum"], checksum.as_str());
}
