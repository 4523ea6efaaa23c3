//! Which audit logs a deployment reads: `TARGETS` (or `GITHUB_ORG` / `GITHUB_ENTERPRISE`), each
//! item checked as GitHub and the template need it, and the cursor each one keeps.

use super::{ConfigError, Settings, defaults, problem};

/// Whose audit log to drain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Organization(String),
    /// Slug or id. Its audit log takes classic personal access tokens only.
    Enterprise(String),
}

impl Target {
    /// `orgs/acme`, `enterprises/acme-corp`: the API path prefix, and the cursor key's start.
    pub fn path(&self) -> String {
        match self {
            Target::Organization(org) => format!("orgs/{org}"),
            Target::Enterprise(enterprise) => format!("enterprises/{enterprise}"),
        }
    }

    /// `org:acme`, `enterprise:acme-corp`: as `TARGETS` names it.
    pub fn spec(&self) -> String {
        match self {
            Target::Organization(org) => format!("org:{org}"),
            Target::Enterprise(enterprise) => format!("enterprise:{enterprise}"),
        }
    }

    /// The API path under the base URL.
    pub fn audit_log_path(&self) -> String {
        format!("{}/audit-log", self.path())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    Web,
    Git,
    All,
}

impl Include {
    /// `GITHUB_INCLUDE`: web (the default), git or all.
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        match settings.get("GITHUB_INCLUDE").as_deref().unwrap_or(defaults::INCLUDE) {
            "web" => Ok(Include::Web),
            "git" => Ok(Include::Git),
            "all" => Ok(Include::All),
            other => Err(problem("GITHUB_INCLUDE", format!("is {other:?}; expected web, git or all"))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Include::Web => "web",
            Include::Git => "git",
            Include::All => "all",
        }
    }
}

/// The cursor's name: each (target, include) keeps its own.
pub fn cursor_key(target: &Target, include: Include) -> String {
    format!("{}/{}", target.path(), include.as_str())
}

/// One target a deployment serves, with the secret it reads if not the deployment's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetEntry {
    pub target: Target,
    /// A Secrets Manager secret of its own (its GitHub credential and intake key).
    pub secret_id: Option<String>,
}

impl TargetEntry {
    /// `org:NAME` or `enterprise:SLUG`, optionally `=SECRET_ID`: one item of `TARGETS`, or
    /// a payload's `target`.
    pub fn parse(variable: &'static str, text: &str) -> Result<Self, ConfigError> {
        let text = text.trim();
        let (spec, secret_id) = match text.split_once('=') {
            Some((spec, secret)) if !secret.trim().is_empty() => (spec, Some(secret.trim().to_owned())),
            Some(_) => return Err(problem(variable, format!("{text:?} names no secret after '='"))),
            None => (text, None),
        };
        let target = match spec.trim().split_once(':') {
            Some(("org", name)) => Target::Organization(slug(variable, name)?),
            Some(("enterprise", name)) => Target::Enterprise(slug(variable, name)?),
            _ => {
                return Err(problem(
                    variable,
                    format!("has {text:?}; expected org:NAME or enterprise:SLUG, optionally followed by =SECRET_ID"),
                ));
            }
        };
        Ok(Self { target, secret_id })
    }

    /// `org:acme`, `enterprise:acme-corp` (the secret left out).
    pub fn spec(&self) -> String {
        self.target.spec()
    }
}

/// `TARGETS` (comma-separated), or the single `GITHUB_ORG` / `GITHUB_ENTERPRISE`.
pub fn targets(settings: &Settings) -> Result<Vec<TargetEntry>, ConfigError> {
    match (settings.get("TARGETS"), settings.get("GITHUB_ORG"), settings.get("GITHUB_ENTERPRISE")) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            Err(problem("TARGETS", "and GITHUB_ORG or GITHUB_ENTERPRISE are both set: list every target in TARGETS"))
        }
        (Some(list), None, None) => {
            let mut entries = Vec::new();
            let items: Vec<&str> = list.split(',').map(str::trim).filter(|item| !item.is_empty()).collect();
            for (index, item) in items.iter().enumerate() {
                let entry = TargetEntry::parse("TARGETS", item)?;
                if entries.iter().any(|e: &TargetEntry| e.target == entry.target) {
                    return Err(problem("TARGETS", format!("lists {} twice", entry.spec())));
                }
                if let Some(other) = items[..index].iter().find(|other| resource_name(other) == resource_name(item)) {
                    return Err(problem("TARGETS", format!("lists {other} and {item}, {SAME_RESOURCE_NAME}")));
                }
                entries.push(entry);
            }
            if entries.is_empty() {
                return Err(problem("TARGETS", "is empty: list org:NAME or enterprise:SLUG items"));
            }
            Ok(entries)
        }
        (None, Some(org), None) => {
            Ok(vec![TargetEntry { target: Target::Organization(slug("GITHUB_ORG", &org)?), secret_id: None }])
        }
        (None, None, Some(enterprise)) => Ok(vec![TargetEntry {
            target: Target::Enterprise(slug("GITHUB_ENTERPRISE", &enterprise)?),
            secret_id: None,
        }]),
        (None, Some(_), Some(_)) => {
            Err(problem("GITHUB_ENTERPRISE", "and GITHUB_ORG are both set: name one, or list both in TARGETS"))
        }
        (None, None, None) => Err(problem(
            "GITHUB_ORG",
            "is required (or GITHUB_ENTERPRISE, or TARGETS): the organization whose audit log to drain",
        )),
    }
}

/// The template's per-target resources are named after the item's letters and digits alone
/// (`Fn::ForEach` drops the rest), so two items that differ only in the rest cannot share a stack.
pub const SAME_RESOURCE_NAME: &str = "which differ only in characters other than letters and digits: a stack cannot hold both (their schedules and alarms would get one resource name); deploy one in another stack";

fn resource_name(item: &str) -> String {
    item.chars().filter(char::is_ascii_alphanumeric).collect()
}

pub(super) fn slug(variable: &'static str, name: &str) -> Result<String, ConfigError> {
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err(problem(variable, format!("{name:?} is not a name GitHub uses (letters, digits, '-')")));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(list: &str) -> Result<Vec<TargetEntry>, ConfigError> {
        targets(&Settings::new(&|name| (name == "TARGETS").then(|| list.to_owned())))
    }

    #[test]
    fn targets_whose_resource_names_collide_in_the_template_are_refused() {
        for list in ["org:a-b,org:ab", "org:ab,org:a=b", "org:a.b,enterprise:x,org:a_b"] {
            let err = listed(list).expect_err(list);
            assert_eq!(err.variable, "TARGETS");
            assert!(err.problem.contains("one resource name"), "{list}: {}", err.problem);
        }
        assert!(listed("org:a-b,org:a-c").is_ok());
    }

    #[test]
    fn a_bad_targets_list_is_refused_naming_it() {
        for list in ["acme", "org:", "team:acme", "org:acme,org:acme", "org:acme=", " , ", "org:a/b"] {
            assert_eq!(listed(list).err().map(|e| e.variable), Some("TARGETS"), "{list}");
        }
    }

    #[test]
    fn each_target_and_include_keeps_its_own_cursor() {
        let enterprise = Target::Enterprise("acme-corp".into());
        assert_eq!(cursor_key(&enterprise, Include::All), "enterprises/acme-corp/all");
        assert_eq!(cursor_key(&Target::Organization("acme".into()), Include::Web), "orgs/acme/web");
        assert_eq!(enterprise.audit_log_path(), "enterprises/acme-corp/audit-log");
    }

    proptest::proptest! {
        #[test]
        fn any_target_text_parses_or_is_refused_without_panicking(text in ".{0,80}") {
            if let Ok(entry) = TargetEntry::parse("target", &text) {
                proptest::prop_assert!(TargetEntry::parse("target", &entry.spec()).is_ok());
            }
        }
    }
}
