//! `backfill --on-lambda FUNCTION`: the deployed function runs the backfill. Each run is
//! invoked asynchronously (`InvocationType=Event`: a run lasts up to 14 minutes, longer than a
//! synchronous caller such as the AWS CLI waits for an answer), and followed by asking the
//! function where the backfill stands (`"status": true`, answered from its cursor), until the
//! range is covered. Interrupted, the same command carries on: the backfill's cursor lives in
//! the function's table, keyed by target and range. The caller needs `lambda:InvokeFunction`
//! on the function, nothing else.

use std::time::{Duration, Instant};

use aws_config::timeout::TimeoutConfig;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use serde_json::{Value, json};

use crate::aws::aws_error;
use crate::aws_calls::LAMBDA_INVOKE;
use crate::connector::{TimeRange, load_aws};
use crate::drain::BackfillStatus;
use crate::network::ExtraRoots;
use crate::timefmt::rfc3339_seconds;

/// How often the function is asked where the backfill stands.
const POLL_EVERY: Duration = Duration::from_secs(10);
/// An asynchronous invocation normally starts within seconds; after this without a sign of it,
/// it is taken as lost (throttled, dropped) and made again.
const PICKUP_WAIT: Duration = Duration::from_secs(120);
/// Runs in a row that moved nothing (rate limited, failing) before giving up; the waits between
/// them double from a minute, half an hour in all.
const MAX_FRUITLESS_RUNS: u32 = 6;
const FRUITLESS_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum OnLambdaError {
    #[error("cannot invoke {function}: {message}")]
    Invoke { function: String, message: String },
    #[error("{function} refused the backfill: {message}")]
    Refused { function: String, message: String },
    #[error(
        "{function}: {runs} runs in a row moved the backfill no further; its log says why (\"run failed\", a rate limit); run the same command again to carry on"
    )]
    NoProgress { function: String, runs: u32 },
}

pub struct LambdaBackfill {
    client: aws_sdk_lambda::Client,
    function: String,
    /// The run's payload; with `"status": true`, the question.
    payload: Value,
}

impl LambdaBackfill {
    /// A local emulator (`cargo lambda watch`) answers even an `Event` invocation only once the
    /// run is over: the client waits as long as a run may last.
    pub async fn new(function: &str, target: Option<&str>, range: TimeRange, roots: &ExtraRoots) -> Self {
        let sdk = load_aws(roots).await;
        let run = Duration::from_secs(900);
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(run)
            .operation_attempt_timeout(run)
            .operation_timeout(run)
            .build();
        let config = aws_sdk_lambda::config::Builder::from(&sdk).timeout_config(timeouts).build();
        let mut payload =
            json!({"backfill": {"since": rfc3339_seconds(range.since_ms), "until": rfc3339_seconds(range.until_ms)}});
        if let Some(target) = target {
            payload["target"] = json!(target);
        }
        Self { client: aws_sdk_lambda::Client::from_conf(config), function: function.to_owned(), payload }
    }

    /// Where the backfill stands; a refusal (no such target, several and none named) is an error
    /// naming what to fix.
    pub async fn status(&self) -> Result<BackfillStatus, OnLambdaError> {
        let mut question = self.payload.clone();
        question["status"] = json!(true);
        let answer = self.invoke(&question, InvocationType::RequestResponse).await?;
        let refused = |message: String| OnLambdaError::Refused { function: self.function.clone(), message };
        if let Some(error) = answer.get("error").or_else(|| answer.get("errorMessage")) {
            return Err(refused(error.as_str().unwrap_or_default().to_owned()));
        }
        serde_json::from_value(answer)
            .map_err(|e| refused(format!("its answer is not a backfill status ({e}): is it github-audit-sekoia?")))
    }

    pub async fn start_run(&self) -> Result<(), OnLambdaError> {
        self.invoke(&self.payload, InvocationType::Event).await.map(|_| ())
    }

    async fn invoke(&self, payload: &Value, kind: InvocationType) -> Result<Value, OnLambdaError> {
        let answer = self
            .client
            .invoke()
            .function_name(&self.function)
            .invocation_type(kind)
            .payload(Blob::new(payload.to_string()))
            .send()
            .await
            .map_err(|e| OnLambdaError::Invoke {
                function: self.function.clone(),
                message: aws_error(&LAMBDA_INVOKE, &e),
            })?;
        Ok(answer.payload.and_then(|body| serde_json::from_slice(body.as_ref()).ok()).unwrap_or(Value::Null))
    }

    /// Starts runs until the range is covered, telling `shown` each status; the last one.
    pub async fn follow(&self, mut shown: impl FnMut(&BackfillStatus)) -> Result<BackfillStatus, OnLambdaError> {
        let (started, mut watch) = (Instant::now(), Watch::default());
        loop {
            let status = self.status().await?;
            shown(&status);
            match watch.next(&status, started.elapsed()) {
                Next::Done => return Ok(status),
                Next::StartRun => {
                    self.start_run().await?;
                    watch.started(&status, started.elapsed());
                    continue;
                }
                Next::Wait => {}
                Next::GiveUp => {
                    return Err(OnLambdaError::NoProgress { function: self.function.clone(), runs: watch.fruitless });
                }
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}

/// What follows a status.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Done,
    StartRun,
    Wait,
    GiveUp,
}

/// What was seen since the last run was started: whether it ran, whether it moved anything.
#[derive(Debug, Default)]
pub struct Watch {
    last: Option<Started>,
    fruitless: u32,
}

#[derive(Debug)]
struct Started {
    at: Duration,
    covered_until: String,
    events_forwarded: u64,
    seen_running: bool,
}

impl Watch {
    pub fn started(&mut self, status: &BackfillStatus, at: Duration) {
        self.last = Some(Started {
            at,
            covered_until: status.progress.covered_until.clone(),
            events_forwarded: status.events_forwarded,
            seen_running: false,
        });
    }

    /// `at`: time since following began.
    pub fn next(&mut self, status: &BackfillStatus, at: Duration) -> Next {
        if status.progress.complete {
            return Next::Done;
        }
        let Some(last) = &mut self.last else {
            return if status.running { Next::Wait } else { Next::StartRun };
        };
        if status.running {
            last.seen_running = true;
            return Next::Wait;
        }
        let moved =
            status.progress.covered_until != last.covered_until || status.events_forwarded != last.events_forwarded;
        if moved {
            self.fruitless = 0;
            return Next::StartRun;
        }
        if !last.seen_running && at < last.at + PICKUP_WAIT {
            return Next::Wait;
        }
        // The last run ended, or never began, having moved nothing: the next waits longer.
        if at.saturating_sub(last.at) < FRUITLESS_BACKOFF * 2u32.pow(self.fruitless) {
            return Next::Wait;
        }
        self.fruitless += 1;
        if self.fruitless >= MAX_FRUITLESS_RUNS { Next::GiveUp } else { Next::StartRun }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drain::BackfillProgress;

    fn status(percent: f64, events_forwarded: u64, running: bool) -> BackfillStatus {
        BackfillStatus {
            cursor: "backfill/orgs/acme/web/2026-11-01T00:00:00Z..2026-11-08T00:00:00Z".into(),
            progress: BackfillProgress {
                since: "2026-11-01T00:00:00Z".into(),
                until: "2026-11-08T00:00:00Z".into(),
                covered_until: format!("covered {percent}"),
                percent,
                complete: percent >= 100.0,
            },
            events_forwarded,
            running,
        }
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_run_is_started_then_followed_and_the_next_started_when_it_moved_the_backfill() {
        let mut watch = Watch::default();
        assert_eq!(watch.next(&status(0.0, 0, false), S), Next::StartRun);
        watch.started(&status(0.0, 0, false), S);
        assert_eq!(watch.next(&status(0.0, 0, false), 11 * S), Next::Wait, "not picked up yet");
        assert_eq!(watch.next(&status(10.0, 900, true), 21 * S), Next::Wait, "running");
        assert_eq!(watch.next(&status(40.0, 3_000, false), 900 * S), Next::StartRun, "it ended having moved on");
        watch.started(&status(40.0, 3_000, false), 900 * S);
        assert_eq!(watch.next(&status(100.0, 7_000, false), 1_800 * S), Next::Done);
    }

    #[test]
    fn a_backfill_already_running_is_followed_without_starting_another() {
        let mut watch = Watch::default();
        assert_eq!(watch.next(&status(30.0, 10, true), S), Next::Wait);
        assert_eq!(watch.next(&status(55.0, 20, false), 11 * S), Next::StartRun);
    }

    #[test]
    fn an_invocation_never_picked_up_is_made_again_after_the_pickup_wait() {
        let mut watch = Watch::default();
        watch.started(&status(0.0, 0, false), S);
        assert_eq!(watch.next(&status(0.0, 0, false), PICKUP_WAIT), Next::Wait);
        assert_eq!(watch.next(&status(0.0, 0, false), PICKUP_WAIT + 2 * S), Next::StartRun);
    }

    #[test]
    fn runs_that_move_nothing_are_spaced_out_then_given_up() {
        let mut watch = Watch::default();
        let mut at = Duration::ZERO;
        let mut restarts = Vec::new();
        while at < Duration::from_secs(4 * 3600) {
            match watch.next(&status(20.0, 500, false), at) {
                Next::StartRun => {
                    restarts.push(at.as_secs());
                    watch.started(&status(20.0, 500, false), at);
                }
                Next::GiveUp => break,
                Next::Wait => {}
                Next::Done => panic!("not complete"),
            }
            at += POLL_EVERY;
        }
        assert_eq!(watch.fruitless, MAX_FRUITLESS_RUNS, "given up after {restarts:?}");
        let gaps: Vec<u64> = restarts.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps, [120, 120, 240, 480, 960], "the first waits for the pickup, then doubling");
    }
}
