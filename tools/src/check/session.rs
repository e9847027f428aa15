//! The logged-in users the cases act as, over vato-client's REST client,
//! and the tolerances every case shares (retries, list envelopes, ids).

use std::time::{Duration, Instant};

use serde_json::Value;
use vato_client::{Api, Resp};

/// A logged-in user and the node it talks to.
pub struct User {
    /// "A" or "B", for failure reasons.
    pub label: &'static str,
    pub username: String,
    pub id: i64,
    pub access: String,
    pub refresh: String,
    /// What it logged in with: `ext.logout` opens a second session.
    pub password: String,
    /// The node's API, without credentials (the user's own calls go
    /// through [`User::get`] and [`User::post`]).
    pub api: Api,
    /// `ws://host:port` of the node this user's sockets connect to.
    pub ws_base: String,
}

impl User {
    /// The node's API with this user's token.
    pub fn authed(&self) -> Api {
        self.api.with_token(&self.access)
    }

    pub async fn get(&self, path: &str) -> Result<Resp, String> {
        let api = self.authed();
        api.try_get(path).await.map_err(|e| e.to_string())
    }

    /// `POST .../messages/` with a client id.
    pub async fn send_message(
        &self,
        conversation: i64,
        content: &str,
        client_id: &str,
    ) -> Result<Resp, String> {
        let api = self.authed();
        let sent = api.send(unsigned(conversation), content, Some(client_id));
        sent.await.map_err(|e| e.to_string())
    }

    /// The conversation list (`GET /api/chat/conversations/`).
    pub async fn conversations(&self) -> Result<Resp, String> {
        let api = self.authed();
        api.conversations().await.map_err(|e| e.to_string())
    }

    /// The direct conversation with `other` (created or existing).
    pub async fn create_direct(&self, other: i64) -> Result<Resp, String> {
        let api = self.authed();
        let created = api.create_direct(unsigned(other));
        created.await.map_err(|e| e.to_string())
    }
}

/// `POST /api/auth/register/`; the answer carries tokens like a login.
pub async fn register(api: &Api, username: &str, password: &str) -> Result<Resp, String> {
    api.register(username, password)
        .await
        .map_err(|e| e.to_string())
}

/// `POST /api/auth/login/` and read the user's id and tokens from the answer.
pub async fn login(
    api: &Api,
    label: &'static str,
    username: &str,
    password: &str,
    ws_base: &str,
) -> Result<User, String> {
    let reply = api
        .login(username, password)
        .await
        .map_err(|e| e.to_string())?;
    if reply.status != 200 {
        return Err(format!("login as {username}: {}", reply.describe()));
    }
    let access = non_empty_str(&reply.body["access"]).ok_or_else(|| {
        format!(
            "login as {username}: no access token in {}",
            reply.describe()
        )
    })?;
    let refresh = non_empty_str(&reply.body["refresh"]).unwrap_or_default();
    let id = match reply.body["user"]["id"].as_i64() {
        Some(id) => id,
        // The original's test read the id from the profile; do the same when
        // the login answer lacks it.
        None => {
            let me = api
                .with_token(&access)
                .profile_me()
                .await
                .map_err(|e| e.to_string())?;
            me.body["id"].as_i64().ok_or_else(|| {
                format!(
                    "login as {username}: no user id in the login answer nor in profile/me ({})",
                    me.describe()
                )
            })?
        }
    };
    Ok(User {
        label,
        username: username.to_owned(),
        id,
        access,
        refresh,
        password: password.to_owned(),
        api: api.clone(),
        ws_base: ws_base.to_owned(),
    })
}

fn non_empty_str(value: &Value) -> Option<String> {
    value.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

/// Retries `attempt` until it succeeds or `timeout` is spent.
///
/// In cluster mode a write on node A reaches node B a moment later, so reads
/// on B (and writes that refer to what A created) may need a few tries.
pub async fn retry<T, F, Fut>(timeout: Duration, mut attempt: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(err) if Instant::now() >= deadline => return Err(err),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A list answer: a plain array as in the contract, or a paginated
/// `{"results": [...]}` envelope should the server ever add one.
pub fn list_items(body: &Value) -> Option<&Vec<Value>> {
    body.as_array().or_else(|| body["results"].as_array())
}

/// Ids arrive as numbers; tolerate strings so a mismatch reads as a mismatch.
pub fn as_id(value: &Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

/// A positive id as the client's `u64` (a negative one names nothing: 0).
pub fn unsigned(id: i64) -> u64 {
    u64::try_from(id).unwrap_or_default()
}
