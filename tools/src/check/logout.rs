//! `--extended`, logout: a refresh token revoked by `POST
//! /api/auth/logout/` is refused by every later refresh (401), on B's node
//! too in cluster mode. The check logs A in a second time and revokes only
//! that session, so the run's own tokens keep working.

use std::time::Duration;

use serde_json::json;
use vato_client::Resp;

use super::report::{CheckResult, Pass};
use super::session::{self, retry, User};
use super::Ctx;

/// `ext.logout`.
pub async fn logout(ctx: &Ctx, a: &User) -> CheckResult {
    let second = session::login(&a.api, a.label, &a.username, &a.password, &a.ws_base).await?;
    if second.refresh.is_empty() {
        return Err("the second login answered no refresh token".into());
    }
    let refreshed = refresh(&a.api, &second.refresh, "refresh before the logout").await?;
    if refreshed.status != 200 {
        return Err(format!(
            "refresh before the logout: {}",
            refreshed.describe()
        ));
    }
    let out = a
        .api
        .logout(&second.refresh)
        .await
        .map_err(|e| format!("POST logout/: {e}"))?;
    let done = json!({"detail": "Successfully logged out."});
    if out.status != 200 || out.body != done {
        return Err(format!(
            "POST logout/: expected 200 {done}, got {}",
            out.describe()
        ));
    }
    // On B's node (the same one outside cluster mode), which may apply the
    // revocation a moment later.
    let node_b = &ctx.api_b;
    let settle = ctx.timeout.max(Duration::from_secs(1));
    retry(settle, || async {
        let resp = refresh(node_b, &second.refresh, "refresh after the logout").await?;
        if resp.status == 401 {
            Ok(())
        } else {
            Err(format!(
                "refresh with the revoked token answered {}, not 401",
                resp.describe()
            ))
        }
    })
    .await?;
    // The run's own session is untouched.
    let own = refresh(&a.api, &a.refresh, "refresh of A's first session").await?;
    if !a.refresh.is_empty() && own.status != 200 {
        return Err(format!(
            "A's other session no longer refreshes: {}",
            own.describe()
        ));
    }
    Ok(Pass::detail(
        "revoked token refused with 401, other session kept",
    ))
}

async fn refresh(api: &vato_client::Api, token: &str, what: &str) -> Result<Resp, String> {
    api.refresh(token).await.map_err(|e| format!("{what}: {e}"))
}
