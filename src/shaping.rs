//! What the connector changes in what it forwards, the same in both modes and applied in one
//! place (the delivery step, [`crate::deliver`]). Events go to the intake as GitHub sent them,
//! with two exceptions a user controls:
//!
//! - `created_at` is added to an event that has an `@timestamp` and no `created_at` (GitHub's git
//!   events): Sekoia's GitHub parser dates events by `created_at` only, and would otherwise date
//!   them when the intake received them (`FILL_CREATED_AT=false` turns it off);
//! - action filters (`INCLUDE_ACTIONS`, `EXCLUDE_ACTIONS`: comma-separated `*` globs on `action`)
//!   keep events nobody wants from the intake. A filtered event still counts as read and
//!   delivered (its position moves, the delivered record notes it), so it is never asked for
//!   again; it is counted, never sent.

use wildmatch::WildMatch;

use crate::event::AuditEvent;

#[derive(Debug, Clone)]
pub struct Shaping {
    pub fill_created_at: bool,
    pub filter: ActionFilter,
}

impl Default for Shaping {
    fn default() -> Self {
        Self { fill_created_at: true, filter: ActionFilter::default() }
    }
}

impl Shaping {
    /// What is forwarded, for `check`.
    pub fn describe(&self) -> String {
        let dating = match self.fill_created_at {
            true => "created_at added to events without one",
            false => "events as GitHub sent them (FILL_CREATED_AT=false)",
        };
        format!("{}; {dating}", self.filter.describe())
    }

    /// The event as it goes to the intake: `None` when it goes as it is. An event the added
    /// field would take past `max_event_bytes` goes as it is, rather than not at all.
    pub fn shaped(&self, event: &AuditEvent, max_event_bytes: usize) -> Option<AuditEvent> {
        if !self.fill_created_at {
            return None;
        }
        event.with_created_at().filter(|filled| filled.json().len() <= max_event_bytes)
    }
}

/// Which actions go to the intake: those any `include` pattern matches (every action when
/// there is none), less those any `exclude` pattern matches. An event without an `action` is
/// always forwarded: what cannot be recognised is not dropped.
#[derive(Debug, Clone, Default)]
pub struct ActionFilter {
    include: Vec<WildMatch>,
    exclude: Vec<WildMatch>,
}

impl ActionFilter {
    pub fn new(include: Vec<WildMatch>, exclude: Vec<WildMatch>) -> Self {
        Self { include, exclude }
    }

    pub fn admits(&self, action: Option<&str>) -> bool {
        let Some(action) = action else { return true };
        let matches = |patterns: &[WildMatch]| patterns.iter().any(|p| p.matches(action));
        (self.include.is_empty() || matches(&self.include)) && !matches(&self.exclude)
    }

    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// The filters in force, for `check` and the logs.
    pub fn describe(&self) -> String {
        let list = |patterns: &[WildMatch]| patterns.iter().map(WildMatch::to_string).collect::<Vec<_>>().join(", ");
        match (self.include.is_empty(), self.exclude.is_empty()) {
            (true, true) => "every action".to_owned(),
            (false, true) => format!("only {}", list(&self.include)),
            (true, false) => format!("every action except {}", list(&self.exclude)),
            (false, false) => format!("only {}, except {}", list(&self.include), list(&self.exclude)),
        }
    }
}

/// Comma-separated patterns; `*` matches any run of characters (`git.*`, `*.destroy`).
pub fn action_patterns(list: &str) -> Result<Vec<WildMatch>, String> {
    let items = list.split(',').map(str::trim).filter(|p| !p.is_empty());
    items
        .map(|p| match p.contains('?') || p.chars().any(char::is_whitespace) {
            true => Err(format!("has {p:?}: expected action names or patterns with * (git.*, *.destroy)")),
            false => Ok(WildMatch::new(p)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::*;

    fn filter(include: &str, exclude: &str) -> ActionFilter {
        ActionFilter::new(action_patterns(include).expect("valid"), action_patterns(exclude).expect("valid"))
    }

    fn event(text: &str) -> AuditEvent {
        AuditEvent::from_raw(RawValue::from_string(text.to_owned()).expect("json"))
    }

    #[test]
    fn filters_include_then_exclude_and_never_drop_an_event_without_action() {
        let both = filter("git.*, repo.*", "git.fetch");
        let admitted: Vec<bool> = ["git.clone", "git.fetch", "repo.create", "org.add_member", "git"]
            .iter()
            .map(|action| both.admits(Some(action)))
            .collect();
        assert_eq!(admitted, [true, false, true, false, false]);
        assert!(both.admits(None));
        let exclude_only = filter("", "api.request,*.fetch");
        assert!(!exclude_only.admits(Some("api.request")) && !exclude_only.admits(Some("git.fetch")));
        assert!(exclude_only.admits(Some("git.push")) && ActionFilter::default().admits(Some("anything")));
        assert_eq!(exclude_only.describe(), "every action except api.request, *.fetch");
        let shaping = Shaping { filter: exclude_only, ..Shaping::default() };
        assert_eq!(
            shaping.describe(),
            "every action except api.request, *.fetch; created_at added to events without one"
        );
        assert!(action_patterns("git.?").is_err() && action_patterns("a b,c").is_err());
        assert!(filter(" , ", "").is_empty());
    }

    #[test]
    fn created_at_is_added_only_when_on_and_only_within_the_event_limit() {
        let git = event(r#"{"@timestamp":1700000000000,"action":"git.push"}"#);
        let on = Shaping::default();
        let shaped = on.shaped(&git, 1_000).expect("filled");
        assert!(shaped.json().starts_with(r#"{"created_at":1700000000000,"#));
        assert!(on.shaped(&git, git.json().len()).is_none(), "no room for the field: sent as it is");
        let off = Shaping { fill_created_at: false, ..Shaping::default() };
        assert!(off.shaped(&git, 1_000).is_none());
    }
}
