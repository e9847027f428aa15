//! Time: the accepting node's clock, and the contract's timestamp format.

use vato_eventlog::Micros;

pub fn now_micros() -> Micros {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.as_micros() as Micros
}

/// ISO 8601 UTC with microseconds and `Z`; the fraction is left out when it
/// is zero, as Django's serializer does.
pub fn format(micros: Micros) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(secs) else {
        return String::from("1970-01-01T00:00:00Z");
    };
    let base = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if frac == 0 {
        format!("{base}Z")
    } else {
        format!("{base}.{frac:06}Z")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_like_django() {
        assert_eq!(
            super::format(1_762_173_900_123_456),
            "2025-11-03T12:45:00.123456Z"
        );
        assert_eq!(super::format(1_762_173_900_000_000), "2025-11-03T12:45:00Z");
    }
}
