//! The template refuses what the code refuses: each parameter's `AllowedPattern` (as
//! CloudFormation applies it, to the whole value) is fed its extremes, and whatever it accepts
//! the configuration parser must accept too; and the values the parser refuses for a reason, the
//! pattern must refuse too, with a `ConstraintDescription` in the parser's words. So a deploy fails up front,
//! naming the parameter, instead of every invocation failing after it.

use std::collections::HashMap;

use github_audit_sekoia::config::{Config, ConfigError, PushConfig};
use regex::Regex;

struct Parameter {
    pattern: Regex,
    constraint: String,
}

/// `AllowedPattern` and `ConstraintDescription` of each parameter of template.yaml (two-space
/// names under `Parameters:`, four-space properties; the patterns are double-quoted YAML).
fn parameters() -> HashMap<String, Parameter> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml")).expect("template.yaml");
    let section = text.split("\nParameters:\n").nth(1).expect("a Parameters section");
    let section = section.split("\n\n").next().expect("the section ends with a blank line");
    let mut out = HashMap::new();
    let mut name = String::new();
    let mut pattern = None;
    let mut constraint = String::new();
    for line in section.lines() {
        if let Some(n) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')).filter(|l| !l.starts_with(' ')) {
            name = n.to_owned();
            pattern = None;
            constraint.clear();
        } else if let Some(p) = line.strip_prefix("    AllowedPattern: ") {
            let unquoted = p.trim_matches('"').replace("\\\\", "\\");
            pattern = Some(Regex::new(&format!("^(?:{unquoted})$")).expect("a pattern the regex crate reads"));
        } else if let Some(c) = line.strip_prefix("    ConstraintDescription: ") {
            constraint = c.trim_matches('"').to_owned();
        }
        if let Some(p) = &pattern {
            out.insert(name.clone(), Parameter { pattern: p.clone(), constraint: constraint.clone() });
        }
    }
    out
}

fn pull(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut map: HashMap<&str, &str> = HashMap::from([("TARGETS", "org:acme"), ("SECRET_ID", "s")]);
    map.extend(vars.iter().copied());
    Config::load(|name| map.get(name).map(|v| v.to_string()))
}

fn push(vars: &[(&str, &str)]) -> Result<(), ConfigError> {
    let map: HashMap<&str, &str> = vars.iter().copied().collect();
    PushConfig::load(|name| map.get(name).map(|v| v.to_string())).map(|_| ())
}

/// The parser's words for a refused value, without the value it quotes (`is "…": `,
/// `is "…"; `, `has "…": `).
fn words(err: &ConfigError) -> String {
    let problem = &err.problem;
    let quoted = problem.strip_prefix("is \"").or(problem.strip_prefix("has \""));
    match quoted.and_then(|rest| rest.split_once("\": ").or(rest.split_once("\"; "))) {
        Some((_, words)) => words.to_owned(),
        None => problem.clone(),
    }
}

/// Template parameter → the variable the function reads, and how the parser is asked.
fn parse(parameter: &str, value: &str) -> Result<(), ConfigError> {
    match parameter {
        "LateArrivalWindow" => pull(&[("LATE_ARRIVAL_WINDOW", value), ("LATE_SWEEP_AFTER", "0")]).map(|_| ()),
        "LateSweepAfter" => pull(&[("LATE_SWEEP_AFTER", value)]).map(|_| ()),
        "GitHubApiUrl" => pull(&[("GITHUB_API_URL", value)]).map(|_| ()),
        "IntakeUrl" => pull(&[("SEKOIA_INTAKE_URL", value)]).map(|_| ()),
        "Targets" => pull(&[("TARGETS", value)]).map(|_| ()),
        "StreamDedupeWindow" => push(&[("STREAM_DEDUPE_WINDOW", value)]),
        "IncludeActions" => push(&[("INCLUDE_ACTIONS", value)]),
        "ExcludeActions" => pull(&[("EXCLUDE_ACTIONS", value)]).map(|_| ()),
        "FirstRunLookback" => pull(&[("FIRST_RUN_LOOKBACK", value)]).map(|_| ()),
        "RateLimitReserve" => pull(&[("RATE_LIMIT_RESERVE", value)]).map(|_| ()),
        other => panic!("no parser mapping for {other}"),
    }
}

const SAMPLES: &[(&str, &[&str])] = &[
    (
        "LateArrivalWindow",
        &["0s", "0m", "1s", "59s", "999s", "3599s", "3600s", "1m", "5m", "59m", "60m", "1h", "01m", "5 m", "-1s", ""],
    ),
    (
        "LateSweepAfter",
        &[
            "0",
            "0s",
            "59m",
            "60m",
            "61m",
            "600m",
            "1h",
            "24h",
            "7d",
            "3599s",
            "1s",
            "2h30m",
            "1x",
            "1h,6h",
            "6h,1h",
            "1h,1h",
            "1h,6h,1d",
            "1h,2h,3h,4h",
            "1h,5m",
            "1h,",
            ",1h",
            "1h, 6h",
        ],
    ),
    (
        "GitHubApiUrl",
        &[
            "https://api.github.com",
            "https://api.acme.ghe.com",
            "https://ghes.example.com/api/v3",
            "https://ghes.example.com:8443/api/v3",
            "http://api.github.com",
            "http://127.0.0.1:8080",
            "ftp://api.github.com",
            "https://",
            "api.github.com",
        ],
    ),
    ("IntakeUrl", &["https://intake.sekoia.io", "https://app.uae1.sekoia.io", "http://intake.sekoia.io", "https:/x"]),
    (
        "Targets",
        &[
            "org:acme",
            "enterprise:acme-corp=github-audit-sekoia/acme-corp",
            "org:a.b_c-d",
            "org:",
            "org:-x",
            "team:x",
            "org:a b",
            "org:a=",
        ],
    ),
    ("StreamDedupeWindow", &["1s", "1h", "7d", "0s", "0", "00m", "10m", "1 h"]),
    ("IncludeActions", ACTION_LISTS),
    ("ExcludeActions", ACTION_LISTS),
    ("FirstRunLookback", &["24h", "7d", "30m", "99999d", "0h", "01h", "1x", "", "100000d"]),
    ("RateLimitReserve", &["", "0", "87", "999999999", "4294967296", "-1", "5%"]),
];

const ACTION_LISTS: &[&str] =
    &["", "git.*", "repo.create, org.*", "*.destroy,api.request", "git.?", "git fetch", ",", "a,,b", " git.*"];

#[test]
fn every_value_a_parameter_pattern_accepts_the_parser_accepts() {
    let parameters = parameters();
    for (name, samples) in SAMPLES {
        let parameter = parameters.get(*name).unwrap_or_else(|| panic!("{name} has no AllowedPattern"));
        for value in *samples {
            if parameter.pattern.is_match(value)
                && let Err(err) = parse(name, value)
            {
                panic!("{name}={value:?} passes the template's pattern but the function refuses it: {err}");
            }
        }
    }
}

#[test]
fn every_window_and_deep_sweep_the_template_accepts_go_together() {
    let parameters = parameters();
    let (windows, sweeps) = (SAMPLES[0].1, SAMPLES[1].1);
    for window in windows.iter().filter(|w| parameters["LateArrivalWindow"].pattern.is_match(w)) {
        for sweep in sweeps.iter().filter(|s| parameters["LateSweepAfter"].pattern.is_match(s)) {
            if let Err(err) = pull(&[("LATE_ARRIVAL_WINDOW", window), ("LATE_SWEEP_AFTER", sweep)]) {
                panic!("LateArrivalWindow={window} with LateSweepAfter={sweep} deploys, and every run fails: {err}");
            }
        }
    }
}

#[test]
fn what_the_function_refuses_the_template_refuses_in_the_same_words() {
    let parameters = parameters();
    // (parameter, a value the parser refuses for a reason the ConstraintDescription must give)
    let refusals = [
        ("LateArrivalWindow", "0s", "LATE_ARRIVAL_WINDOW"),
        ("LateSweepAfter", "5m", "LATE_SWEEP_AFTER"),
        ("GitHubApiUrl", "http://api.github.com", "GITHUB_API_URL"),
        ("IntakeUrl", "http://intake.sekoia.io", "SEKOIA_INTAKE_URL"),
        ("StreamDedupeWindow", "0s", "STREAM_DEDUPE_WINDOW"),
        ("ExcludeActions", "git.?", "EXCLUDE_ACTIONS"),
        ("RateLimitReserve", "-1", "RATE_LIMIT_RESERVE"),
    ];
    for (name, value, variable) in refusals {
        let parameter = &parameters[name];
        assert!(!parameter.pattern.is_match(value), "the template accepts {name}={value}");
        let err = match name {
            "LateSweepAfter" => pull(&[("LATE_ARRIVAL_WINDOW", "5m"), ("LATE_SWEEP_AFTER", value)]).map(|_| ()),
            _ => parse(name, value),
        }
        .expect_err(value);
        assert_eq!(err.variable, variable);
        let constraint = parameter.constraint.replace("LateArrivalWindow", "LATE_ARRIVAL_WINDOW");
        let expected = words(&err);
        let expected = expected.split("; use https").next().unwrap_or(&expected);
        assert!(
            constraint.contains(expected),
            "{name}'s ConstraintDescription {constraint:?} does not say what the function says: {expected:?}"
        );
    }
}
