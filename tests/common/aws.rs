//! What the tests against moto's server share: its configuration, a fresh table or secret, and
//! a Lambda invocation. Run through `scripts/with-moto.sh` (as `make test` does).

use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
use github_audit_sekoia::cursor::PARTITION_KEY;
use github_audit_sekoia::timefmt::to_ms;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::Value;

/// The standard AWS variables pointing at moto, for a child process whose environment is cleared.
pub fn moto_env() -> Vec<(String, String)> {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok_and(|url| url.starts_with("http://127.0.0.1")),
        "these tests need moto: run them through scripts/with-moto.sh (make test does)"
    );
    ["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"]
        .iter()
        .filter_map(|name| std::env::var(name).ok().map(|v| (name.to_string(), v)))
        .collect()
}

pub async fn aws() -> aws_config::SdkConfig {
    moto_env();
    aws_config::load_defaults(BehaviorVersion::latest()).await
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:x}", fastrand::u64(..))
}

/// A cursor table as the template makes it: partition key `target`, on demand.
pub async fn create_table() -> String {
    let table = unique("cursors");
    let key = AttributeDefinition::builder().attribute_name(PARTITION_KEY).attribute_type(ScalarAttributeType::S);
    aws_sdk_dynamodb::Client::new(&aws().await)
        .create_table()
        .table_name(&table)
        .attribute_definitions(key.build().expect("attribute"))
        .key_schema(
            KeySchemaElement::builder().attribute_name(PARTITION_KEY).key_type(KeyType::Hash).build().expect("key"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("table created");
    table
}

/// A secret holding `value` as its JSON text; its name.
pub async fn create_secret(value: Value) -> String {
    let name = unique("github-audit-sekoia/test");
    aws_sdk_secretsmanager::Client::new(&aws().await)
        .create_secret()
        .name(&name)
        .secret_string(value.to_string())
        .send()
        .await
        .expect("secret created");
    name
}

pub fn s3(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(sdk).force_path_style(true).build())
}

pub async fn create_bucket() -> String {
    let bucket = unique("audit-stream");
    s3(&aws().await).create_bucket().bucket(&bucket).send().await.expect("bucket created");
    bucket
}

pub async fn put(bucket: &str, key: &str, bytes: Vec<u8>) {
    let body = aws_sdk_s3::primitives::ByteStream::from(bytes);
    s3(&aws().await).put_object().bucket(bucket).key(key).body(body).send().await.expect("put");
}

/// A Lambda invocation of `payload` whose deadline is `deadline_in` from now.
pub fn invocation(payload: Value, deadline_in: Duration) -> LambdaEvent<Value> {
    let mut context = Context::default();
    context.request_id = unique("request");
    context.deadline = to_ms(SystemTime::now() + deadline_in) as u64;
    LambdaEvent::new(payload, context)
}
