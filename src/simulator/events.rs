//! Realistic audit-log events, shaped like the samples GitHub and Sekoia publish.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// One event as the simulator stores it.
#[derive(Debug, Clone)]
pub struct SimEvent {
    pub timestamp_ms: i64,
    pub document_id: String,
    /// Git events (`include=git`) have no `created_at`.
    pub git: bool,
    /// Not yet in GitHub's search index: invisible until revealed.
    pub hidden: bool,
    pub json: String,
}

const WEB_ACTIONS: [&str; 8] = [
    "repo.create",
    "repo.destroy",
    "org.add_member",
    "team.add_member",
    "protected_branch.destroy",
    "org.update_member",
    "repo.access",
    "org.block_user",
];
const GIT_ACTIONS: [&str; 3] = ["git.clone", "git.push", "git.fetch"];
const ACTORS: [&str; 5] = ["octocat", "monalisa", "hubot", "admin-bot", "dependabot"];

/// `count` events between `start_ms` and `end_ms`, oldest first, with many sharing a second or
/// a millisecond; `git_share` of them are git events. Same seed, same events.
pub fn generate_events(
    count: usize,
    start_ms: i64,
    end_ms: i64,
    git_share: f64,
    org: &str,
    seed: u64,
) -> Vec<SimEvent> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ts = start_ms;
    let mut events = Vec::with_capacity(count);
    for i in 0..count {
        let mean_gap = ((end_ms - ts).max(0) / (count - i) as i64).max(1);
        ts = match rng.random_range(0..3) {
            // Same millisecond as the previous event.
            0 => ts,
            // Same second.
            1 => ts + rng.random_range(0..=999 - ts.rem_euclid(1000)),
            // Spread out: a third of the events carry the whole span.
            _ => ts + rng.random_range(0..=mean_gap * 6),
        }
        .min(end_ms);
        let git = rng.random_bool(git_share.clamp(0.0, 1.0));
        events.push(make_event(&mut rng, ts, git, org, i));
    }
    events
}

pub(crate) fn make_event(rng: &mut StdRng, ts: i64, git: bool, org: &str, n: usize) -> SimEvent {
    let id_bytes: [u8; 16] = rng.random();
    let document_id = URL_SAFE_NO_PAD.encode(id_bytes);
    let actor = ACTORS[rng.random_range(0..ACTORS.len())];
    let repo = format!("{org}/service-{}", n % 37);
    let value = if git {
        json!({
            "@timestamp": ts,
            "_document_id": document_id,
            "action": GIT_ACTIONS[rng.random_range(0..GIT_ACTIONS.len())],
            "actor": actor,
            "actor_location": {"country_code": "FR"},
            "business": "acme-enterprise",
            "org": org,
            "repo": repo,
            "repository": repo,
            "repository_public": false,
            "transport_protocol": 2,
            "transport_protocol_name": "ssh",
            "user": actor
        })
    } else {
        json!({
            "@timestamp": ts,
            "_document_id": document_id,
            "action": WEB_ACTIONS[rng.random_range(0..WEB_ACTIONS.len())],
            "actor": actor,
            "actor_id": 6_493_123 + n as u64 % 5,
            "actor_location": {"country_code": "FR"},
            "created_at": ts,
            "operation_type": "modify",
            "org": org,
            "org_id": 123_123_995,
            "repo": repo,
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 \"quoted\" é"
        })
    };
    SimEvent { timestamp_ms: ts, document_id, git, hidden: false, json: value.to_string() }
}
