//! Signed manifests end to end: nodes sharing a signing key sign every manifest they publish,
//! and plain `gpg --verify` accepts the signature. Whoever can write the repository but lacks
//! the key cannot make a backup restorable: an edited manifest re-sealed with the (unkeyed)
//! seal, a stripped signature, or another key's signature is refused by restore and drill
//! before the database is touched. A rotation's previous key is accepted once named.

use autonomy_lab as common;
use common::{cli::Cli, gpg::GpgHome, lab::Lab, node::Node, sql};

/// Rewrites the manifest at `path` with `edit` applied and the seal recomputed, as anyone
/// who can write the repository can.
fn reseal(path: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut document: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut document);
    document["manifest_sha256"] = autonomy::backup::manifest::checksum_of(&document).into();
    std::fs::write(path, serde_json::to_vec_pretty(&document).unwrap()).unwrap();
}

#[test]
fn only_manifests_signed_by_a_trusted_key_restore() {
    let lab = common::or_skip!(Lab::start_or_skip("signed-manifests"));
    let gpg = common::or_skip!(GpgHome::create_or_skip(
        &lab.scratch.path().join("gpg"),
        "signed-manifests"
    ));
    let cluster_key = gpg.generate("cluster", "signing passphrase");
    let next_key = gpg.generate("next", "next passphrase");
    let mut db = lab.load(common::lab::VAL15_SQL);

    let node = Node::start_leader(cluster_key.signing(lab.node_spec("sig-n1", true))).unwrap_or_else(|e| panic!("{e}"));
    let cli = Cli::for_server(&node.url);
    let signed = cli.run_ok(&["ha", "backup", "create"]).field("backup_id").unwrap();
    let edited = cli.run_ok(&["ha", "backup", "create"]).field("backup_id").unwrap();
    let stripped = cli.run_ok(&["ha", "backup", "create"]).field("backup_id").unwrap();
    let manifest_path = |id: &str| lab.scratch.path().join("backups").join(format!("{id}.json"));
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(manifest_path(&signed)).unwrap()).unwrap();
    assert_eq!(
        manifest["manifest_signature"]["signer"], cluster_key.fingerprint,
        "{manifest}"
    );

    // The oracle: gpg verifies the signature over the seal's text.
    let (seal, signature) = (lab.scratch.path().join("seal.txt"), lab.scratch.path().join("seal.asc"));
    std::fs::write(&seal, manifest["manifest_sha256"].as_str().unwrap()).unwrap();
    std::fs::write(
        &signature,
        manifest["manifest_signature"]["signature"].as_str().unwrap(),
    )
    .unwrap();
    gpg.verify(&signature, &seal)
        .unwrap_or_else(|e| panic!("gpg does not accept the signature: {e}"));
    std::fs::write(&seal, "0".repeat(64)).unwrap();
    assert!(
        gpg.verify(&signature, &seal).is_err(),
        "gpg accepted the signature over another seal"
    );

    // Forgeries by someone who can write the repository but has no key.
    reseal(&manifest_path(&edited), |m| m["database"] = "elsewhere".into());
    reseal(&manifest_path(&stripped), |m| {
        m.as_object_mut().unwrap().remove("manifest_signature");
    });
    db.batch_execute("UPDATE val15_small SET payload = 'after the backups'")
        .unwrap();
    let after = sql::fingerprint(&mut db);
    for (id, says) in [(&edited, "does not verify"), (&stripped, "not signed")] {
        let refused = cli.run(&["ha", "backup", "restore", id, "--confirm"]);
        assert_eq!(refused.exit_code, Some(7), "{refused}");
        assert!(refused.stderr.contains(says), "{refused}");
        let drilled = cli.run(&["ha", "backup", "verify", id]);
        assert_ne!(drilled.field("outcome").as_deref(), Some("proven"), "{drilled}");
        assert!(drilled.stdout.contains(says), "{drilled}");
    }
    sql::assert_still(&lab.url(), &after, "a refused restore changed the database");
    drop(node);

    // A node with another key refuses the first key's backups until told to trust it.
    let node = Node::start_leader(next_key.signing(lab.node_spec("sig-n2", true))).unwrap_or_else(|e| panic!("{e}"));
    let refused = Cli::for_server(&node.url).run(&["ha", "backup", "restore", &signed, "--confirm"]);
    assert_eq!(refused.exit_code, Some(7), "{refused}");
    assert!(refused.stderr.contains(&next_key.fingerprint), "{refused}");
    drop(node);
    let mut rotating = next_key.signing(lab.node_spec("sig-n3", true));
    rotating
        .extra_args
        .extend(["--manifest-verify-key".into(), cluster_key.public.display().to_string()]);
    let node = Node::start_leader(rotating).unwrap_or_else(|e| panic!("{e}"));
    let cli = Cli::for_server(&node.url);
    let drilled = cli.run_ok(&["ha", "backup", "verify", &signed]);
    assert_eq!(drilled.field("outcome").as_deref(), Some("proven"), "{drilled}");
    let restored = cli.run_ok(&["ha", "backup", "restore", &signed, "--confirm"]);
    assert_eq!(restored.field("proof").as_deref(), Some("proven"), "{restored}");

    for log in ["sig-n1.log", "sig-n2.log", "sig-n3.log"] {
        let text = std::fs::read_to_string(lab.scratch.path().join(log)).unwrap();
        assert!(
            !text.contains("signing passphrase") && !text.contains("next passphrase"),
            "a passphrase is in {log}"
        );
    }
}
