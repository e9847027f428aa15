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
    let mut out = Vec::with_capacity(27);
    format_into(&mut out, micros);
    String::from_utf8(out).expect("a timestamp is ASCII")
}

/// [`format`], appended to `out` (no quotes, nothing to escape). Written
/// digit by digit: every message, member and user object carries one or
/// more, and `format!` with padding was a tenth of a 500-conversation
/// list's time (perf, issue 12); the list writes its 4,500 straight into
/// its buffer.
pub fn format_into(out: &mut Vec<u8>, micros: Micros) {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000) as u32;
    const EPOCH: &[u8] = b"1970-01-01T00:00:00Z";
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(secs) else {
        return out.extend_from_slice(EPOCH);
    };
    let (year, month, day) = t.to_calendar_date();
    let (hour, minute, second) = t.to_hms();
    let Ok(year) = u32::try_from(year) else {
        return out.extend_from_slice(EPOCH);
    };
    digits(out, year, 4);
    out.push(b'-');
    digits(out, u8::from(month).into(), 2);
    out.push(b'-');
    digits(out, day.into(), 2);
    out.push(b'T');
    digits(out, hour.into(), 2);
    out.push(b':');
    digits(out, minute.into(), 2);
    out.push(b':');
    digits(out, second.into(), 2);
    if frac != 0 {
        out.push(b'.');
        digits(out, frac, 6);
    }
    out.push(b'Z');
}

/// `n` in decimal, zero-padded to `width` (wider numbers keep all their
/// digits, as `{:0width$}` does).
fn digits(out: &mut Vec<u8>, mut n: u32, width: usize) {
    let mut buf = [b'0'; 10];
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[start.min(buf.len() - width)..]);
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
