//! Durable file writes shared by the backup store and the evidence writer: a file replaced
//! atomically (never half-written, never through a planted link), private files, durable renames.

use std::{
    fs::{self, File, OpenOptions},
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

/// `<path>.partial`: where a file is written before it is renamed into place.
pub fn partial_of(path: &Path) -> PathBuf {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    PathBuf::from(partial)
}

/// Creates `path` with `mode`, replacing a file by that name; a link there is replaced, never
/// followed (it is removed first, then the file is created exclusively).
pub fn create_replacing(path: &Path, mode: u32) -> std::io::Result<File> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    OpenOptions::new().write(true).create_new(true).mode(mode).open(path)
}

/// Writes `body` to `path` (created with `mode`) through `<path>.partial`, fsync and rename:
/// a reader sees the old file or the new one, whole.
pub fn write_atomically(path: &Path, body: &[u8], mode: u32) -> std::io::Result<()> {
    let partial = partial_of(path);
    write_synced(&partial, body, mode)?;
    fs::rename(&partial, path)
}

/// Writes `body` to a new file at `path` (created with `mode`) and fsyncs it.
pub fn write_synced(path: &Path, body: &[u8], mode: u32) -> std::io::Result<()> {
    let mut file = create_replacing(path, mode)?;
    file.write_all(body)?;
    file.sync_all()
}

/// Makes renames in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir).and_then(|d| d.sync_all())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn an_atomic_write_replaces_a_planted_link_instead_of_following_it() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let target = dir.path().join("elsewhere");
        fs::write(&target, b"keep").unwrap();
        let path = dir.path().join("report.json");
        std::os::unix::fs::symlink(&target, partial_of(&path)).unwrap();
        write_atomically(&path, b"new", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::read(&target).unwrap(), b"keep", "the link was followed");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!partial_of(&path).exists());
    }
}
