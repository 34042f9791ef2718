//! CLI behaviour that needs no database: usage errors, the confirm gate, an absent server.
//! Each case checks the documented exit code and that the message says what to do.

use assert_cmd::Command;
use predicates::prelude::*;
use rstest::rstest;

/// A loopback port nothing listens on (bound, then released).
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().expect("an address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

fn autonomy() -> Command {
    let mut command = Command::cargo_bin("autonomy").expect("the autonomy binary is built");
    command
        .env_remove("AUTONOMY_API_TOKEN")
        .env("AUTONOMY_SERVER_URL", closed_port_url());
    command
}

#[rstest]
#[case::restore_without_confirm(&["ha", "backup", "restore", "bk-1"], 2, "--confirm")]
#[case::restore_traversal_id(&["ha", "backup", "restore", "../x", "--confirm"], 2, "invalid backup id `../x`")]
#[case::server_not_running(&["ha", "status"], 3, "cannot reach the autonomy node")]
#[case::backup_with_server_down(&["ha", "backup", "create"], 3, "is `autonomy ha serve` running")]
#[case::unknown_command(&["ha", "nonsense"], 2, "unrecognized subcommand")]
#[case::bad_output_format(&["--output", "yaml", "ha", "status"], 2, "invalid value 'yaml'")]
#[case::serve_without_token(&["ha", "serve", "--node-id", "n", "--database-url", "postgres://x@127.0.0.1/x", "--backup-dir", "b"], 2, "no API token")]
fn refuses_with_documented_exit_code(#[case] args: &[&str], #[case] code: i32, #[case] says: &str) {
    autonomy()
        .args(args)
        .assert()
        .code(code)
        .stderr(predicate::str::contains(says));
}

#[test]
fn restore_without_confirm_sends_nothing() {
    // The server URL points at a closed port: had anything been sent, the exit would be 3.
    autonomy()
        .args(["ha", "backup", "restore", "bk-1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("nothing was sent"));
}

#[test]
fn help_lists_the_commands() {
    autonomy()
        .args(["ha", "backup", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("create").and(predicate::str::contains("restore")));
}
