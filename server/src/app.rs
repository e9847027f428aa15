//! The shared context every handler gets: configuration, the store, the
//! fan-out hub, the token keys, the sequencer, the socket permits and the
//! presence tracker.

use std::sync::Arc;

use tokio::sync::Semaphore;
use vato_eventlog::{Command, Store};

use crate::accounts::RegisterThrottle;
use crate::auth::Jwt;
use crate::config::Config;
use crate::hub::Hub;
use crate::limits::Limits;
use crate::login_throttle::LoginThrottle;
use crate::presence::Presence;
use crate::sequencer::{Outcome, Sequencer, Unavailable};

pub struct App {
    pub config: Config,
    /// The read model (`store.state()`) and the log, for queries and replay.
    pub store: Store,
    pub hub: Arc<Hub>,
    pub jwt: Jwt,
    /// One permit per open WebSocket, `--max-connections` in all; a socket
    /// holds its permit until its task ends, and a handshake finding none
    /// left is refused with 503.
    pub connections: Arc<Semaphore>,
    /// Who orders the commands: the local store, or JetStream.
    pub sequencer: Sequencer,
    /// `--register-rate`; `None` when 0.
    pub register_throttle: Option<RegisterThrottle>,
    /// `--login-fail-rate` and `--login-user-fail-rate`; `None` when both
    /// are 0.
    pub login_throttle: Option<LoginThrottle>,
    /// Per-user rates and socket counts (issue 17).
    pub limits: Limits,
    /// What the delivery probe and the lag check last saw, for `/readyz`.
    pub probe: crate::probe::Probe,
    /// This node's sockets per user, reported as presence (issue 13).
    pub presence: Presence,
    /// Avatars' (and attachments') files: `<data-dir>/media/` or the
    /// cluster's Object Store bucket.
    pub media: Arc<crate::media::Media>,
    /// Keys the phone login codes' hashes.
    pub otp_key: crate::otp::CodeKey,
    /// `--otp-rate`; `None` when 0.
    pub otp_throttle: Option<crate::otp::OtpThrottle>,
    /// `--sms-webhook`, if set.
    pub sms: Option<crate::otp::SmsWebhook>,
    /// Google login, when `--google-client-id` is set.
    pub google: Option<crate::google::GoogleVerifier>,
}

impl App {
    /// The one way a request changes state: the command's outcome, once its
    /// events are fanned out, or [`Unavailable`].
    pub async fn submit(&self, command: Command) -> Result<Outcome, Unavailable> {
        let outcome = self.sequencer.begin(command).await.await?;
        // Answer only once the events are fanned out: a client that gets
        // its 201 and then resumes with `since` finds them in the replay.
        if let Some(last) = outcome.as_ref().ok().and_then(|a| a.events().last()) {
            // Bounded: the events are durable already; if the fan-out were
            // ever stuck, the client still gets its answer.
            let fanned = self.hub.fanned_out_to(last.offset);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), fanned).await;
        }
        Ok(outcome)
    }

    /// WebSocket connections open now.
    pub fn open_connections(&self) -> usize {
        self.config
            .max_connections
            .saturating_sub(self.connections.available_permits())
    }
}
