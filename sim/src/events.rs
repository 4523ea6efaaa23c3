//! Realistic audit-log events, shaped like the samples GitHub and Sekoia publish.

use std::time::Duration;

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
    /// When GitHub's index shows it (the simulator's clock, epoch ms).
    pub visible_at_ms: i64,
    pub json: String,
}

/// A live audit log: events keep happening at `per_second` for `span` from `start_ms`, and
/// each becomes searchable after a random indexing delay of up to `max_delay`.
#[derive(Debug, Clone)]
pub struct LiveLog {
    pub start_ms: i64,
    pub span: Duration,
    pub per_second: f64,
    pub max_delay: Duration,
    pub stall: Option<Stall>,
    pub seed: u64,
}

/// GitHub's indexing pauses: everything that would become visible during the stall is held
/// back, then released in timestamp order `release_speed` times faster than real time, while
/// new events keep becoming visible as usual.
#[derive(Debug, Clone, Copy)]
pub struct Stall {
    /// After the live log's start.
    pub after: Duration,
    pub lasts: Duration,
    pub release_speed: u32,
}

/// The events of a live log, oldest first. Same seed, same events and delays.
pub fn live_events(live: &LiveLog, org: &str) -> Vec<SimEvent> {
    let mut rng = StdRng::seed_from_u64(live.seed);
    let span_ms = i64::try_from(live.span.as_millis()).unwrap_or(i64::MAX).max(1);
    let max_delay_ms = i64::try_from(live.max_delay.as_millis()).unwrap_or(i64::MAX);
    let count = (live.per_second * span_ms as f64 / 1000.0) as usize;
    let mut stamps: Vec<i64> = (0..count).map(|_| live.start_ms + rng.random_range(0..span_ms)).collect();
    stamps.sort_unstable();
    let mut events: Vec<SimEvent> = stamps
        .into_iter()
        .enumerate()
        .map(|(n, ts)| {
            let mut event = make_event(&mut rng, ts, false, org, n);
            event.visible_at_ms = ts + rng.random_range(0..=max_delay_ms);
            event
        })
        .collect();
    if let Some(stall) = live.stall {
        let from = live.start_ms + i64::try_from(stall.after.as_millis()).unwrap_or(i64::MAX);
        let until = from + i64::try_from(stall.lasts.as_millis()).unwrap_or(i64::MAX);
        let held = |e: &SimEvent| (from..until).contains(&e.visible_at_ms);
        if let Some(first) = events.iter().filter(|e| held(e)).map(|e| e.timestamp_ms).min() {
            let speed = i64::from(stall.release_speed.max(1));
            for event in events.iter_mut().filter(|e| held(e)) {
                event.visible_at_ms = until + (event.timestamp_ms - first) / speed;
            }
        }
    }
    events
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
    SimEvent { timestamp_ms: ts, document_id, git, hidden: false, visible_at_ms: i64::MIN, json: value.to_string() }
}
