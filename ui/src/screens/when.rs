//! Times as the map screens show them: ages ("3 min ago") and local dates and times of day.
//! The words are here, in one place, for translation.

/// How long ago `then_ms` was at `now_ms` (Unix milliseconds), in words.
pub fn ago(now_ms: f64, then_ms: f64) -> String {
    let secs = ((now_ms - then_ms) / 1000.0).max(0.0) as i64;
    match secs {
        0..=44 => "just now".to_owned(),
        45..=3599 => format!("{} min ago", (secs + 30) / 60),
        3600..=86_399 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_in_words() {
        let now = 1_000_000_000.0;
        assert_eq!(ago(now, now - 10_000.0), "just now");
        assert_eq!(ago(now, now - 180_000.0), "3 min ago");
        assert_eq!(ago(now, now - 7_200_000.0), "2 h ago");
        assert_eq!(ago(now, now - 3.0 * 86_400_000.0), "3 d ago");
        assert_eq!(ago(now, now + 5_000.0), "just now");
    }
}
