//! Case 3, WebSocket connection: A and B connect, ping gets pong, and a
//! socket without a token, with a bad token, or for a non-member is refused.

use std::time::{Duration, Instant};

use vato_client::frames::{self, Kind};
use vato_client::ConnectError;

use super::inbox::{self, Socket};
use super::report::{fmt_ms, CheckResult, Pass, Report};
use super::session::{self, User};
use super::Ctx;

const REFUSALS: &[&str] = &[
    "ws.refuse_no_token",
    "ws.refuse_bad_token",
    "ws.refuse_non_member",
];

/// Returns both sockets when both connected.
pub async fn run(
    ctx: &Ctx,
    report: &mut Report,
    a: &User,
    b: &User,
    conversation: i64,
) -> Option<(Socket, Socket)> {
    let socket_a = record_connect(
        report,
        "ws.connect_a",
        connect_member(ctx, a, conversation).await,
    );
    let socket_b = record_connect(
        report,
        "ws.connect_b",
        connect_member(ctx, b, conversation).await,
    );

    // A refusal only means something where the same URL admits a member.
    let a_connected = socket_a.is_some();
    let mut sockets = match (socket_a, socket_b) {
        (Some(sa), Some(sb)) => Some((sa, sb)),
        (None, _) => {
            report.skip(&["ws.ping_pong"], "ws.connect_a");
            None
        }
        (_, None) => {
            report.skip(&["ws.ping_pong"], "ws.connect_b");
            None
        }
    };
    if let Some((sa, sb)) = sockets.as_mut() {
        let result = ping_pong(ctx, sa, sb).await;
        report.record("ws.ping_pong", result);
    }
    if !a_connected {
        report.skip(REFUSALS, "ws.connect_a");
        return sockets;
    }

    let url = inbox::url(&a.ws_base, &ctx.ws_path, conversation, None, None);
    report.record("ws.refuse_no_token", expect_refusal(ctx, &url).await);

    let result = refuse_bad_tokens(ctx, a, conversation).await;
    report.record("ws.refuse_bad_token", result);

    let result = refuse_non_member(ctx, a, conversation).await;
    report.record("ws.refuse_non_member", result);
    sockets
}

fn record_connect(
    report: &mut Report,
    name: &str,
    result: Result<(Socket, Duration), String>,
) -> Option<Socket> {
    match result {
        Ok((socket, took)) => {
            report.record(
                name,
                Ok(Pass::latency(took).with_detail(format!("handshake {}", fmt_ms(took)))),
            );
            Some(socket)
        }
        Err(reason) => {
            report.record(name, Err(reason));
            None
        }
    }
}

/// Connects a member. A 403/404 is retried for a while: in cluster mode the
/// user's node may learn of the new conversation a moment after its creation.
pub async fn connect_member(
    ctx: &Ctx,
    user: &User,
    conversation: i64,
) -> Result<(Socket, Duration), String> {
    connect_since(ctx, user, conversation, None).await
}

/// Like [`connect_member`], resuming after `since` when given.
pub async fn connect_since(
    ctx: &Ctx,
    user: &User,
    conversation: i64,
    since: Option<i64>,
) -> Result<(Socket, Duration), String> {
    let url = inbox::url(
        &user.ws_base,
        &ctx.ws_path,
        conversation,
        Some(&user.access),
        since,
    );
    session::retry(ctx.timeout, || async {
        let started = Instant::now();
        match inbox::connect(&url, user.label, ctx.timeout).await {
            Ok(socket) => Ok(Ok((socket, started.elapsed()))),
            Err(ConnectError::Refused {
                status: status @ (403 | 404),
                text: body,
                ..
            }) => Err(format!(
                "{} refused at {}: HTTP {status} {body}",
                user.label,
                // Without the query: no tokens in CI logs.
                url.split('?').next().unwrap_or_default()
            )),
            Err(err) => Ok(Err(format!(
                "{} could not connect to {}: {err}",
                user.label, user.ws_base
            ))),
        }
    })
    .await?
}

async fn ping_pong(ctx: &Ctx, a: &mut Socket, b: &mut Socket) -> CheckResult {
    let mut latency = Duration::ZERO;
    for socket in [a, b] {
        let sent = socket.send(&frames::ping()).await?;
        let pong = socket
            .expect("pong", ctx.timeout, |f| Kind::Pong.is(f))
            .await?;
        latency = latency.max(pong.at.duration_since(sent));
    }
    Ok(Pass::latency(latency))
}

/// The handshake must be answered with an HTTP refusal instead of 101.
///
/// Only 401 and 403 count: Vato answers 401 for a missing or bad token and
/// 403 for a non-member, the original 403 for all; anything else (a 404 for
/// a mistyped path, a 500) is no refusal of this user.
async fn expect_refusal(ctx: &Ctx, url: &str) -> CheckResult {
    match inbox::connect(url, "refused", ctx.timeout).await {
        Err(ConnectError::Refused {
            status: status @ (401 | 403),
            ..
        }) => Ok(Pass::detail(format!("HTTP {status}"))),
        Err(ConnectError::Refused {
            status, text: body, ..
        }) => Err(format!(
            "expected an HTTP 401/403 refusal, got HTTP {status} {body}"
        )),
        Err(ConnectError::Failed(reason)) => {
            Err(format!("expected an HTTP 401/403 refusal: {reason}"))
        }
        Ok(mut socket) => {
            // Say what happened after the upgrade: a close code, or frames.
            socket.settle(ctx.grace).await;
            let after = match socket.closed() {
                Some(how) => format!(", then {how}"),
                None => String::new(),
            };
            Err(format!(
                "the handshake was accepted (101){after}; expected an HTTP 401/403 refusal"
            ))
        }
    }
}

/// Both a garbage token and a refresh token (right signature, wrong type).
async fn refuse_bad_tokens(ctx: &Ctx, a: &User, conversation: i64) -> CheckResult {
    let mut statuses = Vec::new();
    let mut tokens = vec![("a garbage token", "not-a-valid.jwt.token")];
    if !a.refresh.is_empty() {
        tokens.push(("a refresh token", a.refresh.as_str()));
    }
    for (what, token) in tokens {
        let url = inbox::url(&a.ws_base, &ctx.ws_path, conversation, Some(token), None);
        let pass = expect_refusal(ctx, &url)
            .await
            .map_err(|reason| format!("with {what}: {reason}"))?;
        statuses.extend(pass.detail_text().map(str::to_owned));
    }
    Ok(Pass::detail(statuses.join(", ")))
}

/// Registers a third user, who is no member, and tries their token.
async fn refuse_non_member(ctx: &Ctx, a: &User, conversation: i64) -> CheckResult {
    let username = format!("vc_x_{}", ctx.token().replace('-', "_"));
    // Unlike the username, not derived from the run id (see auth.rs).
    let password = format!("pw-{}", super::unique_token());
    let reply = session::register(&a.api, &username, &password).await?;
    if reply.status != 201 {
        return Err(format!(
            "could not register a non-member user: {}",
            reply.describe()
        ));
    }
    let outsider = session::login(&a.api, "X", &username, &password, &a.ws_base).await?;
    let url = inbox::url(
        &outsider.ws_base,
        &ctx.ws_path,
        conversation,
        Some(&outsider.access),
        None,
    );
    expect_refusal(ctx, &url).await
}
