//! The simulated enterprise audit-log streaming configurations: the stream key, and list, get,
//! create, update and delete of streams, validating bodies as GitHub's reference describes them
//! (required fields per provider, case-sensitive `stream_type`, `key_id` matching, every
//! `encrypted_…` field a sealed box that opens with the key pair, no plain-text secret).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

/// A stream as the simulator keeps it: GitHub's object, and the secrets it opened.
#[derive(Debug, Clone)]
pub struct SimStream {
    pub id: u64,
    pub stream_type: String,
    pub enabled: bool,
    /// The plain fields sent (secrets and `key_id` left out).
    pub fields: Map<String, Value>,
    /// `encrypted_token` → the token, opened with the simulator's secret key.
    pub secrets: BTreeMap<String, String>,
    created_at: String,
    updated_at: String,
    paused_at: Option<String>,
}

impl SimStream {
    pub fn object(&self) -> Value {
        let details = ["bucket", "domain", "site", "name"]
            .iter()
            .find_map(|name| self.fields.get(*name).and_then(Value::as_str))
            .unwrap_or_default();
        json!({
            "id": self.id, "stream_type": self.stream_type, "stream_details": details, "enabled": self.enabled,
            "created_at": self.created_at, "updated_at": self.updated_at, "paused_at": self.paused_at,
        })
    }
}

pub struct StreamStore {
    secret_key: crypto_box::SecretKey,
    pub key_id: String,
    pub streams: Vec<SimStream>,
    next_id: u64,
    /// Requests to the streaming endpoints, of any outcome.
    pub requests: u64,
}

impl Default for StreamStore {
    fn default() -> Self {
        Self {
            secret_key: crypto_box::SecretKey::generate(&mut crypto_box::aead::OsRng),
            key_id: format!("{}", 3_000_000 + fastrand::u32(..1_000_000)),
            streams: Vec::new(),
            next_id: 1,
            requests: 0,
        }
    }
}

/// A body that passed: what the stream becomes.
struct Checked {
    stream_type: String,
    enabled: bool,
    fields: Map<String, Value>,
    secrets: BTreeMap<String, String>,
}

/// Required fields per provider (GitHub's reference), secrets as their `encrypted_` names.
fn required(stream_type: &str, vendor: &Map<String, Value>) -> Option<&'static [&'static str]> {
    Some(match stream_type {
        "Azure Blob Storage" => &["key_id", "encrypted_sas_url"],
        "Azure Event Hubs" => &["name", "encrypted_connstring", "key_id"],
        "Amazon S3" => match vendor.get("authentication_type").and_then(Value::as_str) {
            Some("oidc") => &["bucket", "region", "key_id", "authentication_type", "arn_role"],
            _ => &[
                "bucket",
                "region",
                "key_id",
                "authentication_type",
                "encrypted_secret_key",
                "encrypted_access_key_id",
            ],
        },
        "Splunk" | "HTTPS Event Collector" => &["domain", "port", "key_id", "encrypted_token", "ssl_verify"],
        "Google Cloud Storage" => &["bucket", "key_id", "encrypted_json_credentials"],
        "Datadog" => &["encrypted_token", "site", "key_id"],
        _ => return None,
    })
}

/// Secret names that must never travel in plain text.
const PLAIN_SECRETS: [&str; 6] = ["token", "sas_url", "connstring", "secret_key", "access_key_id", "json_credentials"];

impl StreamStore {
    pub fn public_key(&self) -> Value {
        json!({"key_id": self.key_id, "key": BASE64.encode(self.secret_key.public_key().as_bytes())})
    }

    /// A create or update body checked as GitHub would; the 422 message when it is not valid.
    fn check(&self, body: &Value) -> Result<Checked, String> {
        let enabled = body["enabled"].as_bool().ok_or("enabled is missing or not a boolean")?;
        let stream_type = body["stream_type"].as_str().ok_or("stream_type is missing")?;
        let vendor = body["vendor_specific"].as_object().ok_or("vendor_specific is missing")?;
        let needed =
            required(stream_type, vendor).ok_or_else(|| format!("stream_type {stream_type:?} is not supported"))?;
        for name in needed {
            if !vendor.contains_key(*name) {
                return Err(format!("vendor_specific.{name} is required for {stream_type}"));
            }
        }
        if let Some(name) = PLAIN_SECRETS.iter().find(|name| vendor.contains_key(**name)) {
            return Err(format!("vendor_specific.{name} is not a valid field; secrets are sent encrypted"));
        }
        if vendor["key_id"].as_str() != Some(self.key_id.as_str()) {
            return Err("key_id does not match the current stream key".into());
        }
        let mut fields = Map::new();
        let mut secrets = BTreeMap::new();
        for (name, value) in vendor {
            if name.starts_with("encrypted_") {
                let sealed =
                    value.as_str().and_then(|v| BASE64.decode(v).ok()).ok_or(format!("{name} is not base64"))?;
                let opened = self
                    .secret_key
                    .unseal(&sealed)
                    .map_err(|_| format!("{name} could not be decrypted with the stream key"))?;
                secrets.insert(name.clone(), String::from_utf8(opened).map_err(|_| format!("{name} is not text"))?);
            } else if name != "key_id" {
                fields.insert(name.clone(), value.clone());
            }
        }
        Ok(Checked { stream_type: stream_type.to_owned(), enabled, fields, secrets })
    }

    pub fn create(&mut self, body: &Value, now: &str) -> Result<Value, String> {
        let Checked { stream_type, enabled, fields, secrets } = self.check(body)?;
        let stream = SimStream {
            id: self.next_id,
            stream_type,
            enabled,
            fields,
            secrets,
            created_at: now.to_owned(),
            updated_at: now.to_owned(),
            paused_at: (!enabled).then(|| now.to_owned()),
        };
        self.next_id += 1;
        let object = stream.object();
        self.streams.push(stream);
        Ok(object)
    }

    /// `None`: no such stream.
    pub fn update(&mut self, id: u64, body: &Value, now: &str) -> Option<Result<Value, String>> {
        let checked = self.check(body);
        let stream = self.streams.iter_mut().find(|s| s.id == id)?;
        Some(checked.map(|Checked { stream_type, enabled, fields, secrets }| {
            stream.paused_at = match (stream.enabled, enabled) {
                (true, false) => Some(now.to_owned()),
                (_, true) => None,
                (false, false) => stream.paused_at.clone(),
            };
            stream.stream_type = stream_type;
            stream.enabled = enabled;
            stream.fields = fields;
            stream.secrets = secrets;
            stream.updated_at = now.to_owned();
            stream.object()
        }))
    }
}

/// A file as GitHub's audit-log stream writes it to Amazon S3 (a time-prefixed `<uuid>.json.gz`):
/// the events as JSON lines, gzip-compressed.
pub fn streamed_file(events: &[crate::SimEvent]) -> Vec<u8> {
    use std::io::Write;
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for event in events {
        // Writing to memory cannot fail.
        let _ = gzip.write_all(event.json.as_bytes());
        let _ = gzip.write_all(b"\n");
    }
    gzip.finish().unwrap_or_default()
}

/// The key GitHub gives a streamed file written at `ms`.
pub fn streamed_file_key(ms: i64, n: u64) -> String {
    format!("{}/{n:08x}-0000-4000-8000-{n:012x}.json.gz", minute_path(ms))
}

/// `YYYY/MM/DD/HH/MM` in UTC, from epoch milliseconds.
fn minute_path(ms: i64) -> String {
    let instant = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    // 2026-11-22T10:04:05Z
    let text = humantime::format_rfc3339_seconds(instant).to_string();
    format!("{}/{}/{}/{}/{}", &text[0..4], &text[5..7], &text[8..10], &text[11..13], &text[14..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(store: &StreamStore, text: &str) -> String {
        let sealed = store.secret_key.public_key().seal(&mut crypto_box::aead::OsRng, text.as_bytes()).expect("sealed");
        BASE64.encode(sealed)
    }

    #[test]
    fn bodies_are_checked_as_github_describes_them() {
        let mut store = StreamStore::default();
        let good = json!({"enabled": true, "stream_type": "Datadog",
            "vendor_specific": {"site": "EU1", "key_id": store.key_id, "encrypted_token": sealed(&store, "t")}});
        let object = store.create(&good, "2026-11-22T00:00:00Z").expect("valid");
        assert_eq!((object["id"].as_u64(), store.streams[0].secrets["encrypted_token"].as_str()), (Some(1), "t"));

        let variants: [(&str, Value); 5] = [
            ("case", json!({"enabled": true, "stream_type": "datadog", "vendor_specific": good["vendor_specific"]})),
            (
                "missing",
                json!({"enabled": true, "stream_type": "Datadog", "vendor_specific": {"site": "EU1", "key_id": store.key_id}}),
            ),
            (
                "plain",
                json!({"enabled": true, "stream_type": "Datadog", "vendor_specific": {"site": "EU1", "key_id": store.key_id, "encrypted_token": sealed(&store, "t"), "token": "t"}}),
            ),
            (
                "key id",
                json!({"enabled": true, "stream_type": "Datadog", "vendor_specific": {"site": "EU1", "key_id": "1", "encrypted_token": sealed(&store, "t")}}),
            ),
            (
                "not sealed",
                json!({"enabled": true, "stream_type": "Datadog", "vendor_specific": {"site": "EU1", "key_id": store.key_id, "encrypted_token": BASE64.encode("t")}}),
            ),
        ];
        for (case, body) in variants {
            assert!(store.create(&body, "now").is_err(), "{case}");
        }
        assert_eq!(store.streams.len(), 1);
    }
}
