//! What the AWS adapters (Secrets Manager, DynamoDB, S3) share.

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::aws_calls::AwsCall;

/// The service's code and message when it answered, else the whole context (network,
/// credentials). A refusal (access denied, a KMS key the role may not use) also says which
/// permissions `call` needs.
pub(crate) fn aws_error<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    call: &AwsCall,
    err: &SdkError<E, R>,
) -> String {
    match err.as_service_error() {
        Some(service) => {
            let code = service.code().unwrap_or("error");
            let message = service.message().unwrap_or("no message");
            if is_refusal(code) { format!("{code}: {message}; {}", call.needs()) } else { format!("{code}: {message}") }
        }
        None => DisplayErrorContext(err).to_string(),
    }
}

/// IAM's and KMS's refusals as the services name them (`AccessDenied` for S3,
/// `AccessDeniedException` for DynamoDB and Secrets Manager, `KMSAccessDeniedException`,
/// `KMS.AccessDeniedException`, …).
fn is_refusal(code: &str) -> bool {
    code.contains("AccessDenied") || code.starts_with("KMS") || code == "Forbidden"
}

#[cfg(test)]
mod tests {
    use super::is_refusal;

    #[test]
    fn refusals_are_told_apart_from_other_service_errors() {
        for code in ["AccessDenied", "AccessDeniedException", "KMSAccessDeniedException", "KMS.DisabledException"] {
            assert!(is_refusal(code), "{code}");
        }
        for code in ["ResourceNotFoundException", "ConditionalCheckFailedException", "NoSuchKey", "ThrottlingException"]
        {
            assert!(!is_refusal(code), "{code}");
        }
    }
}
