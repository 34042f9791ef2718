//! The SHA-256 of every file of the slice bundles VAL26 read, and the check that they still
//! match: a reviewer can tell whether the evidence behind a verdict was touched afterwards.

use std::{
    collections::BTreeMap,
    fs::File,
    io::Read,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::SLICES;

/// One file of the bundle, by its path relative to the evidence directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// `val13/val13-report.json`
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Error)]
#[error("cannot hash {}: {source}", path.display())]
pub struct DigestError {
    pub path: PathBuf,
    pub source: std::io::Error,
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
        }
    }
}

/// Every file under the five slice directories of `dir`, hashed, sorted by path. The VAL26
/// directory itself is not part of the evidence it assesses; a temporary `.partial` file of an
/// interrupted write is not evidence either. Symbolic links are followed.
pub fn digest_bundle(dir: &Path) -> Result<Vec<FileDigest>, DigestError> {
    let mut digests = Vec::new();
    for path in bundle_files(dir) {
        let absolute = dir.join(&path);
        let (sha256, bytes) = sha256_file(&absolute).map_err(|source| DigestError {
            path: absolute.clone(),
            source,
        })?;
        digests.push(FileDigest { path, sha256, bytes });
    }
    Ok(digests)
}

/// Compares `recorded` with the files under `dir` now; empty when nothing changed.
pub fn verify(dir: &Path, recorded: &[FileDigest]) -> Vec<Mismatch> {
    let mut present: BTreeMap<String, ()> = bundle_files(dir).into_iter().map(|p| (p, ())).collect();
    let mut mismatches = Vec::new();
    for file in recorded {
        if present.remove(&file.path).is_none() {
            mismatches.push(Mismatch::Missing {
                path: file.path.clone(),
            });
            continue;
        }
        let found = sha256_file(&dir.join(&file.path))
            .map(|(sha, _)| sha)
            .unwrap_or_else(|e| format!("unreadable ({e})"));
        if found != file.sha256 {
            mismatches.push(Mismatch::Changed {
                path: file.path.clone(),
                recorded_sha256: file.sha256.clone(),
                found_sha256: found,
            });
        }
    }
    mismatches.extend(present.into_keys().map(|path| Mismatch::Added { path }));
    mismatches
}

/// Relative paths of the files of the five slice bundles, sorted.
fn bundle_files(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for (slice, _) in SLICES {
        let mut stack = vec![PathBuf::from(slice)];
        while let Some(relative) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(dir.join(&relative)) else {
                continue;
            };
            for entry in entries.flatten() {
                let child = relative.join(entry.file_name());
                // metadata() follows links: a linked directory is walked, a linked file hashed.
                match std::fs::metadata(dir.join(&child)) {
                    Ok(meta) if meta.is_dir() => stack.push(child),
                    Ok(_) if child.extension().is_some_and(|e| e == "partial") => {}
                    Ok(_) => files.push(child.to_string_lossy().into_owned()),
                    Err(_) => {}
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
        let digests = digest_bundle(dir.path()).unwrap();
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
    fn a_changed_missing_or_added_file_is_named() {
        let dir = bundle();
        let digests = digest_bundle(dir.path()).unwrap();
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
