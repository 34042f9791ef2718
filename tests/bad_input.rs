//! Bad input is refused with a clear message and a documented exit code, and changes nothing.
//!
//! One lab serves every case: each row runs the real CLI, checks the exit code and the message,
//! and afterwards the database fingerprint and the restore audit count must be as before.

use autonomy_lab as common;

use autonomy::{
    audit::{self, AuditQuery},
    client::{ClientError, NodeClient},
    exit::Exit,
};
use common::{cli::Cli, lab::Lab, node::Node, sql, LAB_TOKEN};

struct Case<'a> {
    name: &'a str,
    cli: Cli,
    args: Vec<&'a str>,
    exit: Exit,
    says: &'a str,
}

fn restored_events(audit_dir: &std::path::Path) -> usize {
    let query = AuditQuery {
        event_type: Some("ha.backup.restored".into()),
        since: None,
    };
    audit::query(audit_dir, &query).expect("the audit store reads").len()
}

/// Runs each case, returning a description of every one that did not behave.
fn check_cases(cases: Vec<Case<'_>>, db: &mut postgres::Client, audit_dir: &std::path::Path) -> Vec<String> {
    let mut failures = Vec::new();
    for case in cases {
        let before = sql::fingerprint(db);
        let restored_before = restored_events(audit_dir);
        let run = case.cli.run(&case.args);
        let after = sql::fingerprint(db);
        let output = format!("{}{}", run.stdout, run.stderr);
        if run.exit_code != Some(i32::from(case.exit.code())) {
            failures.push(format!(
                "{}: expected exit {} ({:?})\n{run}",
                case.name,
                case.exit.code(),
                case.exit
            ));
        }
        if !output.contains(case.says) {
            failures.push(format!(
                "{}: expected the message to contain `{}`\n{run}",
                case.name, case.says
            ));
        }
        if before != after {
            failures.push(format!(
                "{}: the database changed: {:?}",
                case.name,
                before.diff(&after)
            ));
        }
        if restored_events(audit_dir) != restored_before {
            failures.push(format!("{}: a restore was audited", case.name));
        }
    }
    failures
}

#[test]
fn bad_input_is_refused_clearly_and_changes_nothing() {
    let lab = autonomy_lab::or_skip!(Lab::start_or_skip("bad-input"));
    let url = lab.url();
    let mut db = lab.load(common::lab::VAL15_SQL);
    let spec = |node_id: &str, maintenance_mode: bool| lab.node_spec(node_id, maintenance_mode);
    let audit_dir = lab.audit_dir();

    let node = Node::start_leader(spec("bad-input-normal", false)).unwrap_or_else(|e| panic!("{e}"));
    let cli = Cli::for_server(&node.url);
    let created = cli.run_ok(&["ha", "backup", "create"]);
    let id = created.field("backup_id").expect("a backup id");

    // The server refuses an unconfirmed restore too, whatever the client does.
    let raw = NodeClient::new(&node.url, Some(LAB_TOKEN.into()));
    match raw.post::<_, serde_json::Value>(&format!("/v1/ha/backups/{id}/restore"), &serde_json::json!({})) {
        Err(ClientError::Api {
            status: 400,
            code,
            message,
            ..
        }) => {
            assert_eq!(code, "not_confirmed");
            assert!(message.contains("--confirm"), "{message}");
        }
        other => panic!("an unconfirmed API restore must be refused with 400, got {other:?}"),
    }

    // The rollout API refuses malformed writes itself (the CLI checks too, but a client may
    // not), and a second write under a taken name changes nothing.
    let _: serde_json::Value = raw
        .post(
            "/v1/rollouts",
            &serde_json::json!({ "name": "web-v1", "spec": { "image": "web:1" } }),
        )
        .expect("a first rollout is stored");
    let before_rollouts = sql::fingerprint(&mut db);
    for (body, status, code) in [
        (
            serde_json::json!({ "name": "web-v1", "spec": { "image": "other" } }),
            409,
            "already_exists",
        ),
        (serde_json::json!({ "name": "../x", "spec": {} }), 400, "invalid_name"),
        (
            serde_json::json!({ "name": "web-v2", "spec": [1] }),
            400,
            "invalid_spec",
        ),
        (serde_json::json!({ "spec": {} }), 400, "invalid_body"),
    ] {
        match raw.post::<_, serde_json::Value>("/v1/rollouts", &body) {
            Err(ClientError::Api {
                status: got_status,
                code: got_code,
                ..
            }) if got_status == status && got_code == code => {}
            other => panic!("{body} must be refused with {status} {code}, got {other:?}"),
        }
    }
    assert_eq!(
        before_rollouts.diff(&sql::fingerprint(&mut db)),
        Vec::<String>::new(),
        "refused rollout writes changed the database"
    );

    // `ha serve` with a valid database and backup dir: each case below breaks one other input.
    let serve_args = [
        "ha",
        "serve",
        "--node-id",
        "x",
        "--database-url",
        &url,
        "--backup-dir",
        "/nonexistent",
    ];
    let mut failures = check_cases(
        vec![
            Case {
                name: "unknown id",
                cli: cli.clone(),
                args: vec!["ha", "backup", "restore", "bk-does-not-exist", "--confirm"],
                exit: Exit::NotFound,
                says: "no backup `bk-does-not-exist`",
            },
            Case {
                name: "path traversal id",
                cli: cli.clone(),
                args: vec!["ha", "backup", "restore", "../x", "--confirm"],
                exit: Exit::Usage,
                says: "invalid backup id `../x`",
            },
            Case {
                name: "restore without --confirm",
                cli: cli.clone(),
                args: vec!["ha", "backup", "restore", &id],
                exit: Exit::Usage,
                says: "--confirm",
            },
            Case {
                name: "restore outside maintenance mode",
                cli: cli.clone(),
                args: vec!["ha", "backup", "restore", &id, "--confirm"],
                exit: Exit::Refused,
                says: "maintenance mode",
            },
            Case {
                name: "wrong token",
                cli: cli.clone().with_token(Some("not-the-token-at-all")),
                args: vec!["ha", "backup", "list"],
                exit: Exit::Unauthorized,
                says: "token is wrong",
            },
            Case {
                name: "missing token",
                cli: cli.clone().with_token(None),
                args: vec!["ha", "backup", "create"],
                exit: Exit::Unauthorized,
                says: "no API token",
            },
            Case {
                name: "not an http URL",
                cli: Cli::for_server("localhost:1"),
                args: vec!["ha", "status"],
                exit: Exit::Usage,
                says: "is not an http:// URL",
            },
            Case {
                name: "bad --since",
                cli: cli.clone(),
                args: vec![
                    "audit",
                    "query",
                    "--since",
                    "yesterday",
                    "--audit-dir",
                    audit_dir.to_str().expect("utf-8"),
                ],
                exit: Exit::Usage,
                says: "RFC 3339",
            },
            Case {
                name: "serve without token",
                cli: cli.clone().with_token(None),
                args: serve_args.to_vec(),
                exit: Exit::Usage,
                says: "no API token",
            },
            Case {
                name: "serve with a short token",
                cli: cli.clone().with_token(Some("short")),
                args: serve_args.to_vec(),
                exit: Exit::Usage,
                says: "at least 16",
            },
            Case {
                name: "serve on a remote address",
                cli: cli.clone(),
                args: [&serve_args[..], &["--listen", "0.0.0.0:0"]].concat(),
                exit: Exit::Usage,
                says: "--allow-remote",
            },
            Case {
                name: "serve with a bad node id",
                cli: cli.clone(),
                args: vec![
                    "ha",
                    "serve",
                    "--node-id",
                    "../n",
                    "--database-url",
                    &url,
                    "--backup-dir",
                    "/nonexistent",
                ],
                exit: Exit::Usage,
                says: "invalid node id",
            },
        ],
        &mut db,
        &audit_dir,
    );

    let stopped_url = node.url.clone();
    drop(node);
    failures.extend(check_cases(
        vec![Case {
            name: "server not running",
            cli: Cli::for_server(&stopped_url),
            args: vec!["ha", "backup", "list"],
            exit: Exit::Unreachable,
            says: "cannot reach the autonomy node",
        }],
        &mut db,
        &audit_dir,
    ));

    // An archive changed after creation is refused before the database is touched.
    let maint = Node::start_leader(spec("bad-input-maint", true)).unwrap_or_else(|e| panic!("{e}"));
    let archive = lab.archive_path(&id);
    let mut bytes = std::fs::read(&archive).expect("the archive reads");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&archive, bytes).expect("the archive can be altered");
    db.batch_execute("UPDATE val15_small SET payload = 'changed after the backup' WHERE id = 1")
        .expect("mutation");
    failures.extend(check_cases(
        vec![
            Case {
                name: "altered archive",
                cli: Cli::for_server(&maint.url),
                args: vec!["ha", "backup", "restore", &id, "--confirm"],
                exit: Exit::Integrity,
                says: "does not match its manifest",
            },
            Case {
                name: "unknown id in maintenance mode",
                cli: Cli::for_server(&maint.url),
                args: vec!["ha", "backup", "restore", "bk-nope", "--confirm"],
                exit: Exit::NotFound,
                says: "no backup `bk-nope`",
            },
        ],
        &mut db,
        &audit_dir,
    ));

    assert!(
        failures.is_empty(),
        "{} case(s) misbehaved:\n\n{}\n\nnode log:\n{}",
        failures.len(),
        failures.join("\n\n"),
        maint.log()
    );
}
