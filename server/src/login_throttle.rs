//! Login throttling (issue 13): failed logins per client address and per
//! account, with `governor`'s keyed GCRA limiters. Only failures are
//! charged, so a busy address whose users type their passwords right (an
//! office behind one NAT) is never slowed down.
//!
//! * **Per address** (`--login-fail-rate` a minute, bursts of as many): an
//!   address that used its allowance gets 429 for every login, whatever
//!   account it names, until a failure's worth has come back.
//! * **Per account** (`--login-user-fail-rate`): an account that used its
//!   allowance (failures from anywhere) is closed to every address that
//!   has itself failed a login recently; an address with no recent failure
//!   still reaches the password check, so the owner logging in with the
//!   right password from elsewhere gets in while the account is under
//!   attack. A distributed attacker therefore gets one guess per fresh
//!   address, after which that address is shut out of the account too.
//!
//! A throttled attempt is refused before the password is hashed: no
//! argon2 time is spent on it and it tells nothing about the password.
//! State lives in this node's memory (per node in cluster mode), and only
//! for keys that failed within about a minute: everything is swept as it
//! goes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use parking_lot::Mutex;

use crate::accounts::throttle_key;

type Limiter<K> =
    RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// How long an address counts as having failed recently (the window of
/// the per-account rule).
const RECENT: Duration = Duration::from_secs(60);
/// Failures between two sweeps of forgotten keys.
const SWEEP_EVERY: u64 = 256;

/// One allowance of failures: the limiter that counts them and the keys
/// that used it up, until when. governor cannot tell whether a key is out
/// without charging it, so running out is remembered here.
struct Allowance<K: std::hash::Hash + Eq + Clone> {
    limiter: Limiter<K>,
    /// Time for one failure to come back.
    replenish: Duration,
    exhausted: Mutex<HashMap<K, Instant>>,
}

impl<K: std::hash::Hash + Eq + Clone> Allowance<K> {
    fn new(per_minute: NonZeroU32) -> Allowance<K> {
        let quota = Quota::per_minute(per_minute);
        Allowance {
            replenish: quota.replenish_interval(),
            limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            exhausted: Mutex::default(),
        }
    }

    /// How long `key` must still wait, if it used its allowance up.
    fn wait(&self, key: &K, now: Instant) -> Option<Duration> {
        let exhausted = self.exhausted.lock();
        let until = exhausted.get(key)?;
        (*until > now).then(|| *until - now)
    }

    /// Charges one failure to `key`.
    fn charge(&self, key: &K, now: Instant) {
        let until = match self.limiter.check_key(key) {
            Ok(state) if state.remaining_burst_capacity() == 0 => now + self.replenish,
            Ok(_) => return,
            Err(not_until) => now + not_until.wait_time_from(self.limiter.clock().now()),
        };
        self.exhausted.lock().insert(key.clone(), until);
    }

    fn sweep(&self, now: Instant) {
        self.limiter.retain_recent();
        self.exhausted.lock().retain(|_, until| *until > now);
    }
}

pub struct LoginThrottle {
    /// `--login-fail-rate`; `None` when 0.
    by_address: Option<Allowance<IpAddr>>,
    /// `--login-user-fail-rate`, keyed by [`account_key`]; `None` when 0.
    by_account: Option<Allowance<String>>,
    /// Addresses with a failure in the last [`RECENT`], and when.
    failed_recently: Mutex<HashMap<IpAddr, Instant>>,
    failures: AtomicU64,
}

/// The name a login attempt is counted against: the username as login
/// compares it (case-insensitively), or the phone number without
/// separators, so `+1 555…` and `+1555…` share one allowance.
pub fn account_key(username: Option<&str>, phone: Option<&str>) -> Option<String> {
    match (username, phone) {
        (Some(name), _) => Some(format!("u:{}", name.to_lowercase())),
        (None, Some(phone)) => Some(format!("p:{}", vato_eventlog::state::phone_key(phone))),
        (None, None) => None,
    }
}

impl LoginThrottle {
    /// `None` when both rates are 0.
    pub fn new(address_per_minute: u32, account_per_minute: u32) -> Option<LoginThrottle> {
        let by_address = NonZeroU32::new(address_per_minute).map(Allowance::new);
        let by_account = NonZeroU32::new(account_per_minute).map(Allowance::new);
        if by_address.is_none() && by_account.is_none() {
            return None;
        }
        Some(LoginThrottle {
            by_address,
            by_account,
            failed_recently: Mutex::default(),
            failures: AtomicU64::new(0),
        })
    }

    /// Whether a login from `address` for `account` may be tried now; how
    /// long to wait otherwise.
    pub fn admit(&self, address: IpAddr, account: Option<&str>) -> Result<(), Duration> {
        let now = Instant::now();
        let address = throttle_key(address);
        if let Some(wait) = self.by_address.as_ref().and_then(|a| a.wait(&address, now)) {
            return Err(wait);
        }
        if let (Some(allowance), Some(account)) = (&self.by_account, account) {
            if let Some(wait) = allowance.wait(&account.to_string(), now) {
                if self.failed_recently(address, now) {
                    return Err(wait);
                }
            }
        }
        Ok(())
    }

    /// Charges a failed login to its address and its account.
    pub fn failed(&self, address: IpAddr, account: Option<&str>) {
        let now = Instant::now();
        let address = throttle_key(address);
        if self.failures.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep(now);
        }
        self.failed_recently.lock().insert(address, now);
        if let Some(allowance) = &self.by_address {
            allowance.charge(&address, now);
        }
        if let (Some(allowance), Some(account)) = (&self.by_account, account) {
            allowance.charge(&account.to_string(), now);
        }
    }

    fn failed_recently(&self, address: IpAddr, now: Instant) -> bool {
        self.failed_recently
            .lock()
            .get(&address)
            .is_some_and(|at| now.duration_since(*at) < RECENT)
    }

    fn sweep(&self, now: Instant) {
        if let Some(allowance) = &self.by_address {
            allowance.sweep(now);
        }
        if let Some(allowance) = &self.by_account {
            allowance.sweep(now);
        }
        self.failed_recently
            .lock()
            .retain(|_, at| now.duration_since(*at) < RECENT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn an_address_is_stopped_after_its_failures_and_others_are_not() {
        let throttle = LoginThrottle::new(3, 0).expect("a throttle");
        let attacker = ip("10.0.0.1");
        for _ in 0..3 {
            assert!(throttle.admit(attacker, Some("u:ana")).is_ok());
            throttle.failed(attacker, Some("u:ana"));
        }
        let wait = throttle
            .admit(attacker, Some("u:bo"))
            .expect_err("out of failures");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(throttle.admit(ip("10.0.0.2"), Some("u:ana")).is_ok());
        assert!(LoginThrottle::new(0, 0).is_none());
    }

    #[test]
    fn an_account_under_attack_stays_open_to_a_clean_address() {
        let throttle = LoginThrottle::new(0, 2).expect("a throttle");
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        throttle.failed(a, Some("u:ana"));
        throttle.failed(b, Some("u:ana"));
        assert!(throttle.admit(a, Some("u:ana")).is_err());
        assert!(throttle.admit(b, Some("u:ana")).is_err());
        // The owner, from an address that has not failed.
        assert!(throttle.admit(ip("10.0.0.3"), Some("u:ana")).is_ok());
        // Other accounts are open to the attackers.
        assert!(throttle.admit(a, Some("u:bo")).is_ok());
    }

    #[test]
    fn account_keys_fold_case_and_separators() {
        assert_eq!(
            account_key(Some("Lalo"), None),
            account_key(Some("lalo"), None)
        );
        assert_eq!(
            account_key(None, Some("+1 555 000 1111")),
            account_key(None, Some("+15550001111"))
        );
        assert_eq!(account_key(None, None), None);
    }
}
