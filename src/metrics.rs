//! One CloudWatch Embedded Metric Format line per run: CloudWatch Logs turns it into metrics,
//! with no API call and no extra permission.

use serde_json::{Map, Value, json};

use crate::summary::RunReport;

pub const NAMESPACE: &str = "GitHubAuditSekoia";

/// One figure of the line: its name, CloudWatch unit and value.
pub type Metric = (&'static str, &'static str, Value);

/// A run's figures under the dimension `Target` (a cursor, or `s3/BUCKET`), stamped
/// `timestamp_ms`: those both modes share, then the mode's own. A figure the run could not know
/// (no lag for a run that held no cursor, no rate budget before GitHub answered) is left out
/// rather than sent as 0.
pub fn emf_line(report: &dyn RunReport, timestamp_ms: i64) -> String {
    let figures = report.figures();
    let mut metrics: Vec<Metric> = vec![
        ("EventsForwarded", "Count", json!(figures.events_forwarded)),
        ("DuplicatesSkipped", "Count", json!(figures.duplicates_skipped)),
        ("OversizeEvents", "Count", json!(figures.oversize_events)),
        ("IntakeUnacknowledged", "Count", json!(figures.intake_unacknowledged)),
        ("RunSeconds", "Seconds", json!(figures.elapsed_seconds)),
    ];
    if let Some(lag) = figures.lag_seconds {
        metrics.push(("LagSeconds", "Seconds", json!(lag)));
    }
    // Only when a filter kept some: a metric costs each month it exists, filters or not.
    if figures.events_filtered > 0 {
        metrics.push(("EventsFiltered", "Count", json!(figures.events_filtered)));
    }
    metrics.extend(report.mode_metrics());
    let declared: Vec<Value> = metrics.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit})).collect();
    let mut line = Map::new();
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [["Target"]], "Metrics": declared}],
        }),
    );
    line.insert("Target".into(), json!(figures.target));
    for (name, _, value) in metrics {
        line.insert(name.into(), value);
    }
    Value::Object(line).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drain::Summary;
    use crate::push::PushSummary;
    use crate::summary::{Figures, StopReason};

    fn summary(stop_reason: StopReason) -> Summary {
        let text = json!({
            "target": "orgs/acme/web", "stop_reason": "drained", "events_forwarded": 312, "pages": 11,
            "fresh_pages": 4, "sweep_pages": 4, "deep_sweep_pages": 3, "duplicates_skipped": 611,
            "oversize_events": 1, "oversize_document_ids": ["x"], "intake_unacknowledged": 2,
            "out_of_range_events": 0, "newest_event": null, "fresh_read_to": null, "window_swept_to": null,
            "deep_swept_to": null, "lag_seconds": 2.5, "rate_limit_remaining": 1_600, "rate_limit_reset": null,
            "window_sweep_skipped_until": null, "deep_sweep_skipped_until": null, "backfill": null,
            "elapsed_seconds": 1.75, "error": null,
        });
        let mut summary: Summary = serde_json::from_value(text).expect("a summary");
        summary.figures.stop_reason = stop_reason;
        summary
    }

    #[test]
    fn the_line_declares_every_figure_with_its_unit_under_the_target_dimension() {
        let line: Value = serde_json::from_str(&emf_line(&summary(StopReason::RateLimited), 1_700_000_000_000))
            .expect("one JSON object");
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(line["_aws"]["Timestamp"], 1_700_000_000_000i64);
        assert_eq!(directive["Namespace"], "GitHubAuditSekoia");
        assert_eq!(directive["Dimensions"], json!([["Target"]]));
        assert_eq!(line["Target"], "orgs/acme/web");
        let declared: Vec<(String, String)> = directive["Metrics"]
            .as_array()
            .expect("metrics")
            .iter()
            .map(|m| {
                (m["Name"].as_str().unwrap_or_default().to_owned(), m["Unit"].as_str().unwrap_or_default().to_owned())
            })
            .collect();
        for (name, unit) in [
            ("EventsForwarded", "Count"),
            ("PagesFetched", "Count"),
            ("DuplicatesSkipped", "Count"),
            ("OversizeEvents", "Count"),
            ("IntakeUnacknowledged", "Count"),
            ("LagSeconds", "Seconds"),
            ("RateLimitRemaining", "Count"),
            ("RunSeconds", "Seconds"),
            ("StopDrained", "Count"),
            ("StopRateLimited", "Count"),
            ("StopFailed", "Count"),
        ] {
            assert!(declared.contains(&(name.to_owned(), unit.to_owned())), "{name} in {unit}");
            assert!(!line[name].is_null(), "{name} has a value");
        }
        assert_eq!((line["EventsForwarded"].as_u64(), line["IntakeUnacknowledged"].as_u64()), (Some(312), Some(2)));
        assert_eq!((line["StopRateLimited"].as_u64(), line["StopDrained"].as_u64()), (Some(1), Some(0)));
    }

    #[test]
    fn a_push_line_counts_objects_and_events_under_the_bucket() {
        let figures = Figures {
            events_forwarded: 900,
            duplicates_skipped: 12,
            lag_seconds: Some(4.5),
            ..Figures::new("s3/audit-stream", StopReason::Drained)
        };
        let summary = PushSummary { figures, objects_forwarded: 3, objects_skipped: 1, ..PushSummary::default() };
        let line: Value = serde_json::from_str(&emf_line(&summary, 5)).expect("json");
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(
            (directive["Namespace"].as_str(), line["Target"].as_str()),
            (Some(NAMESPACE), Some("s3/audit-stream"))
        );
        for (name, value) in [
            ("ObjectsForwarded", 3.0),
            ("ObjectsSkipped", 1.0),
            ("EventsForwarded", 900.0),
            ("DuplicatesSkipped", 12.0),
            ("LagSeconds", 4.5),
        ] {
            assert_eq!(line[name].as_f64(), Some(value), "{name}");
            assert!(directive["Metrics"].to_string().contains(name), "{name} declared");
        }
    }

    #[test]
    fn figures_the_run_could_not_know_are_left_out() {
        let mut busy = summary(StopReason::TargetBusy);
        busy.figures.lag_seconds = None;
        busy.rate_limit_remaining = None;
        let line: Value = serde_json::from_str(&emf_line(&busy, 0)).expect("json");
        assert!(line.get("LagSeconds").is_none() && line.get("RateLimitRemaining").is_none());
        let declared = line["_aws"]["CloudWatchMetrics"][0]["Metrics"].to_string();
        assert!(!declared.contains("LagSeconds") && declared.contains("StopTargetBusy"));
    }
}
