//! How the source proves who it is: one small interface, whatever the credential.
//!
//! A classic personal access token is sent as it is. A GitHub App signs a short JWT with its
//! private key, finds its installation on the organization, and trades the JWT for an
//! installation token, reused until shortly before it expires.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::budget::Budget;
use crate::credentials::{AppCredential, CredentialCache, CredentialError, GitHubCredential};
use crate::http::{self, Failure, join_path, send_within};
use crate::secret::Secret;

/// GitHub's own limit on an App JWT's lifetime.
const JWT_LIFETIME: Duration = Duration::from_secs(600);
/// `iat` is set this far back, against clock drift.
const JWT_BACKDATE: Duration = Duration::from_secs(60);
/// An installation token is replaced this long before it expires (or at half its life if shorter).
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(300);
const APP_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[async_trait]
pub trait GitHubAuth: Send + Sync {
    /// The `Authorization` header value for the next request.
    async fn authorization(&self) -> Result<Secret, CredentialError>;
    /// GitHub rejected the last value (401): get a fresh one.
    async fn refresh(&self) -> Result<(), CredentialError>;
}

/// Authorizes requests for one organization (or enterprise) with the current credentials.
pub struct Authorizer {
    credentials: Arc<CredentialCache>,
    client: reqwest::Client,
    api: Url,
    /// The organization an App is installed on; `None` for enterprises.
    org: Option<String>,
    app: tokio::sync::Mutex<AppSession>,
}

#[derive(Default)]
struct AppSession {
    installation_id: Option<u64>,
    token: Option<InstallationToken>,
}

struct InstallationToken {
    value: Secret,
    refresh_at: SystemTime,
}

#[derive(Serialize)]
struct AppClaims {
    iat: u64,
    exp: u64,
    iss: String,
}

#[derive(Deserialize)]
struct Installation {
    id: u64,
    #[serde(default)]
    permissions: BTreeMap<String, serde_json::Value>,
}

/// What GitHub says of the App's installation: its id and the permissions granted to it.
#[derive(Debug, Clone)]
pub struct InstallationFacts {
    pub id: u64,
    /// `organization_administration` → `read`, …
    pub permissions: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct AccessToken {
    token: String,
    expires_at: String,
}

fn app_error(problem: impl Into<String>) -> CredentialError {
    CredentialError::App { problem: problem.into() }
}

impl Authorizer {
    pub fn new(credentials: Arc<CredentialCache>, client: reqwest::Client, api: Url, org: Option<String>) -> Self {
        Self { credentials, client, api, org, app: tokio::sync::Mutex::new(AppSession::default()) }
    }

    fn url(&self, path: &str) -> Url {
        join_path(&self.api, path)
    }

    async fn installation_token(&self, app: &AppCredential) -> Result<Secret, CredentialError> {
        let mut session = self.app.lock().await;
        if let Some(token) = session.token.as_ref().filter(|t| SystemTime::now() < t.refresh_at) {
            return Ok(token.value.clone());
        }
        let jwt = app_jwt(app)?;
        let installation_id = match app.installation_id.or(session.installation_id) {
            Some(id) => id,
            None => self.find_installation(&jwt).await?,
        };
        session.installation_id = Some(installation_id);
        let token = self.create_token(installation_id, &jwt).await?;
        let value = token.value.clone();
        session.token = Some(token);
        Ok(value)
    }

    async fn app_request(
        &self,
        request: reqwest::RequestBuilder,
        jwt: &Secret,
    ) -> Result<reqwest::Response, CredentialError> {
        let headers = super::api_headers(&Secret::new(format!("Bearer {}", jwt.expose())))
            .ok_or_else(|| app_error("the App JWT is not a valid header value"))?;
        let request = request.headers(headers);
        match send_within(request, &Budget::lasting(APP_REQUEST_TIMEOUT)).await {
            Ok(response) => Ok(response),
            Err(Failure::OutOfTime) => Err(app_error("GitHub did not answer the App's token request in time")),
            Err(Failure::Transient(why)) => Err(app_error(format!("the App's token request failed: {why}"))),
        }
    }

    async fn find_installation(&self, jwt: &Secret) -> Result<u64, CredentialError> {
        self.installation_answer(None, jwt).await.map(|i| i.id)
    }

    /// The App's installation on the organization (or the configured one) with its permissions;
    /// `None` for a credential that is not an App.
    pub async fn installation(&self) -> Result<Option<InstallationFacts>, CredentialError> {
        let credentials = self.credentials.get().await?;
        let GitHubCredential::App(app) = credentials.github()? else {
            return Ok(None);
        };
        let installation = self.installation_answer(app.installation_id, &app_jwt(app)?).await?;
        let permissions = installation
            .permissions
            .into_iter()
            .map(|(name, level)| (name, level.as_str().unwrap_or_default().to_owned()))
            .collect();
        Ok(Some(InstallationFacts { id: installation.id, permissions }))
    }

    async fn installation_answer(&self, id: Option<u64>, jwt: &Secret) -> Result<Installation, CredentialError> {
        let org = self.org.as_deref().ok_or_else(|| app_error(crate::config::ENTERPRISE_NEEDS_A_TOKEN))?;
        let path = match id {
            Some(id) => format!("app/installations/{id}"),
            None => format!("orgs/{org}/installation"),
        };
        let response = self.app_request(self.client.get(self.url(&path)), jwt).await?;
        match response.status() {
            s if s.is_success() => http::read_json::<Installation>(response, http::ANSWER_CAP)
                .await
                .map_err(|e| app_error(format!("GitHub's installation answer is not understood: {e}"))),
            StatusCode::NOT_FOUND if id.is_some() => {
                Err(app_error("GitHub has no such installation for this App: check GITHUB_APP_INSTALLATION_ID"))
            }
            StatusCode::NOT_FOUND => Err(app_error(format!(
                "the GitHub App is not installed on organization {org}: install it there, or set GITHUB_APP_INSTALLATION_ID"
            ))),
            StatusCode::UNAUTHORIZED => Err(app_error(
                "GitHub rejected the App's JWT (401): check GITHUB_APP_ID and that the private key belongs to this App",
            )),
            s => Err(app_error(format!("GitHub answered {s} when looking up the App's installation on {org}"))),
        }
    }

    async fn create_token(&self, installation_id: u64, jwt: &Secret) -> Result<InstallationToken, CredentialError> {
        let url = self.url(&format!("app/installations/{installation_id}/access_tokens"));
        let response = self.app_request(self.client.post(url), jwt).await?;
        match response.status() {
            s if s.is_success() => {
                let token: AccessToken = http::read_json(response, http::ANSWER_CAP)
                    .await
                    .map_err(|e| app_error(format!("GitHub's installation token answer is not understood: {e}")))?;
                let expires_at = humantime::parse_rfc3339_weak(token.expires_at.trim_end_matches('Z'))
                    .map_err(|_| app_error(format!("GitHub's token expiry {:?} is not a time", token.expires_at)))?;
                let life = expires_at.duration_since(SystemTime::now()).unwrap_or_default();
                Ok(InstallationToken {
                    value: Secret::new(token.token),
                    refresh_at: expires_at - TOKEN_REFRESH_MARGIN.min(life / 2),
                })
            }
            StatusCode::UNAUTHORIZED => Err(app_error(
                "GitHub rejected the App's JWT (401): check GITHUB_APP_ID and that the private key belongs to this App",
            )),
            StatusCode::NOT_FOUND => Err(app_error(format!(
                "GitHub has no installation {installation_id} for this App: check GITHUB_APP_INSTALLATION_ID"
            ))),
            s => Err(app_error(format!("GitHub answered {s} when creating an installation token"))),
        }
    }
}

/// RS256, `iat` a minute back, `exp` ten minutes after `iat`, `iss` the App (or client) ID.
fn app_jwt(app: &AppCredential) -> Result<Secret, CredentialError> {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let iat = now.saturating_sub(JWT_BACKDATE).as_secs();
    let claims = AppClaims { iat, exp: iat + JWT_LIFETIME.as_secs(), iss: app.app_id.clone() };
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(app.private_key.expose().as_bytes())
        .map_err(|_| app_error("the App's private key is not an RSA PEM key"))?;
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &key)
        .map(Secret::new)
        .map_err(|e| app_error(format!("cannot sign the App JWT: {e}")))
}

#[async_trait]
impl GitHubAuth for Authorizer {
    async fn authorization(&self) -> Result<Secret, CredentialError> {
        let token = match self.credentials.get().await?.github()? {
            GitHubCredential::Token(token) => token.clone(),
            GitHubCredential::App(app) => self.installation_token(app).await?,
        };
        Ok(Secret::new(format!("Bearer {}", token.expose())))
    }

    async fn refresh(&self) -> Result<(), CredentialError> {
        self.app.lock().await.token = None;
        self.credentials.reload().await.map(|_| ())
    }
}
