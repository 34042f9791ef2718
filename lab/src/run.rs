//! The run id (which run a phase cache and an evidence bundle belong to) and lab paths.

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

/// AUTONOMY_RUN_ID, else NEXTEST_RUN_ID (shared by every test process of a nextest run), else
/// one id per test process (`cargo test` runs all checks of a binary in one process).
pub fn run_id() -> &'static str {
    static RUN_ID: OnceLock<String> = OnceLock::new();
    RUN_ID.get_or_init(|| {
        std::env::var("AUTONOMY_RUN_ID")
            .or_else(|_| std::env::var("NEXTEST_RUN_ID"))
            .ok()
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| {
                let now = time::OffsetDateTime::now_utc();
                let stamp = now
                    .format(time::macros::format_description!(
                        "[year][month][day]T[hour][minute][second]Z"
                    ))
                    .expect("a fixed format always formats");
                format!("local-{stamp}-{}", std::process::id())
            })
    })
}

/// `<crate>/evidence`: where bundles go (git-ignored but for its README).
pub fn evidence_root() -> PathBuf {
    std::env::var_os("AUTONOMY_EVIDENCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository_root().join("evidence"))
}

/// Per-run scratch space for phase locks and caches (under target/, not evidence/).
pub fn lab_dir() -> PathBuf {
    let dir = build_dir()
        .parent()
        .map_or_else(|| PathBuf::from("target"), |target| target.join("tmp"))
        .join("autonomy-lab")
        .join(run_id());
    std::fs::create_dir_all(&dir).expect("the lab directory under target/ can be created");
    dir
}

/// True when a backend that cannot run must fail the run instead of being skipped (CI).
pub fn lab_required() -> bool {
    std::env::var("AUTONOMY_LAB_REQUIRE").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// Every file under `dir`, relative to it, sorted (a bundle's file list for its report).
pub fn list_files(dir: &std::path::Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(relative) = path.strip_prefix(dir) {
                files.push(relative.display().to_string());
            }
        }
    }
    files.sort();
    files
}

/// The repository this lab belongs to (the lab crate lives in its `lab/` folder).
pub fn repository_root() -> PathBuf {
    let lab = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    lab.parent().map_or(lab.clone(), PathBuf::from)
}

/// `target/<profile>`: the test or bench binary running now sits in its `deps/` folder, and
/// cargo builds the `autonomy` binary beside that folder for every test and bench target.
fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the running test binary has a path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{} is not in a cargo target directory", exe.display()))
}

/// The `autonomy` binary under test: `AUTONOMY_BIN` if set, else the one cargo built for this
/// test run.
pub fn autonomy_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let binary = std::env::var_os("AUTONOMY_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| build_dir().join("autonomy"));
            assert!(
                binary.is_file(),
                "no autonomy binary at {}: run the tests with cargo (it builds the binary), or set AUTONOMY_BIN",
                binary.display()
            );
            binary
        })
        .clone()
}

/// The names of the entries of `dir` (none when it cannot be read).
pub fn file_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default()
}

/// Polls `probe` every 10 ms until it gives a value or `limit` passes; the value and the wait.
pub fn wait_until<T>(
    limit: std::time::Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<(T, std::time::Duration)> {
    let started = std::time::Instant::now();
    loop {
        if let Some(value) = probe() {
            return Some((value, started.elapsed()));
        }
        if started.elapsed() > limit {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Records a SKIP of `label` for `reason` (printed) — or fails the test, saying that
/// `what` could not run, under AUTONOMY_LAB_REQUIRE=1.
#[track_caller]
pub fn skip_unless_required(label: &str, what: &str, reason: &str) {
    assert!(!lab_required(), "AUTONOMY_LAB_REQUIRE=1 but {what} could run: {reason}");
    eprintln!("SKIP {label}: {reason}");
}

/// Whether `program` runs (`--version`); when not, prints SKIP for `label` and returns false —
/// a failure instead under AUTONOMY_LAB_REQUIRE=1. scripts/install-prereqs.sh installs them all.
#[track_caller]
pub fn tool_or_skip(program: &str, label: &str) -> bool {
    if std::process::Command::new(program).arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        !lab_required(),
        "AUTONOMY_LAB_REQUIRE=1 but {program} is not installed (scripts/install-prereqs.sh installs it)"
    );
    eprintln!("SKIP {label}: {program} is not installed (scripts/install-prereqs.sh installs it)");
    false
}
