//! Accounts: what a new account must pass beyond its fields' shapes
//! (issue 17), no HTTP.
//!
//! * [`password_problems`]: Django's four default password validators, with
//!   their messages, all that apply, in Django's order.
//! * [`RegisterThrottle`]: `--register-rate` registrations per minute per
//!   client address (`governor`'s keyed GCRA limiter).
//!
//! Phone numbers are a field rule, so they are intake's
//! (`intake::phone_number`); look-alike usernames are decided by the state
//! machine (`vato_eventlog::state::username_skeleton`).

use std::collections::HashSet;
use std::io::Read;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Django's `MinimumLengthValidator` default.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// Django's `UserAttributeSimilarityValidator` default.
const MAX_SIMILARITY: f64 = 0.7;

/// Django 5.2's `django/contrib/auth/common-passwords.txt.gz` (19,640
/// lowercased passwords by Royce Williams), as shipped in the `django`
/// wheel on PyPI.
static COMMON_PASSWORDS_GZ: &[u8] = include_bytes!("accounts/common-passwords.txt.gz");

/// The common passwords, decompressed on first use.
static COMMON_PASSWORDS: LazyLock<HashSet<String>> = LazyLock::new(|| {
    let mut text = String::new();
    flate2::read::GzDecoder::new(COMMON_PASSWORDS_GZ)
        .read_to_string(&mut text)
        .expect("the common-password list compiled into the binary is valid gzip");
    text.lines().map(|line| line.trim().to_string()).collect()
});

/// Decompresses the common-password list now, so the first registration
/// does not pay for it.
pub fn load_common_passwords() {
    LazyLock::force(&COMMON_PASSWORDS);
}

/// What is wrong with `password` for a user with these `attributes`
/// (verbose name, value): Django's default validators, in the order of
/// Django's default settings, each message once. Empty when it is fine.
pub fn password_problems(password: &str, attributes: &[(&str, &str)]) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(name) = too_similar_to(password, attributes) {
        problems.push(format!("The password is too similar to the {name}."));
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        problems.push(format!(
            "This password is too short. It must contain at least {MIN_PASSWORD_CHARS} characters."
        ));
    }
    if COMMON_PASSWORDS.contains(password.to_lowercase().trim()) {
        problems.push("This password is too common.".to_string());
    }
    if !password.is_empty() && password.chars().all(char::is_numeric) {
        problems.push("This password is entirely numeric.".to_string());
    }
    problems
}

/// Django's `UserAttributeSimilarityValidator`: the first attribute whose
/// value, or a part of it between non-word characters, has a
/// `SequenceMatcher.quick_ratio()` of at least 0.7 with the password.
fn too_similar_to<'a>(password: &str, attributes: &[(&'a str, &str)]) -> Option<&'a str> {
    let password: Vec<char> = password.to_lowercase().chars().collect();
    attributes.iter().find_map(|&(name, value)| {
        let value = value.to_lowercase();
        let whole = std::iter::once(value.as_str());
        let mut parts = value
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .chain(whole);
        let similar = parts.any(|part| {
            let part: Vec<char> = part.chars().collect();
            !exceeds_maximum_length_ratio(&password, &part)
                && quick_ratio(&password, &part) >= MAX_SIMILARITY
        });
        (!value.is_empty() && similar).then_some(name)
    })
}

/// Django skips a part so much shorter than the password that it cannot
/// reach the ratio.
fn exceeds_maximum_length_ratio(password: &[char], part: &[char]) -> bool {
    let length_bound_similarity = MAX_SIMILARITY / 2.0 * password.len() as f64;
    password.len() >= 10 * part.len() && (part.len() as f64) < length_bound_similarity
}

/// Python's `difflib.SequenceMatcher(a, b).quick_ratio()`: twice the size
/// of the multiset intersection of the characters over the total length.
fn quick_ratio(a: &[char], b: &[char]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let mut available = std::collections::HashMap::<char, usize>::new();
    for &c in b {
        *available.entry(c).or_default() += 1;
    }
    let mut matches = 0usize;
    for c in a {
        if let Some(n) = available.get_mut(c).filter(|n| **n > 0) {
            *n -= 1;
            matches += 1;
        }
    }
    2.0 * matches as f64 / (a.len() + b.len()) as f64
}

/// `--register-rate`: registrations per minute per client address, with a
/// burst of as many; attempts that fail count too (as DRF's throttles do),
/// so guessing taken names costs the same.
pub struct RegisterThrottle {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Checks so far: every 256th drops addresses that are back to a full
    /// allowance, so the map holds about one minute's worth of addresses.
    checks: AtomicU64,
}

impl RegisterThrottle {
    /// `None` when `per_minute` is 0 (no throttle).
    pub fn new(per_minute: u32) -> Option<RegisterThrottle> {
        let per_minute = NonZeroU32::new(per_minute)?;
        Some(RegisterThrottle {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
            checks: AtomicU64::new(0),
        })
    }

    /// Takes one registration from `address`'s allowance, or says how long
    /// until the next one is allowed.
    pub fn check(&self, address: IpAddr) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % 256 == 255 {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&throttle_key(address))
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }
}

/// The address a throttle counts: IPv4 as is (an IPv4-mapped IPv6 address
/// too), IPv6 by its /64, which one host usually has whole.
pub(crate) fn throttle_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(password: &str) -> Vec<String> {
        password_problems(password, &[("username", "nina")])
    }

    #[test]
    fn the_common_list_is_djangos() {
        assert!(
            COMMON_PASSWORDS.len() > 19_000,
            "{}",
            COMMON_PASSWORDS.len()
        );
        for common in ["password", "12345678", "qwertyuiop", "iloveyou"] {
            assert!(COMMON_PASSWORDS.contains(common), "{common}");
        }
    }

    #[test]
    fn djangos_messages_all_that_apply() {
        assert_eq!(
            problems("12345678"),
            [
                "This password is too common.",
                "This password is entirely numeric."
            ]
        );
        assert_eq!(problems("Password"), ["This password is too common."]);
        assert_eq!(problems(" password "), ["This password is too common."]);
        assert_eq!(
            problems("38502716493"),
            ["This password is entirely numeric."]
        );
        assert_eq!(
            problems("123"),
            [
                "This password is too short. It must contain at least 8 characters.",
                "This password is too common.",
                "This password is entirely numeric."
            ]
        );
        for fine in ["correct-horse", "vato-load-Pa55word", "pw-3f9a-77c1"] {
            assert!(problems(fine).is_empty(), "{fine}: {:?}", problems(fine));
        }
    }

    #[test]
    fn similarity_is_djangos_quick_ratio() {
        let chars = |s: &str| s.chars().collect::<Vec<_>>();
        // Values from Python's difflib.
        assert_eq!(quick_ratio(&chars("abcd"), &chars("bcde")), 0.75);
        assert_eq!(
            quick_ratio(&chars("ninanina"), &chars("nina")),
            2.0 * 4.0 / 12.0
        );
        let attributes = [
            ("username", "marisol_22"),
            ("email address", "sol.vega@example.com"),
            ("display name", ""),
        ];
        let similar = |p: &str| too_similar_to(p, &attributes);
        assert_eq!(similar("marisol_22!"), Some("username"));
        assert_eq!(
            similar("22_LOSIRAM"),
            Some("username"),
            "any order, any case"
        );
        assert_eq!(similar("vegasol"), Some("email address"), "a part of it");
        assert_eq!(similar("correct-horse"), None);
        // A short part against a long password is skipped, as in Django.
        assert_eq!(
            too_similar_to("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", &[("x", "a")]),
            None
        );
    }

    #[test]
    fn the_throttle_counts_per_address() {
        let throttle = RegisterThrottle::new(3).expect("a throttle");
        let one: IpAddr = "10.0.0.1".parse().unwrap();
        let two: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(throttle.check(one).is_ok());
        }
        let wait = throttle.check(one).expect_err("fourth in a minute");
        assert!(
            wait > Duration::from_secs(15) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(throttle.check(two).is_ok(), "another address has its own");
        assert!(RegisterThrottle::new(0).is_none());
        let v6 = |s: &str| throttle_key(s.parse().unwrap());
        assert_eq!(v6("2001:db8::1"), v6("2001:db8::ffff:1"));
        assert_ne!(v6("2001:db8::1"), v6("2001:db8:0:1::1"));
        assert_eq!(v6("::ffff:10.0.0.1"), one);
    }
}
