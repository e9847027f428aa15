//! Case 4, real-time messaging: A→B and B→A arrive once with the sent
//! content and are echoed to the sender; a rapid burst arrives complete and
//! in order; seqs only go up.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use super::inbox::{Frame, Socket};
use super::report::{fmt_ms, CheckResult, Pass, Report};
use super::session::User;
use super::{send_frame, seq_order, Ctx, Sent};

/// The checks of this case, to skip them together.
pub const CHECKS: &[&str] = &[
    "realtime.a_to_b",
    "realtime.b_to_a",
    "realtime.echo",
    "realtime.burst_order",
    "realtime.seq_increasing",
];

pub async fn run(
    ctx: &Ctx,
    report: &mut Report,
    a: &User,
    b: &User,
    sa: &mut Socket,
    sb: &mut Socket,
) {
    let ab = exchange(ctx, "A->B", a, sa, sb).await;
    let ba = exchange(ctx, "B->A", b, sb, sa).await;
    // Only now count copies: a duplicate may trail the original a little.
    sa.settle(ctx.grace).await;
    sb.settle(ctx.grace).await;

    // A delivered or echoed result implies the message was sent.
    let result = ab.delivered.and_then(|latency| {
        once_if_sent(sb, &ab.sent, "A's message")?;
        Ok(Pass::latency(latency))
    });
    report.record("realtime.a_to_b", result);
    let result = ba.delivered.and_then(|latency| {
        once_if_sent(sa, &ba.sent, "B's message")?;
        Ok(Pass::latency(latency))
    });
    report.record("realtime.b_to_a", result);
    let result = ab.echoed.and_then(|latency_a| {
        let latency_b = ba.echoed?;
        once_if_sent(sa, &ab.sent, "the echo of its message")?;
        once_if_sent(sb, &ba.sent, "the echo of its message")?;
        Ok(Pass::latency(latency_a.max(latency_b)))
    });
    report.record("realtime.echo", result);

    let result = burst(ctx, a, sa, sb).await;
    report.record("realtime.burst_order", result);
    report.record("realtime.seq_increasing", seq_increasing(sa, sb));
}

/// One message from `sender` and what became of it.
struct Exchange {
    sent: Option<Sent>,
    /// Latency to the other member, or why it did not arrive as sent.
    delivered: Result<Duration, String>,
    /// Latency of the echo to the sender.
    echoed: Result<Duration, String>,
}

async fn exchange(
    ctx: &Ctx,
    direction: &str,
    sender: &User,
    from: &mut Socket,
    to: &mut Socket,
) -> Exchange {
    let token = ctx.token();
    let content = format!("vato-check {direction} {token}");
    let at = match from.send(&send_frame(&content, &token)).await {
        Ok(at) => at,
        Err(reason) => {
            return Exchange {
                sent: None,
                delivered: Err(reason.clone()),
                echoed: Err(reason),
            }
        }
    };
    let sent = Sent {
        content,
        client_id: token,
        at,
    };
    let delivered = receive(ctx, to, &sent, sender.id, "the message").await;
    let echoed = receive(ctx, from, &sent, sender.id, "the echo of its message").await;
    Exchange {
        sent: Some(sent),
        delivered,
        echoed,
    }
}

/// Waits for `sent`'s `message.new` on `socket` and checks what it carries.
pub async fn receive(
    ctx: &Ctx,
    socket: &mut Socket,
    sent: &Sent,
    sender: i64,
    what: &str,
) -> Result<Duration, String> {
    let frame = socket
        .expect(&format!("message.new for {what}"), ctx.timeout, |f| {
            sent.is_new(f)
        })
        .await?;
    sent.verify(&frame.value, sender)
        .map_err(|reason| format!("{}: {reason}", socket.label()))?;
    Ok(frame.at.duration_since(sent.at))
}

/// No further copy of `sent` may be in the socket's backlog (call after
/// `settle` and after the expected copy was claimed).
pub fn once(socket: &mut Socket, sent: &Sent, what: &str) -> Result<(), String> {
    let extra = socket.take_all(|f| sent.is_new(f));
    if extra.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} got {what} {} times (duplicate delivery)",
            socket.label(),
            extra.len() + 1
        ))
    }
}

fn once_if_sent(socket: &mut Socket, sent: &Option<Sent>, what: &str) -> Result<(), String> {
    sent.as_ref()
        .map_or(Ok(()), |sent| once(socket, sent, what))
}

/// A sends `--burst` messages back to back; B gets all, in order, once each,
/// and A's echoes come back in the same order.
async fn burst(ctx: &Ctx, a: &User, sa: &mut Socket, sb: &mut Socket) -> CheckResult {
    let count = ctx.config.burst as usize;
    let token = ctx.token();
    let mut sent = Vec::with_capacity(count);
    for i in 0..count {
        let content = format!("vato-check burst {token} {:03}/{count}", i + 1);
        let client_id = format!("{token}-{i}");
        let at = sa.send(&send_frame(&content, &client_id)).await?;
        sent.push(Sent {
            content,
            client_id,
            at,
        });
    }
    let burst = Burst::new(&token, &sent);

    let at_b = burst.collect(ctx, sb, a.id).await?;
    let at_a = burst.collect(ctx, sa, a.id).await?;
    sa.settle(ctx.grace).await;
    sb.settle(ctx.grace).await;
    for socket in [&mut *sb, &mut *sa] {
        let extra = socket.take_all(|f| burst.index(f).is_some());
        if !extra.is_empty() {
            return Err(format!(
                "{} got {} burst message(s) more than once (duplicate delivery)",
                socket.label(),
                extra.len()
            ));
        }
    }
    Burst::in_order(&at_b, "B")?;
    Burst::in_order(&at_a, "A (echoes)")?;

    let slowest = at_b
        .iter()
        .map(|(i, frame)| frame.at.duration_since(sent[*i].at))
        .max()
        .unwrap_or_default();
    Ok(Pass::latency(slowest).with_detail(format!("{count} messages, max {}", fmt_ms(slowest))))
}

/// Recognises this burst's frames and their place in it.
struct Burst<'a> {
    token: &'a str,
    sent: &'a [Sent],
    by_client_id: HashMap<&'a str, usize>,
}

impl<'a> Burst<'a> {
    fn new(token: &'a str, sent: &'a [Sent]) -> Self {
        let by_client_id = sent
            .iter()
            .enumerate()
            .map(|(i, s)| (s.client_id.as_str(), i))
            .collect();
        Self {
            token,
            sent,
            by_client_id,
        }
    }

    /// `Some(i)` for the i-th burst message (by client id, or by content when
    /// the client id was lost); `None` for unrelated frames.
    fn index(&self, frame: &Value) -> Option<usize> {
        if frame["type"] != "message.new" {
            return None;
        }
        let client_id = frame["client_id"]
            .as_str()
            .or(frame["data"]["client_id"].as_str());
        if let Some(i) = client_id.and_then(|c| self.by_client_id.get(c)) {
            return Some(*i);
        }
        let content = frame["data"]["content"].as_str()?;
        self.sent.iter().position(|s| s.content == content)
    }

    fn mentions_token(&self, frame: &Value) -> bool {
        frame["type"] == "message.new"
            && frame["data"]["content"]
                .as_str()
                .is_some_and(|c| c.contains(self.token))
    }

    /// Claims the burst's frames on `socket` in arrival order until each
    /// message was seen once.
    async fn collect(
        &self,
        ctx: &Ctx,
        socket: &mut Socket,
        sender: i64,
    ) -> Result<Vec<(usize, Frame)>, String> {
        let deadline = tokio::time::Instant::now() + ctx.timeout;
        let mut got: Vec<(usize, Frame)> = Vec::new();
        let mut seen = vec![false; self.sent.len()];
        while got.len() < self.sent.len() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = socket
                .expect("the next burst message", left, |f| {
                    self.index(f).is_some() || self.mentions_token(f)
                })
                .await
                .map_err(|reason| {
                    format!(
                        "got {} of {} burst messages: {reason}",
                        got.len(),
                        self.sent.len()
                    )
                })?;
            let i = self.index(&frame.value).ok_or_else(|| {
                format!(
                    "{} got a burst message with altered content: {}",
                    socket.label(),
                    frame.value["data"]["content"]
                )
            })?;
            if seen[i] {
                return Err(format!(
                    "{} got burst message {} twice (duplicate delivery)",
                    socket.label(),
                    i + 1
                ));
            }
            seen[i] = true;
            self.sent[i]
                .verify(&frame.value, sender)
                .map_err(|reason| {
                    format!("{}, burst message {}: {reason}", socket.label(), i + 1)
                })?;
            got.push((i, frame));
        }
        Ok(got)
    }

    fn in_order(got: &[(usize, Frame)], who: &str) -> Result<(), String> {
        let order: Vec<usize> = got.iter().map(|(i, _)| *i + 1).collect();
        if order.windows(2).all(|w| w[0] < w[1]) {
            Ok(())
        } else {
            Err(format!("{who} got the burst out of order: {order:?}"))
        }
    }
}

/// Seqs on each socket strictly increase, and every message.new has one.
fn seq_increasing(sa: &Socket, sb: &Socket) -> CheckResult {
    let mut ranges = Vec::new();
    for socket in [sa, sb] {
        let range = seq_order(socket.history())
            .map_err(|reason| format!("{}: {reason}", socket.label()))?;
        let (first, last) =
            range.ok_or_else(|| format!("{} saw no frame with a seq", socket.label()))?;
        ranges.push(format!("{} {first}..{last}", socket.label()));
    }
    Ok(Pass::detail(ranges.join(", ")))
}
