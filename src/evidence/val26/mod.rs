//! VAL26: the HA proof report, computed from the VAL13–VAL17 reports of one evidence
//! directory (docs/VALIDATION.md, VAL26). Reads files only, never a live system.

pub mod assess;
pub mod bounds;
pub mod digest;
pub mod html;
pub mod load;
mod svg;
pub mod text;

use std::path::{Path, PathBuf};

pub use assess::{assess, Digests, Readiness, Val26};
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
    #[error("{} is a link or not a directory; VAL26 writes only into a real val26/ directory of the evidence directory, nothing was written", .0.display())]
    UnsafeOutput(PathBuf),
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("no VAL26 report at {}; run `autonomy lab report {}` first", path.display(), dir.display())]
    NoVal26Report { path: PathBuf, dir: PathBuf },
    #[error("{} is not a VAL26 report ({reason}): it was damaged or replaced; regenerate it with `autonomy lab report --force` only if the evidence is known to be intact", path.display())]
    NotAVal26Report { path: PathBuf, reason: String },
    #[error("the existing VAL26 report of {} no longer matches its evidence ({} difference(s): {}); nothing was written. Run `autonomy lab verify-evidence {}` to see them, or pass --force to replace the report", dir.display(), mismatches.len(), mismatches.first().map(ToString::to_string).unwrap_or_default(), dir.display())]
    EvidenceChanged { dir: PathBuf, mismatches: Vec<Mismatch> },
}

/// The evidence directory, resolved once so every step reads the same run even if a link
/// such as `evidence/latest` moves meanwhile.
fn resolve(dir: &Path) -> Result<PathBuf, Val26Error> {
    match dir.canonicalize() {
        Ok(resolved) if resolved.is_dir() => Ok(resolved),
        _ => Err(Val26Error::NotADirectory(dir.to_owned())),
    }
}

/// Reads the bundle under `dir`, assesses it and hashes every file of it. Refuses a directory
/// holding no slice report at all: that is a wrong path, not missing evidence.
pub fn generate(dir: &Path, now: time::OffsetDateTime) -> Result<Val26, Val26Error> {
    let dir = resolve(dir)?;
    let slices = load(&dir);
    let nothing_there = slices
        .iter()
        .all(|s| matches!(&s.coverage, Coverage::Missing { reason } if reason == load::NO_REPORT));
    if nothing_there {
        return Err(Val26Error::NoReports(dir));
    }
    let mut val26 = assess(&dir.display().to_string(), slices, now);
    val26.digests.evidence_files = digest::digest_bundle(&dir);
    Ok(val26)
}

/// Where the report's three files go: `<dir>/val26/`.
pub fn output_dir(dir: &Path) -> PathBuf {
    dir.join("val26")
}

const TEXT: &str = "val26-report.txt";
const HTML: &str = "val26-report.html";
const JSON: &str = "val26-report.json";

/// Writes `val26-report.{txt,html,json}` into `<dir>/val26/`, each atomically, the JSON last
/// with the hashes of the other two; returns the HTML's path. An existing report is replaced
/// only when its evidence still matches it, or with `force`: regenerating must not launder
/// evidence that changed since the report was made.
pub fn write(dir: &Path, val26: &mut Val26, force: bool) -> Result<PathBuf, Val26Error> {
    let dir = resolve(dir)?;
    let out = output_dir(&dir);
    match std::fs::symlink_metadata(&out) {
        Ok(meta) if !meta.is_dir() => return Err(Val26Error::UnsafeOutput(out)),
        Ok(_) if !force && out.join(JSON).exists() => {
            let (_, mismatches) = verify(&dir, val26.generated_at)?;
            if !mismatches.is_empty() {
                return Err(Val26Error::EvidenceChanged { dir, mismatches });
            }
        }
        Ok(_) => {}
        Err(_) => std::fs::create_dir(&out).map_err(|source| Val26Error::Write {
            path: out.clone(),
            source,
        })?,
    }
    let put = |name: &str, body: &[u8]| {
        let path = out.join(name);
        crate::evidence::writer::write_atomically(&path, body).map_err(|source| Val26Error::Write { path, source })
    };
    put(TEXT, text::render(val26).as_bytes())?;
    put(HTML, html::render(val26).as_bytes())?;
    val26.digests.report_files = [TEXT, HTML]
        .iter()
        .map(|name| digest::digest_file(&dir, &format!("val26/{name}")))
        .collect();
    put(
        JSON,
        &serde_json::to_vec_pretty(val26).expect("a VAL26 report always serialises"),
    )?;
    Ok(out.join(HTML))
}

/// The parts of `val26-report.json` that `verify` checks.
#[derive(Deserialize)]
struct Recorded {
    #[serde(flatten)]
    digests: Digests,
    verdict: String,
    checks: Vec<crate::evidence::Check>,
}

/// Checks `<dir>/val26/val26-report.json` against the directory: every evidence file and the
/// text and HTML reports against their recorded SHA-256, and the verdict and check statuses
/// against a fresh assessment of the slice reports (so an edited verdict is found too).
/// Returns how many files were checked and every difference.
pub fn verify(dir: &Path, now: time::OffsetDateTime) -> Result<(usize, Vec<Mismatch>), Val26Error> {
    let dir = resolve(dir)?;
    let path = output_dir(&dir).join(JSON);
    let text = std::fs::read_to_string(&path).map_err(|_| Val26Error::NoVal26Report {
        path: path.clone(),
        dir: dir.clone(),
    })?;
    let recorded: Recorded = serde_json::from_str(&text).map_err(|e| Val26Error::NotAVal26Report {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if recorded.digests.evidence_files.is_empty() {
        return Err(Val26Error::NotAVal26Report {
            path,
            reason: "it lists no evidence files".into(),
        });
    }
    let mut mismatches = digest::verify(&dir, &recorded.digests.evidence_files);
    mismatches.extend(digest::verify_listed(&dir, &recorded.digests.report_files));
    let now_assessed = assess(&dir.display().to_string(), load(&dir), now);
    let statuses = |checks: &[crate::evidence::Check]| -> Vec<String> {
        checks.iter().map(|c| format!("{} {}", c.id, c.status)).collect()
    };
    if now_assessed.verdict != recorded.verdict || statuses(&now_assessed.checks) != statuses(&recorded.checks) {
        mismatches.push(Mismatch::Verdict {
            recorded: format!("{} ({})", recorded.verdict, statuses(&recorded.checks).join(", ")),
            now: format!(
                "{} ({})",
                now_assessed.verdict,
                statuses(&now_assessed.checks).join(", ")
            ),
        });
    }
    Ok((
        recorded.digests.evidence_files.len() + recorded.digests.report_files.len(),
        mismatches,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(bundle: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/val26")
            .join(bundle)
    }

    /// The bundle's five reports copied into a directory of their own, to write beside.
    fn copied(bundle: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("a temp dir");
        for (slice, _) in SLICES {
            let to = dir.path().join(slice);
            std::fs::create_dir_all(&to).unwrap();
            let name = format!("{slice}-report.json");
            std::fs::copy(fixture(bundle).join(slice).join(&name), to.join(&name)).unwrap();
        }
        dir
    }

    fn generated(bundle: &str) -> Val26 {
        generate(&fixture(bundle), time::OffsetDateTime::now_utc()).expect("the sample bundle can be assessed")
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
        assert_eq!(val26.failing_checks(), Vec::<&str>::new(), "{:#?}", val26.checks);
        assert_eq!(val26.verdict, "HA DESIGN PARTNER READY");
        assert_eq!(val26.digests.evidence_files.len(), 5);
        assert!(val26.digests.evidence_files.iter().all(|f| f.sha256.len() == 64));
        let html = html::render(&val26);
        assert_eq!(html.matches(r#"<tr class="pass" data-check="VAL26-"#).count(), 10);
        assert!(!html.contains("not measured"), "every chart has its values");
    }

    #[test]
    fn a_missing_slice_is_missing_and_not_ready() {
        let val26 = generated("one-missing");
        assert_eq!(val26.failing_checks(), ["VAL26-02", "VAL26-10"]);
        assert!(detail(&val26, "VAL26-02").starts_with("MISSING: no report file"));
        assert_eq!(val26.verdict, "NOT READY");
        assert_eq!(val26.digests.evidence_files.len(), 4);
    }

    #[test]
    fn a_schema_mismatch_is_missing_with_the_mismatch_named() {
        let val26 = generated("schema-mismatch");
        assert_eq!(val26.failing_checks(), ["VAL26-04", "VAL26-10"]);
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
        assert_eq!(val26.failing_checks(), ["VAL26-01", "VAL26-07", "VAL26-10"]);
        assert_eq!(detail(&val26, "VAL26-01"), "not passing: VAL13-04");
        assert_eq!(detail(&val26, "VAL26-07"), "not passing: VAL13-04");
        let html = html::render(&val26);
        assert!(html.contains(r#"<tr class="fail" data-check="VAL26-07">"#));
        assert!(html.contains(r#"data-verdict="NOT READY""#));
    }

    #[test]
    fn reports_outside_the_window_fail_only_the_summary() {
        let val26 = generated("outside-window");
        assert_eq!(val26.failing_checks(), ["VAL26-10"]);
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
        assert_eq!(val26.failing_checks(), ["VAL26-03", "VAL26-08", "VAL26-10"]);
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
        let dir = copied("complete");
        let now = time::OffsetDateTime::now_utc();
        let mut val26 = generate(dir.path(), now).unwrap();
        let html = write(dir.path(), &mut val26, false).unwrap();
        assert!(html.ends_with("val26/val26-report.html"));
        assert_eq!(verify(dir.path(), now).unwrap(), (7, vec![]));
        // Regenerating over intact evidence is allowed.
        write(dir.path(), &mut generate(dir.path(), now).unwrap(), false).unwrap();
        std::fs::write(dir.path().join("val15/val15-report.json"), "{}").unwrap();
        let (_, mismatches) = verify(dir.path(), now).unwrap();
        assert!(
            matches!(&mismatches[0], Mismatch::Changed { path, .. } if path == "val15/val15-report.json"),
            "{mismatches:?}"
        );
        // The val15 report no longer parses: the verdict a fresh assessment gives differs.
        assert!(matches!(&mismatches[1], Mismatch::Verdict { .. }), "{mismatches:?}");
        // Regenerating over changed evidence is refused unless forced.
        let refused = write(dir.path(), &mut generate(dir.path(), now).unwrap(), false).unwrap_err();
        assert!(matches!(refused, Val26Error::EvidenceChanged { .. }), "{refused}");
        write(dir.path(), &mut generate(dir.path(), now).unwrap(), true).unwrap();
        assert_eq!(verify(dir.path(), now).unwrap().1, vec![]);
    }

    #[test]
    fn an_edited_html_report_or_verdict_is_found() {
        let dir = copied("failed-check");
        let now = time::OffsetDateTime::now_utc();
        write(dir.path(), &mut generate(dir.path(), now).unwrap(), false).unwrap();
        let edit = |name: &str, from: &str, to: &str| {
            let path = dir.path().join("val26").join(name);
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, text.replace(from, to)).unwrap();
        };
        edit(HTML, "Verdict: NOT READY", "Verdict: HA DESIGN PARTNER READY");
        edit(
            JSON,
            "\"verdict\": \"NOT READY\"",
            "\"verdict\": \"HA DESIGN PARTNER READY\"",
        );
        let found: Vec<String> = verify(dir.path(), now)
            .unwrap()
            .1
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("changed: val26/val26-report.html"), "{found:?}");
        assert!(
            found[1].starts_with("verdict: recorded HA DESIGN PARTNER READY"),
            "{found:?}"
        );
    }

    #[test]
    fn a_linked_output_directory_is_refused() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let elsewhere = tempfile::tempdir().expect("a temp dir");
        std::fs::create_dir_all(dir.path().join("val13")).unwrap();
        std::fs::copy(
            fixture("complete").join("val13/val13-report.json"),
            dir.path().join("val13/val13-report.json"),
        )
        .unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("val26")).unwrap();
        let now = time::OffsetDateTime::now_utc();
        let error = write(dir.path(), &mut generate(dir.path(), now).unwrap(), false).unwrap_err();
        assert!(matches!(error, Val26Error::UnsafeOutput(_)), "{error}");
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    }
}
