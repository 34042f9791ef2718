//! The human-readable report (`<slice>-report.txt`), in the seed's template.

use crate::evidence::{CheckStatus, Report};

pub fn text(report: &Report) -> String {
    let mut out = String::new();
    let generated = report
        .generated_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    out.push_str(&format!("# {}\n\n", report.title));
    out.push_str(&format!("Generated:     {generated}\n"));
    out.push_str(&format!("Run:           {}\n", report.run_id));
    out.push_str(&format!("Backend:       {}\n", report.backend));
    out.push_str(&format!("Lease store:   {}\n", report.lease_store));
    out.push_str(&format!(
        "Server:        {}\n",
        report.server_version.as_deref().unwrap_or("-")
    ));
    out.push_str(&format!("Node:          {}\n", report.node.as_deref().unwrap_or("-")));
    if let Some(reason) = &report.skip_reason {
        out.push_str(&format!("\nSKIPPED: {reason}\n"));
    }
    if !report.metrics.is_empty() {
        out.push_str("\n## Timing\n");
        for (name, value) in &report.metrics {
            // Milliseconds unless the name says otherwise (report.rs).
            let unit = if name.ends_with("_us") { "us" } else { "ms" };
            out.push_str(&format!("{name:<18} {value} {unit}\n"));
        }
    }
    out.push_str("\n## Checks\n");
    let width = report
        .checks
        .iter()
        .map(|c| c.id.len() + c.name.len() + 2)
        .max()
        .unwrap_or(0);
    for check in &report.checks {
        let label = format!("{} {}:", check.id, check.name);
        let mut line = format!("{label:<width$} {}", check.status, width = width + 1);
        if let Some(value) = &check.value {
            line.push_str(&format!("  ({value}; threshold: {})", check.threshold));
        }
        if check.status != CheckStatus::Pass {
            line.push_str(&format!("\n    {}", check.detail));
        }
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str("\n## Summary\n");
    out.push_str(&format!(
        "pass={}  fail={}  skip={}  total={}\n",
        report.counts.pass, report.counts.fail, report.counts.skip, report.counts.total
    ));
    out.push_str(&format!("outcome={}\n", report.outcome));
    out
}
