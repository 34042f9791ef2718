//! What every validation slice shares: the `Slice` trait, one `run_slice`, one `Sabotage`, and
//! the assertions of the check, sabotage and mutation tests.
//!
//! A slice says what it is (id, title, the sabotages it can run), runs its phases against the
//! lab it is given, and judges its checks from what the phases observed. Everything around
//! that is here, once: the evidence bundle, the backend or its recorded SKIP, the scratch
//! directory, a phase that panics or stops, the report and its outcome, the phase cache.

use std::{
    fmt::Debug,
    path::{Path, PathBuf},
    time::Duration,
};

use autonomy::evidence::{report::all_checks_outcome, writer::Bundle, Check, CheckStatus, Outcome, Report};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::{
    backend::{self, PgBackend, LAB_DATABASE},
    cluster::Cluster,
    lease_store::LabLeaseStore,
    phase, run,
    store::LabStore,
    verdict::{self, Judge},
};

/// A way to break what a check guards, to show that the check then fails (docs/VALIDATION.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sabotage {
    /// Nothing broken: the run every check must pass.
    None,
    /// Protected writes unfenced (`--unsafe-skip-fencing`): a node that is not the leader, or
    /// no longer is, commits what it is sent.
    SkipFencing,
    /// A node whose database role may not read the replication views.
    NodeWithoutMonitorRole,
    /// Restore an archive taken after the mutations: the restore "succeeds" to the wrong data.
    WrongRestore,
    /// Flip one byte of the first archive after it was created.
    AlterArchive,
    /// Pass `--confirm` in the step that must run without it, as if the gate were bypassed.
    BypassConfirm,
}

impl Sabotage {
    fn slug(self) -> Option<&'static str> {
        match self {
            Sabotage::None => None,
            Sabotage::SkipFencing => Some("skip-fencing"),
            Sabotage::NodeWithoutMonitorRole => Some("node-without-monitor-role"),
            Sabotage::WrongRestore => Some("wrong-restore"),
            Sabotage::AlterArchive => Some("alter-archive"),
            Sabotage::BypassConfirm => Some("bypass-confirm"),
        }
    }

    /// The evidence bundle (and phase cache key) of `slice` run with this sabotage: `val15`,
    /// `val15-sabotage-wrong-restore`.
    pub fn bundle_name(self, slice: &str) -> String {
        match self.slug() {
            None => slice.to_owned(),
            Some(slug) => format!("{slice}-sabotage-{slug}"),
        }
    }
}

/// What a slice's phases saw; its checks are judged from this alone.
pub trait Observed: Debug + Default + Clone + Serialize + DeserializeOwned {
    /// Why the phases stopped early, if they did: the checks not reached fail with it.
    fn aborted(&self) -> Option<&str>;
    fn abort(&mut self, reason: String);
}

/// `Observed` for an observations struct that keeps the reason in `aborted: Option<String>`.
#[macro_export]
macro_rules! observed_with_aborted_field {
    ($observations:ty) => {
        impl $crate::harness::Observed for $observations {
            fn aborted(&self) -> Option<&str> {
                self.aborted.as_deref()
            }
            fn abort(&mut self, reason: String) {
                self.aborted = Some(reason);
            }
        }
    };
}

/// The identity of a slice, inside its `impl Slice`: its id, title and sabotages (names of
/// `Sabotage` variants); its observations are its module's `Observations`, judged by its
/// module's `evaluate`.
/// `slice_identity!("val13", "VAL 13 — HA Failover Validation", [SkipFencing]);`
#[macro_export]
macro_rules! slice_identity {
    ($id:literal, $title:literal, [$($sabotage:ident),*]) => {
        const ID: &'static str = $id;
        const TITLE: &'static str = $title;
        const SABOTAGES: &'static [$crate::harness::Sabotage] = &[$($crate::harness::Sabotage::$sabotage),*];
        type Observations = Observations;
        const EVALUATE: fn(&$crate::verdict::Judge, &Observations) -> Vec<::autonomy::evidence::Check> = evaluate;
    };
}

/// Writes one evidence file of `bundle`; the error names it.
pub fn write_evidence(bundle: &Bundle, name: &str, body: impl AsRef<[u8]>) -> Result<(), String> {
    bundle
        .write(name, body)
        .map(|_| ())
        .map_err(|e| format!("write evidence {name}: {e}"))
}

/// What one run of a slice is given: the database, the bundle, scratch space, the sabotage.
pub struct SliceLab<'a> {
    pub pg: &'a mut dyn PgBackend,
    pub bundle: &'a Bundle,
    pub scratch: &'a Path,
    /// Where the nodes keep their backups (AUTONOMY_LAB_STORE): the slices that back up use it.
    pub store: LabStore,
    /// Where the nodes' lease lives (AUTONOMY_LAB_LEASE_STORE) for the HA slices; the row for
    /// the others.
    pub lease: LabLeaseStore,
    pub sabotage: Sabotage,
}

impl<'a> SliceLab<'a> {
    /// The nodes of this run on the lab database, every status polled each 50 ms, every node
    /// started with `--unsafe-skip-fencing` when that is the sabotage.
    pub fn cluster(&self, slice: &'static str) -> Cluster<'a> {
        let mut cluster = Cluster::new(
            self.bundle,
            slice,
            self.pg.url(LAB_DATABASE),
            self.scratch.to_owned(),
            Duration::from_millis(50),
        );
        if self.sabotage == Sabotage::SkipFencing {
            cluster.extra_args.push("--unsafe-skip-fencing".into());
        }
        cluster.extra_args.extend(self.lease.node_args(slice));
        cluster
    }
}

/// One validation slice (docs/VALIDATION.md): its phases, and its ten checks judged from what
/// they observed.
pub trait Slice {
    /// The report's slice id and the prefix of its evidence files: `val15`.
    const ID: &'static str;
    const TITLE: &'static str;
    /// The sabotages this slice can run, besides `Sabotage::None`.
    const SABOTAGES: &'static [Sabotage];
    /// The slice proves leadership (VAL13, VAL16, VAL17): it runs on the lease store
    /// AUTONOMY_LAB_LEASE_STORE names; every other slice runs on the row lease.
    const ON_EITHER_LEASE_STORE: bool = false;
    type Observations: Observed;
    /// The ten checks, from the observations alone, as `judge` rules on them (SKIP for every
    /// one when the lab was skipped, FAIL for one the phases did not reach).
    const EVALUATE: fn(&Judge, &Self::Observations) -> Vec<Check>;

    /// The observations before any phase ran.
    fn observations() -> Self::Observations {
        Self::Observations::default()
    }

    /// Runs the phases on `lab`, recording what they see, and releases what they started.
    /// Returns why they stopped early, if they did (see `guarded`).
    fn run(lab: SliceLab<'_>, obs: &mut Self::Observations, report: &mut Report) -> Option<String>;

    /// The report's metrics and any extra evidence files, once the checks are judged.
    fn summarize(_obs: &Self::Observations, _report: &mut Report, _bundle: &Bundle) {}

    /// The slice's outcome from its checks: PASS only with all ten passing, unless it says
    /// otherwise.
    fn outcome(checks: &[Check]) -> Outcome {
        all_checks_outcome(checks)
    }
}

/// The checks of `S` on `obs`: SKIP for every one when the lab was skipped for `skip_reason`,
/// FAIL for those the phases did not reach when they stopped early.
pub fn judged<S: Slice>(obs: &S::Observations, skip_reason: Option<&str>) -> Vec<Check> {
    (S::EVALUATE)(&Judge::new(skip_reason, obs.aborted()), obs)
}

/// Connects to the lab database and records its server version in `report`. Returns the
/// connection and the opening of the slice's `<id>-pg-setup.txt`: the backend, its
/// description, the server version and the URL with the password redacted, a line each.
pub fn connect_and_describe(pg: &dyn PgBackend, report: &mut Report) -> Result<(postgres::Client, String), String> {
    let mut db = crate::sql::connect(&pg.url(LAB_DATABASE));
    let version: String = db
        .query_one("SHOW server_version", &[])
        .map_err(|e| format!("read the server version: {e}"))?
        .get(0);
    report.server_version = Some(version.clone());
    let setup = format!(
        "backend={}\n{}\nserver_version={version}\nurl={}\n",
        pg.kind(),
        pg.describe(),
        pg.redacted_url(LAB_DATABASE)
    );
    Ok((db, setup))
}

/// Why `phases` stopped early, if they did: the error they returned, or the message of a panic
/// inside them (recorded like any other abort, so the report and the phase cache are still
/// written and the other checks do not re-run the slice).
pub fn guarded(phases: impl FnOnce() -> Result<(), String>) -> Option<String> {
    phase::abort_reason(std::panic::catch_unwind(std::panic::AssertUnwindSafe(phases)))
}

/// What the check tests read back from the phase cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "O: Observed")]
pub struct SliceOutcome<O> {
    pub report: Report,
    pub evidence_dir: PathBuf,
    pub observations: O,
}

impl<O> SliceOutcome<O> {
    /// True when no backend could run: the SKIP is in the report and printed here. Under
    /// AUTONOMY_LAB_REQUIRE=1 a skipped lab fails the test instead.
    #[track_caller]
    pub fn skipped(&self, test: &str) -> bool {
        verdict::skipped(&self.report, &self.evidence_dir, test)
    }
}

/// Runs the whole slice `S` with `sabotage` and writes its bundle: the report, the observations
/// (`<id>-observations.json`, the source of the committed fixtures) and what the phases wrote.
pub fn run_slice<S: Slice>(sabotage: Sabotage) -> SliceOutcome<S::Observations> {
    assert!(
        sabotage == Sabotage::None || S::SABOTAGES.contains(&sabotage),
        "{} has no sabotage {sabotage:?}",
        S::ID
    );
    let name = sabotage.bundle_name(S::ID);
    let bundle = Bundle::create(&run::evidence_root(), run::run_id(), &name)
        .expect("the evidence bundle directory can be created");
    let mut obs = S::observations();
    let mut report = Report::new(S::ID, S::TITLE, run::run_id());
    match backend::start(&name) {
        Err(backend::Unavailable(reason)) => {
            let _ = bundle.write(
                &format!("{}-pg-setup.txt", S::ID),
                format!("SKIP: no PostgreSQL backend could run: {reason}\n"),
            );
            report.skip_reason = Some(reason);
        }
        Ok(mut pg) => {
            report.backend = pg.kind().to_owned();
            let scratch = tempfile::Builder::new()
                .prefix(&format!("autonomy-{}-", S::ID))
                .tempdir()
                .expect("a scratch dir");
            let lease = if S::ON_EITHER_LEASE_STORE {
                LabLeaseStore::from_env(scratch.path())
            } else {
                Ok(LabLeaseStore::Row)
            };
            let aborted = match (LabStore::from_env(scratch.path()), lease) {
                (Err(reason), _) | (_, Err(reason)) => Some(reason),
                (Ok(store), Ok(lease)) => {
                    report.lease_store = lease.kind().to_owned();
                    let lab = SliceLab {
                        pg: pg.as_mut(),
                        bundle: &bundle,
                        scratch: scratch.path(),
                        store,
                        lease,
                        sabotage,
                    };
                    S::run(lab, &mut obs, &mut report)
                }
            };
            if let Some(reason) = aborted {
                let _ = bundle.write(&format!("{}-aborted.txt", S::ID), &reason);
                obs.abort(reason);
            }
        }
    }
    report.checks = judged::<S>(&obs, report.skip_reason.as_deref());
    S::summarize(&obs, &mut report, &bundle);
    let _ = bundle.write(
        &format!("{}-observations.json", S::ID),
        serde_json::to_string_pretty(&obs).unwrap_or_default(),
    );
    report.files = run::list_files(&bundle.dir);
    let report = report.tally(S::outcome);
    bundle.write_report(&report).expect("the report can be written");
    SliceOutcome {
        report,
        evidence_dir: bundle.dir.clone(),
        observations: obs,
    }
}

/// The outcome of `S` with `sabotage` in this run: run here, or read from the phase cache.
pub fn outcome<S: Slice>(sabotage: Sabotage) -> SliceOutcome<S::Observations> {
    outcome_here::<S>(sabotage).0
}

/// The unsabotaged outcome of `S` for test `test`, or None when the lab was skipped (printed,
/// or a failure under AUTONOMY_LAB_REQUIRE=1).
#[track_caller]
pub fn unsabotaged<S: Slice>(test: &str) -> Option<SliceOutcome<S::Observations>> {
    let outcome = outcome::<S>(Sabotage::None);
    (!outcome.skipped(test)).then_some(outcome)
}

/// `outcome`, also saying whether this call ran the phases (rather than finding them run).
fn outcome_here<S: Slice>(sabotage: Sabotage) -> (SliceOutcome<S::Observations>, bool) {
    phase::run_once_here(&sabotage.bundle_name(S::ID), || run_slice::<S>(sabotage))
}

/// The unsabotaged report of `S` for this run, and whether this call ran its phases.
pub fn report_of<S: Slice>() -> (Report, bool) {
    let (outcome, ran_here) = outcome_here::<S>(Sabotage::None);
    (outcome.report, ran_here)
}

/// Asserts that the check a test is named for passed in the unsabotaged run, explaining any
/// failure in full. `test` is the test's name, `<slice>_<nn>_<check name>`: `val15_06_restore_correct`
/// is check VAL15-06, and the report must name it `restore_correct`.
#[track_caller]
pub fn assert_named_check_passes<S: Slice>(test: &str) {
    let (id, name) = check_named_by(test);
    let outcome = outcome::<S>(Sabotage::None);
    if let Some(check) = outcome.report.check(&id) {
        assert_eq!(
            check.name, name,
            "{test} is named for {id}, whose name is {}",
            check.name
        );
    }
    verdict::assert_check_passes(
        &outcome.report,
        &outcome.evidence_dir,
        outcome.observations.aborted(),
        &id,
    );
}

/// `val15_06_restore_correct` → (`VAL15-06`, `restore_correct`).
fn check_named_by(test: &str) -> (String, String) {
    let mut parts = test.splitn(3, '_');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(slice), Some(number), Some(name)) => (format!("{}-{number}", slice.to_uppercase()), name.to_owned()),
        _ => panic!("{test} is not named <slice>_<nn>_<check name>"),
    }
}

/// Asserts the whole unsabotaged report of `S`: 10/10 and PASS, each of `metrics` present, the
/// phases run once whatever the number of test processes, and each of `files` in the bundle.
/// Returns the outcome for the test's own assertions; None when the lab was skipped.
#[track_caller]
pub fn assert_report_passes<S: Slice>(
    test: &str,
    metrics: &[&str],
    files: &[&str],
) -> Option<SliceOutcome<S::Observations>> {
    let outcome = outcome::<S>(Sabotage::None);
    if outcome.skipped(test) {
        return None;
    }
    let report = &outcome.report;
    assert_eq!(
        (report.counts.pass, report.counts.total, report.outcome),
        (10, 10, Outcome::Pass),
        "report: {report:#?}"
    );
    for metric in metrics {
        assert!(
            report.metrics.contains_key(*metric),
            "no {metric} in {:?}",
            report.metrics
        );
    }
    assert_eq!(
        phase::times_run(S::ID),
        1,
        "the phases must run once per run, whatever the number of test processes"
    );
    for file in files {
        assert!(outcome.evidence_dir.join(file).is_file(), "the bundle lacks {file}");
    }
    Some(outcome)
}

/// Asserts that `S` run with `sabotage` got through its phases (so a check fails for what the
/// sabotage broke, not for a phase that stopped), fails each of `ids`, and ends `expected`.
/// Returns the
/// outcome for the test's own assertions; None when the lab was skipped.
#[track_caller]
pub fn assert_sabotage_fails<S: Slice>(
    sabotage: Sabotage,
    ids: &[&str],
    expected: Outcome,
) -> Option<SliceOutcome<S::Observations>> {
    let outcome = outcome::<S>(sabotage);
    if outcome.skipped(&format!("{} {sabotage:?}", S::ID)) {
        return None;
    }
    let report = &outcome.report;
    assert_eq!(
        outcome.observations.aborted(),
        None,
        "the {sabotage:?} run must get through its phases: {report:#?}"
    );
    for id in ids {
        let check = report
            .check(id)
            .unwrap_or_else(|| panic!("the report has no check {id}"));
        assert_eq!(
            check.status,
            CheckStatus::Fail,
            "{sabotage:?} should fail {id}; report: {report:#?}"
        );
    }
    assert_eq!(report.outcome, expected, "{sabotage:?}: outcome; report: {report:#?}");
    Some(outcome)
}

/// Where the committed observations of a passing run of `S` are:
/// `fixtures/observations/<id>.json`, a copy of a passing run's `<id>-observations.json`.
pub fn fixture_path<S: Slice>() -> PathBuf {
    run::repository_root()
        .join("fixtures/observations")
        .join(format!("{}.json", S::ID))
}

/// The committed observations of a passing run of `S`.
#[track_caller]
pub fn fixture<S: Slice>() -> S::Observations {
    let path = fixture_path::<S>();
    let json = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&json).unwrap_or_else(|e| {
        panic!(
            "{} no longer matches {}'s observations ({e}): copy a passing run's {}-observations.json over it",
            path.display(),
            S::ID,
            S::ID
        )
    })
}

/// Asserts that the committed passing observations of `S` pass every check: the ground the
/// mutation tests break.
#[track_caller]
pub fn assert_fixture_passes<S: Slice>() {
    let checks = judged::<S>(&fixture::<S>(), None);
    assert_eq!(checks.len(), 10, "{checks:#?}");
    let failing: Vec<&Check> = checks.iter().filter(|c| c.status != CheckStatus::Pass).collect();
    assert!(failing.is_empty(), "the fixture of {} must pass: {failing:#?}", S::ID);
}

/// Asserts that the committed observations of `S` have every field this run's observations
/// have, and no other: a fixture that has drifted from the slice (a field added with a default,
/// one renamed) would let the mutation cases break evidence the slice no longer records.
#[track_caller]
pub fn assert_fixture_matches_this_run<S: Slice>(test: &str) {
    let outcome = outcome::<S>(Sabotage::None);
    if outcome.skipped(test) {
        return;
    }
    let live = serde_json::to_value(&outcome.observations).expect("the observations serialise");
    let path = fixture_path::<S>();
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut drift = Vec::new();
    field_drift(&live, &committed, "", &mut drift);
    assert!(
        drift.is_empty(),
        "{} has drifted from this run's observations: {drift:?}; copy a passing run's {}-observations.json over it",
        path.display(),
        S::ID
    );
}

/// The fields `live` and `committed` do not share, as paths (`sigkill.epoch_after`), wherever
/// both hold an object at the same place outside arrays. Only names are compared: a value or a
/// null may differ between runs.
fn field_drift(live: &serde_json::Value, committed: &serde_json::Value, at: &str, drift: &mut Vec<String>) {
    use serde_json::Value;
    let path = |name: &str| {
        if at.is_empty() {
            name.to_owned()
        } else {
            format!("{at}.{name}")
        }
    };
    // Not into arrays: their items differ from run to run (audit events of other types,
    // with other details), so their fields say nothing about the slice's own shape.
    if let (Value::Object(live), Value::Object(committed)) = (live, committed) {
        for name in live.keys().filter(|k| !committed.contains_key(*k)) {
            drift.push(format!("missing {}", path(name)));
        }
        for name in committed.keys().filter(|k| !live.contains_key(*k)) {
            drift.push(format!("extra {}", path(name)));
        }
        for (name, field) in live {
            if let Some(other) = committed.get(name) {
                field_drift(field, other, &path(name), drift);
            }
        }
    }
}

/// Asserts that check `id` fails when `break_it` changes one fact of the committed passing
/// observations. (A fact can guard more than one check: an acknowledged write lost is both
/// lost data and a write check failing, so other checks may turn too.)
#[track_caller]
pub fn assert_check_fails_when_broken<S: Slice>(id: &str, break_it: fn(&mut S::Observations)) {
    judge_broken::<S>(id, break_it, false);
}

/// `assert_check_fails_when_broken`, and no other check fails: for a slice whose facts each
/// guard one check.
#[track_caller]
pub fn assert_only_check_fails_when_broken<S: Slice>(id: &str, break_it: fn(&mut S::Observations)) {
    judge_broken::<S>(id, break_it, true);
}

#[track_caller]
fn judge_broken<S: Slice>(id: &str, break_it: fn(&mut S::Observations), alone: bool) {
    let mut observations = fixture::<S>();
    let before = judged::<S>(&observations, None);
    assert!(
        before
            .iter()
            .find(|c| c.id == id)
            .is_some_and(|c| c.status == CheckStatus::Pass),
        "{id} must pass on the fixture first: {before:#?}"
    );
    break_it(&mut observations);
    let after = judged::<S>(&observations, None);
    let failed: Vec<&str> = after
        .iter()
        .filter(|c| c.status == CheckStatus::Fail)
        .map(|c| c.id.as_str())
        .collect();
    assert!(failed.contains(&id), "{id} should fail: {after:#?}");
    if alone {
        assert_eq!(
            failed,
            vec![id],
            "breaking {id}'s evidence must fail exactly {id}: {after:#?}"
        );
    }
}

/// One `#[test]` per check of a slice, each asserting that its check passed in this run's
/// unsabotaged run. A test is named `<slice>_<nn>_<check name>`, which says the check:
/// `check_tests!(Val15: val15_01_backup_created val15_02_backup_file_valid ...)`.
#[macro_export]
macro_rules! check_tests {
    ($slice:ty: $($test:ident)*) => {
        $(
            #[test]
            fn $test() {
                $crate::harness::assert_named_check_passes::<$slice>(stringify!($test));
            }
        )*
    };
}

/// The two tests of a slice's committed observations: they pass every check (the ground the
/// mutation cases break), and they have the fields this run's observations have, no others.
/// `fixture_tests!(Val13: val13_fixture_observations_pass_every_check val13_fixture_has_the_fields_of_this_run)`.
#[macro_export]
macro_rules! fixture_tests {
    ($slice:ty: $passes:ident $fields:ident) => {
        /// The committed observations of a passing run (`fixtures/observations/`) pass every
        /// check: the ground the mutation cases break.
        #[test]
        fn $passes() {
            $crate::harness::assert_fixture_passes::<$slice>();
        }

        /// The committed observations have the fields this run's observations have, and no
        /// others.
        #[test]
        fn $fields() {
            $crate::harness::assert_fixture_matches_this_run::<$slice>(stringify!($fields));
        }
    };
}
