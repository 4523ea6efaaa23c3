//! The Lambda handler: what a payload asks for, and one drain within the invocation's deadline.

use std::time::Duration;

use lambda_runtime::LambdaEvent;
use serde::Deserialize;
use serde_json::Value;

use crate::budget::Budget;
use crate::config::{Config, ConfigError, problem};
use crate::connector::{Connector, RunError, RunRequest, TimeRange};
use crate::drain::Summary;
use crate::metrics::emf_line;
use crate::timefmt::now_ms;

/// Left before the deadline to post and save the page in flight, and to answer.
pub const SAFETY_MARGIN: Duration = Duration::from_secs(20);

/// The payloads the function accepts. EventBridge Scheduler sends its `Input` (`{}` or
/// `{"scheduled_time": …}`); a classic scheduled rule sends its envelope; both mean "drain the
/// configured organization". Unknown fields are ignored.
#[derive(Debug, Default, Deserialize)]
struct Payload {
    /// Drain this organization instead of the configured target (one function, several schedules).
    org: Option<String>,
    /// Drain this enterprise instead.
    enterprise: Option<String>,
    backfill: Option<BackfillPayload>,
}

#[derive(Debug, Deserialize)]
struct BackfillPayload {
    since: String,
    until: String,
}

/// The run a payload asks for.
pub fn request(payload: Value, budget: Budget) -> Result<RunRequest, ConfigError> {
    let payload: Payload = match payload {
        Value::Null => Payload::default(),
        value => serde_json::from_value(value).map_err(|e| problem("payload", format!("is not understood: {e}")))?,
    };
    let backfill = payload.backfill.map(|b| TimeRange::parse(&b.since, &b.until)).transpose()?;
    Ok(RunRequest { org: payload.org, enterprise: payload.enterprise, backfill, budget, dry_run: false })
}

/// The function keeps its cursors in DynamoDB: its own disk does not outlive the container.
pub fn check_config(config: &Config) -> Result<(), ConfigError> {
    match config.cursor_table {
        Some(_) => Ok(()),
        None => Err(problem("CURSOR_TABLE", "is required in Lambda: the DynamoDB table that keeps the cursors")),
    }
}

/// One invocation. A failed run is an error for Lambda (metrics, alarms), after its summary
/// has been logged. Every run that drained or tried to also writes its metrics line (EMF) on
/// standard output, which CloudWatch Logs turns into metrics.
pub async fn handle(connector: &Connector, event: LambdaEvent<Value>) -> Result<Summary, RunError> {
    let budget = Budget::before_deadline(event.context.deadline(), SAFETY_MARGIN, connector.config().max_run);
    let request = request(event.payload, budget)?;
    let summary = connector.run(&request).await;
    match &summary {
        Ok(summary) => {
            tracing::info!(summary = %serde_json::to_string(summary).unwrap_or_default(), "invocation done");
            println!("{}", emf_line(summary, now_ms()));
        }
        Err(RunError::Drain(failure)) => {
            tracing::error!(summary = %serde_json::to_string(&failure.summary).unwrap_or_default(), "invocation failed");
            println!("{}", emf_line(&failure.summary, now_ms()));
        }
        Err(err) => tracing::error!("invocation failed: {err}"),
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn budget() -> Budget {
        Budget::lasting(Duration::from_secs(1))
    }

    #[test]
    fn scheduler_inputs_and_rule_envelopes_mean_a_scheduled_drain() {
        for payload in [
            Value::Null,
            json!({}),
            json!({"scheduled_time": "2026-11-21T10:00:00Z"}),
            json!({"version": "0", "id": "x", "detail-type": "Scheduled Event", "source": "aws.events",
                   "time": "2026-11-21T10:00:00Z", "region": "eu-west-3", "resources": [], "detail": {}}),
        ] {
            let request = request(payload.clone(), budget()).expect("accepted");
            assert!(request.org.is_none() && request.backfill.is_none(), "{payload}");
        }
    }

    #[test]
    fn a_payload_can_name_the_org_and_a_backfill_range() {
        let request = request(
            json!({"org": "globex", "backfill": {"since": "2026-11-01T00:00:00Z", "until": "2026-11-02T00:00:00Z"}}),
            budget(),
        )
        .expect("accepted");
        assert_eq!(request.org.as_deref(), Some("globex"));
        assert!(request.backfill.is_some());
        let enterprise = super::request(json!({"enterprise": "acme-corp"}), budget()).expect("accepted");
        assert_eq!(enterprise.enterprise.as_deref(), Some("acme-corp"));
    }

    #[test]
    fn a_bad_backfill_is_refused_with_the_field_named() {
        let err =
            request(json!({"backfill": {"since": "2026-11-02T00:00:00Z", "until": "2026-11-01T00:00:00Z"}}), budget())
                .expect_err("refused");
        assert_eq!(err.variable, "until");
        assert_eq!(request(json!({"backfill": {"since": "x"}}), budget()).expect_err("refused").variable, "payload");
    }
}
