//! Phone login codes (issue 13), no HTTP of ours: drawing a code, its
//! keyed hash, the request throttle and the SMS webhook.
//!
//! * A code is 6 digits from the OS's random generator (the original used
//!   Python's non-cryptographic `random`).
//! * Only `HMAC-SHA256(key, phone ":" code)` goes into the log, the key
//!   derived from the JWT secret (which every node of a cluster shares):
//!   the log or a backup of it does not give the codes away, and 10^6
//!   guesses against a hash need the secret.
//! * `--otp-rate` codes an hour per phone number and per client address
//!   (IPv6: per /64), so the server cannot be used to flood a number with
//!   texts or to run up the operator's SMS bill.
//! * `--sms-webhook URL`: each code is POSTed there as JSON
//!   `{"phone_number", "code", "message"}`; any 2xx means sent. The
//!   operator's webhook talks to whatever SMS provider they use.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;

use crate::accounts::throttle_key;

/// How long a code is good for: the original's 600 s.
pub const OTP_TTL_SECS: u64 = 600;

/// Draws a 6-digit code (leading zeros possible).
pub fn draw_code() -> String {
    format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32))
}

/// The key of the codes' hashes, derived from the JWT secret.
pub struct CodeKey([u8; 32]);

impl CodeKey {
    pub fn new(jwt_secret: &[u8]) -> CodeKey {
        let mut mac = Hmac::<Sha256>::new_from_slice(jwt_secret).expect("HMAC takes any key");
        mac.update(b"vato phone login codes");
        CodeKey(mac.finalize().into_bytes().into())
    }

    /// The hash kept for `code` sent to `phone` (E.164), in hex.
    pub fn hash(&self, phone: &str, code: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key");
        mac.update(phone.as_bytes());
        mac.update(b":");
        mac.update(code.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// `--otp-rate`: code requests an hour per phone number and per client
/// address, with bursts of as many.
pub struct OtpThrottle {
    per_phone: DefaultKeyedRateLimiter<String>,
    per_address: DefaultKeyedRateLimiter<IpAddr>,
    checks: AtomicU64,
}

impl OtpThrottle {
    /// `None` when `per_hour` is 0 (no throttle).
    pub fn new(per_hour: u32) -> Option<OtpThrottle> {
        let quota = Quota::per_hour(NonZeroU32::new(per_hour)?);
        Some(OtpThrottle {
            per_phone: RateLimiter::keyed(quota),
            per_address: RateLimiter::keyed(quota),
            checks: AtomicU64::new(0),
        })
    }

    /// Takes one request from both allowances, or says how long until the
    /// next one is allowed. The address is checked first, so a refused
    /// address does not use up the number's allowance.
    pub fn check(&self, phone: &str, address: IpAddr) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % 256 == 255 {
            self.per_phone.retain_recent();
            self.per_address.retain_recent();
        }
        let now = self.per_address.clock().now();
        self.per_address
            .check_key(&throttle_key(address))
            .map_err(|not_until| not_until.wait_time_from(now))?;
        self.per_phone
            .check_key(&phone.to_string())
            .map_err(|not_until| not_until.wait_time_from(now))
    }
}

/// Where codes are sent: `--sms-webhook`.
pub struct SmsWebhook {
    url: String,
    http: reqwest::Client,
}

impl SmsWebhook {
    pub fn new(url: Option<&str>) -> Option<SmsWebhook> {
        let url = url.map(str::trim).filter(|u| !u.is_empty())?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client with a timeout builds");
        Some(SmsWebhook {
            url: url.to_string(),
            http,
        })
    }

    /// Sends `code` to `phone`; the error is the `details` of the answer.
    pub async fn send(&self, phone: &str, code: &str) -> Result<(), String> {
        let body = serde_json::json!({
            "phone_number": phone,
            "code": code,
            "message": format!("Your Vatochito verification code is: {code}. Valid for 10 minutes."),
        });
        self.http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map(|_| ())
            .map_err(|e| e.without_url().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits() {
        for _ in 0..1000 {
            let code = draw_code();
            assert_eq!(code.len(), 6, "{code}");
            assert!(code.bytes().all(|b| b.is_ascii_digit()), "{code}");
        }
    }

    #[test]
    fn hashes_depend_on_key_number_and_code() {
        let key = CodeKey::new(b"secret");
        let h = key.hash("+15550001111", "123456");
        assert_eq!(h.len(), 64);
        assert_eq!(h, CodeKey::new(b"secret").hash("+15550001111", "123456"));
        assert_ne!(h, CodeKey::new(b"other").hash("+15550001111", "123456"));
        assert_ne!(h, key.hash("+15550001112", "123456"));
        assert_ne!(h, key.hash("+15550001111", "123457"));
    }

    #[test]
    fn the_throttle_counts_per_number_and_per_address() {
        let throttle = OtpThrottle::new(2).expect("a throttle");
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(throttle.check("+15550001111", a).is_ok());
        assert!(throttle.check("+15550001111", b).is_ok());
        let wait = throttle
            .check("+15550001111", "10.0.0.3".parse().unwrap())
            .expect_err("a third code for the number within the hour");
        assert!(wait > Duration::from_secs(60), "{wait:?}");
        assert!(throttle.check("+15550002222", a).is_ok());
        assert!(
            throttle.check("+15550003333", a).is_err(),
            "a third code from the address"
        );
        assert!(OtpThrottle::new(0).is_none());
    }
}
