//! One log setting for every entry point. `LOG_LEVEL` (a level, or `tracing` directives) sets
//! this connector's own logs; the libraries under it (the AWS SDK, hyper, rustls) stay at `warn`
//! unless `LOG_LEVEL_DEPS` asks for more, so `debug` shows the connector's decisions rather than
//! every TLS record. In Lambda, without `LOG_LEVEL`, the function's own log level (the
//! template's `LogLevel`, handed over as `AWS_LAMBDA_LOG_LEVEL`) is the level.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

const CRATE: &str = "github_audit_sekoia";

/// The filter for `log_level` (else `lambda_level`, else `info`) on this crate and
/// `deps_level` (else `warn`) on everything else; a setting that does not parse is said, and
/// the defaults apply.
pub fn filter(
    log_level: Option<&str>,
    deps_level: Option<&str>,
    lambda_level: Option<&str>,
) -> (EnvFilter, Option<String>) {
    let wanted = directives(log_level, deps_level, lambda_level);
    match EnvFilter::try_new(&wanted) {
        Ok(filter) => (filter, None),
        Err(err) => (
            EnvFilter::new(format!("warn,{CRATE}=info")),
            Some(format!(
                "LOG_LEVEL / LOG_LEVEL_DEPS give {wanted:?}, which is not a log filter ({err}); logging at info"
            )),
        ),
    }
}

/// `warn,github_audit_sekoia=debug`, or `warn,` followed by the directives given.
fn directives(log_level: Option<&str>, deps_level: Option<&str>, lambda_level: Option<&str>) -> String {
    fn set(v: Option<&str>) -> Option<&str> {
        v.map(str::trim).filter(|v| !v.is_empty())
    }
    let deps = set(deps_level).unwrap_or("warn");
    match set(log_level).or(set(lambda_level)) {
        Some(level) if level.contains('=') => format!("{deps},{level}"),
        Some(level) => format!("{deps},{CRATE}={}", level.to_ascii_lowercase()),
        None => format!("{deps},{CRATE}=info"),
    }
}

fn from_env() -> (EnvFilter, Option<String>) {
    let var = |name: &str| std::env::var(name).ok();
    filter(var("LOG_LEVEL").as_deref(), var("LOG_LEVEL_DEPS").as_deref(), var("AWS_LAMBDA_LOG_LEVEL").as_deref())
}

/// The CLI: text on standard error, coloured on a terminal.
pub fn init_cli() {
    let (filter, problem) = from_env();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .init();
    said(problem);
}

/// The Lambda function: standard output, JSON when the function's log format is (the
/// template's), without the time and target Lambda adds or does not need.
pub fn init_lambda() {
    let (filter, problem) = from_env();
    let text = tracing_subscriber::fmt().with_target(false).without_time().with_env_filter(filter);
    match std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json")) {
        true => text.json().init(),
        false => text.init(),
    }
    said(problem);
}

fn said(problem: Option<String>) {
    if let Some(problem) = problem {
        tracing::warn!("{problem}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_is_the_connectors_and_libraries_stay_at_warn_unless_asked() {
        assert_eq!(directives(None, None, None), "warn,github_audit_sekoia=info");
        assert_eq!(directives(Some("debug"), None, Some("ERROR")), "warn,github_audit_sekoia=debug");
        assert_eq!(directives(None, None, Some("DEBUG")), "warn,github_audit_sekoia=debug", "Lambda's own level");
        assert_eq!(directives(Some(" "), Some("info"), None), "info,github_audit_sekoia=info");
        assert_eq!(
            directives(Some("github_audit_sekoia::drain=trace"), None, None),
            "warn,github_audit_sekoia::drain=trace"
        );
    }

    #[test]
    fn a_filter_that_does_not_parse_is_said_and_the_defaults_apply() {
        let (fallback, problem) = filter(Some("a=b=c"), None, None);
        assert!(fallback.to_string().contains("github_audit_sekoia=info"), "{fallback}");
        assert!(problem.is_some_and(|p| p.contains("not a log filter")));
        assert!(filter(Some("debug"), None, None).1.is_none());
    }
}
