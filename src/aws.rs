//! What the AWS adapters (Secrets Manager, DynamoDB) share.

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// The service's code and message when it answered, else the whole context (network, credentials).
pub(crate) fn aws_error<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    err: &SdkError<E, R>,
) -> String {
    match err.as_service_error() {
        Some(service) => {
            format!("{}: {}", service.code().unwrap_or("error"), service.message().unwrap_or("no message"))
        }
        None => DisplayErrorContext(err).to_string(),
    }
}
