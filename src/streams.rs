//! Enterprise audit-log streaming configurations: the provider fields GitHub documents, the
//! sealed boxes its secrets travel in, and the stream endpoints
//! (`/enterprises/{enterprise}/audit-log/stream-key`, `…/streams[/{id}]`).

use std::fmt::Write as _;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value};
use url::Url;

use crate::budget::Budget;
use crate::github::api_headers;
use crate::http::{self, ANSWER_CAP, Failure, join_path, send_within};
use crate::secret::Secret;

const REQUEST_TIME: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The configuration cannot be sent: found before any request.
    #[error("{0}")]
    Config(String),
    #[error("GitHub answered {status}: {message}")]
    GitHub { status: StatusCode, message: String },
    #[error("GitHub could not be reached: {0}")]
    Transport(String),
}

fn config_error(problem: impl Into<String>) -> StreamError {
    StreamError::Config(problem.into())
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    Integer,
    Boolean,
    OneOf(&'static [&'static str]),
    /// A secret: given in plain text under this name, sent sealed as `encrypted_<name>`.
    Secret,
}

struct Field {
    name: &'static str,
    kind: Kind,
}

const fn field(name: &'static str, kind: Kind) -> Field {
    Field { name, kind }
}

/// The stream types, exactly as GitHub names them (case-sensitive).
pub const STREAM_TYPES: [&str; 7] = [
    "Azure Blob Storage",
    "Azure Event Hubs",
    "Amazon S3",
    "Splunk",
    "HTTPS Event Collector",
    "Google Cloud Storage",
    "Datadog",
];

const AZURE_BLOB: &[Field] = &[field("sas_url", Kind::Secret)];
const AZURE_HUBS: &[Field] = &[field("name", Kind::Text), field("connstring", Kind::Secret)];
const S3_OIDC: &[Field] = &[
    field("bucket", Kind::Text),
    field("region", Kind::Text),
    field("authentication_type", Kind::OneOf(&["oidc"])),
    field("arn_role", Kind::Text),
];
const S3_ACCESS_KEYS: &[Field] = &[
    field("bucket", Kind::Text),
    field("region", Kind::Text),
    field("authentication_type", Kind::OneOf(&["access_keys"])),
    field("access_key_id", Kind::Secret),
    field("secret_key", Kind::Secret),
];
const SPLUNK: &[Field] = &[
    field("domain", Kind::Text),
    field("port", Kind::Integer),
    field("ssl_verify", Kind::Boolean),
    field("token", Kind::Secret),
];
const GOOGLE_CLOUD: &[Field] = &[field("bucket", Kind::Text), field("json_credentials", Kind::Secret)];
const DATADOG_SITES: &[&str] = &["US", "US3", "US5", "EU1", "US1-FED", "AP1"];
const DATADOG: &[Field] = &[field("site", Kind::OneOf(DATADOG_SITES)), field("token", Kind::Secret)];

/// The fields of a stream type; Amazon S3 has two shapes, told apart by `authentication_type`.
fn fields(stream_type: &str, config: &Map<String, Value>) -> Result<&'static [Field], StreamError> {
    Ok(match stream_type {
        "Azure Blob Storage" => AZURE_BLOB,
        "Azure Event Hubs" => AZURE_HUBS,
        "Amazon S3" => match config.get("authentication_type").and_then(Value::as_str) {
            Some("oidc") => S3_OIDC,
            Some("access_keys") => S3_ACCESS_KEYS,
            _ => {
                return Err(config_error(
                    "Amazon S3 needs \"authentication_type\": \"oidc\" (with arn_role) or \"access_keys\" (with access_key_id and secret_key)",
                ));
            }
        },
        // GitHub documents one configuration for both: Splunk's HTTP Event Collector.
        "Splunk" | "HTTPS Event Collector" => SPLUNK,
        "Google Cloud Storage" => GOOGLE_CLOUD,
        "Datadog" => DATADOG,
        other => {
            let hint = STREAM_TYPES
                .iter()
                .find(|known| known.eq_ignore_ascii_case(other))
                .map(|known| format!(" (the name is case-sensitive: {known:?})"))
                .unwrap_or_default();
            return Err(config_error(format!(
                "stream type {other:?} is not one GitHub knows{hint}; expected one of: {}",
                STREAM_TYPES.join(", ")
            )));
        }
    })
}

/// A configuration checked against its stream type, its secrets still in plain text.
/// A field's value, checked against its kind.
enum FieldValue {
    Plain,
    Secret(Secret),
}

fn field_value(field: &Field, value: &Value) -> Result<FieldValue, StreamError> {
    let wrong = |what: &str| config_error(format!("{:?} must be {what}", field.name));
    let fits = match field.kind {
        Kind::Text => value.as_str().is_some_and(|text| !text.trim().is_empty()),
        Kind::Integer => value.is_u64(),
        Kind::Boolean => value.is_boolean(),
        Kind::OneOf(choices) => value.as_str().is_some_and(|v| choices.contains(&v)),
        Kind::Secret => {
            return match value {
                Value::String(text) if !text.is_empty() => Ok(FieldValue::Secret(Secret::new(text.clone()))),
                // A service account's credentials may be pasted as the JSON object itself.
                Value::Object(_) if field.name == "json_credentials" => {
                    Ok(FieldValue::Secret(Secret::new(value.to_string())))
                }
                _ => Err(wrong("a non-empty string")),
            };
        }
    };
    match (fits, field.kind) {
        (true, _) => Ok(FieldValue::Plain),
        (false, Kind::Text | Kind::Secret) => Err(wrong("a non-empty string")),
        (false, Kind::Integer) => Err(wrong("a whole number")),
        (false, Kind::Boolean) => Err(wrong("true or false")),
        (false, Kind::OneOf(choices)) => Err(wrong(&format!("one of {}", choices.join(", ")))),
    }
}

#[derive(Debug)]
pub struct StreamConfig {
    pub stream_type: String,
    plain: Map<String, Value>,
    secrets: Vec<(&'static str, Secret)>,
}

impl StreamConfig {
    /// Checks `config` (the provider's fields, secrets in plain text under their names without
    /// `encrypted_`) against the type's documented fields. Errors never quote a value.
    pub fn parse(stream_type: &str, config: &Value) -> Result<Self, StreamError> {
        let Value::Object(config) = config else {
            return Err(config_error("the configuration must be a JSON object of the provider's fields"));
        };
        let fields = fields(stream_type, config)?;
        let expected = || fields.iter().map(|f| f.name).collect::<Vec<_>>().join(", ");
        for name in config.keys() {
            if let Some(plain) = name.strip_prefix("encrypted_") {
                return Err(config_error(format!(
                    "{name}: give the secret in plain text as {plain:?}; the command seals it with the enterprise's stream key"
                )));
            }
            if name == "key_id" {
                return Err(config_error("key_id: leave it out; the command fetches the stream key and sets it"));
            }
            if !fields.iter().any(|f| f.name == name) {
                return Err(config_error(format!(
                    "{name:?} is not a field of {stream_type} streams; expected: {}",
                    expected()
                )));
            }
        }
        let mut plain = Map::new();
        let mut secrets = Vec::new();
        for field in fields {
            let value = config.get(field.name).ok_or_else(|| {
                config_error(format!("{stream_type} streams need {:?} (fields: {})", field.name, expected()))
            })?;
            match field_value(field, value)? {
                FieldValue::Plain => {
                    plain.insert(field.name.to_owned(), value.clone());
                }
                FieldValue::Secret(secret) => secrets.push((field.name, secret)),
            }
        }
        Ok(Self { stream_type: stream_type.to_owned(), plain, secrets })
    }

    /// The request body GitHub takes: plain fields, each secret sealed with the enterprise's
    /// key as `encrypted_<name>`, and the key's id.
    pub fn body(&self, enabled: bool, key: &StreamKey) -> Result<Value, StreamError> {
        let mut vendor = self.plain.clone();
        for (name, secret) in &self.secrets {
            vendor.insert(format!("encrypted_{name}"), Value::String(key.seal(secret)?));
        }
        vendor.insert("key_id".to_owned(), Value::String(key.key_id.clone()));
        Ok(serde_json::json!({"enabled": enabled, "stream_type": self.stream_type, "vendor_specific": vendor}))
    }
}

/// The enterprise's public key for stream secrets.
#[derive(Debug, Clone, Deserialize)]
pub struct StreamKey {
    pub key_id: String,
    /// Base64 of the 32-byte Curve25519 public key.
    pub key: String,
}

impl StreamKey {
    /// libsodium's `crypto_box_seal` of the secret for this key, in base64.
    pub fn seal(&self, secret: &Secret) -> Result<String, StreamError> {
        let bytes = BASE64.decode(self.key.trim()).map_err(|_| config_error("GitHub's stream key is not base64"))?;
        let public = crypto_box::PublicKey::from_slice(&bytes)
            .map_err(|_| config_error("GitHub's stream key is not a 32-byte public key"))?;
        let sealed = public
            .seal(&mut crypto_box::aead::OsRng, secret.expose().as_bytes())
            .map_err(|_| config_error("cannot seal a secret with the stream key"))?;
        Ok(BASE64.encode(sealed))
    }
}

/// GitHub's stream endpoints for one enterprise, with a classic token.
pub struct StreamsApi {
    client: reqwest::Client,
    base: Url,
    authorization: Secret,
}

impl StreamsApi {
    pub fn new(client: reqwest::Client, api: &Url, enterprise: &str, token: &Secret) -> Self {
        let base = join_path(api, &format!("enterprises/{enterprise}/audit-log"));
        Self { client, base, authorization: Secret::new(format!("Bearer {}", token.expose())) }
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, StreamError> {
        let url = join_path(&self.base, path);
        let headers =
            api_headers(&self.authorization).ok_or_else(|| config_error("the token is not a valid header value"))?;
        let mut request = self.client.request(method, url).headers(headers);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = match send_within(request, &Budget::lasting(REQUEST_TIME)).await {
            Ok(response) => response,
            Err(Failure::OutOfTime) => return Err(StreamError::Transport("no answer in time".into())),
            Err(Failure::Transient(why)) => return Err(StreamError::Transport(why)),
        };
        let status = response.status();
        if !status.is_success() {
            let text = http::read_prefix(response, ANSWER_CAP).await;
            return Err(StreamError::GitHub { status, message: explain(status, &text) });
        }
        let body = http::read_capped(response, ANSWER_CAP).await.map_err(|e| StreamError::Transport(e.to_string()))?;
        Ok(if body.trim_ascii().is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or(Value::Null)
        })
    }

    pub async fn key(&self) -> Result<StreamKey, StreamError> {
        let answer = self.call(Method::GET, "stream-key", None).await?;
        serde_json::from_value(answer).map_err(|_| config_error("GitHub's stream key answer has no key_id and key"))
    }

    pub async fn list(&self) -> Result<Vec<Value>, StreamError> {
        match self.call(Method::GET, "streams", None).await? {
            Value::Array(streams) => Ok(streams),
            _ => Err(config_error("GitHub's list of streams is not a JSON array")),
        }
    }

    pub async fn get(&self, id: u64) -> Result<Value, StreamError> {
        self.call(Method::GET, &format!("streams/{id}"), None).await
    }

    /// Fetches the stream key, seals the secrets with it, creates the stream.
    pub async fn create(&self, config: &StreamConfig, enabled: bool) -> Result<Value, StreamError> {
        let body = config.body(enabled, &self.key().await?)?;
        self.call(Method::POST, "streams", Some(&body)).await
    }

    /// Replaces the stream's whole configuration, secrets included (GitHub's update does).
    pub async fn update(&self, id: u64, config: &StreamConfig, enabled: bool) -> Result<Value, StreamError> {
        let body = config.body(enabled, &self.key().await?)?;
        self.call(Method::PUT, &format!("streams/{id}"), Some(&body)).await
    }

    pub async fn delete(&self, id: u64) -> Result<(), StreamError> {
        self.call(Method::DELETE, &format!("streams/{id}"), None).await.map(|_| ())
    }
}

/// GitHub's message (a 422's validation errors as given), with what a refusal usually means.
fn explain(status: StatusCode, body: &str) -> String {
    let answer: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let mut message = answer["message"].as_str().map(str::to_owned).unwrap_or_else(|| body.chars().take(300).collect());
    if let Some(errors) = answer.get("errors").filter(|e| !e.is_null()) {
        let _ = write!(message, " {errors}");
    }
    match status.as_u16() {
        401 => message.push_str(
            " — the token is wrong or revoked: use a classic personal access token of an enterprise owner",
        ),
        403 | 404 => message.push_str(
            " — these endpoints take a classic personal access token of an enterprise owner (admin:enterprise); GitHub App installation tokens and fine-grained tokens are refused, and an unknown enterprise answers 404",
        ),
        _ => {}
    }
    message
}

/// GitHub's stream objects as a table: id, type, details, enabled, created, updated, paused.
pub fn table(streams: &[Value]) -> String {
    let text = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let rows: Vec<[String; 7]> = streams
        .iter()
        .map(|s| {
            ["id", "stream_type", "stream_details", "enabled", "created_at", "updated_at", "paused_at"]
                .map(|name| text(&s[name]))
        })
        .collect();
    let header = ["ID", "TYPE", "DETAILS", "ENABLED", "CREATED", "UPDATED", "PAUSED"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn key_pair() -> (crypto_box::SecretKey, StreamKey) {
        let secret = crypto_box::SecretKey::generate(&mut crypto_box::aead::OsRng);
        let key = StreamKey { key_id: "k1".into(), key: BASE64.encode(secret.public_key().as_bytes()) };
        (secret, key)
    }

    #[test]
    fn a_sealed_secret_opens_with_the_matching_secret_key_only() {
        let (secret, key) = key_pair();
        let sealed = BASE64.decode(key.seal(&Secret::new("hec-token-1")).expect("sealed")).expect("base64");
        assert_eq!(secret.unseal(&sealed).expect("opens"), b"hec-token-1");
        let (other, _) = key_pair();
        assert!(other.unseal(&sealed).is_err());
    }

    #[test]
    fn the_body_carries_sealed_secrets_under_their_encrypted_names_and_no_plain_text() {
        let (secret, key) = key_pair();
        let config = json!({"domain": "splunk.example.com", "port": 8088, "ssl_verify": true, "token": "hec-token-1"});
        let body = StreamConfig::parse("Splunk", &config).expect("valid").body(false, &key).expect("body");
        let vendor = &body["vendor_specific"];
        assert_eq!(body["enabled"], false);
        assert_eq!(vendor["key_id"], "k1");
        assert_eq!(vendor["port"], 8088);
        assert!(vendor.get("token").is_none());
        assert!(!body.to_string().contains("hec-token-1"));
        let sealed = BASE64.decode(vendor["encrypted_token"].as_str().expect("sealed")).expect("base64");
        assert_eq!(secret.unseal(&sealed).expect("opens"), b"hec-token-1");
    }

    #[test]
    fn each_provider_family_takes_its_documented_fields() {
        let valid = [
            ("Azure Blob Storage", json!({"sas_url": "https://x.blob.core.windows.net/c?sv=1"})),
            ("Azure Event Hubs", json!({"name": "hub", "connstring": "Endpoint=sb://x/"})),
            (
                "Amazon S3",
                json!({"bucket": "b", "region": "eu-west-3", "authentication_type": "oidc", "arn_role": "arn:aws:iam::1:role/r"}),
            ),
            (
                "Amazon S3",
                json!({"bucket": "b", "region": "eu-west-3", "authentication_type": "access_keys", "access_key_id": "AKIA", "secret_key": "s"}),
            ),
            (
                "HTTPS Event Collector",
                json!({"domain": "hec.example.com", "port": 443, "ssl_verify": true, "token": "t"}),
            ),
            ("Google Cloud Storage", json!({"bucket": "b", "json_credentials": {"type": "service_account"}})),
            ("Datadog", json!({"site": "EU1", "token": "t"})),
        ];
        for (stream_type, config) in valid {
            assert!(StreamConfig::parse(stream_type, &config).is_ok(), "{stream_type}: {config}");
        }
    }

    #[test]
    fn bad_configurations_are_refused_naming_the_field_and_never_the_secret() {
        let cases = [
            ("splunk", json!({}), "case-sensitive"),
            ("Splunk", json!({"domain": "d", "port": 1, "ssl_verify": true}), "\"token\""),
            ("Splunk", json!({"domain": "d", "port": "8088", "ssl_verify": true, "token": "sekrit"}), "\"port\""),
            (
                "Splunk",
                json!({"domain": "d", "port": 1, "ssl_verify": true, "encrypted_token": "sekrit"}),
                "plain text as \"token\"",
            ),
            ("Datadog", json!({"site": "MARS", "token": "sekrit"}), "one of US"),
            ("Datadog", json!({"site": "EU1", "token": "sekrit", "api_key": "sekrit"}), "\"api_key\" is not a field"),
            ("Amazon S3", json!({"bucket": "b", "region": "r"}), "authentication_type"),
            ("Datadog", json!({"site": "EU1", "token": "sekrit", "key_id": "1"}), "key_id"),
            ("Datadog", json!(["sekrit"]), "JSON object"),
        ];
        for (stream_type, config, expected) in cases {
            let message = StreamConfig::parse(stream_type, &config).expect_err(expected).to_string();
            assert!(message.contains(expected), "{stream_type} {config}: {message}");
            assert!(!message.contains("sekrit"), "{message}");
        }
    }

    #[test]
    fn the_table_lines_up_github_objects() {
        let streams = [
            json!({"id": 1, "stream_type": "Splunk", "stream_details": "US", "enabled": true, "created_at": "2024-06-06T08:00:00Z", "updated_at": "2024-06-06T08:00:00Z", "paused_at": null}),
            json!({"id": 12, "stream_type": "Amazon S3", "stream_details": "bucket", "enabled": false}),
        ];
        let table = table(&streams);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ID  TYPE       DETAILS  ENABLED"), "{table}");
        assert!(lines[2].starts_with("12  Amazon S3  bucket   false"), "{table}");
    }

    #[test]
    fn githubs_refusals_are_shown_as_given_with_what_they_usually_mean() {
        let validation = explain(
            StatusCode::UNPROCESSABLE_ENTITY,
            r#"{"message": "Validation Failed", "errors": ["vendor_specific.port is invalid"]}"#,
        );
        assert_eq!(validation, r#"Validation Failed ["vendor_specific.port is invalid"]"#);
        let refused = explain(StatusCode::FORBIDDEN, r#"{"message": "Resource not accessible by integration"}"#);
        assert!(refused.starts_with("Resource not accessible by integration — ") && refused.contains("fine-grained"));
        assert_eq!(explain(StatusCode::BAD_GATEWAY, "<html>bad gateway</html>"), "<html>bad gateway</html>");
    }

    proptest! {
        #[test]
        fn any_configuration_is_taken_or_refused_without_panicking(
            stream_type in prop::sample::select(STREAM_TYPES.to_vec()),
            text in "\\PC{0,200}",
        ) {
            if let Ok(value) = serde_json::from_str::<Value>(&text) {
                let _ = StreamConfig::parse(stream_type, &value);
            }
        }

        #[test]
        fn any_stream_key_answer_seals_or_errs_without_panicking(key in "\\PC{0,80}") {
            let _ = StreamKey { key_id: "1".into(), key }.seal(&Secret::new("s"));
        }
    }
}
