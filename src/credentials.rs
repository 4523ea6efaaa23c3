//! Where the GitHub token and the intake key come from: the environment, or one Secrets Manager
//! secret. Read once per container, and read again when GitHub or the intake rejects them
//! (the secret was rotated).

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct Credentials {
    pub github_token: Secret,
    /// Absent only for local `--dry-run`s, which post nothing.
    pub intake_key: Option<Secret>,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("secret {secret_id}: {problem}")]
    Secret { secret_id: String, problem: String },
    #[error("cannot read secret {secret_id} from Secrets Manager: {problem}")]
    Unreachable { secret_id: String, problem: String },
}

#[async_trait]
pub trait CredentialSource: Send + Sync {
    async fn fetch(&self) -> Result<Credentials, CredentialError>;
}

/// Fixed credentials, e.g. from `GITHUB_TOKEN` and `SEKOIA_INTAKE_KEY`.
pub struct StaticCredentials(pub Credentials);

#[async_trait]
impl CredentialSource for StaticCredentials {
    async fn fetch(&self) -> Result<Credentials, CredentialError> {
        Ok(self.0.clone())
    }
}

pub struct SecretsManagerCredentials {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
}

impl SecretsManagerCredentials {
    pub fn new(client: aws_sdk_secretsmanager::Client, secret_id: impl Into<String>) -> Self {
        Self { client, secret_id: secret_id.into() }
    }
}

#[async_trait]
impl CredentialSource for SecretsManagerCredentials {
    async fn fetch(&self) -> Result<Credentials, CredentialError> {
        let answer = self.client.get_secret_value().secret_id(&self.secret_id).send().await.map_err(|e| {
            CredentialError::Unreachable {
                secret_id: self.secret_id.clone(),
                problem: aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
            }
        })?;
        let text = answer.secret_string().ok_or_else(|| CredentialError::Secret {
            secret_id: self.secret_id.clone(),
            problem: "has no SecretString; store the JSON as text".into(),
        })?;
        parse_secret(&self.secret_id, text)
    }
}

/// The secret's JSON shape.
#[derive(Deserialize)]
struct SecretFields {
    github_token: Option<String>,
    sekoia_intake_key: Option<String>,
}

/// Never quotes the secret's text: parse errors only say where they are.
pub fn parse_secret(secret_id: &str, text: &str) -> Result<Credentials, CredentialError> {
    let error = |problem: String| CredentialError::Secret { secret_id: secret_id.to_owned(), problem };
    let fields: SecretFields = serde_json::from_str(text).map_err(|e| {
        error(format!("is not a JSON object with string values (line {}, column {})", e.line(), e.column()))
    })?;
    let required = |value: Option<String>, key: &str| {
        value.filter(|v| !v.trim().is_empty()).map(Secret::new).ok_or_else(|| error(format!("has no \"{key}\" key")))
    };
    Ok(Credentials {
        github_token: required(fields.github_token, "github_token")?,
        intake_key: Some(required(fields.sekoia_intake_key, "sekoia_intake_key")?),
    })
}

/// Credentials read once and shared by every run of a container.
pub struct CredentialCache {
    source: Box<dyn CredentialSource>,
    current: Mutex<Option<Arc<Credentials>>>,
}

impl CredentialCache {
    pub fn new(source: Box<dyn CredentialSource>) -> Self {
        Self { source, current: Mutex::new(None) }
    }

    pub async fn get(&self) -> Result<Arc<Credentials>, CredentialError> {
        let mut current = self.current.lock().await;
        if let Some(credentials) = current.as_ref() {
            return Ok(credentials.clone());
        }
        let fresh = Arc::new(self.source.fetch().await?);
        *current = Some(fresh.clone());
        Ok(fresh)
    }

    /// Reads the source again: what was cached has just been rejected.
    pub async fn reload(&self) -> Result<Arc<Credentials>, CredentialError> {
        self.current.lock().await.take();
        self.get().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_complete_secret_gives_both_credentials() {
        let credentials =
            parse_secret("s", r#"{"github_token":"ghp_abc","sekoia_intake_key":"key-1"}"#).expect("valid secret");
        assert_eq!(credentials.github_token.expose(), "ghp_abc");
        assert_eq!(credentials.intake_key.as_ref().map(Secret::expose), Some("key-1"));
    }

    #[test]
    fn a_missing_key_is_named_and_no_value_is_quoted() {
        let err = parse_secret("prod/gh", r#"{"github_token":"ghp_very_secret"}"#).expect_err("incomplete");
        let message = err.to_string();
        assert!(message.contains("sekoia_intake_key") && message.contains("prod/gh"), "{message}");
        assert!(!message.contains("ghp_very_secret"));
    }

    #[test]
    fn bad_json_says_where_without_echoing_the_text() {
        let err = parse_secret("s", "github_token=ghp_very_secret").expect_err("not json");
        assert!(err.to_string().contains("not a JSON object"));
        assert!(!err.to_string().contains("ghp_very_secret"));
    }
}
