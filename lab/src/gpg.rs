//! A throwaway GnuPG home: real gpg from Debian generates the operator's keys (RSA-4096, as
//! seed 001's scripts do) and is the independent oracle that opens autonomy's archives, and
//! seals archives autonomy must open. Passphrases go to gpg on a pipe, never on its command
//! line. Dropping it stops the home's agent.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// A GnuPG home directory with the keys generated in it.
pub struct GpgHome {
    pub dir: PathBuf,
}

/// One generated key: its primary fingerprint and where its exports are.
#[derive(Debug, Clone)]
pub struct GpgKey {
    pub fingerprint: String,
    /// `gpg --export --armor`: what a node that only backs up holds.
    pub public: PathBuf,
    /// `gpg --export-secret-keys --armor`: what a node that restores holds.
    pub secret: PathBuf,
    pub passphrase: String,
}

impl GpgKey {
    /// `spec` restoring and drilling encrypted backups with this key (`--backup-decrypt-key`).
    pub fn decrypting(&self, spec: crate::node::NodeSpec) -> crate::node::NodeSpec {
        self.as_secret_of(spec, "--backup-decrypt-key", "AUTONOMY_BACKUP_KEY_PASSPHRASE")
    }

    /// `spec` signing its manifests with this key (`--manifest-signing-key`).
    pub fn signing(&self, spec: crate::node::NodeSpec) -> crate::node::NodeSpec {
        self.as_secret_of(spec, "--manifest-signing-key", "AUTONOMY_MANIFEST_KEY_PASSPHRASE")
    }

    /// The secret key file as `flag`, its passphrase in `var` (never a flag).
    fn as_secret_of(&self, mut spec: crate::node::NodeSpec, flag: &str, var: &str) -> crate::node::NodeSpec {
        spec.extra_args
            .extend([flag.to_owned(), self.secret.display().to_string()]);
        spec.env.push((var.to_owned(), self.passphrase.clone()));
        spec
    }
}

impl GpgHome {
    /// A new home in `dir` (created 0700), or None after printing SKIP when gpg is missing —
    /// a failure instead under AUTONOMY_LAB_REQUIRE=1.
    #[track_caller]
    pub fn create_or_skip(dir: &Path, label: &str) -> Option<Self> {
        if !crate::run::tool_or_skip("gpg", label) {
            return None;
        }
        std::fs::create_dir_all(dir).expect("create the gpg home");
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        Some(Self { dir: dir.to_owned() })
    }

    /// Generates an RSA-4096 key (certify/sign) with an RSA-4096 encryption subkey, protected by
    /// `passphrase`, and exports both halves into the home.
    pub fn generate(&self, name: &str, passphrase: &str) -> GpgKey {
        let email = format!("{name}@lab.invalid");
        let params = format!(
            "Key-Type: RSA\nKey-Length: 4096\nKey-Usage: cert,sign\nSubkey-Type: RSA\nSubkey-Length: 4096\nSubkey-Usage: encrypt\nName-Real: {name}\nName-Email: {email}\nExpire-Date: 0\nPassphrase: {passphrase}\n%commit\n"
        );
        self.run(&["--gen-key"], params.as_bytes())
            .expect("gpg generates a key");
        let listing = String::from_utf8(self.run(&["--list-keys", "--with-colons", &email], b"").unwrap()).unwrap();
        let fingerprint = listing
            .lines()
            .find_map(|line| line.strip_prefix("fpr:").map(|rest| rest.trim_matches(':').to_owned()))
            .expect("the new key's fingerprint");
        let public = self.dir.join(format!("{name}.pub.asc"));
        let secret = self.dir.join(format!("{name}.sec.asc"));
        std::fs::write(&public, self.run(&["--export", "--armor", &fingerprint], b"").unwrap()).unwrap();
        let exported = self
            .run_with_passphrase(passphrase, &["--export-secret-keys", "--armor", &fingerprint])
            .unwrap();
        std::fs::write(&secret, exported).unwrap();
        GpgKey {
            fingerprint,
            public,
            secret,
            passphrase: passphrase.to_owned(),
        }
    }

    /// `gpg --decrypt input --output output` with `key`'s passphrase: the oracle's verdict.
    pub fn decrypt(&self, key: &GpgKey, input: &Path, output: &Path) -> Result<(), String> {
        let (input, output) = (input.to_string_lossy(), output.to_string_lossy());
        self.run_with_passphrase(&key.passphrase, &["--yes", "--output", &output, "--decrypt", &input])
            .map(|_| ())
    }

    /// `gpg --encrypt` of `input` to `key`, as an operator seals a file by hand (gpg's default
    /// compression included).
    pub fn encrypt(&self, key: &GpgKey, input: &Path, output: &Path) -> Result<(), String> {
        let (input, output) = (input.to_string_lossy(), output.to_string_lossy());
        self.run(
            &[
                "--yes",
                "--trust-model",
                "always",
                "--recipient",
                &key.fingerprint,
                "--output",
                &output,
                "--encrypt",
                &input,
            ],
            b"",
        )
        .map(|_| ())
    }

    /// `gpg --verify signature data`: whether a key of this home made `signature` over `data`.
    pub fn verify(&self, signature: &Path, data: &Path) -> Result<(), String> {
        let (signature, data) = (signature.to_string_lossy(), data.to_string_lossy());
        self.run(&["--trust-model", "always", "--verify", &signature, &data], b"")
            .map(|_| ())
    }

    /// gpg with the passphrase on fd 0 (loopback pinentry: no agent prompt).
    fn run_with_passphrase(&self, passphrase: &str, args: &[&str]) -> Result<Vec<u8>, String> {
        let mut all = vec!["--pinentry-mode", "loopback", "--passphrase-fd", "0"];
        all.extend_from_slice(args);
        self.run(&all, format!("{passphrase}\n").as_bytes())
    }

    fn run(&self, args: &[&str], stdin: &[u8]) -> Result<Vec<u8>, String> {
        let mut child = Command::new("gpg")
            .arg("--homedir")
            .arg(&self.dir)
            .args(["--batch", "--quiet", "--no-tty"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start gpg: {e}"))?;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin)
            .map_err(|e| e.to_string())?;
        let output = child.wait_with_output().map_err(|e| e.to_string())?;
        if !output.status.success() {
            return Err(format!(
                "gpg {} failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(output.stdout)
    }
}

impl Drop for GpgHome {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(&self.dir)
            .args(["--kill", "gpg-agent"])
            .output();
    }
}
