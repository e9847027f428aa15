//! Case 1, authentication: A and B log in; a wrong password gets no token.

use super::report::{CheckResult, Pass, Report};
use super::session::{self, User};
use super::Ctx;
use vato_client::Api;

/// Logs in A and B (registering them first with `--fresh-users`).
pub async fn run(ctx: &Ctx, report: &mut Report) -> (Option<User>, Option<User>) {
    let cfg = &ctx.config;
    let a = login_check(
        ctx,
        &ctx.api_a,
        "A",
        &cfg.user_a,
        &cfg.password_a,
        &ctx.ws_a,
    )
    .await;
    let a = record(report, "auth.login_a", a);
    let b = login_check(
        ctx,
        &ctx.api_b,
        "B",
        &cfg.user_b,
        &cfg.password_b,
        &ctx.ws_b,
    )
    .await;
    // Talking to yourself proves nothing about delivery to the other member.
    let b = match (b, &a) {
        (Ok(b), Some(a)) if b.id == a.id => Err(format!(
            "B is the same user as A ({}, id {}): use two users",
            b.username, b.id
        )),
        (b, _) => b,
    };
    let b = record(report, "auth.login_b", b);

    let username = a
        .as_ref()
        .map_or(cfg.user_a.as_str(), |a| a.username.as_str());
    let result = wrong_password(&ctx.api_a, username).await;
    report.record("auth.wrong_password", result);
    (a, b)
}

fn record(report: &mut Report, name: &str, result: Result<User, String>) -> Option<User> {
    match result {
        Ok(user) => {
            report.record(
                name,
                Ok(Pass::detail(format!("{} id {}", user.username, user.id))),
            );
            Some(user)
        }
        Err(reason) => {
            report.record(name, Err(reason));
            None
        }
    }
}

async fn login_check(
    ctx: &Ctx,
    api: &Api,
    label: &'static str,
    username: &str,
    password: &str,
    ws_base: &str,
) -> Result<User, String> {
    if !ctx.config.fresh_users {
        return session::login(api, label, username, password, ws_base).await;
    }
    // Fresh users: unique names, so concurrent or repeated runs never meet.
    let username = format!(
        "vc_{}_{}",
        label.to_lowercase(),
        ctx.token().replace('-', "_")
    );
    // Not derived from the run id the username carries: the server refuses
    // a password too similar to the username (Django's validator).
    let password = format!("pw-{}", super::unique_token());
    let reply = session::register(api, &username, &password).await?;
    if reply.status != 201 {
        return Err(format!(
            "register {username}: expected 201, got {}",
            reply.describe()
        ));
    }
    session::login(api, label, &username, &password, ws_base).await
}

/// A wrong password must be refused (400 in the contract; 401 accepted too)
/// and the answer must carry no token.
async fn wrong_password(api: &Api, username: &str) -> CheckResult {
    let reply = api
        .login(username, "definitely-not-the-password")
        .await
        .map_err(|e| e.to_string())?;
    if reply.status != 400 && reply.status != 401 {
        return Err(format!("expected 400 (or 401), got {}", reply.describe()));
    }
    for key in ["access", "refresh"] {
        if reply.body.get(key).is_some() {
            return Err(format!(
                "refused login still carries {key:?}: {}",
                reply.describe()
            ));
        }
    }
    Ok(Pass::detail(format!("HTTP {}", reply.status)))
}
