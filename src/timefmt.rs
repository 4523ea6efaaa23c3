//! Wall-clock helpers: epoch milliseconds and their RFC 3339 rendering.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn now_ms() -> i64 {
    to_ms(SystemTime::now())
}

pub fn to_ms(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// Times beyond what `SystemTime` holds become the epoch.
pub fn from_ms(ms: i64) -> SystemTime {
    let magnitude = Duration::from_millis(ms.unsigned_abs());
    let time = if ms >= 0 { UNIX_EPOCH.checked_add(magnitude) } else { UNIX_EPOCH.checked_sub(magnitude) };
    time.unwrap_or(UNIX_EPOCH)
}

/// The start of the second holding `ms`: GitHub's `created:` filter has second precision.
pub fn floor_to_second(ms: i64) -> i64 {
    ms.div_euclid(1000).saturating_mul(1000)
}

/// The start of the first whole second at or after `ms`: where a stretch ending at `ms` ends
/// once widened to GitHub's one-second precision.
pub fn ceil_to_second(ms: i64) -> i64 {
    floor_to_second(ms.saturating_add(999))
}

/// The last millisecond RFC 3339 can show: 9999-12-31T23:59:59.999Z.
const LAST_RENDERABLE_MS: i64 = 253_402_300_799_999;

/// What the renderers can show: times before 1970 or after 9999 (a corrupt or edited
/// checkpoint) are shown at the nearest end rather than failing.
fn renderable(ms: i64) -> SystemTime {
    from_ms(ms.clamp(0, LAST_RENDERABLE_MS))
}

/// `2026-11-21T10:00:00.123Z`
pub fn rfc3339_ms(ms: i64) -> String {
    humantime::format_rfc3339_millis(renderable(ms)).to_string()
}

/// `2026-11-21T10:00:00Z`
pub fn rfc3339_seconds(ms: i64) -> String {
    humantime::format_rfc3339_seconds(renderable(ms)).to_string()
}

/// `2026-11-21T10:00:00+00:00`: the form GitHub documents for its search phrase's times.
pub fn github_search_time(ms: i64) -> String {
    let mut text = rfc3339_seconds(ms);
    text.pop();
    text.push_str("+00:00");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_to_the_second_including_before_the_epoch() {
        assert_eq!(floor_to_second(1_700_000_000_999), 1_700_000_000_000);
        assert_eq!(floor_to_second(-1), -1000);
        assert_eq!(floor_to_second(i64::MIN), i64::MIN);
        assert_eq!(
            (ceil_to_second(1_000), ceil_to_second(1_001), ceil_to_second(i64::MAX)),
            (1_000, 2_000, i64::MAX / 1000 * 1000)
        );
    }

    #[test]
    fn any_instant_renders_without_panicking() {
        for ms in [i64::MIN, -1, 0, LAST_RENDERABLE_MS, i64::MAX] {
            assert!(!rfc3339_ms(ms).is_empty());
            assert!(!rfc3339_seconds(ms).is_empty());
            let _ = from_ms(ms);
        }
    }

    #[test]
    fn renders_search_phrase_time_at_second_precision() {
        assert_eq!(rfc3339_seconds(1_606_929_874_512), "2020-12-02T17:24:34Z");
        assert_eq!(rfc3339_ms(1_606_929_874_512), "2020-12-02T17:24:34.512Z");
        assert_eq!(github_search_time(1_606_929_874_512), "2020-12-02T17:24:34+00:00");
    }
}
