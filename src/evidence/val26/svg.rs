//! Inline SVG charts for the HTML report: durations on a logarithmic axis, so a 10 ms failover
//! and its 5,000 ms bound are both readable on one line.

use std::fmt::Write;

use super::html::escape;

const WIDTH: f64 = 760.0;
const LABEL_WIDTH: f64 = 190.0;
const RIGHT_MARGIN: f64 = 30.0;
const ROW_HEIGHT: f64 = 30.0;
const TOP: f64 = 10.0;
const AXIS_HEIGHT: f64 = 34.0;

/// One bar: a measured duration and the bound it must meet, in milliseconds.
pub struct Bar {
    pub label: String,
    pub value_ms: Option<f64>,
    pub bound_ms: Option<f64>,
}

/// One row of a distribution: named points (p50, p95, …) of one workload, in milliseconds.
pub struct Distribution {
    pub label: String,
    pub points: Vec<(String, f64)>,
}

/// A vertical line across the whole chart (a threshold), with its CSS class.
pub struct Line {
    pub label: String,
    pub at_ms: f64,
    pub class: &'static str,
}

/// A log10 axis covering whole decades around every value it must show.
struct Axis {
    low: f64,
    high: f64,
}

impl Axis {
    fn covering(values: impl Iterator<Item = f64>, floor_ms: f64) -> Self {
        let (mut low, mut high) = (f64::MAX, f64::MIN);
        for value in values.filter(|v| *v > 0.0) {
            low = low.min(value);
            high = high.max(value);
        }
        if low > high {
            (low, high) = (1.0, 10.0);
        }
        let low = low.max(floor_ms).log10().floor();
        let high = high.max(floor_ms).log10().ceil().max(low + 1.0);
        Self { low, high }
    }

    /// The x of `ms`; zero and anything below the axis sit at its start.
    fn x(&self, ms: f64) -> f64 {
        let position = if ms <= 0.0 {
            0.0
        } else {
            ((ms.log10() - self.low) / (self.high - self.low)).clamp(0.0, 1.0)
        };
        LABEL_WIDTH + position * (WIDTH - LABEL_WIDTH - RIGHT_MARGIN)
    }

    fn draw(&self, out: &mut String, bottom: f64) {
        let _ = write!(
            out,
            r#"<line class="axis" x1="{LABEL_WIDTH}" y1="{bottom}" x2="{}" y2="{bottom}"/>"#,
            WIDTH - RIGHT_MARGIN
        );
        let mut decade = self.low;
        while decade <= self.high + 1e-9 {
            let ms = 10f64.powf(decade);
            let x = self.x(ms);
            let _ = write!(
                out,
                r#"<line class="tick" x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{bottom}"/><text class="tick-label" x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                bottom + 16.0,
                duration_label(ms)
            );
            decade += 1.0;
        }
    }
}

/// `0.01 ms`, `5 ms`, `1 s`: a readable duration for a tick or a value.
pub fn duration_label(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{} s", trim(ms / 1000.0))
    } else {
        format!("{} ms", trim(ms))
    }
}

fn trim(value: f64) -> String {
    let text = if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    };
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

fn open(out: &mut String, id: &str, title: &str, rows: usize) -> f64 {
    let bottom = TOP + rows as f64 * ROW_HEIGHT;
    let _ = write!(
        out,
        r#"<svg id="{id}" class="chart" role="img" aria-label="{}" viewBox="0 0 {WIDTH} {:.0}" width="{WIDTH}" height="{:.0}">"#,
        escape(title),
        bottom + AXIS_HEIGHT,
        bottom + AXIS_HEIGHT
    );
    bottom
}

/// A row's label, right-aligned left of the plot, its baseline at `baseline`.
fn row_label(out: &mut String, label: &str, baseline: f64) {
    let _ = write!(
        out,
        r#"<text class="row-label" x="{:.1}" y="{baseline:.1}" text-anchor="end">{}</text>"#,
        LABEL_WIDTH - 8.0,
        escape(label)
    );
}

/// In place of a row's values: there are none.
fn not_measured(out: &mut String, baseline: f64) {
    let _ = write!(
        out,
        r#"<text class="value missing" x="{:.1}" y="{baseline:.1}">not measured</text>"#,
        LABEL_WIDTH + 4.0
    );
}

/// Horizontal bars on a log axis; each bar's bound is a mark on its row, and the bar is red
/// when it passes the bound. A bar without a value says "not measured".
pub fn bars(id: &str, title: &str, bars: &[Bar]) -> String {
    let axis = Axis::covering(bars.iter().flat_map(|b| b.value_ms.into_iter().chain(b.bound_ms)), 1.0);
    let mut out = String::new();
    let bottom = open(&mut out, id, title, bars.len());
    axis.draw(&mut out, bottom);
    for (row, bar) in bars.iter().enumerate() {
        let y = TOP + row as f64 * ROW_HEIGHT;
        row_label(&mut out, &bar.label, y + 19.0);
        match bar.value_ms {
            Some(ms) => {
                let within = bar.bound_ms.is_none_or(|bound| ms <= bound);
                let end = axis.x(ms).max(LABEL_WIDTH + 2.0);
                let _ = write!(
                    out,
                    r#"<rect class="bar {}" x="{LABEL_WIDTH}" y="{:.1}" width="{:.1}" height="{:.1}"><title>{}: {}</title></rect><text class="value" x="{:.1}" y="{:.1}">{}</text>"#,
                    if within { "within" } else { "over" },
                    y + 6.0,
                    end - LABEL_WIDTH,
                    ROW_HEIGHT - 12.0,
                    escape(&bar.label),
                    duration_label(ms),
                    end + 4.0,
                    y + 19.0,
                    duration_label(ms)
                );
            }
            None => not_measured(&mut out, y + 19.0),
        }
        if let Some(bound) = bar.bound_ms {
            let x = axis.x(bound);
            let _ = write!(
                out,
                r#"<line class="bound" x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}"><title>bound {}</title></line><text class="bound-label" x="{:.1}" y="{:.1}" text-anchor="end">≤ {}</text>"#,
                y + 2.0,
                y + ROW_HEIGHT - 2.0,
                duration_label(bound),
                x - 3.0,
                y + 11.0,
                duration_label(bound)
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// One row per workload with its percentile points, and threshold lines across every row.
pub fn distribution(id: &str, title: &str, rows: &[Distribution], lines: &[Line]) -> String {
    let axis = Axis::covering(
        rows.iter()
            .flat_map(|r| r.points.iter().map(|(_, ms)| *ms))
            .chain(lines.iter().map(|l| l.at_ms)),
        0.01,
    );
    let mut out = String::new();
    let bottom = open(&mut out, id, title, rows.len());
    axis.draw(&mut out, bottom);
    for (n, line) in lines.iter().enumerate() {
        let x = axis.x(line.at_ms);
        let _ = write!(
            out,
            r#"<line class="threshold {}" x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{bottom:.1}"><title>{}</title></line><text class="threshold-label {}" x="{:.1}" y="{:.1}">{}</text>"#,
            line.class,
            escape(&line.label),
            line.class,
            x + 3.0,
            // Stacked, so neighbouring thresholds' labels do not overprint each other.
            bottom - 4.0 - 12.0 * n as f64,
            escape(&line.label)
        );
    }
    for (row, distribution) in rows.iter().enumerate() {
        let y = TOP + row as f64 * ROW_HEIGHT + ROW_HEIGHT / 2.0;
        row_label(&mut out, &distribution.label, y + 4.0);
        if distribution.points.is_empty() {
            not_measured(&mut out, y + 4.0);
            continue;
        }
        let xs: Vec<f64> = distribution.points.iter().map(|(_, ms)| axis.x(*ms)).collect();
        let (first, last) = (xs[0], xs[xs.len() - 1]);
        let _ = write!(
            out,
            r#"<line class="spread" x1="{first:.1}" y1="{y:.1}" x2="{last:.1}" y2="{y:.1}"/>"#
        );
        // Points closer than a label's width share the first one's label; each keeps its
        // tooltip.
        let mut last_label_x = f64::MIN;
        for ((name, ms), x) in distribution.points.iter().zip(&xs) {
            let _ = write!(
                out,
                r#"<circle class="point" cx="{x:.1}" cy="{y:.1}" r="4"><title>{} {}: {}</title></circle>"#,
                escape(&distribution.label),
                escape(name),
                duration_label(*ms)
            );
            if x - last_label_x >= 26.0 {
                last_label_x = *x;
                let _ = write!(
                    out,
                    r#"<text class="point-label" x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                    y - 7.0,
                    escape(name)
                );
            }
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_label(0.412), "0.412 ms");
        assert_eq!(duration_label(0.01), "0.01 ms");
        assert_eq!(duration_label(12.0), "12 ms");
        assert_eq!(duration_label(5_000.0), "5 s");
        assert_eq!(duration_label(1_260.0), "1.3 s");
    }

    #[test]
    fn a_bar_over_its_bound_is_marked_over_and_a_missing_one_says_so() {
        let svg = bars(
            "c",
            "t",
            &[
                Bar {
                    label: "ok".into(),
                    value_ms: Some(10.0),
                    bound_ms: Some(5_000.0),
                },
                Bar {
                    label: "slow".into(),
                    value_ms: Some(6_000.0),
                    bound_ms: Some(5_000.0),
                },
                Bar {
                    label: "gone".into(),
                    value_ms: None,
                    bound_ms: Some(5_000.0),
                },
            ],
        );
        assert_eq!(svg.matches(r#"class="bar within""#).count(), 1, "{svg}");
        assert_eq!(svg.matches(r#"class="bar over""#).count(), 1, "{svg}");
        assert_eq!(svg.matches("not measured").count(), 1, "{svg}");
        assert_eq!(svg.matches(r#"class="bound""#).count(), 3, "{svg}");
    }

    #[test]
    fn the_axis_spans_whole_decades_around_the_values() {
        let axis = Axis::covering([0.4, 500.0].into_iter(), 0.01);
        assert_eq!((axis.low, axis.high), (-1.0, 3.0));
        assert_eq!(axis.x(0.0), LABEL_WIDTH);
        assert_eq!(axis.x(1_000.0), WIDTH - RIGHT_MARGIN);
    }
}
