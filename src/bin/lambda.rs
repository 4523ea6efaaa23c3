//! The AWS Lambda function: configuration and clients once per container, one drain (or one
//! SQS batch of the stream's objects) per invocation.

use github_audit_sekoia::config::{Config, PushConfig, Settings, Shared, pull_targets_configured};
use github_audit_sekoia::connector::Connector;
use github_audit_sekoia::forwarder::Forwarder;
use github_audit_sekoia::lambda::{Function, dispatch};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

// One thread, as the CLI: a drain is one task, and at the template's 256 MB Lambda grants about
// a seventh of a vCPU ("Lambda allocates CPU power in proportion to the amount of memory
// configured", Lambda developer guide, "Configure Lambda function memory"), which worker
// threads handing each connection's I/O to one another would only spend.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    github_audit_sekoia::logging::init_lambda();
    let environment = |name: &str| std::env::var(name).ok();
    let settings = Settings::new(&environment);
    let shared = Shared::load(&settings)?;
    shared.require_table()?;
    let push = PushConfig::with_shared(shared.clone(), &settings)?;
    // A push-only deployment lists no pull target; a listed one must be configured right.
    let pull = match pull_targets_configured(&settings) || push.stream_bucket.is_none() {
        true => Some(Connector::new(Config::with_shared(shared, &settings)?).await?),
        false => None,
    };
    tracing::debug!(
        pull_targets = pull.as_ref().map(|connector| connector.config().target_list()),
        stream_bucket = push.stream_bucket.as_deref(),
        "configuration read; waiting for invocations"
    );
    let function = Function { pull, push: Forwarder::new(push).await? };
    let function = &function;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        dispatch(function, event).await.map_err(lambda_runtime::Error::from)
    }))
    .await
}
