//! Charts as SVG drawn on the server: no chart library, no script, and they work with the
//! CSP (no inline style: the bars take their colours from classes in the stylesheet, so dark
//! mode applies). Throughput ([`svg`]): each bucket a stacked bar, succeeded below and
//! failed above. Run time ([`durations`]): each minute a bar up to its p95 with its p50
//! inside. Every bar has a tooltip (`<title>`) giving the numbers.
//!
//! Everything written here is numbers and times formatted by this crate; no text from a
//! message reaches a chart.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use palermo_store::{metrics::MinutePoint, series::Series};

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 150.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 18.0;

fn label(ms: i64, format: &str) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.format(format).to_string())
        .unwrap_or_default()
}

/// A time in ms for people: `0.4 ms`, `12 ms`, `1.5 s`, `2.5 min`; `–` for none.
pub(crate) fn millis(ms: Option<f64>) -> String {
    match ms {
        None => "–".into(),
        Some(ms) if ms < 10.0 => format!("{ms:.1} ms"),
        Some(ms) if ms < 1000.0 => format!("{ms:.0} ms"),
        Some(ms) if ms < 120_000.0 => format!("{:.1} s", ms / 1000.0),
        Some(ms) => format!("{:.1} min", ms / 60_000.0),
    }
}

/// The run-time chart of one job's minutes as an `<svg>` element: a bar per minute up to its
/// p95, its p50 drawn inside, scaled to the slowest p95. Nothing but numbers and times in it
/// (the job's name stays in the page, escaped).
pub(crate) fn durations(points: &[MinutePoint], id: &str) -> String {
    let max = points
        .iter()
        .filter_map(|p| p.p95_ms)
        .fold(0.0_f64, f64::max);
    let scale_max = if max > 0.0 { max } else { 1.0 };
    let slot = WIDTH / points.len().max(1) as f64;
    let gap = if slot > 4.0 { 1.0 } else { 0.0 };
    let plot = HEIGHT - TOP - BOTTOM;
    let base = HEIGHT - BOTTOM;
    let runs: i64 = points.iter().map(|p| p.runs).sum();
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="chart" id="{id}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="Run time per minute: {runs} runs, slowest p95 {}"><title>Run time per minute, p50 and p95</title>"#,
        millis((max > 0.0).then_some(max))
    );
    let _ = write!(
        out,
        r#"<line class="axis" x1="0" y1="{base}" x2="{WIDTH}" y2="{base}"/><text class="tick" x="2" y="11">{}</text>"#,
        millis(Some(max))
    );
    for (i, point) in points.iter().enumerate() {
        let x = i as f64 * slot;
        let _ = write!(
            out,
            r#"<g class="bucket"><title>{} UTC: {} runs, p50 {}, p95 {}</title><rect class="hit" x="{x:.1}" y="{TOP}" width="{slot:.1}" height="{plot:.1}"/>"#,
            label(point.start_ms, "%H:%M"),
            point.runs,
            millis(point.p50_ms),
            millis(point.p95_ms)
        );
        for (class, value) in [("bar-p95", point.p95_ms), ("bar-p50", point.p50_ms)] {
            let height = value.unwrap_or(0.0) / scale_max * plot;
            if height > 0.0 {
                let _ = write!(
                    out,
                    r#"<rect class="{class}" x="{x:.1}" y="{:.1}" width="{:.1}" height="{height:.1}"/>"#,
                    base - height,
                    slot - gap
                );
            }
        }
        out.push_str("</g>");
    }
    if let (Some(first), Some(last)) = (points.first(), points.last()) {
        let _ = write!(
            out,
            r#"<text class="tick" x="2" y="{HEIGHT}">{}</text><text class="tick end" x="{WIDTH}" y="{HEIGHT}">{}</text>"#,
            label(first.start_ms, "%H:%M"),
            label(last.start_ms, "%H:%M")
        );
    }
    out.push_str("</svg>");
    out
}

/// The chart of `series` as an `<svg>` element; `label_format` is a chrono format for the
/// tooltip and axis times (`%H:%M`, `%a %H:00`).
pub(crate) fn svg(series: &Series, id: &str, title: &str, label_format: &str) -> String {
    let max = series
        .buckets
        .iter()
        .map(|b| b.counts.processed.max(b.counts.failed))
        .max()
        .unwrap_or(0)
        .max(1);
    let count = series.buckets.len().max(1) as f64;
    let slot = WIDTH / count;
    let gap = if slot > 4.0 { 1.0 } else { 0.0 };
    let plot = HEIGHT - TOP - BOTTOM;
    let scale = |n: i64| n as f64 / max as f64 * plot;
    let label = |ms: i64| label(ms, label_format);
    let total: i64 = series.buckets.iter().map(|b| b.counts.processed).sum();
    let failed: i64 = series.buckets.iter().map(|b| b.counts.failed).sum();
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="chart" id="{id}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{title}: {total} processed, {failed} failed"><title>{title}</title>"#
    );
    let _ = write!(
        out,
        r#"<line class="axis" x1="0" y1="{y}" x2="{WIDTH}" y2="{y}"/><text class="tick" x="2" y="11">{max}</text>"#,
        y = HEIGHT - BOTTOM
    );
    for (i, bucket) in series.buckets.iter().enumerate() {
        let x = i as f64 * slot;
        let ok = (bucket.counts.processed - bucket.counts.failed).max(0);
        let (ok_h, failed_h) = (scale(ok), scale(bucket.counts.failed));
        let base = HEIGHT - BOTTOM;
        let _ = write!(
            out,
            r#"<g class="bucket"><title>{} UTC: {} processed, {} failed</title><rect class="hit" x="{x:.1}" y="{TOP}" width="{slot:.1}" height="{plot:.1}"/>"#,
            label(bucket.start),
            bucket.counts.processed,
            bucket.counts.failed
        );
        if ok_h > 0.0 {
            let _ = write!(
                out,
                r#"<rect class="bar-ok" x="{x:.1}" y="{:.1}" width="{:.1}" height="{ok_h:.1}"/>"#,
                base - ok_h,
                slot - gap
            );
        }
        if failed_h > 0.0 {
            let _ = write!(
                out,
                r#"<rect class="bar-failed" x="{x:.1}" y="{:.1}" width="{:.1}" height="{failed_h:.1}"/>"#,
                base - ok_h - failed_h,
                slot - gap
            );
        }
        out.push_str("</g>");
    }
    if let (Some(first), Some(last)) = (series.buckets.first(), series.buckets.last()) {
        let _ = write!(
            out,
            r#"<text class="tick" x="2" y="{HEIGHT}">{}</text><text class="tick end" x="{WIDTH}" y="{HEIGHT}">{}</text>"#,
            label(first.start),
            label(last.start)
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use palermo_store::{series::Bucket, stats::Counts};

    use super::*;

    #[test]
    fn bars_scale_to_the_busiest_bucket() {
        let series = Series {
            step_ms: 60_000,
            buckets: vec![
                Bucket {
                    start: 0,
                    counts: Counts {
                        processed: 10,
                        failed: 5,
                    },
                },
                Bucket {
                    start: 60_000,
                    counts: Counts::default(),
                },
            ],
        };
        let svg = svg(&series, "c", "Per minute", "%H:%M");
        assert!(
            svg.contains(r#"aria-label="Per minute: 10 processed, 5 failed""#),
            "{svg}"
        );
        assert_eq!(svg.matches("class=\"bar-ok\"").count(), 1);
        assert_eq!(svg.matches("class=\"bar-failed\"").count(), 1);
        assert!(svg.contains("00:00 UTC: 10 processed, 5 failed"));
    }

    #[test]
    fn duration_bars_scale_to_the_slowest_p95() {
        let point = |start_ms, p50: Option<f64>, p95: Option<f64>| MinutePoint {
            start_ms,
            runs: i64::from(p95.is_some()) * 4,
            p50_ms: p50,
            p95_ms: p95,
        };
        let points = [
            point(0, Some(5.0), Some(20.0)),
            point(60_000, None, None),
            point(120_000, Some(2.0), Some(10.0)),
        ];
        let svg = durations(&points, "job-1");
        assert!(
            svg.contains(r#"aria-label="Run time per minute: 8 runs, slowest p95 20 ms""#),
            "{svg}"
        );
        assert_eq!(svg.matches("class=\"bar-p95\"").count(), 2);
        assert_eq!(svg.matches("class=\"bar-p50\"").count(), 2);
        assert!(
            svg.contains("00:00 UTC: 4 runs, p50 5.0 ms, p95 20 ms"),
            "{svg}"
        );
        assert!(svg.contains("00:01 UTC: 0 runs, p50 –, p95 –"), "{svg}");
        assert_eq!(millis(Some(1500.0)), "1.5 s");
        assert_eq!(millis(Some(0.42)), "0.4 ms");
    }
}
