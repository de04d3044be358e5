//! Throughput charts as SVG drawn on the server: no chart library, no script, and they
//! work with the CSP (no inline style: the bars take their colours from classes in the
//! stylesheet, so dark mode applies). Each bucket is a stacked bar, succeeded below and
//! failed above, with a tooltip (`<title>`) giving the numbers.
//!
//! Everything written here is numbers and times formatted by this crate; no text from a
//! message reaches a chart.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use palermo_store::series::Series;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 150.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 18.0;

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
    let label = |ms: i64| {
        DateTime::<Utc>::from_timestamp_millis(ms)
            .map(|t| t.format(label_format).to_string())
            .unwrap_or_default()
    };
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
}
