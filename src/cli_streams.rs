//! `github-audit-sekoia streams …`: the enterprise's audit-log streaming configurations.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use github_audit_sekoia::config::{Config, Target};
use github_audit_sekoia::connector::Connector;
use github_audit_sekoia::credentials::GitHubCredential;
use github_audit_sekoia::streams::{StreamConfig, StreamError, StreamsApi, table};

#[derive(Subcommand)]
pub enum StreamAction {
    /// The enterprise's public key for stream secrets: key id and key.
    Key,
    /// Every stream, as a table.
    List {
        /// Print GitHub's objects as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// One stream, by id.
    Get {
        id: u64,
        /// Print GitHub's object as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Create a stream; its secrets are sealed with the enterprise's stream key.
    Create {
        #[command(flatten)]
        input: StreamInput,
        /// Create it paused.
        #[arg(long)]
        disabled: bool,
    },
    /// Replace a stream's whole configuration, secrets included (GitHub's update does).
    Update {
        id: u64,
        #[command(flatten)]
        input: StreamInput,
        /// Leave it paused.
        #[arg(long)]
        disabled: bool,
    },
    /// Pause a stream: an update with enabled false, so it takes the same inputs.
    Pause {
        id: u64,
        #[command(flatten)]
        input: StreamInput,
    },
    /// Resume a stream: an update with enabled true.
    Resume {
        id: u64,
        #[command(flatten)]
        input: StreamInput,
    },
    /// Delete a stream; asks first on a terminal, and needs --yes otherwise.
    Delete {
        id: u64,
        /// Delete without asking.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Args)]
pub struct StreamInput {
    /// The provider, exactly as GitHub names it: "Azure Blob Storage", "Azure Event Hubs", "Amazon S3", Splunk, "HTTPS Event Collector", "Google Cloud Storage", Datadog
    #[arg(long = "type", value_name = "TYPE")]
    stream_type: String,
    /// A JSON file (or - for standard input) of the provider's fields, each secret in plain text under its name without encrypted_ (token, sas_url, connstring, secret_key, access_key_id, json_credentials)
    #[arg(long, value_name = "FILE")]
    config: String,
}

impl StreamInput {
    /// The file's configuration, checked before any request. Secrets never come from arguments.
    fn read(&self) -> Result<StreamConfig, String> {
        let text = match self.config.as_str() {
            "-" => {
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text).map_err(|e| format!("cannot read standard input: {e}"))?;
                text
            }
            inline if inline.trim_start().starts_with(['{', '[']) => {
                return Err("--config takes a file name, not JSON: secrets are never taken as command-line arguments (they would show in the process list and the shell history). Put the JSON in a file, or pass - and send it on standard input".into());
            }
            path => std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?,
        };
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not JSON (line {}, column {})", self.config, e.line(), e.column()))?;
        StreamConfig::parse(&self.stream_type, &value).map_err(|e| e.to_string())
    }
}

enum Failure {
    /// Bad input or setup: nothing was changed (exit 2).
    Usage(String),
    /// GitHub refused or could not be reached (exit 1).
    GitHub(StreamError),
}

impl From<StreamError> for Failure {
    fn from(err: StreamError) -> Self {
        match err {
            StreamError::Config(message) => Failure::Usage(message),
            other => Failure::GitHub(other),
        }
    }
}

pub async fn streams(config: Result<Config, String>, action: StreamAction) -> ExitCode {
    match act(config, action).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("{message}");
            ExitCode::from(2)
        }
        Err(Failure::GitHub(err)) => {
            eprintln!("{err}");
            ExitCode::FAILURE
        }
    }
}

async fn act(config: Result<Config, String>, action: StreamAction) -> Result<(), Failure> {
    // Inputs first: a bad file or a missing confirmation changes nothing and asks GitHub nothing.
    let change = match &action {
        StreamAction::Create { input, disabled } => Some((input.read().map_err(Failure::Usage)?, !disabled)),
        StreamAction::Update { input, disabled, .. } => Some((input.read().map_err(Failure::Usage)?, !disabled)),
        StreamAction::Pause { input, .. } => Some((input.read().map_err(Failure::Usage)?, false)),
        StreamAction::Resume { input, .. } => Some((input.read().map_err(Failure::Usage)?, true)),
        _ => None,
    };
    if let StreamAction::Delete { yes: false, .. } = action
        && !std::io::stdin().is_terminal()
    {
        return Err(Failure::Usage(
            "streams delete asks before deleting, and standard input is not a terminal: add --yes".into(),
        ));
    }
    let api = api(config.map_err(Failure::Usage)?).await?;
    match (action, change) {
        (StreamAction::Key, _) => {
            let key = api.key().await?;
            println!("key id: {}\npublic key: {}", key.key_id, key.key);
        }
        (StreamAction::List { json }, _) => {
            let streams = api.list().await?;
            print_streams(&streams, json);
        }
        (StreamAction::Get { id, json }, _) => print_streams(&[api.get(id).await?], json),
        (StreamAction::Create { .. }, Some((config, enabled))) => {
            print_streams(&[api.create(&config, enabled).await?], false);
        }
        (
            StreamAction::Update { id, .. } | StreamAction::Pause { id, .. } | StreamAction::Resume { id, .. },
            Some((config, enabled)),
        ) => print_streams(&[api.update(id, &config, enabled).await?], false),
        (StreamAction::Delete { id, yes }, _) => {
            if !yes && !confirm(&format!("Delete audit-log stream {id}? Type yes to confirm: ")) {
                return Err(Failure::Usage(format!("stream {id} left as it is")));
            }
            api.delete(id).await?;
            println!("deleted stream {id}");
        }
        (_, None) => return Err(Failure::Usage("nothing to do".into())),
    }
    Ok(())
}

/// The enterprise's endpoints with its classic token; other credentials are refused up front.
async fn api(config: Config) -> Result<StreamsApi, Failure> {
    let Target::Enterprise(enterprise) = config.target.clone() else {
        return Err(Failure::Usage(
            "streams belong to an enterprise: set GITHUB_ENTERPRISE (or --enterprise, or --target enterprise:SLUG)"
                .into(),
        ));
    };
    let connector = Connector::new(config).await.map_err(|e| Failure::Usage(e.to_string()))?;
    let credentials =
        connector.credentials(connector.config()).await.get().await.map_err(|e| Failure::Usage(e.to_string()))?;
    let GitHubCredential::Token(token) = credentials.github().map_err(|e| Failure::Usage(e.to_string()))? else {
        return Err(Failure::Usage(
            "the streaming endpoints refuse GitHub App tokens: use GITHUB_TOKEN, a classic personal access token of an enterprise owner".into(),
        ));
    };
    Ok(StreamsApi::new(connector.client().clone(), &connector.config().github_api_url, &enterprise, token))
}

fn print_streams(streams: &[serde_json::Value], json: bool) {
    if json {
        println!("{}", serde_json::Value::Array(streams.to_vec()));
    } else {
        print!("{}", table(streams));
    }
}

fn confirm(question: &str) -> bool {
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).is_ok() && answer.trim().eq_ignore_ascii_case("yes")
}
