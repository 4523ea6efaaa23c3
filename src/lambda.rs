//! The Lambda handler: what a payload asks for, and one drain within the invocation's deadline;
//! or, in push mode, the objects an SQS batch of S3 notifications names.

use std::time::Duration;

use lambda_runtime::LambdaEvent;
use serde::Deserialize;
use serde_json::Value;

use crate::budget::Budget;
use crate::check::check;
use crate::config::{ConfigError, problem};
use crate::connector::{Connector, RunError, RunRequest, TimeRange};
use crate::forwarder::{ForwardError, Forwarder, is_sqs_batch};
use crate::metrics::emf_line;
use crate::timefmt::now_ms;

/// Left before the deadline to post and save the page in flight, and to answer.
pub const SAFETY_MARGIN: Duration = Duration::from_secs(20);

/// The payloads the function accepts. EventBridge Scheduler sends its `Input` (`{}` or
/// `{"scheduled_time": …}`); a classic scheduled rule sends its envelope; both mean "drain the
/// configured organization". Unknown fields are ignored.
#[derive(Debug, Default, Deserialize)]
struct Payload {
    /// One of the configured targets, as `TARGETS` lists it (`org:acme`): what each schedule sends.
    target: Option<String>,
    /// Drain this organization instead of the configured target, with the function's secret.
    org: Option<String>,
    /// Drain this enterprise instead.
    enterprise: Option<String>,
    backfill: Option<BackfillPayload>,
    /// Run the doctor instead of a drain: `{"check": true}`, optionally with a `target`.
    #[serde(default)]
    check: bool,
    /// With `backfill`: tell where that backfill stands instead of running it.
    #[serde(default)]
    status: bool,
}

/// What an invocation is asked to do.
#[derive(Debug)]
pub enum Invocation {
    Drain(RunRequest),
    /// The doctor, for every target or the one named.
    Check {
        target: Option<String>,
    },
    /// Where a backfill stands.
    BackfillStatus(RunRequest),
}

#[derive(Debug, Deserialize)]
struct BackfillPayload {
    since: String,
    until: String,
}

/// What a payload asks for.
pub fn invocation(payload: Value, budget: Budget) -> Result<Invocation, ConfigError> {
    let payload: Payload = match payload {
        Value::Null => Payload::default(),
        value => serde_json::from_value(value).map_err(|e| problem("payload", format!("is not understood: {e}")))?,
    };
    if payload.check {
        return Ok(Invocation::Check { target: payload.target });
    }
    let backfill = payload.backfill.map(|b| TimeRange::parse(&b.since, &b.until)).transpose()?;
    let request = RunRequest {
        target: payload.target,
        org: payload.org,
        enterprise: payload.enterprise,
        backfill,
        budget,
        dry_run: false,
    };
    Ok(if payload.status { Invocation::BackfillStatus(request) } else { Invocation::Drain(request) })
}

/// What one container serves: the pull targets (none in a push-only deployment) and push mode.
pub struct Function {
    pub pull: Option<Connector>,
    pub push: Forwarder,
}

#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Forward(#[from] ForwardError),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// An SQS batch goes to push mode, anything else to the pull targets.
pub async fn dispatch(function: &Function, event: LambdaEvent<Value>) -> Result<Value, InvocationError> {
    if is_sqs_batch(&event.payload) {
        return Ok(handle_push(&function.push, event).await?);
    }
    let Some(connector) = &function.pull else {
        return check_push_only(&function.push, event).await;
    };
    Ok(handle(connector, event).await?)
}

/// A push-only deployment answers `{"check": true}` with push mode's checks; anything else is
/// refused, saying why.
async fn check_push_only(forwarder: &Forwarder, event: LambdaEvent<Value>) -> Result<Value, InvocationError> {
    let budget = Budget::lasting(forwarder.config().shared.max_run);
    match invocation(event.payload, budget)? {
        Invocation::Check { .. } => Ok(answer_check(&crate::check::check_push(forwarder).await)),
        Invocation::Drain(_) | Invocation::BackfillStatus(_) => Err(problem(
            "TARGETS",
            "is empty: this deployment forwards its stream's bucket only (push mode); it answers SQS batches and {\"check\": true}",
        )
        .into()),
    }
}

/// The doctor's report as the invocation's answer, logged as passed or failed.
fn answer_check(report: &crate::check::Report) -> Value {
    let answer = serde_json::to_value(report).unwrap_or_default();
    if report.ok {
        tracing::info!(report = %answer, "check passed");
    } else {
        tracing::warn!(report = %answer, "check failed");
    }
    answer
}

/// A question, not a run: a refusal (no such target, no range) is its answer, for the caller
/// to show, rather than a failed invocation that would set off the errors alarm.
fn answer_status(status: Result<crate::drain::BackfillStatus, RunError>) -> Value {
    match status {
        Ok(status) => serde_json::to_value(status).unwrap_or_default(),
        Err(err) => {
            tracing::warn!(error = %err, "backfill status refused");
            serde_json::json!({ "error": err.to_string() })
        }
    }
}

/// An SQS batch of S3 notifications: answers the messages to retry (`batchItemFailures`, for
/// the event source mapping's `ReportBatchItemFailures`), after the metrics line of each bucket.
pub async fn handle_push(forwarder: &Forwarder, event: LambdaEvent<Value>) -> Result<Value, ForwardError> {
    let budget = Budget::before_deadline(event.context.deadline(), SAFETY_MARGIN, forwarder.config().shared.max_run);
    let batch = serde_json::from_value(event.payload)
        .map_err(|e| ForwardError::Config(problem("payload", format!("is not an SQS batch: {e}"))))?;
    let outcome = forwarder.forward_notifications(batch, &budget).await?;
    Ok(serde_json::to_value(&outcome.response).unwrap_or_default())
}

/// One invocation: a drain answers its summary, a check its report. A failed run is an error
/// for Lambda (metrics, alarms, the on-failure destination), after its summary has been logged.
/// Every run that drained or tried to also writes its metrics line (EMF) on standard output,
/// which CloudWatch Logs turns into metrics.
pub async fn handle(connector: &Connector, event: LambdaEvent<Value>) -> Result<Value, RunError> {
    let budget = Budget::before_deadline(event.context.deadline(), SAFETY_MARGIN, connector.config().shared.max_run);
    let request = match invocation(event.payload, budget)? {
        Invocation::Drain(request) => request,
        Invocation::Check { target } => return Ok(answer_check(&check(connector, target.as_deref()).await)),
        Invocation::BackfillStatus(request) => return Ok(answer_status(connector.backfill_status(&request).await)),
    };
    // The drain logs its own summary line; the metrics line goes beside it.
    let summary = connector.run(&request).await;
    match &summary {
        Ok(summary) => println!("{}", emf_line(summary, now_ms())),
        Err(RunError::Drain(failure)) => {
            println!("{}", emf_line(failure.summary.as_ref(), now_ms()));
            tracing::error!(error = %failure.error, "invocation failed");
        }
        Err(err) => tracing::error!(error = %err, "invocation failed"),
    }
    summary.map(|summary| serde_json::to_value(summary).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn budget() -> Budget {
        Budget::lasting(Duration::from_secs(1))
    }

    fn drain(payload: Value) -> Result<RunRequest, ConfigError> {
        match invocation(payload, budget())? {
            Invocation::Drain(request) => Ok(request),
            other => panic!("not a drain: {other:?}"),
        }
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
            let request = drain(payload.clone()).expect("accepted");
            assert!(request.org.is_none() && request.target.is_none() && request.backfill.is_none(), "{payload}");
        }
    }

    #[test]
    fn a_payload_can_name_the_target_and_a_backfill_range() {
        let request = drain(
            json!({"org": "globex", "backfill": {"since": "2026-11-01T00:00:00Z", "until": "2026-11-02T00:00:00Z"}}),
        )
        .expect("accepted");
        assert_eq!(request.org.as_deref(), Some("globex"));
        assert!(request.backfill.is_some());
        assert_eq!(
            drain(json!({"enterprise": "acme-corp"})).expect("accepted").enterprise.as_deref(),
            Some("acme-corp")
        );
        let scheduled = drain(json!({"target": "enterprise:acme-corp=github-audit-sekoia/acme"})).expect("accepted");
        assert_eq!(scheduled.target.as_deref(), Some("enterprise:acme-corp=github-audit-sekoia/acme"));
    }

    #[test]
    fn a_check_payload_asks_for_the_doctor_and_not_a_drain() {
        assert!(matches!(invocation(json!({"check": true}), budget()), Ok(Invocation::Check { target: None })));
        let one = invocation(json!({"check": true, "target": "org:acme"}), budget()).expect("accepted");
        assert!(matches!(one, Invocation::Check { target: Some(ref t) } if t == "org:acme"));
        assert!(matches!(invocation(json!({"check": false}), budget()), Ok(Invocation::Drain(_))));
    }

    #[test]
    fn a_status_question_names_the_backfill_it_asks_about() {
        let payload = json!({"target": "org:b", "status": true,
            "backfill": {"since": "2026-11-01T00:00:00Z", "until": "2026-11-02T00:00:00Z"}});
        match invocation(payload, budget()).expect("understood") {
            Invocation::BackfillStatus(request) => {
                assert_eq!(request.target.as_deref(), Some("org:b"));
                assert!(request.backfill.is_some());
            }
            other => panic!("not a status question: {other:?}"),
        }
    }

    #[test]
    fn a_bad_backfill_is_refused_with_the_field_named() {
        let err = drain(json!({"backfill": {"since": "2026-11-02T00:00:00Z", "until": "2026-11-01T00:00:00Z"}}))
            .expect_err("refused");
        assert_eq!(err.variable, "until");
        assert_eq!(drain(json!({"backfill": {"since": "x"}})).expect_err("refused").variable, "payload");
    }
}
