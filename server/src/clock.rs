//! Time: the accepting node's clock, and the contract's timestamp format.

use vato_eventlog::Micros;

pub fn now_micros() -> Micros {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.as_micros() as Micros
}

/// ISO 8601 UTC with microseconds and `Z`; the fraction is left out when it
/// is zero, as Django's serializer does. Written digit by digit: every
/// message, member and user object carries one or more, and `format!` with
/// padding was a tenth of a 500-conversation list's time (perf, issue 12).
pub fn format(micros: Micros) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000) as u32;
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(secs) else {
        return String::from("1970-01-01T00:00:00Z");
    };
    let Ok(year) = u32::try_from(t.year()) else {
        return String::from("1970-01-01T00:00:00Z");
    };
    let mut out = String::with_capacity(27);
    digits(&mut out, year, 4);
    out.push('-');
    digits(&mut out, u8::from(t.month()).into(), 2);
    out.push('-');
    digits(&mut out, t.day().into(), 2);
    out.push('T');
    digits(&mut out, t.hour().into(), 2);
    out.push(':');
    digits(&mut out, t.minute().into(), 2);
    out.push(':');
    digits(&mut out, t.second().into(), 2);
    if frac != 0 {
        out.push('.');
        digits(&mut out, frac, 6);
    }
    out.push('Z');
    out
}

/// `n` in decimal, zero-padded to `width` (wider numbers keep all their
/// digits, as `{:0width$}` does).
fn digits(out: &mut String, n: u32, width: u32) {
    let len = n.checked_ilog10().map_or(1, |l| l + 1).max(width);
    for i in (0..len).rev() {
        out.push(char::from(b'0' + (n / 10u32.pow(i) % 10) as u8));
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

    /// What `format` wrote before it wrote digit by digit.
    fn with_format_macro(micros: i64) -> String {
        let secs = micros.div_euclid(1_000_000);
        let frac = micros.rem_euclid(1_000_000);
        let t = time::OffsetDateTime::from_unix_timestamp(secs).unwrap();
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

    #[test]
    fn writes_what_the_format_macro_wrote() {
        let mut micros: i64 = 0;
        // Epoch to year 9999 in uneven steps, fractions of every width.
        while micros < 253_402_300_799_000_000 {
            assert_eq!(super::format(micros), with_format_macro(micros), "{micros}");
            micros = micros * 3 / 2 + 7_654_321 + (micros % 1000);
        }
        for micros in [
            0,
            1,
            999_999,
            1_000_000,
            86_399_999_999,
            951_782_400_000_001,
        ] {
            assert_eq!(super::format(micros), with_format_macro(micros), "{micros}");
        }
    }
}
