//! Where the GitHub credentials and the intake key come from: the environment, or one Secrets
//! Manager secret. Read once per container, and read again when GitHub or the intake rejects
//! them (the secret was rotated).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::aws_calls::SECRETS_GET_SECRET_VALUE;
use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct Credentials {
    /// Absent from a secret that serves push mode alone (it reads no GitHub API).
    pub github: Option<GitHubCredential>,
    /// Absent only for local `--dry-run`s, which post nothing.
    pub intake_key: Option<Secret>,
}

/// The two ways into GitHub's audit log.
#[derive(Debug, Clone)]
pub enum GitHubCredential {
    /// A classic personal access token with `read:audit_log`.
    Token(Secret),
    /// A GitHub App installed on the organization, with "Administration: read".
    App(AppCredential),
}

#[derive(Debug, Clone)]
pub struct AppCredential {
    /// The App ID, or the app's client ID.
    pub app_id: String,
    /// PEM, PKCS#1 (`BEGIN RSA PRIVATE KEY`, as GitHub hands it out) or PKCS#8.
    pub private_key: Secret,
    /// Found from the organization when absent.
    pub installation_id: Option<u64>,
}

impl AppCredential {
    /// Checks the key now, so a bad one is a configuration error rather than a failed run.
    /// The problem, which is the key's, never quotes it. `app_id` is not empty (the callers
    /// name an empty one themselves).
    pub fn new(app_id: String, private_key_pem: &str, installation_id: Option<u64>) -> Result<Self, String> {
        // Keys pasted into one-line settings often carry literal "\n"s.
        let pem = if private_key_pem.contains('\n') {
            private_key_pem.to_owned()
        } else {
            private_key_pem.replace("\\n", "\n")
        };
        jsonwebtoken::EncodingKey::from_rsa_pem(pem.trim().as_bytes())
            .map_err(|_| "is not an RSA private key in PEM form (PKCS#1 \"BEGIN RSA PRIVATE KEY\" or PKCS#8 \"BEGIN PRIVATE KEY\")".to_owned())?;
        Ok(Self { app_id: app_id.trim().to_owned(), private_key: Secret::new(pem.trim()), installation_id })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("secret {secret_id}: {problem}")]
    Secret { secret_id: String, problem: String },
    #[error("cannot read secret {secret_id} from Secrets Manager: {problem}")]
    Unreachable { secret_id: String, problem: String },
    #[error("GitHub App: {problem}")]
    App { problem: String },
    #[error(
        "no GitHub credential: put \"github_token\" (or \"github_app_id\" and \"github_app_private_key\") in the secret, or set GITHUB_TOKEN"
    )]
    NoGitHub,
}

impl Credentials {
    /// The GitHub credential, for everything that reads GitHub.
    pub fn github(&self) -> Result<&GitHubCredential, CredentialError> {
        self.github.as_ref().ok_or(CredentialError::NoGitHub)
    }
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
                problem: crate::aws::aws_error(&SECRETS_GET_SECRET_VALUE, &e),
            }
        })?;
        let text = answer.secret_string().ok_or_else(|| CredentialError::Secret {
            secret_id: self.secret_id.clone(),
            problem: "has no SecretString; store the JSON as text".into(),
        })?;
        parse_secret(&self.secret_id, text)
    }
}

/// The secret's JSON shape: `github_token`, or `github_app_id` + `github_app_private_key`
/// (+ optional `github_app_installation_id`), and `sekoia_intake_key`. A secret for push mode
/// alone needs only the intake key.
#[derive(Deserialize)]
struct SecretFields {
    github_token: Option<String>,
    github_app_id: Option<StringOrNumber>,
    github_app_private_key: Option<String>,
    github_app_installation_id: Option<StringOrNumber>,
    sekoia_intake_key: Option<String>,
}

/// IDs are numbers to GitHub but often strings in hand-written JSON.
#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrNumber {
    String(String),
    Number(u64),
}

impl StringOrNumber {
    fn text(self) -> String {
        match self {
            StringOrNumber::String(text) => text,
            StringOrNumber::Number(n) => n.to_string(),
        }
    }
}

/// Never quotes the secret's text: parse errors only say where they are.
pub fn parse_secret(secret_id: &str, text: &str) -> Result<Credentials, CredentialError> {
    let error = |problem: String| CredentialError::Secret { secret_id: secret_id.to_owned(), problem };
    let fields: SecretFields = serde_json::from_str(text).map_err(|e| {
        error(format!("is not a JSON object of the expected keys (line {}, column {})", e.line(), e.column()))
    })?;
    let present = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
    let token = present(fields.github_token);
    let app_id = fields.github_app_id.map(StringOrNumber::text);
    if token.is_none() && app_id.as_deref().is_some_and(|id| id.trim().is_empty()) {
        return Err(error("has an empty \"github_app_id\": set the GitHub App's ID (or client ID)".into()));
    }
    let github = match (token, present(app_id)) {
        (Some(_), Some(_)) => return Err(error("has both github_token and github_app_id; keep one".into())),
        (Some(token), None) => Some(GitHubCredential::Token(Secret::new(token))),
        (None, Some(app_id)) => {
            let key = present(fields.github_app_private_key)
                .ok_or_else(|| error("has github_app_id but no \"github_app_private_key\" key".into()))?;
            let installation_id = match fields.github_app_installation_id.map(StringOrNumber::text) {
                None => None,
                Some(id) => {
                    Some(id.trim().parse().map_err(|_| error("github_app_installation_id is not a number".into()))?)
                }
            };
            Some(GitHubCredential::App(
                AppCredential::new(app_id, &key, installation_id)
                    .map_err(|p| error(format!("github_app_private_key {p}")))?,
            ))
        }
        (None, None) => None,
    };
    // Each use asks for what it needs (a drain both, `streams` a token, push mode the key), and
    // says which is missing.
    let intake_key = present(fields.sekoia_intake_key).map(Secret::new);
    if github.is_none() && intake_key.is_none() {
        return Err(error("holds neither a GitHub credential nor \"sekoia_intake_key\"".into()));
    }
    Ok(Credentials { github, intake_key })
}

/// Credentials read once and shared by every run of a container.
pub struct CredentialCache {
    source: Box<dyn CredentialSource>,
    current: Mutex<Option<(Instant, Arc<Credentials>)>>,
    max_age: Duration,
}

/// Credentials are read again at least this often, so a rotated secret (a new intake key, a new
/// token, another intake) takes effect within this, even while the old one still works.
pub const CREDENTIALS_MAX_AGE: Duration = Duration::from_secs(15 * 60);

impl CredentialCache {
    pub fn new(source: Box<dyn CredentialSource>) -> Self {
        Self { source, current: Mutex::new(None), max_age: CREDENTIALS_MAX_AGE }
    }

    /// How long what was read is used before it is read again.
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// What was read, read again once it is older than the maximum age. A re-read that fails
    /// keeps what was read before (it worked), and says so.
    pub async fn get(&self) -> Result<Arc<Credentials>, CredentialError> {
        let mut current = self.current.lock().await;
        let stale = match current.as_ref() {
            Some((read_at, credentials)) if read_at.elapsed() < self.max_age => return Ok(credentials.clone()),
            Some((_, credentials)) => Some(credentials.clone()),
            None => None,
        };
        match (self.source.fetch().await, stale) {
            (Ok(fresh), _) => {
                let fresh = Arc::new(fresh);
                *current = Some((Instant::now(), fresh.clone()));
                Ok(fresh)
            }
            (Err(err), Some(stale)) => {
                tracing::warn!(error = %err, "the credentials could not be read again; the ones read before are used");
                *current = Some((Instant::now(), stale.clone()));
                Ok(stale)
            }
            (Err(err), None) => Err(err),
        }
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
        assert!(matches!(credentials.github, Some(GitHubCredential::Token(ref t)) if t.expose() == "ghp_abc"));
        assert_eq!(credentials.intake_key.as_ref().map(Secret::expose), Some("key-1"));
    }

    #[test]
    fn a_secret_holds_what_its_use_needs_and_an_empty_one_is_named_without_quoting_values() {
        // `streams` needs a token alone; push mode the intake key alone.
        let token_only = parse_secret("prod/gh", r#"{"github_token":"ghp_very_secret"}"#).expect("a token");
        assert!(token_only.github.is_some() && token_only.intake_key.is_none());
        let key_only = parse_secret("prod/gh", r#"{"sekoia_intake_key":"k"}"#).expect("a key");
        assert!(key_only.github.is_none() && key_only.intake_key.is_some());
        let err = parse_secret("prod/gh", r#"{"github_token":" ","note":"ghp_very_secret"}"#).expect_err("empty");
        let message = err.to_string();
        assert!(message.contains("sekoia_intake_key") && message.contains("prod/gh"), "{message}");
        assert!(!message.contains("ghp_very_secret"));
    }

    #[test]
    fn an_app_secret_needs_a_parseable_key_and_never_echoes_it() {
        let text = r#"{"github_app_id": 12345, "github_app_private_key": "-----BEGIN RSA PRIVATE KEY-----\nnot-a-key\n-----END RSA PRIVATE KEY-----", "sekoia_intake_key": "k"}"#;
        let message = parse_secret("s", text).expect_err("bad key").to_string();
        assert!(message.contains("github_app_private_key") && message.contains("PEM"), "{message}");
        assert!(!message.contains("not-a-key"));
        let empty_id = r#"{"github_app_id": "", "github_app_private_key": "key", "sekoia_intake_key": "k"}"#;
        let said = parse_secret("s", empty_id).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(said.contains("empty \"github_app_id\"") && !said.contains("private_key"), "{said}");
        let token_beside_an_empty_id = r#"{"github_token": "t", "github_app_id": "", "sekoia_intake_key": "k"}"#;
        assert!(parse_secret("s", token_beside_an_empty_id).is_ok());
        let both = r#"{"github_token": "t", "github_app_id": "1", "sekoia_intake_key": "k"}"#;
        assert!(parse_secret("s", both).expect_err("ambiguous").to_string().contains("keep one"));
    }

    #[test]
    fn a_secret_for_push_mode_alone_holds_the_intake_key_only() {
        let credentials = parse_secret("s", r#"{"sekoia_intake_key":"key-1"}"#).expect("valid secret");
        assert_eq!(credentials.intake_key.as_ref().map(Secret::expose), Some("key-1"));
        let message = credentials.github().expect_err("no GitHub credential").to_string();
        assert!(message.contains("github_token"), "{message}");
    }

    #[test]
    fn bad_json_says_where_without_echoing_the_text() {
        let err = parse_secret("s", "github_token=ghp_very_secret").expect_err("not json");
        assert!(err.to_string().contains("not a JSON object"));
        assert!(!err.to_string().contains("ghp_very_secret"));
    }

    /// Hands out a new intake key at every read; fails the reads after `fail_after`.
    struct Rotating {
        reads: std::sync::atomic::AtomicUsize,
        fail_after: usize,
    }

    #[async_trait]
    impl CredentialSource for Rotating {
        async fn fetch(&self) -> Result<Credentials, CredentialError> {
            let n = self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n >= self.fail_after {
                return Err(CredentialError::Unreachable { secret_id: "s".into(), problem: "throttled".into() });
            }
            Ok(Credentials { github: None, intake_key: Some(Secret::new(format!("key-{n}"))) })
        }
    }

    fn key(credentials: &Credentials) -> String {
        credentials.intake_key.as_ref().map(|k| k.expose().to_owned()).unwrap_or_default()
    }

    #[tokio::test]
    async fn credentials_are_read_again_once_older_than_their_maximum_age_and_kept_if_that_fails() {
        let source = Rotating { reads: std::sync::atomic::AtomicUsize::new(0), fail_after: 2 };
        let cache = CredentialCache::new(Box::new(source)).with_max_age(Duration::from_millis(50));
        assert_eq!(key(&cache.get().await.expect("read")), "key-0");
        assert_eq!(key(&cache.get().await.expect("cached")), "key-0", "within the age: not read again");
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(key(&cache.get().await.expect("read again")), "key-1", "the rotated key, with no rejection");
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(key(&cache.get().await.expect("kept")), "key-1", "a failed re-read keeps the working key");
        assert_eq!(CREDENTIALS_MAX_AGE, Duration::from_secs(900));
    }
}
