//! Encryption at rest end to end, with real gpg from Debian as the independent oracle: a node
//! that holds only the recipients' public keys writes archives that plain `gpg --decrypt`
//! opens into an archive pg_restore accepts; what gpg seals, autonomy opens. A node without
//! the key, or with another key, is refused before the database is touched; with the key, the
//! drill proves it decrypts and the restore is the backup. On the directory and on S3.

use std::path::Path;

use autonomy_lab as common;
use common::{cli::Cli, gpg::GpgHome, lab::Lab, node::Node, node::NodeSpec, s3::S3Server, sql};
use rstest::rstest;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy)]
enum Kind {
    Local,
    S3,
}

fn sha256_file(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// Where a node of this kind keeps `id`'s archive and manifest.
fn stored(lab: &Lab, server: Option<&S3Server>, id: &str, suffix: &str) -> std::path::PathBuf {
    match server {
        Some(server) => server.object_path(&format!("enc/{id}{suffix}")),
        None => lab.scratch.path().join("backups").join(format!("{id}{suffix}")),
    }
}

fn spec(lab: &Lab, server: Option<&S3Server>, node_id: &str) -> NodeSpec {
    let spec = lab.node_spec(node_id, true);
    match server {
        Some(server) => spec.with_s3(server, "enc/"),
        None => spec,
    }
}

#[rstest]
fn an_encrypted_backup_opens_with_gpg_and_only_with_a_recipients_key(#[values(Kind::Local, Kind::S3)] kind: Kind) {
    let label = format!("encryption-{kind:?}").to_lowercase();
    let lab = common::or_skip!(Lab::start_or_skip(&label));
    let server = match kind {
        Kind::S3 => Some(common::or_skip!(S3Server::start_or_skip(
            &lab.scratch.path().join("s3"),
            &label
        ))),
        Kind::Local => None,
    };
    let gpg = common::or_skip!(GpgHome::create_or_skip(&lab.scratch.path().join("gpg"), &label));
    let operator = gpg.generate("operator", "correct horse battery");
    let stranger = gpg.generate("stranger", "another passphrase");
    let mut db = lab.load(common::lab::VAL15_SQL);

    // A node that only backs up: the public key, nothing secret.
    let mut backs_up = spec(&lab, server.as_ref(), "enc-public");
    backs_up
        .extra_args
        .extend(["--backup-encrypt-to".into(), operator.public.display().to_string()]);
    let node = Node::start_leader(backs_up).unwrap_or_else(|e| panic!("{e}"));
    let cli = Cli::for_server(&node.url);
    let id = cli
        .run_ok(&["ha", "backup", "create"])
        .field("backup_id")
        .expect("a backup id");
    let archive = stored(&lab, server.as_ref(), &id, ".dump");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(stored(&lab, server.as_ref(), &id, ".json")).unwrap()).unwrap();
    let storage = &manifest["storage"];
    assert_eq!(storage["encryption"], "openpgp", "{manifest}");
    assert_eq!(storage["openpgp"]["cipher"], "AES256", "{manifest}");
    assert_eq!(
        storage["openpgp"]["recipients"],
        serde_json::json!([operator.fingerprint]),
        "{manifest}"
    );
    assert_eq!(
        manifest["sha256"],
        sha256_file(&archive),
        "the archive's sha256 is not over the stored bytes"
    );
    let bytes = std::fs::read(&archive).unwrap();
    assert!(
        !bytes.starts_with(b"PGDMP"),
        "the stored archive is a plain pg_dump archive"
    );
    assert!(
        !bytes.windows(10).any(|w| w == b"val15_smal"),
        "a table name is readable in the stored archive"
    );

    // The oracle: plain gpg, no autonomy, gives the archive pg_dump wrote.
    let opened = lab.scratch.path().join("opened.dump");
    gpg.decrypt(&operator, &archive, &opened)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        storage["openpgp"]["plaintext_sha256"],
        sha256_file(&opened),
        "gpg's plaintext is not what the manifest recorded"
    );
    let listed = std::process::Command::new("pg_restore")
        .arg("--list")
        .arg(&opened)
        .output()
        .unwrap();
    assert!(
        listed.status.success() && String::from_utf8_lossy(&listed.stdout).contains("val15_small"),
        "pg_restore does not accept gpg's plaintext: {}",
        String::from_utf8_lossy(&listed.stderr)
    );

    // Without a secret key, nothing is restored, and the refusal says why.
    let before = sql::fingerprint(&mut db);
    db.batch_execute("UPDATE val15_small SET payload = 'after the backup'")
        .unwrap();
    let after = sql::fingerprint(&mut db);
    let refused = cli.run(&["ha", "backup", "restore", &id, "--confirm"]);
    assert_eq!(refused.exit_code, Some(12), "{refused}");
    assert!(refused.stderr.contains("no decryption key"), "{refused}");
    let drilled = cli.run(&["ha", "backup", "verify", &id]);
    assert_eq!(drilled.exit_code, Some(2), "{drilled}");
    assert!(drilled.stderr.contains("no decryption key"), "{drilled}");
    drop(node);

    // Another recipient's key: refused as well, before the database is touched.
    let wrong = stranger.decrypting(spec(&lab, server.as_ref(), "enc-stranger"));
    let node = Node::start_leader(wrong).unwrap_or_else(|e| panic!("{e}"));
    let refused = Cli::for_server(&node.url).run(&["ha", "backup", "restore", &id, "--confirm"]);
    assert_eq!(refused.exit_code, Some(12), "{refused}");
    assert!(
        refused.stderr.contains(&stranger.fingerprint) && refused.stderr.contains("is not one of them"),
        "{refused}"
    );
    sql::assert_still(&lab.url(), &after, "a refused restore changed the database");
    drop(node);

    // The recipient's key: the drill proves it opens the backup, and the restore is the backup.
    let restores = operator.decrypting(spec(&lab, server.as_ref(), "enc-secret"));
    let node = Node::start_leader(restores).unwrap_or_else(|e| panic!("{e}"));
    let cli = Cli::for_server(&node.url);
    let drilled = cli.run_ok(&["ha", "backup", "verify", &id]);
    assert_eq!(drilled.field("outcome").as_deref(), Some("proven"), "{drilled}");
    assert_eq!(
        drilled.field("decrypted_with"),
        Some(operator.fingerprint.clone()),
        "{drilled}"
    );
    let restored = cli.run_ok(&["ha", "backup", "restore", &id, "--confirm"]);
    assert_eq!(restored.field("proof").as_deref(), Some("proven"), "{restored}");
    sql::assert_still(&lab.url(), &before, "the restore is not the backup");

    // No decrypted copy is left behind, and no passphrase reached a log.
    let scratch = lab.scratch.path().join("backups");
    let left: Vec<_> = common::run::file_names(&scratch)
        .into_iter()
        .filter(|n| n.starts_with(".staged-"))
        .collect();
    assert!(left.is_empty(), "staged copies were left: {left:?}");
    for log in ["enc-public.log", "enc-stranger.log", "enc-secret.log"] {
        let text = std::fs::read_to_string(lab.scratch.path().join(log)).unwrap();
        assert!(
            !text.contains(&operator.passphrase) && !text.contains(&stranger.passphrase),
            "a passphrase is in {log}"
        );
    }
}

/// A scratch directory with a GnuPG home and the operator's key in it.
fn operator_keyring(label: &str) -> Option<(tempfile::TempDir, GpgHome, common::gpg::GpgKey)> {
    let scratch = tempfile::tempdir().unwrap();
    let gpg = GpgHome::create_or_skip(&scratch.path().join("gpg"), label)?;
    let operator = gpg.generate("operator", "correct horse battery");
    Some((scratch, gpg, operator))
}

#[test]
fn what_gpg_seals_by_hand_autonomy_opens() {
    let (scratch, gpg, operator) = common::or_skip!(operator_keyring("encryption-gpg-seals"));
    // Compressible plaintext, so gpg's default compression is exercised too.
    let plain = scratch.path().join("plain.bin");
    let content: Vec<u8> = (0..3_000_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
    std::fs::write(&plain, &content).unwrap();
    let sealed = scratch.path().join("plain.bin.gpg");
    gpg.encrypt(&operator, &plain, &sealed)
        .unwrap_or_else(|e| panic!("{e}"));

    let key = autonomy::backup::openpgp::DecryptionKey::load(&operator.secret, operator.passphrase.as_str().into())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(key.fingerprint, operator.fingerprint);
    let file = std::io::BufReader::new(std::fs::File::open(&sealed).unwrap());
    let mut opened = autonomy::backup::openpgp::stream::decrypt(file, &key).unwrap_or_else(|e| panic!("{e}"));
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut opened, &mut bytes).unwrap();
    assert!(bytes == content, "autonomy's plaintext differs from what gpg sealed");

    let wrong = autonomy::backup::openpgp::DecryptionKey::load(&operator.secret, "not the passphrase".into());
    let error = wrong.expect_err("a wrong passphrase unlocked the key").to_string();
    assert!(
        error.contains("does not unlock") && !error.contains("not the passphrase"),
        "{error}"
    );
}

#[test]
fn a_key_that_cannot_work_stops_the_node_at_start_without_showing_a_secret() {
    let (scratch, _gpg, operator) = common::or_skip!(operator_keyring("encryption-bad-keys"));
    // A node that never gets as far as its database: the keys are checked first.
    let serve = |extra: &[&str], passphrase: Option<&str>| {
        let spec = NodeSpec {
            node_id: "enc-bad".into(),
            database_url: "postgres://nobody@127.0.0.1:1/none".into(),
            backup_dir: scratch.path().join("backups"),
            audit_dir: scratch.path().join("audit"),
            maintenance_mode: false,
            log_path: scratch.path().join("enc-bad.log"),
            extra_args: extra.iter().map(|arg| arg.to_string()).collect(),
            listen: "127.0.0.1:0".into(),
            wrapper: Vec::new(),
            env: passphrase
                .map(|p| ("AUTONOMY_BACKUP_KEY_PASSPHRASE".to_owned(), p.to_owned()))
                .into_iter()
                .collect(),
        };
        let error = Node::start(spec).err().expect("the node started");
        (
            error,
            std::fs::read_to_string(scratch.path().join("enc-bad.log")).unwrap(),
        )
    };
    let (public, secret) = (
        operator.public.display().to_string(),
        operator.secret.display().to_string(),
    );
    for (extra, passphrase, says) in [
        (
            vec!["--backup-decrypt-key", &secret],
            Some("wrong passphrase 42"),
            "the passphrase does not unlock key",
        ),
        (
            vec!["--backup-decrypt-key", &secret],
            None,
            "the passphrase does not unlock key",
        ),
        (
            vec!["--backup-decrypt-key", &public],
            Some("x"),
            "not an OpenPGP secret key",
        ),
        (vec!["--backup-encrypt-to", &secret], None, "not an OpenPGP public key"),
        // Scheduled drills of backups this node cannot open would all fail.
        (
            vec!["--backup-encrypt-to", &public, "--verify-schedule", "0 4 * * *"],
            None,
            "--verify-schedule is set and backups are encrypted",
        ),
    ] {
        let (error, log) = serve(&extra, passphrase);
        assert!(error.contains("exited (exit status: 2)"), "{extra:?}: {error}");
        assert!(log.contains(says), "{extra:?}: {log}");
        assert!(
            !log.contains("wrong passphrase 42"),
            "the passphrase is in the log: {log}"
        );
        assert!(
            !scratch.path().join("backups").exists(),
            "a refused start created the backup directory"
        );
    }
}
