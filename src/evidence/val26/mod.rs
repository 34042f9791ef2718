//! VAL26: the HA proof report, computed from the VAL13–VAL17 reports of one evidence
//! directory (seed 004). Reads files only, never a live system.

pub mod assess;
pub mod digest;
pub mod html;
pub mod load;
mod svg;
pub mod text;

use std::path::{Path, PathBuf};

pub use assess::{assess, Readiness, Val26};
pub use digest::{FileDigest, Mismatch};
pub use load::{load, Coverage, SliceEvidence};
use serde::Deserialize;
use thiserror::Error;

/// The five slices VAL26 reads, with the seed's names.
pub const SLICES: [(&str, &str); 5] = [
    ("val13", "HA Failover Validation"),
    ("val14", "HA Replication Lag Baseline"),
    ("val15", "Backup/Restore Validation"),
    ("val16", "Split-Brain Chaos Validation"),
    ("val17", "Quorum Loss Validation"),
];

/// Why no report could be made, or its evidence not checked.
#[derive(Debug, Error)]
pub enum Val26Error {
    #[error("evidence directory {} does not exist or is not a directory; pass an evidence run directory such as evidence/latest", .0.display())]
    NotADirectory(PathBuf),
    #[error("no VAL13–VAL17 report under {}: expected files like {}/val13/val13-report.json; pass an evidence run directory (evidence/<run-id> or evidence/latest), nothing was written", .0.display(), .0.display())]
    NoReports(PathBuf),
    #[error(transparent)]
    Digest(#[from] digest::DigestError),
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("no VAL26 report at {}; run `autonomy lab report {}` first", path.display(), dir.display())]
    NoVal26Report { path: PathBuf, dir: PathBuf },
    #[error("{} is not a VAL26 report ({reason}); regenerate it with `autonomy lab report`", path.display())]
    NotAVal26Report { path: PathBuf, reason: String },
}

/// Reads the bundle under `dir`, assesses it and hashes every file it read. Refuses a
/// directory holding no slice report at all: that is a wrong path, not missing evidence.
pub fn generate(dir: &Path, now: time::OffsetDateTime) -> Result<Val26, Val26Error> {
    if !dir.is_dir() {
        return Err(Val26Error::NotADirectory(dir.to_owned()));
    }
    let slices = load(dir);
    let nothing_there = slices
        .iter()
        .all(|s| matches!(&s.coverage, Coverage::Missing { reason } if reason == load::NO_REPORT));
    if nothing_there {
        return Err(Val26Error::NoReports(dir.to_owned()));
    }
    let mut val26 = assess(&dir.display().to_string(), slices, now);
    val26.evidence_files = digest::digest_bundle(dir)?;
    Ok(val26)
}

/// Where the report's three files go: `<dir>/val26/`.
pub fn output_dir(dir: &Path) -> PathBuf {
    dir.join("val26")
}

/// Writes `val26-report.{txt,json,html}` into `<dir>/val26/`, each atomically; returns the
/// HTML's path.
pub fn write(dir: &Path, val26: &Val26) -> Result<PathBuf, Val26Error> {
    let out = output_dir(dir);
    std::fs::create_dir_all(&out).map_err(|source| Val26Error::Write {
        path: out.clone(),
        source,
    })?;
    let json = serde_json::to_vec_pretty(val26).expect("a VAL26 report always serialises");
    let html_path = out.join("val26-report.html");
    for (path, body) in [
        (out.join("val26-report.txt"), text::render(val26).into_bytes()),
        (out.join("val26-report.json"), json),
        (html_path.clone(), html::render(val26).into_bytes()),
    ] {
        crate::evidence::writer::write_atomically(&path, &body).map_err(|source| Val26Error::Write { path, source })?;
    }
    Ok(html_path)
}

/// The part of `val26-report.json` that `verify` needs.
#[derive(Deserialize)]
struct Recorded {
    evidence_files: Vec<FileDigest>,
}

/// Recomputes the hashes `<dir>/val26/val26-report.json` recorded; returns how many files
/// were checked and every mismatch.
pub fn verify(dir: &Path) -> Result<(usize, Vec<Mismatch>), Val26Error> {
    if !dir.is_dir() {
        return Err(Val26Error::NotADirectory(dir.to_owned()));
    }
    let path = output_dir(dir).join("val26-report.json");
    let text = std::fs::read_to_string(&path).map_err(|_| Val26Error::NoVal26Report {
        path: path.clone(),
        dir: dir.to_owned(),
    })?;
    let recorded: Recorded = serde_json::from_str(&text).map_err(|e| Val26Error::NotAVal26Report {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    Ok((
        recorded.evidence_files.len(),
        digest::verify(dir, &recorded.evidence_files),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::CheckStatus;

    fn fixture(bundle: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/val26")
            .join(bundle)
    }

    fn generated(bundle: &str) -> Val26 {
        generate(&fixture(bundle), time::OffsetDateTime::now_utc()).expect("the sample bundle can be assessed")
    }

    fn failing(val26: &Val26) -> Vec<&str> {
        val26
            .checks
            .iter()
            .filter(|c| c.status != CheckStatus::Pass)
            .map(|c| c.id.as_str())
            .collect()
    }

    fn detail<'a>(val26: &'a Val26, id: &str) -> &'a str {
        &val26
            .checks
            .iter()
            .find(|c| c.id == id)
            .expect("the check exists")
            .detail
    }

    #[test]
    fn the_complete_sample_is_design_partner_ready_with_every_file_hashed() {
        let val26 = generated("complete");
        assert_eq!(failing(&val26), Vec::<&str>::new(), "{:#?}", val26.checks);
        assert_eq!(val26.verdict, "HA DESIGN PARTNER READY");
        assert_eq!(val26.evidence_files.len(), 5);
        assert!(val26.evidence_files.iter().all(|f| f.sha256.len() == 64));
        let html = html::render(&val26);
        assert_eq!(html.matches(r#"<tr class="pass" data-check="VAL26-"#).count(), 10);
        assert!(!html.contains("not measured"), "every chart has its values");
    }

    #[test]
    fn a_missing_slice_is_missing_and_not_ready() {
        let val26 = generated("one-missing");
        assert_eq!(failing(&val26), ["VAL26-02", "VAL26-10"]);
        assert!(detail(&val26, "VAL26-02").starts_with("MISSING: no report file"));
        assert_eq!(val26.verdict, "NOT READY");
        assert_eq!(val26.evidence_files.len(), 4);
    }

    #[test]
    fn a_schema_mismatch_is_missing_with_the_mismatch_named() {
        let val26 = generated("schema-mismatch");
        assert_eq!(failing(&val26), ["VAL26-04", "VAL26-10"]);
        assert!(
            detail(&val26, "VAL26-04").contains("schema mismatch: missing field `checks`"),
            "{}",
            detail(&val26, "VAL26-04")
        );
        let text = text::render(&val26);
        assert!(
            text.contains("VAL16 Split-Brain Chaos Validation   MISSING (schema mismatch"),
            "{text}"
        );
    }

    #[test]
    fn a_failed_check_fails_its_slice_and_what_depends_on_it() {
        let val26 = generated("failed-check");
        assert_eq!(failing(&val26), ["VAL26-01", "VAL26-07", "VAL26-10"]);
        assert_eq!(detail(&val26, "VAL26-01"), "not passing: VAL13-04");
        assert_eq!(detail(&val26, "VAL26-07"), "not passing: VAL13-04");
        let html = html::render(&val26);
        assert!(html.contains(r#"<tr class="fail" data-check="VAL26-07">"#));
        assert!(html.contains(r#"data-verdict="NOT READY""#));
    }

    #[test]
    fn reports_outside_the_window_fail_only_the_summary() {
        let val26 = generated("outside-window");
        assert_eq!(failing(&val26), ["VAL26-10"]);
        assert!(!val26.window_coherent);
        assert!(
            val26.readiness.design_partner_gaps[0].contains("more than the 6-hour evidence window"),
            "{:?}",
            val26.readiness.design_partner_gaps
        );
    }

    #[test]
    fn a_skipped_slice_is_not_a_pass() {
        let val26 = generated("skipped-slice");
        assert_eq!(failing(&val26), ["VAL26-03", "VAL26-08", "VAL26-10"]);
        assert!(detail(&val26, "VAL26-03").starts_with("skipped: no PostgreSQL backend"));
        let text = text::render(&val26);
        assert!(text.contains("Backup duration: not measured"), "{text}");
    }

    #[test]
    fn a_directory_without_reports_is_refused_and_nothing_is_written() {
        let empty = tempfile::tempdir().expect("a temp dir");
        let error = generate(empty.path(), time::OffsetDateTime::now_utc()).unwrap_err();
        assert!(matches!(error, Val26Error::NoReports(_)), "{error}");
        assert!(error.to_string().contains("val13/val13-report.json"), "{error}");
        let absent = empty.path().join("nope");
        assert!(matches!(
            generate(&absent, time::OffsetDateTime::now_utc()),
            Err(Val26Error::NotADirectory(_))
        ));
        assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
    }

    #[test]
    fn written_reports_verify_until_a_file_changes() {
        let dir = tempfile::tempdir().expect("a temp dir");
        for (slice, _) in SLICES {
            let to = dir.path().join(slice);
            std::fs::create_dir_all(&to).unwrap();
            let name = format!("{slice}-report.json");
            std::fs::copy(fixture("complete").join(slice).join(&name), to.join(&name)).unwrap();
        }
        let val26 = generate(dir.path(), time::OffsetDateTime::now_utc()).unwrap();
        let html = write(dir.path(), &val26).unwrap();
        assert!(html.ends_with("val26/val26-report.html"));
        assert_eq!(verify(dir.path()).unwrap(), (5, vec![]));
        std::fs::write(dir.path().join("val15/val15-report.json"), "{}").unwrap();
        let (_, mismatches) = verify(dir.path()).unwrap();
        assert!(matches!(&mismatches[..], [Mismatch::Changed { path, .. }] if path == "val15/val15-report.json"));
    }
}
