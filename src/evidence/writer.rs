//! Writes an evidence bundle atomically and points `evidence/latest` at the newest run.

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::evidence::{render, Report};

/// `evidence/<run-id>/<slice>/`, created on demand.
pub struct Bundle {
    pub root: PathBuf,
    pub run_id: String,
    pub dir: PathBuf,
}

impl Bundle {
    pub fn create(root: &Path, run_id: &str, slice: &str) -> std::io::Result<Self> {
        let dir = root.join(run_id).join(slice);
        fs::create_dir_all(&dir)?;
        Ok(Self {
            root: root.to_owned(),
            run_id: run_id.to_owned(),
            dir,
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes one file through a temporary name, fsync and rename: never half-written.
    pub fn write(&self, name: &str, body: impl AsRef<[u8]>) -> std::io::Result<PathBuf> {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        write_atomically(&path, body.as_ref())?;
        Ok(path)
    }

    /// Writes `<slice>-report.json` and `<slice>-report.txt`, then updates `latest`.
    pub fn write_report(&self, report: &Report) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(report).expect("a report always serialises");
        self.write(&format!("{}-report.json", report.slice), json)?;
        self.write(&format!("{}-report.txt", report.slice), render::text(report))?;
        point_latest(&self.root, &self.run_id)
    }
}

/// Writes `body` to `path` through `<path>.partial`, fsync and rename (`crate::fsio`): a
/// link planted under the partial name is replaced, never followed. Evidence is for handing
/// to a reviewer, so it is readable by others (0644).
pub fn write_atomically(path: &Path, body: &[u8]) -> std::io::Result<()> {
    crate::fsio::write_atomically(path, body, 0o644)
}

/// Replaces `<root>/latest` with a symlink to `<run_id>` by rename, so readers never see it missing.
pub fn point_latest(root: &Path, run_id: &str) -> std::io::Result<()> {
    let temporary = root.join(format!(".latest-{}", std::process::id()));
    let _ = fs::remove_file(&temporary);
    std::os::unix::fs::symlink(run_id, &temporary)?;
    fs::rename(&temporary, root.join("latest"))
}
