//! Forwards GitHub audit-log events to a Sekoia.io intake, exactly once.
//!
//! Two data paths, both knowing only the edge traits in [`ports`]: the drain
//! ([`drain::drain`]) pulls the audit log from GitHub's API; push mode ([`push`]) forwards the
//! files GitHub's stream writes to S3. Both hand each batch to one delivery step
//! ([`deliver::Ledger`]: post, count, record, move positions, prune, save), and report through
//! one summary core ([`summary`]) and one metrics line ([`metrics`]). Each outside system has
//! one adapter: [`github`], [`sekoia`], [`cursor`], [`credentials`], [`s3`], [`streams`];
//! [`aws_calls`] lists the AWS calls among them. [`config`] reads every setting.

mod aws;
pub mod aws_calls;
pub mod budget;
pub mod check;
pub mod checkpoint;
pub mod compression;
pub mod config;
pub mod connector;
pub mod credentials;
pub mod cursor;
pub mod deliver;
pub mod drain;
pub mod dry_run;
pub mod event;
pub mod forwarder;
pub mod github;
pub mod http;
pub mod lambda;
pub mod logging;
pub mod metrics;
pub mod network;
pub mod on_lambda;
pub mod ports;
pub mod push;
pub mod s3;
pub mod secret;
pub mod sekoia;
pub mod shaping;
pub mod streams;
pub mod summary;
#[cfg(test)]
mod testing;
pub mod timefmt;
