//! How the source proves who it is: one small interface over every way of authenticating.

use std::sync::Arc;

use async_trait::async_trait;

use crate::credentials::{CredentialCache, CredentialError};
use crate::secret::Secret;

#[async_trait]
pub trait GitHubAuth: Send + Sync {
    /// The `Authorization` header value for the next request.
    async fn authorization(&self) -> Result<Secret, CredentialError>;
    /// GitHub rejected the last value (401): get a fresh one.
    async fn refresh(&self) -> Result<(), CredentialError>;
}

/// A classic personal access token.
pub struct TokenAuth {
    credentials: Arc<CredentialCache>,
}

impl TokenAuth {
    pub fn new(credentials: Arc<CredentialCache>) -> Self {
        Self { credentials }
    }
}

#[async_trait]
impl GitHubAuth for TokenAuth {
    async fn authorization(&self) -> Result<Secret, CredentialError> {
        Ok(Secret::new(format!("Bearer {}", self.credentials.get().await?.github_token.expose())))
    }

    async fn refresh(&self) -> Result<(), CredentialError> {
        self.credentials.reload().await.map(|_| ())
    }
}
