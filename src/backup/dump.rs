//! Runs pg_dump and streams its archive into the backup store, encrypted on the way when the
//! node has recipients, hashing what pg_dump wrote and what was stored (no second read).

use std::{
    io::{Read, Write},
    path::Path,
    process::Stdio,
    time::Instant,
};

use sha2::{Digest, Sha256};

use crate::backup::{
    openpgp::{self, Recipients},
    pgtools::{stderr_tail, PgTools},
    store::ArchiveWriter,
    BackupError,
};

/// How much of the archive's start is kept in memory: its table of contents, where pg_dump
/// writes every sequence's position (read back without the key: proof::sequences).
pub const HEAD_LIMIT: usize = 16 << 20;

/// What a finished dump produced.
#[derive(Debug, Clone)]
pub struct DumpOutcome {
    /// The stored bytes (encrypted, when they are).
    pub size_bytes: u64,
    pub sha256: String,
    pub duration_ms: u64,
    /// What pg_dump wrote, when it was stored encrypted.
    pub plaintext: Option<(u64, String)>,
    /// pg_dump's first HEAD_LIMIT bytes.
    pub head: Vec<u8>,
}

/// `pg_dump -Fc` of the application database without `excluded_schema`, into `archive`,
/// finished (durable, not yet published); in `snapshot` (an exported snapshot id) when given,
/// so it dumps exactly what the baseline read. On failure the archive is dropped unfinished,
/// which leaves nothing. Encrypted to `recipients` when given. Blocking: call it from a
/// blocking thread.
pub fn dump_into(
    tools: &PgTools,
    excluded_schema: &str,
    archive: Box<dyn ArchiveWriter>,
    snapshot: Option<&str>,
    recipients: Option<&Recipients>,
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
    let streamed = stream_and_hash(&mut stdout, archive, recipients);
    drop(stdout);
    let status = child.wait().map_err(BackupError::spawn("pg_dump"))?;
    let stderr = stderr_reader.join().unwrap_or_default();
    // A write error is the cause: pg_dump then dies of the closed pipe (SIGPIPE), which is
    // only its symptom.
    let streamed = match (streamed, status.success()) {
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
    let Streamed { stored, pg_dump, head } = streamed;
    Ok(DumpOutcome {
        size_bytes: stored.size,
        sha256: stored.sha256(),
        duration_ms: started.elapsed().as_millis() as u64,
        plaintext: recipients.map(|_| (pg_dump.size, pg_dump.sha256())),
        head,
    })
}

/// A running SHA-256 and byte count.
#[derive(Default)]
struct Tally {
    hasher: Sha256,
    size: u64,
}

impl Tally {
    fn add(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
    }

    fn sha256(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

/// What streaming an archive counted.
struct Streamed {
    stored: Tally,
    pg_dump: Tally,
    head: Vec<u8>,
}

/// pg_dump's output as it is read: counted, hashed, its head kept.
struct Tap<'a> {
    source: &'a mut dyn Read,
    tally: Tally,
    head: Vec<u8>,
}

impl Read for Tap<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.source.read(buf)?;
        self.tally.add(&buf[..n]);
        let room = HEAD_LIMIT.saturating_sub(self.head.len()).min(n);
        self.head.extend_from_slice(&buf[..room]);
        Ok(n)
    }
}

/// The store's archive as a writer, counting and hashing what it stores. A store error is
/// kept (the io::Error the encoder sees carries only its text).
struct Sink {
    archive: Box<dyn ArchiveWriter>,
    tally: Tally,
    failed: Option<BackupError>,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Err(error) = self.archive.write_chunk(buf) {
            let text = error.to_string();
            self.failed = Some(error);
            return Err(std::io::Error::other(text));
        }
        self.tally.add(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Copies `source` into `archive` (encrypted to `recipients` when given), hashing what is
/// read and what is stored, then finishes it. The archive is finished only once the whole
/// stream is in; the caller discards it if pg_dump failed.
fn stream_and_hash(
    source: &mut dyn Read,
    archive: Box<dyn ArchiveWriter>,
    recipients: Option<&Recipients>,
) -> Result<Streamed, BackupError> {
    let mut tap = Tap {
        source,
        tally: Tally::default(),
        head: Vec::new(),
    };
    let mut sink = Sink {
        archive,
        tally: Tally::default(),
        failed: None,
    };
    let copied = match recipients {
        None => copy(&mut tap, &mut sink),
        Some(recipients) => {
            openpgp::stream::encrypt(&mut tap, &mut sink, recipients).map_err(|error| error.to_string())
        }
    };
    if let Some(error) = sink.failed.take() {
        return Err(error);
    }
    if let Err(reason) = copied {
        return Err(BackupError::io(Path::new("pg_dump's output"))(std::io::Error::other(
            reason,
        )));
    }
    sink.archive.finish()?;
    Ok(Streamed {
        stored: sink.tally,
        pg_dump: tap.tally,
        head: tap.head,
    })
}

/// `source` into `sink` in 1 MiB chunks (the store's writes stay large).
fn copy(source: &mut dyn Read, sink: &mut Sink) -> Result<(), String> {
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = match source.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.to_string()),
        };
        sink.write_all(&buffer[..n]).map_err(|e| e.to_string())?;
    }
}
