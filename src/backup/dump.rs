//! Runs pg_dump and streams its archive to a partial file, hashing it on the way (no second read).

use std::{
    io::{Read, Write},
    path::Path,
    process::Stdio,
    time::Instant,
};

use sha2::{Digest, Sha256};

use crate::backup::{
    pgtools::{stderr_tail, PgTools},
    BackupError,
};

/// What a finished dump produced.
#[derive(Debug, Clone)]
pub struct DumpOutcome {
    pub size_bytes: u64,
    pub sha256: String,
    pub duration_ms: u64,
}

/// `pg_dump -Fc` of the application database without `excluded_schema`, into `partial`,
/// fsynced; in `snapshot` (an exported snapshot id) when given, so it dumps exactly what the
/// baseline read. Blocking: call it from a blocking thread.
pub fn dump_to_partial(
    tools: &PgTools,
    excluded_schema: &str,
    partial: &Path,
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
        .map_err(|source| BackupError::Spawn {
            tool: "pg_dump",
            source,
        })?;

    // Drain stderr on its own thread so a chatty pg_dump can never block on a full pipe.
    let mut stderr = child.stderr.take().expect("stderr was piped");
    let stderr_reader = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        let _ = stderr.read_to_end(&mut buffer);
        buffer
    });

    let mut stdout = child.stdout.take().expect("stdout was piped");
    let streamed = stream_and_hash(&mut stdout, partial);
    drop(stdout);
    let status = child.wait().map_err(|source| BackupError::Spawn {
        tool: "pg_dump",
        source,
    })?;
    let stderr = stderr_reader.join().unwrap_or_default();
    // A write error is the cause: pg_dump then dies of the closed pipe (SIGPIPE), which is
    // only its symptom.
    let (size_bytes, sha256) = match (streamed, status.success()) {
        (Ok(result), true) => result,
        (Err(error), _) => {
            let _ = std::fs::remove_file(partial);
            return Err(error);
        }
        (Ok(_), false) => {
            let _ = std::fs::remove_file(partial);
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

/// Copies `source` into a new file at `partial`, hashing every byte, then fsyncs it.
fn stream_and_hash(source: &mut impl Read, partial: &Path) -> Result<(u64, String), BackupError> {
    let mut file = crate::backup::repository::create_private(partial)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = match source.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(BackupError::io(partial)(e)),
        };
        hasher.update(&buffer[..n]);
        file.write_all(&buffer[..n]).map_err(BackupError::io(partial))?;
        size += n as u64;
    }
    file.sync_all().map_err(BackupError::io(partial))?;
    Ok((size, hex::encode(hasher.finalize())))
}
