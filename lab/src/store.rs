//! The backup store the lab's nodes use, as AUTONOMY_LAB_STORE says: `local` (the default, a
//! directory of the scratch space) or `s3` (a real S3 server, s3s-fs on loopback). The slices
//! reach archives and manifests through it, so a damaged backup is the same damage on both.

use std::path::{Path, PathBuf};

use crate::{node::NodeSpec, s3::S3Server};

/// The key prefix of the lab's backups in the S3 bucket.
pub const S3_PREFIX: &str = "lab/";

pub enum LabStore {
    Local { dir: PathBuf },
    S3 { server: S3Server },
}

/// `local` or `s3`, from AUTONOMY_LAB_STORE (unset: `local`); any other value is a mistake in
/// the test command, refused rather than run as something else.
pub fn lab_store_kind() -> &'static str {
    match std::env::var("AUTONOMY_LAB_STORE").as_deref() {
        Err(_) | Ok("") | Ok("local") => "local",
        Ok("s3") => "s3",
        Ok(other) => panic!("AUTONOMY_LAB_STORE={other}: use local or s3"),
    }
}

impl LabStore {
    /// The store AUTONOMY_LAB_STORE names, its data in `scratch`.
    pub fn from_env(scratch: &Path) -> Result<Self, String> {
        match lab_store_kind() {
            "s3" => S3Server::start(&scratch.join("s3"))
                .map(|server| Self::S3 { server })
                .map_err(|e| format!("AUTONOMY_LAB_STORE=s3 but no S3 server could run: {}", e.0)),
            _ => Ok(Self::Local {
                dir: scratch.join("backups"),
            }),
        }
    }

    /// `spec`, with its backups in this store.
    pub fn node(&self, spec: NodeSpec) -> NodeSpec {
        match self {
            Self::Local { .. } => spec,
            Self::S3 { server } => spec.with_s3(server, S3_PREFIX),
        }
    }

    /// Where backup `id`'s archive is stored on disk (for S3: the server's file of the object).
    pub fn archive_path(&self, id: &str) -> PathBuf {
        self.stored(&format!("{id}.dump"))
    }

    /// Where backup `id`'s manifest is stored on disk.
    pub fn manifest_path(&self, id: &str) -> PathBuf {
        self.stored(&format!("{id}.json"))
    }

    fn stored(&self, name: &str) -> PathBuf {
        match self {
            Self::Local { dir } => dir.join(name),
            Self::S3 { server } => server.object_path(&format!("{S3_PREFIX}{name}")),
        }
    }

    /// One line for the setup evidence: which store the slice ran on.
    pub fn describe(&self) -> String {
        match self {
            Self::Local { dir } => format!("backup store: local directory {}", dir.display()),
            Self::S3 { server } => format!(
                "backup store: s3 bucket {} prefix {S3_PREFIX} at {} (s3s-fs, SigV4)",
                server.bucket, server.endpoint
            ),
        }
    }
}
