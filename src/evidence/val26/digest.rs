//! The SHA-256 of every file of the slice bundles VAL26 read, and the check that they still
//! match: a reviewer can tell whether the evidence behind a verdict was touched afterwards.

use std::{
    collections::BTreeSet,
    fs::File,
    io::Read,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::SLICES;

/// One file of the bundle, by its path relative to the evidence directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// `val13/val13-report.json`
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

/// How a file differs from what the report recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "lowercase")]
pub enum Mismatch {
    /// Its content is not what was hashed.
    Changed {
        path: String,
        recorded_sha256: String,
        found_sha256: String,
    },
    /// It was hashed and is gone.
    Missing { path: String },
    /// It is in a slice bundle but was not there when the report was made.
    Added { path: String },
    /// The slice reports, assessed now, give another verdict or other check results than
    /// the report recorded.
    Verdict { recorded: String, now: String },
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::Changed {
                path,
                recorded_sha256,
                found_sha256,
            } => write!(
                f,
                "changed: {path} (recorded sha256 {recorded_sha256}, now {found_sha256})"
            ),
            Mismatch::Missing { path } => write!(f, "missing: {path}"),
            Mismatch::Added { path } => write!(f, "added: {path} (not in the report's list)"),
            Mismatch::Verdict { recorded, now } => write!(f, "verdict: recorded {recorded}; assessed now {now}"),
        }
    }
}

/// Every regular file under the five slice directories of `dir`, hashed, sorted by path. The
/// VAL26 directory itself is not part of the evidence it assesses, nor is a `.partial` file of
/// an interrupted write. A slice directory may be a link (the sample bundles share slices so);
/// below it nothing is followed: links, pipes and devices are not evidence, and following them
/// could hash the whole disk or hang. A file that cannot be read is recorded as such rather
/// than aborting the report.
pub fn digest_bundle(dir: &Path) -> Vec<FileDigest> {
    bundle_files(dir).iter().map(|path| digest_file(dir, path)).collect()
}

/// One file, hashed (or recorded as unreadable).
pub fn digest_file(dir: &Path, path: &str) -> FileDigest {
    match sha256_file(&dir.join(path)) {
        Ok((sha256, bytes)) => FileDigest {
            path: path.to_owned(),
            sha256,
            bytes,
        },
        Err(e) => FileDigest {
            path: path.to_owned(),
            sha256: format!("unreadable: {e}"),
            bytes: 0,
        },
    }
}

/// Compares `recorded` with the slice bundles under `dir` now: changed, missing, and added
/// files; empty when nothing changed.
pub fn verify(dir: &Path, recorded: &[FileDigest]) -> Vec<Mismatch> {
    let listed: BTreeSet<&str> = recorded.iter().map(|f| f.path.as_str()).collect();
    let mut mismatches = verify_listed(dir, recorded);
    mismatches.extend(
        bundle_files(dir)
            .into_iter()
            .filter(|path| !listed.contains(path.as_str()))
            .map(|path| Mismatch::Added { path }),
    );
    mismatches
}

/// Compares each recorded file with what is at its path now: changed or missing.
pub fn verify_listed(dir: &Path, recorded: &[FileDigest]) -> Vec<Mismatch> {
    recorded
        .iter()
        .filter_map(|file| {
            let path = dir.join(&file.path);
            // Only the last component must not be a link (a linked slice directory above it is
            // fine): a file replaced by a link, a pipe or a device is not the file that was
            // hashed, and reading one could hang.
            if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
                return Some(Mismatch::Missing {
                    path: file.path.clone(),
                });
            }
            let found = digest_file(dir, &file.path).sha256;
            (found != file.sha256).then(|| Mismatch::Changed {
                path: file.path.clone(),
                recorded_sha256: file.sha256.clone(),
                found_sha256: found,
            })
        })
        .collect()
}

/// Relative paths of the regular files of the five slice bundles, sorted.
fn bundle_files(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for (slice, _) in SLICES {
        if !dir.join(slice).is_dir() {
            continue;
        }
        let mut stack = vec![PathBuf::from(slice)];
        while let Some(relative) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(dir.join(&relative)) else {
                continue;
            };
            for entry in entries.flatten() {
                let child = relative.join(entry.file_name());
                match entry.file_type() {
                    Ok(kind) if kind.is_dir() => stack.push(child),
                    Ok(kind) if kind.is_file() && child.extension().is_none_or(|e| e != "partial") => {
                        files.push(child.to_string_lossy().into_owned())
                    }
                    _ => {}
                }
            }
        }
    }
    files.sort();
    files
}

fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        hasher.update(&buffer[..n]);
    }
    Ok((hex::encode(hasher.finalize()), bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("a temp dir");
        for (path, body) in [
            ("val13/val13-report.json", "{}"),
            ("val13/nodes/a.log", "log"),
            ("val17/val17-report.json", "{}"),
            ("val26/val26-report.json", "not evidence"),
            ("val13-sabotage/x.txt", "not read by VAL26"),
            ("val13/half.json.partial", "interrupted"),
        ] {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
        }
        dir
    }

    #[test]
    fn only_the_slice_bundles_are_hashed() {
        let dir = bundle();
        let digests = digest_bundle(dir.path());
        let paths: Vec<&str> = digests.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "val13/nodes/a.log",
                "val13/val13-report.json",
                "val17/val17-report.json"
            ]
        );
        assert_eq!(
            digests[1].sha256,
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert!(verify(dir.path(), &digests).is_empty());
    }

    #[test]
    fn links_and_special_files_inside_a_bundle_are_not_followed() {
        let dir = bundle();
        std::os::unix::fs::symlink("/", dir.path().join("val13/root")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("val13/zeros")).unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(dir.path().join("val17/pipe"))
            .status()
            .expect("mkfifo runs");
        assert!(status.success());
        let paths: Vec<String> = digest_bundle(dir.path()).into_iter().map(|d| d.path).collect();
        assert_eq!(
            paths,
            [
                "val13/nodes/a.log",
                "val13/val13-report.json",
                "val17/val17-report.json"
            ]
        );
    }

    #[test]
    fn a_changed_missing_or_added_file_is_named() {
        let dir = bundle();
        let digests = digest_bundle(dir.path());
        std::fs::write(dir.path().join("val13/val13-report.json"), "{\"edited\":1}").unwrap();
        std::fs::remove_file(dir.path().join("val13/nodes/a.log")).unwrap();
        std::fs::write(dir.path().join("val17/extra.txt"), "new").unwrap();
        let found: Vec<String> = verify(dir.path(), &digests).iter().map(ToString::to_string).collect();
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0], "missing: val13/nodes/a.log");
        assert!(found[1].starts_with("changed: val13/val13-report.json (recorded sha256 44136fa"));
        assert_eq!(found[2], "added: val17/extra.txt (not in the report's list)");
    }
}
