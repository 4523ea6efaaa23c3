//! Wires the configured adapters to the drain: what every entry point runs.

use crate::budget::Budget;
use crate::config::{Config, ConfigError};
use crate::cursor::{FileCursorStore, ReadOnlyStore};
use crate::drain::{DrainFailure, DrainSettings, Summary, drain};
use crate::dry_run::NdjsonStdout;
use crate::github::GitHubSource;
use crate::http;
use crate::sekoia::SekoiaIntake;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Drain(#[from] DrainFailure),
}

/// One drain of the configured target with the local file cursor store.
/// `dry_run` prints the events instead of posting them and leaves the cursor where it was.
pub async fn run_once(config: &Config, dry_run: bool) -> Result<Summary, RunError> {
    let client = http::client();
    let source = GitHubSource::new(client.clone(), config);
    let settings = drain_settings(config);
    let budget = Budget::lasting(config.max_run);
    let store = FileCursorStore::new(&config.state_dir);
    let key = config.cursor_key();
    let summary = if dry_run {
        drain(
            &source,
            &NdjsonStdout,
            &ReadOnlyStore(store),
            &key,
            settings,
            budget,
        )
        .await?
    } else {
        let sink = SekoiaIntake::new(client, &config.intake_url, config.intake_key()?);
        drain(&source, &sink, &store, &key, settings, budget).await?
    };
    Ok(summary)
}

pub fn drain_settings(config: &Config) -> DrainSettings {
    DrainSettings {
        first_run_lookback: config.first_run_lookback,
        late_arrival_window: config.late_arrival_window,
    }
}
