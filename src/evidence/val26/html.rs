//! `val26-report.html`: the proof report as one self-contained page (no network): the verdict,
//! the check matrix coloured by status, the charts, the readiness levels and the evidence hashes.

use std::fmt::Write;

use super::{
    assess::Val26,
    bounds::{self, Bound},
    svg::{self, Bar, Distribution, Line},
    text::rfc3339,
};
use crate::evidence::{CheckStatus, Metric, Report};

const STYLE: &str = include_str!("report.css");

/// The script only filters the matrix; it also records that it ran (`data-rendered`), and any
/// script error on the page into `#script-errors`, so a headless browser can tell both.
const SCRIPT: &str = r#"
window.addEventListener('error', function (event) {
  var box = document.getElementById('script-errors');
  box.hidden = false;
  box.textContent += event.message + '\n';
});
(function () {
  var toggle = document.getElementById('only-failing');
  var rows = document.querySelectorAll('#check-matrix tbody tr');
  toggle.addEventListener('change', function () {
    rows.forEach(function (row) {
      row.hidden = toggle.checked && row.classList.contains('pass');
    });
  });
  document.getElementById('failing-count').textContent =
    document.querySelectorAll('#check-matrix tbody tr.fail').length;
  document.documentElement.dataset.rendered = 'ok';
})();
"#;

/// Text made safe for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn status_class(status: CheckStatus) -> &'static str {
    match status {
        CheckStatus::Pass => "pass",
        CheckStatus::Fail => "fail",
        CheckStatus::Skip => "skip",
    }
}

fn value_ms(report: Option<&Report>, metric: &str) -> Option<f64> {
    match report?.metrics.get(metric)? {
        Metric::Value(value) => Some(*value as f64),
        Metric::Series(_) => None,
    }
}

/// A bar of `metric` against no bound.
fn measured(label: &str, report: Option<&Report>, metric: &str) -> Bar {
    Bar {
        label: label.into(),
        value_ms: value_ms(report, metric),
        bound_ms: None,
    }
}

/// A bar of the bounded metric against its bound.
/// A chart (its element id and title) of one report's measurements against their bounds.
fn bound_bars<const N: usize>(
    out: &mut String,
    (id, title): (&str, &str),
    report: Option<&Report>,
    bars: [(&str, Bound); N],
) {
    let bars = bars.map(|(label, bound)| bounded(label, report, bound));
    out.push_str(&svg::bars(id, title, &bars));
}

fn bounded(label: &str, report: Option<&Report>, bound: Bound) -> Bar {
    Bar {
        bound_ms: Some(bound.ms as f64),
        ..measured(label, report, bound.metric)
    }
}

pub fn render(val26: &Val26) -> String {
    let report = |slice: &str| val26.report(slice);
    let mut out = String::new();
    header(&mut out, val26);
    coverage(&mut out, val26);
    matrix(&mut out, val26);
    failover(&mut out, report("val13"));
    lag(&mut out, report("val14"));
    backup(&mut out, report("val15"));
    quorum(&mut out, report("val16"), report("val17"));
    readiness(&mut out, val26);
    files(&mut out, val26);
    let _ = writeln!(out, "<script>{SCRIPT}</script></body></html>");
    out
}

fn header(out: &mut String, val26: &Val26) {
    let ready = val26.readiness.design_partner;
    let _ = write!(
        out,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>VAL26 — HA Proof Report</title><style>{STYLE}</style></head><body>"#
    );
    let _ = write!(
        out,
        r#"<header><h1>VAL26 — HA Proof Report</h1><p id="verdict" class="verdict {}" data-verdict="{}">Verdict: {}</p><p class="meta">Generated {} from <code>{}</code>. Checks: <b>{} PASS</b>, <b>{} FAIL</b>.</p>"#,
        if ready { "pass" } else { "fail" },
        escape(&val26.verdict),
        escape(&val26.verdict),
        rfc3339(val26.generated_at),
        escape(&val26.evidence_dir),
        val26.pass,
        val26.fail
    );
    topology(out, val26);
    out.push_str("</header><pre id=\"script-errors\" hidden></pre>");
}

fn failover(out: &mut String, val13: Option<&Report>) {
    out.push_str("<section id=\"failover\"><h2>Failover (VAL13)</h2>");
    let mut failovers = vec![
        bounded("SIGTERM graceful", val13, bounds::SIGTERM_FAILOVER),
        bounded("SIGKILL unplanned", val13, bounds::SIGKILL_FAILOVER),
    ];
    if let Some(Metric::Series(cycles)) = val13.and_then(|r| r.metrics.get(bounds::RAPID_CYCLE.metric)) {
        failovers.extend(cycles.iter().enumerate().map(|(n, ms)| Bar {
            label: format!("rapid cycle {}", n + 1),
            value_ms: Some(*ms as f64),
            bound_ms: Some(bounds::RAPID_CYCLE.ms as f64),
        }));
    }
    out.push_str(&svg::bars(
        "chart-failover",
        "failover times against the 5 s bound",
        &failovers,
    ));
    out.push_str("<p class=\"note\">From the leader's signal to a follower reporting itself leader, status polled every 50 ms. Bars are red past their bound.</p></section>");
}

fn backup(out: &mut String, val15: Option<&Report>) {
    out.push_str("<section id=\"backup\"><h2>Backup and restore (VAL15)</h2>");
    bound_bars(
        out,
        ("chart-backup", "backup and restore durations against their bounds"),
        val15,
        [("backup", bounds::BACKUP), ("restore", bounds::RESTORE)],
    );
    out.push_str("</section>");
}

fn quorum(out: &mut String, val16: Option<&Report>, val17: Option<&Report>) {
    out.push_str("<section id=\"quorum\"><h2>Quorum loss and split brain (VAL17, VAL16)</h2>");
    out.push_str(&svg::bars(
        "chart-quorum",
        "quorum loss detection and recovery, split-brain detection",
        &[
            bounded("quorum loss detected", val17, bounds::LOSS_DETECTION),
            bounded("quorum recovered", val17, bounds::QUORUM_RECOVERY),
            measured("split brain detected", val16, "detection_ms"),
            measured("one leader again", val16, "recovery_ms"),
            measured("partition takeover", val16, "partition_takeover_ms"),
        ],
    ));
    out.push_str(
        "<p class=\"note\">VAL16's times have no seed bound; its checks judge them (see the matrix).</p></section>",
    );
}

fn topology(out: &mut String, val26: &Val26) {
    let backends = val26.backends();
    let server = val26.server_version().unwrap_or("(version unknown)");
    let _ = write!(
        out,
        r#"<p class="meta">Topology: two or three autonomy nodes on one machine; PostgreSQL {} on the <b>{}</b> backend (VAL14 adds a streaming standby); leader lease: <b>{}</b>. Evidence window: {}.</p><p class="caveat">All timings come from controlled local runs on one machine. They are NOT representative of cloud VM or multi-region deployments.</p>"#,
        escape(server),
        escape(&if backends.is_empty() {
            "(none)".to_owned()
        } else {
            backends.join(" + ")
        }),
        escape(&super::text::lease_store_line(&val26.lease_stores())),
        val26.window_summary("one coherent window of at most 6 h")
    );
}

fn coverage(out: &mut String, val26: &Val26) {
    out.push_str("<section id=\"coverage\"><h2>Scenario coverage</h2><table id=\"coverage-table\"><thead><tr><th>Slice</th><th>Name</th><th>Outcome (checks passing)</th><th>Backend</th></tr></thead><tbody>");
    for (index, slice) in val26.slices.iter().enumerate() {
        // Coloured by VAL26's judgement of the slice (VAL26-01..05), not the slice's own.
        let class = val26
            .checks
            .get(index)
            .map_or("fail", |check| status_class(check.status));
        let backend = slice.report().map_or("-", |r| r.backend.as_str());
        let _ = write!(
            out,
            r#"<tr class="{class}" data-slice="{}"><td>{}</td><td>{}</td><td class="status">{}</td><td>{}</td></tr>"#,
            slice.slice,
            slice.slice.to_uppercase(),
            escape(&slice.name),
            escape(&val26.coverage_line(&slice.slice)),
            escape(backend)
        );
    }
    out.push_str("</tbody></table></section>");
}

fn matrix(out: &mut String, val26: &Val26) {
    let _ = write!(
        out,
        r#"<section id="matrix"><h2>10-check matrix</h2><label><input type="checkbox" id="only-failing"> show only the <span id="failing-count">?</span> failing checks</label><table id="check-matrix"><thead><tr><th>ID</th><th>Status</th><th>Criterion</th><th>Value</th><th>Detail</th></tr></thead><tbody>"#
    );
    for check in &val26.checks {
        let class = status_class(check.status);
        let _ = write!(
            out,
            r#"<tr class="{class}" data-check="{}"><td>{}</td><td class="status">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            escape(&check.id),
            escape(&check.id),
            check.status,
            escape(&check.threshold),
            escape(check.value.as_deref().unwrap_or("-")),
            escape(&check.detail)
        );
    }
    out.push_str("</tbody></table></section>");
}

/// Per workload: p50, p95, p99 and max of write_lag (from the `_us` metrics, ms when only
/// those exist), with the derived thresholds drawn across.
fn lag(out: &mut String, val14: Option<&Report>) {
    out.push_str("<section id=\"lag\"><h2>Replication lag (VAL14)</h2>");
    let workload = |name: &str, label: &str| Distribution {
        label: label.into(),
        points: ["p50", "p95", "p99", "max"]
            .iter()
            .filter_map(|point| {
                value_ms(val14, &format!("{name}_{point}_us"))
                    .map(|us| us / 1000.0)
                    .or_else(|| value_ms(val14, &format!("{name}_{point}_ms")))
                    .map(|ms| ((*point).to_owned(), ms))
            })
            .collect(),
    };
    let rows = [
        workload("idle", "idle"),
        workload("light", "light (100 × 500 B)"),
        workload("heavy", "heavy (500 × 2,000 B)"),
    ];
    let lines: Vec<Line> = [
        ("healthy_ms", "healthy ≤", "healthy"),
        ("degraded_ms", "degraded ≤", "degraded"),
        ("alert_ms", "alert", "alert"),
    ]
    .iter()
    .filter_map(|(metric, label, class)| {
        value_ms(val14, metric).map(|ms| Line {
            label: format!("{label} {}", svg::duration_label(ms)),
            at_ms: ms,
            class,
        })
    })
    .collect();
    out.push_str(&svg::distribution(
        "chart-lag",
        "write_lag distribution per workload with the derived thresholds",
        &rows,
        &lines,
    ));
    bound_bars(
        out,
        ("chart-drain", "standby catch-up after each workload"),
        val14,
        [
            ("light drain", bounds::LIGHT_DRAIN),
            ("heavy drain", bounds::HEAVY_DRAIN),
        ],
    );
    out.push_str("<p class=\"note\">The thresholds are DERIVED from these lab values (healthy = max(p95 × 3 + 1, 10 ms), degraded = max(healthy × 10, 100 ms), alert = max(healthy × 50, 500 ms)), not workplan targets: recalibrate them against production write_lag before alerting on them.</p></section>");
}

fn readiness(out: &mut String, val26: &Val26) {
    out.push_str("<section id=\"readiness\"><h2>Readiness</h2>");
    for level in val26.readiness.levels() {
        let (key, name, ready) = (level.key, level.name, level.ready);
        let _ = write!(
            out,
            r#"<div id="level-{key}" class="level {}"><h3>{name}: {}</h3>"#,
            if ready { "pass" } else { "fail" },
            if ready { "✓ READY" } else { "✗ NOT YET" }
        );
        if !level.gaps.is_empty() {
            out.push_str("<ul>");
            for gap in level.gaps {
                let _ = write!(out, "<li>missing: {}</li>", escape(gap));
            }
            out.push_str("</ul>");
        }
        out.push_str("</div>");
    }
    out.push_str("</section>");
}

fn files(out: &mut String, val26: &Val26) {
    let _ = write!(
        out,
        r#"<section id="evidence"><h2>Evidence files</h2><p class="note">SHA-256 of the {} files VAL26 read; <code>autonomy lab verify-evidence {}</code> recomputes them and names any that changed.</p><details><summary>the list</summary><table id="evidence-files"><thead><tr><th>File</th><th>Bytes</th><th>SHA-256</th></tr></thead><tbody>"#,
        val26.digests.evidence_files.len(),
        escape(&val26.evidence_dir)
    );
    for file in &val26.digests.evidence_files {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            escape(&file.path),
            file.bytes,
            file.sha256
        );
    }
    out.push_str("</tbody></table></details></section>");
}
