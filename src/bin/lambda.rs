//! The AWS Lambda function: configuration and clients once per container, one drain per invocation.

use github_audit_sekoia::config::Config;
use github_audit_sekoia::connector::Connector;
use github_audit_sekoia::lambda::{check_config, handle};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    check_config(&config)?;
    let connector = Connector::new(config).await?;
    let connector = &connector;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handle(connector, event).await.map_err(lambda_runtime::Error::from)
    }))
    .await
}
