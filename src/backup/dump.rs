//! Runs pg_dump and streams its archive into the backup store, hashing it on the way (no second read).

use std::{io::Read, path::Path, process::Stdio, time::Instant};

use sha2::{Digest, Sha256};

use crate::backup::{
    pgtools::{stderr_tail, PgTools},
    store::ArchiveWriter,
    BackupError,
};

/// What a finished dump produced.
#[derive(Debug, Clone)]
pub struct DumpOutcome {
    pub size_bytes: u64,
    pub sha256: String,
    pub duration_ms: u64,
}

/// `pg_dump -Fc` of the application database without `excluded_schema`, into `archive`,
/// finished (durable, not yet published); in `snapshot` (an exported snapshot id) when given,
/// so it dumps exactly what the baseline read. On failure the archive is dropped unfinished,
/// which leaves nothing. Blocking: call it from a blocking thread.
pub fn dump_into(
    tools: &PgTools,
    excluded_schema: &str,
    archive: Box<dyn ArchiveWriter>,
    snapshot: Option<&str>,
) -> Result<DumpOutcome, BackupError> {
    let started = Instant::now();
    let mut child = tools
        .command("pg_dump")
        .args(["--format=custom", "--blobs", "--no-password"])
        .arg(format!("--exclude-schema={excluded_schema}"))
        .args(snapshot.map(|id| format!("--snapshot={id}")))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(BackupError::spawn("pg_dump"))?;

    let stderr_reader = crate::backup::pgtools::drain(child.stderr.take().expect("stderr was piped"));

    let mut stdout = child.stdout.take().expect("stdout was piped");
    let streamed = stream_and_hash(&mut stdout, archive);
    drop(stdout);
    let status = child.wait().map_err(BackupError::spawn("pg_dump"))?;
    let stderr = stderr_reader.join().unwrap_or_default();
    // A write error is the cause: pg_dump then dies of the closed pipe (SIGPIPE), which is
    // only its symptom.
    let (size_bytes, sha256) = match (streamed, status.success()) {
        (Ok(result), true) => result,
        (Err(error), _) => return Err(error),
        (Ok(_), false) => {
            return Err(BackupError::Tool {
                tool: "pg_dump",
                status: status.to_string(),
                stderr: stderr_tail(&stderr, 2000),
            });
        }
    };
    Ok(DumpOutcome {
        size_bytes,
        sha256,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// Copies `source` into `archive`, hashing every byte, then finishes it. The archive is
/// finished only once the whole stream is in; the caller discards it if pg_dump failed.
fn stream_and_hash(source: &mut impl Read, mut archive: Box<dyn ArchiveWriter>) -> Result<(u64, String), BackupError> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = match source.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(BackupError::io(Path::new("pg_dump's output"))(e)),
        };
        hasher.update(&buffer[..n]);
        archive.write_chunk(&buffer[..n])?;
        size += n as u64;
    }
    archive.finish()?;
    Ok((size, hex::encode(hasher.finalize())))
}
