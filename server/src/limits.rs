//! Per-user limits (issue 17): what one user may cost everyone else.
//!
//! * messages per second and content bytes per second, across all of the
//!   user's sockets and REST, checked in [`Limits::admit`] before a command
//!   reaches the sequencer (a refused command is not stored: REST answers
//!   429 with `Retry-After`, a socket an error frame `rate_limited`);
//! * open sockets per user ([`Limits::socket_slot`]; the handshake gets 429);
//! * typing signals coalesced per sender and conversation
//!   ([`Limits::typing_passes`]).
//!
//! Keyed GCRA limiters from `governor`, in this node's memory: in cluster
//! mode every limit is per node.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;
use serde_json::json;
use vato_eventlog::{Command, ConvId, UserId};

use crate::config::Config;

/// A typing frame repeating the sender's last forwarded `is_typing` within
/// this long is dropped; a change is always forwarded.
pub const TYPING_REPEAT: Duration = Duration::from_millis(300);
/// Checks between two sweeps of idle users' limiter state.
const SWEEP_EVERY: u64 = 4096;

pub struct Limits {
    /// Sends, edits and reactions per user; `None` when disabled.
    messages: Option<DefaultKeyedRateLimiter<UserId>>,
    /// Content bytes per user, with its burst (the most one check may
    /// ask for); `None` when disabled.
    bytes: Option<(DefaultKeyedRateLimiter<UserId>, u32)>,
    clock: DefaultClock,
    checks: AtomicU64,
    /// `--max-sockets-per-user`; 0: no limit.
    max_sockets: usize,
    /// Open sockets by user; an entry lives while the user has one.
    sockets: Arc<Mutex<HashMap<UserId, usize>>>,
    /// Per (sender, conversation): the last typing value forwarded, when.
    typing: Mutex<HashMap<(UserId, ConvId), (bool, Instant)>>,
    /// Per (sender, conversation): typing frames forwarded, changes of
    /// `is_typing` included ([`TYPING_RATE`]).
    typing_rate: DefaultKeyedRateLimiter<(UserId, ConvId)>,
}

/// Typing frames forwarded per second per sender and conversation, with
/// bursts of twice that: toggling `is_typing` as fast as possible does not
/// get past it either.
pub const TYPING_RATE: u32 = 5;

/// A command refused because its user is over a rate limit.
#[derive(Debug)]
pub struct RateLimited {
    pub retry_after: Duration,
    pub detail: &'static str,
}

impl RateLimited {
    /// Whole seconds to wait, at least 1 (the `Retry-After` value).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }
}

impl IntoResponse for RateLimited {
    fn into_response(self) -> Response {
        let retry_after = self.retry_after_secs().to_string();
        let body = json!({"detail": self.detail, "retry_after": self.retry_after_secs()});
        (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, retry_after)],
            Json(body),
        )
            .into_response()
    }
}

/// Held by a socket's task while it is open: its place in the user's
/// `--max-sockets-per-user`.
pub struct SocketSlot {
    sockets: Arc<Mutex<HashMap<UserId, usize>>>,
    user_id: UserId,
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut sockets = self.sockets.lock();
        if let Some(count) = sockets.get_mut(&self.user_id) {
            *count -= 1;
            if *count == 0 {
                sockets.remove(&self.user_id);
            }
        }
    }
}

const TOO_MANY_MESSAGES: &str = "Too many messages; slow down.";
const TOO_MANY_BYTES: &str = "Too much message content per second; slow down.";

impl Limits {
    pub fn new(config: &Config) -> Limits {
        let messages = NonZeroU32::new(config.user_msg_rate).map(|rate| {
            let burst = NonZeroU32::new(config.user_msg_burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        let bytes = NonZeroU32::new(config.user_bytes_rate).map(|rate| {
            // One second's worth, and never less than the largest message
            // (4 bytes per character), which must always be sendable.
            let largest =
                u32::try_from(config.max_message_chars.saturating_mul(4)).unwrap_or(u32::MAX);
            let burst = rate.max(NonZeroU32::new(largest).unwrap_or(rate));
            let limiter = RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst));
            (limiter, burst.get())
        });
        Limits {
            messages,
            bytes,
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
            max_sockets: config.max_sockets_per_user,
            sockets: Arc::default(),
            typing: Mutex::default(),
            typing_rate: RateLimiter::keyed(
                Quota::per_second(NonZeroU32::new(TYPING_RATE).unwrap_or(NonZeroU32::MIN))
                    .allow_burst(NonZeroU32::new(2 * TYPING_RATE).unwrap_or(NonZeroU32::MIN)),
            ),
        }
    }

    /// Charges the command to its user's rates; `Err` when over a limit
    /// (the command must then not be submitted). Commands other than
    /// sends, forwards, edits and reactions are free.
    pub fn admit(&self, command: &Command) -> Result<(), RateLimited> {
        let admitted = self.check(command);
        if admitted.is_err() {
            metrics::counter!("vato_commands_rejected_total", "reason" => "rate_limited")
                .increment(1);
        }
        admitted
    }

    fn check(&self, command: &Command) -> Result<(), RateLimited> {
        let command = match command {
            Command::PostWithAttachments { post, .. } => &**post,
            other => other,
        };
        let (user, bytes) = match command {
            Command::PostMessage {
                sender, content, ..
            } => (*sender, content.len()),
            Command::EditMessage { by, content, .. } => (*by, content.len()),
            Command::ToggleReaction { by, emoji, .. } => (*by, emoji.len()),
            // A forward is a send whose content the client does not send.
            Command::ForwardMessage { by, .. } => (*by, 0),
            _ => return Ok(()),
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep();
        }
        if let Some(limiter) = &self.messages {
            limiter.check_key(&user).map_err(|not_until| RateLimited {
                retry_after: not_until.wait_time_from(self.clock.now()),
                detail: TOO_MANY_MESSAGES,
            })?;
        }
        if let Some((limiter, burst)) = &self.bytes {
            let n = u32::try_from(bytes).unwrap_or(u32::MAX).min(*burst);
            if let Some(n) = NonZeroU32::new(n) {
                match limiter.check_key_n(&user, n) {
                    Ok(Ok(())) => {}
                    Ok(Err(not_until)) => {
                        return Err(RateLimited {
                            retry_after: not_until.wait_time_from(self.clock.now()),
                            detail: TOO_MANY_BYTES,
                        })
                    }
                    // Cannot happen: n is capped at the burst.
                    Err(_) => {
                        return Err(RateLimited {
                            retry_after: Duration::from_secs(1),
                            detail: TOO_MANY_BYTES,
                        })
                    }
                }
            }
        }
        Ok(())
    }

    /// A place for one more socket of `user_id`, or `None` when the user
    /// has `--max-sockets-per-user` open already.
    pub fn socket_slot(&self, user_id: UserId) -> Option<SocketSlot> {
        let mut sockets = self.sockets.lock();
        let count = sockets.entry(user_id).or_insert(0);
        if self.max_sockets != 0 && *count >= self.max_sockets {
            if *count == 0 {
                sockets.remove(&user_id);
            }
            return None;
        }
        *count += 1;
        Some(SocketSlot {
            sockets: self.sockets.clone(),
            user_id,
        })
    }

    /// Whether a typing signal of `user_id` in `conv_id` goes to the
    /// others: a repeat of the last forwarded `is_typing` only once per
    /// [`TYPING_REPEAT`], a change always, both within [`TYPING_RATE`].
    pub fn typing_passes(&self, user_id: UserId, conv_id: ConvId, is_typing: bool) -> bool {
        let now = Instant::now();
        let key = (user_id, conv_id);
        let mut typing = self.typing.lock();
        if typing.len() >= 65_536 {
            typing.retain(|_, (_, at)| now.duration_since(*at) < TYPING_REPEAT);
            self.typing_rate.retain_recent();
        }
        if let Some((last, at)) = typing.get(&key) {
            if *last == is_typing && now.duration_since(*at) < TYPING_REPEAT {
                return false;
            }
        }
        if self.typing_rate.check_key(&key).is_err() {
            return false;
        }
        typing.insert(key, (is_typing, now));
        true
    }

    /// Forgets the limiter state of users idle long enough to be back at a
    /// full burst.
    fn sweep(&self) {
        if let Some(limiter) = &self.messages {
            limiter.retain_recent();
        }
        if let Some((limiter, _)) = &self.bytes {
            limiter.retain_recent();
        }
    }
}
